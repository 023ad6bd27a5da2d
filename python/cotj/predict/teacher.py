"""Teacher runs and the jump costs they measure (the "teacher" and "calibrated" objectives, and replanning).

A first-order teacher run through every level of a grid visits N states of a sample. The model's clean estimate
at each visited state gives the first-order (Euler / DDIM) step from that level to *every* lower level, and the
teacher's own state there is where that step should land. So one N-step run measures the sample's whole N×N
matrix of local errors (:attr:`Trajectories.jump_costs`) for N model evaluations. :func:`calibrate` averages it
over a calibration batch (a GITS-style data-set cost) and fits the closed-loop row model of
:class:`cotj.planning.objectives.RowModel` on the same runs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from tqdm.auto import tqdm

from cotj._deprecation import moved_names
from cotj.paths import ddim_update, first_order_step, path_of
from cotj.planning.objectives import RowModel, TeacherCost, row_features
from cotj.planning.schedules import default_grid

__all__ = ["Trajectories", "calibrate", "euler_trajectories", "fit_teacher_cost"]

__getattr__ = moved_names(__name__, {"clean_estimate": "cotj.paths", "ddim_step": "cotj.paths"})


@dataclass(frozen=True)
class Trajectories:
    """Teacher trajectories of B samples on a grid of M levels that includes the clean end.

    Attributes:
        levels: (M,) float64 ascending, ``levels[0] = 0`` (the endpoint), ``levels[-1]`` the top
            level where sampling starts.
        states: (B, M, D) the teacher's state of each sample at each level (flattened).
        x0: (B, M, D) the teacher model's clean estimate at each of those states (column 0 unused).
        a, s: (M,) the Gaussian path ``x_t = a·x0 + s·eps`` at ``levels``; None: the linear flow.
    """

    levels: NDArray[np.float64]
    states: NDArray[np.float64]
    x0: NDArray[np.float64]
    a: NDArray[np.float64] | None = None
    s: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        lv = np.asarray(self.levels, dtype=np.float64)
        if lv.ndim != 1 or lv.size < 2 or lv[0] != 0 or np.any(np.diff(lv) <= 0):
            raise ValueError("levels must be 1-D, ascending, start at 0 and hold at least 2 levels")
        states, x0 = np.shape(self.states), np.shape(self.x0)
        if len(states) != 3 or states[1] != lv.size or x0 != states:
            raise ValueError(f"states and x0 must both have shape (B, {lv.size}, D), got {states} and {x0}")
        for name, v in (("a", self.a), ("s", self.s)):
            if v is not None and np.shape(v) != lv.shape:
                raise ValueError(f"{name} must have the shape of levels {lv.shape}, got {np.shape(v)}")

    @functools.cached_property
    def path(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(a, s)`` (M,) at the levels: the given path, else the linear flow."""
        t = np.asarray(self.levels, dtype=np.float64)
        return (1.0 - t if self.a is None else np.asarray(self.a, dtype=np.float64),
                t if self.s is None else np.asarray(self.s, dtype=np.float64))  # fmt: skip

    @functools.cached_property
    def jump_costs(self) -> NDArray[np.float64]:
        """(B, M, M) float64: ``[b, j, i]`` is the mean squared distance between one first-order
        (Euler / DDIM, :func:`cotj.paths.ddim_update`) step from sample b's teacher state at level j
        down to level i and the teacher's own state at level i; ``inf`` where i >= j (no such jump)."""
        a, s = self.path
        x, x0 = np.asarray(self.states, dtype=np.float64), np.asarray(self.x0, dtype=np.float64)
        cost = np.full((x.shape[0], a.size, a.size), np.inf)
        for j in range(1, a.size):
            landed = ddim_update(x[:, j, None], x0[:, j, None], a[j], s[j], a[:j, None], s[:j, None])  # (B, j, D)
            cost[:, j, :j] = ((landed - x[:, :j]) ** 2).mean(-1)
        return cost

    def gram(self) -> NDArray[np.float64]:
        """(2M, 2M) float64: the mean over samples of ``V·Vᵀ/D``, ``V`` the (2M, D) stack of a sample's states at
        the M levels then its clean estimates there (column 0 of the estimates: the endpoint itself). Every
        solver's mean local error on these trajectories is a quadratic form in it (:func:`cotj.planning.multistep.solver_costs`)."""
        x, x0 = np.asarray(self.states, dtype=np.float64), np.asarray(self.x0, dtype=np.float64)
        x0 = x0.copy()
        x0[:, 0] = x[:, 0]
        v = np.concatenate([x, x0], axis=1)  # (B, 2M, D)
        return np.einsum("bmd,bnd->mn", v, v) / (v.shape[0] * v.shape[2])

    @functools.cached_property
    def features(self) -> NDArray[np.float64]:
        """(B, M - 1, F) :func:`cotj.planning.objectives.row_features` of the teacher at levels 1..M-1 (what a sampler
        that is at that level on this trajectory sees)."""
        b, m, d = self.states.shape
        f = row_features(np.asarray(self.states[:, 1:], dtype=np.float64).reshape(-1, d),
                         np.asarray(self.x0[:, 1:], dtype=np.float64).reshape(-1, d))  # fmt: skip
        return f.reshape(b, m - 1, -1)


