"""Baseline sampling schedules the quality benchmark compares CoTj with (issue 5).

Every schedule is a descending array of K noise levels in (0, 1] on the linear flow
``x_t = (1 - t)·x0 + t·eps`` (the sigmas of a flow-matching scheduler): the K levels where the
model is evaluated; the sampler's last step goes from the last level to 0 (NFE = K).

The fixed formulas (uniform, SD3's shift, EDM's rho-spacing) are the library's
(:func:`cotj.planning.schedules.uniform`, :func:`~cotj.planning.schedules.shifted`, :func:`~cotj.planning.schedules.karras`);
this module adds the teacher-based ones:

- :func:`gits` (one schedule for a data set) and :func:`oss` (one schedule per sample): the
  cheapest K-jump path through a grid of teacher states, by dynamic programming over the
  one-step truncation error (:attr:`cotj.predict.teacher.Trajectories.jump_costs`, :func:`cheapest_path`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj.planning.schedules import check_steps
from cotj.predict.teacher import Trajectories

__all__ = ["cheapest_path", "gits", "oss"]


def cheapest_path(cost: ArrayLike, k: int) -> NDArray[np.int64]:
    """Nodes (K + 1,) of the cheapest path of exactly K jumps from the top node M - 1 down to node 0.

    ``cost`` (M, M) holds ``cost[j, i]`` for the jump from node j to node i < j (``inf``: no edge). A
    layered DP, ``D_m[i] = min_j D_{m-1}[j] + cost[j, i]``; ties go to the lowest j. O(K·M²).
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise ValueError(f"cost must be a square (M, M) matrix with M >= 2, got shape {c.shape}")
    k, m = check_steps(k), c.shape[0]
    if k > m - 1:
        raise ValueError(f"k must be <= M - 1 = {m - 1} (one jump per level at most), got {k}")
    reach = np.full(m, np.inf)
    reach[-1] = 0.0
    back = np.empty((k, m), dtype=np.int64)
    for layer in range(k):
        total = reach[:, None] + c
        back[layer] = total.argmin(axis=0)
        reach = total[back[layer], np.arange(m)]
    if not np.isfinite(reach[0]):
        raise ValueError(f"no path of {k} jumps reaches node 0 through finite costs")
    nodes = [0]
    for layer in range(k - 1, -1, -1):
        nodes.append(int(back[layer, nodes[-1]]))
    return np.array(nodes[::-1], dtype=np.int64)


def gits(teacher: Trajectories, k: int) -> NDArray[np.float64]:
    """A data-set-level schedule in the style of GITS (Chen et al., "On the Trajectory Regularity of
    ODE-based Diffusion Sampling", ICML 2024): one schedule for every sample, (K,) levels.

    The cost of a jump from level t_j to t_i is the calibration batch's mean of
    :attr:`Trajectories.jump_costs` (squared local truncation error of one first-order step taken from
    the teacher's state); the schedule is the cheapest K-jump path from the top level to 0
    (:func:`cheapest_path`), so it starts at the top. GITS sums these local errors exactly so; it does
    not propagate the student's own state.
    """
    nodes = cheapest_path(teacher.jump_costs.mean(axis=0), k)
    return np.asarray(teacher.levels, dtype=np.float64)[nodes[:-1]]


def oss(teacher: Trajectories, k: int) -> NDArray[np.float64]:
    """The same dynamic programme as :func:`gits` on each sample's own teacher trajectory: (B, K)
    levels, row b the cheapest K-jump path of sample b ("OSS-style", after Pei et al., "Optimal
    Stepsizes for Diffusion Sampling", 2025, which also plans on one teacher trajectory). Unlike OSS
    the cost is the sum of local errors from teacher states (not the propagated student state), and it
    needs that sample's teacher trajectory (a full reference run): an upper reference, not a sampler.
    """
    lv = np.asarray(teacher.levels, dtype=np.float64)
    return np.stack([lv[cheapest_path(c, k)[:-1]] for c in teacher.jump_costs])