def euler_trajectories(denoiser: Any, noise: torch.Tensor, cond: Any, grid: ArrayLike, *,
                       prediction: str | None = None, batch_size: int | None = None) -> Trajectories:
    """A first-order run through every level of ``grid`` (N,) ascending, top level first, recording the state
    and ``x0_hat`` at each level: (B, N + 1, D) with level 0 the endpoint. Its endpoint is the N-step sample. The
    trajectories keep the denoiser's own path (``a``, ``s``) when it has one, so their jump costs are its steps'."""
    prediction = prediction or getattr(denoiser, "prediction", None)
    if prediction is None:
        raise ValueError("prediction is required for a denoiser without a 'prediction' attribute")
    desc = np.asarray(grid, dtype=np.float64)[::-1]
    n, b = desc.size, noise.shape[0]
    states = torch.empty((b, n + 1, *noise.shape[1:]), dtype=noise.dtype)
    x0s = torch.empty_like(states)
    size = batch_size or b
    with torch.inference_mode():
        for start in range(0, b, size):
            rows = slice(start, start + size)
            x = noise[rows].clone()
            for k in range(n):
                t = torch.full((x.shape[0],), desc[k], dtype=torch.float64)
                t_next = torch.full_like(t, desc[k + 1] if k + 1 < n else 0.0)
                states[rows, n - k] = x
                x, x0s[rows, n - k] = first_order_step(denoiser, x, t, t_next, cond[rows], prediction)
            states[rows, 0], x0s[rows, 0] = x, x
    flat = (b, n + 1, -1)
    levels = np.append(0.0, desc[::-1])
    a = s = None
    if hasattr(denoiser, "path"):
        a_t, s_t = path_of(denoiser, torch.from_numpy(levels), prediction)
        a, s = a_t.double().cpu().numpy(), s_t.double().cpu().numpy()
    return Trajectories(levels, states.reshape(flat).double().numpy(), x0s.reshape(flat).double().numpy(), a, s)


def _chunks(noise: torch.Tensor, cond: Any, size: int) -> Iterator[tuple[torch.Tensor, Any]]:
    for start in range(0, noise.shape[0], size):
        yield noise[start : start + size], cond[start : start + size]


def fit_teacher_cost(costs: NDArray[np.float64], features: NDArray[np.float64], grid: ArrayLike,
                     ridge: float = 10.0, gram: NDArray[np.float64] | None = None) -> TeacherCost:
    """The :class:`TeacherCost` of per-sample jump costs ``costs`` (C, N + 1, N + 1) (node 0 = t = 0, node n =
    grid level n - 1) and the features ``features`` (C, N, F) seen at each grid level.

    The data-set cost is the mean over samples. The row model regresses, level by level, each sample's log row
    scale ``log mean_i(costs[c, j, i] / mean[j, i])`` on the standardised features, with ridge penalty ``ridge``.
    ``gram`` (2N + 2, 2N + 2), the trajectories' mean Gram matrix, is kept for the solver-aware costs.
    """
    g = np.asarray(grid, dtype=np.float64)
    if ridge < 0 or not np.isfinite(ridge):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge}")
    floor = np.maximum(costs, 1e-12)  # the teacher's own steps land exactly: cost 0
    mean = floor.mean(0)
    below = np.tril(np.ones(mean.shape, dtype=bool), -1)
    ratio = np.where(below, floor / np.where(below, mean, 1.0), np.nan)
    log_rows = np.log(np.nanmean(ratio[:, 1:], axis=2))  # (C, N): grid levels 0..N-1 (nodes 1..N)
    base = log_rows.mean(0)
    centered = log_rows - base
    center, spread = features.mean(0), features.std(0) + 1e-9  # (N, F)
    n, f = center.shape
    beta, var = np.empty((n, f, n)), np.empty((n, n))
    for j in range(n):
        z = (features[:, j] - center[j]) / spread[j]
        beta[j] = np.linalg.solve(z.T @ z + ridge * np.eye(f), z.T @ centered)
        var[j] = (centered - z @ beta[j]).var(0)
    edges = np.where(below[1:, 1:], mean[1:, 1:], np.inf)
    return TeacherCost(g, edges, mean[1:, 0].copy(), int(costs.shape[0]), RowModel(base, center, spread, beta, var), gram)


def calibrate(denoiser: Any, noise: torch.Tensor, cond: Any, grid: ArrayLike | None = None, *,
              prediction: str | None = None, batch_size: int = 64, ridge: float = 10.0,
              progress: bool = True) -> TeacherCost:
    """Measure a model's jump costs from teacher runs: the data for the "teacher" and "calibrated" objectives
    and for closed-loop replanning.

    Args:
        denoiser: ``model(x_t (n, ...), t (n,), cond (n, ...)) -> prediction``, as for :func:`cotj.predict.extract_dna`.
        noise: (C, ...) one starting noise per calibration sample (the state at the grid's top level).
        cond: (C, ...) their conditions (a tensor or anything sliceable by rows).
        grid: (N,) ascending levels, top level where sampling starts; default ``t_i = (i + 1)/100``.
        prediction: what the denoiser predicts; default its ``prediction`` attribute.
        batch_size: samples per teacher run (memory: batch × (N + 1) × D floats twice).
        ridge: penalty of the row model's regression (standardised features; docs/method.md §7).

    Returns:
        A :class:`~cotj.planning.objectives.TeacherCost`. Cost: N model evaluations per sample.
    """
    g = default_grid(100) if grid is None else np.asarray(grid, dtype=np.float64)
    if noise.shape[0] < 2:
        raise ValueError(f"calibrate needs at least 2 samples, got {noise.shape[0]}")
    costs, feats, grams = [], [], []
    chunks = _chunks(noise, cond, batch_size)
    for x, c in tqdm(chunks, total=-(-noise.shape[0] // batch_size), desc="teacher runs", disable=not progress):
        traj = euler_trajectories(denoiser, x, c, g, prediction=prediction)
        costs.append(traj.jump_costs)
        feats.append(traj.features)
        grams.append(traj.gram() * x.shape[0])
    gram = np.sum(grams, axis=0) / noise.shape[0]
    return fit_teacher_cost(np.concatenate(costs), np.concatenate(feats), g, ridge, gram)
