"""Diagnostics of a DNA and of a realised run: what the plan's reasoning rests on.

- :func:`negative_gains`: the levels whose step down *raises* the one-step error (a step that
  undoes work, e.g. t = 1 in distilled models);
- :func:`knee`: where extra steps stop paying on the explained-gain curve R(K); with
  :func:`diagnose`, set against the planner's own choice, the smallest K with ``R(K) >= tau``;
- :func:`run_signature`: the acceleration signature of a realised run (third finite differences of
  its latents, :mod:`cotj.execute.probe`) against the DNA at the same levels, and their rank
  correlation.

numpy only, except :func:`run_signature`, which imports torch (the ``torch`` extra) when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj.planning.dna import gains
from cotj.planning.planner import Plan, plan
from cotj.planning.schedules import dna_grid

__all__ = ["Diagnosis", "RunSignature", "diagnose", "knee", "negative_gains", "run_signature"]


def negative_gains(dna: ArrayLike) -> NDArray[np.int64]:
    """Grid indices j (ascending) of the levels whose step down to level j - 1 raises the DNA:
    ``d[j] < d[j - 1]``, i.e. the gain ``g[j - 1]`` of :func:`cotj.gains` is negative.

    ``dna`` is one row (N,); returns (M,) int64, empty when every step pays.
    """
    g = gains(dna)
    if g.ndim != 1:
        raise ValueError(f"dna must be one row (N,), got shape {np.shape(dna)}")
    return np.flatnonzero(g < 0) + 1


def knee(ratio: ArrayLike) -> int:
    """The knee K of an explained-gain curve ``R(K)``, K = 1..len(ratio) (Kneedle).

    Both axes are scaled to [0, 1] over the finite part of the curve; the knee is the K whose
    point lies farthest above the chord from the first to the last K: where the curve bends from
    steep to flat, so that further steps each explain little. Entries that are not finite (no plan
    of that length) are skipped. Ties go to the smallest K.

    Raises:
        ValueError: fewer than 3 finite entries, or a curve that does not rise.
    """
    r = np.asarray(ratio, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"ratio must be 1-D (K_max,), got shape {r.shape}")
    k = np.flatnonzero(np.isfinite(r)) + 1
    if k.size < 3:
        raise ValueError(f"ratio needs at least 3 finite values to have a knee, got {k.size}")
    y = r[k - 1]
    if y[-1] <= y[0]:
        raise ValueError("ratio must rise from its first to its last finite value to have a knee")
    x_norm = (k - k[0]) / (k[-1] - k[0])
    y_norm = (y - y[0]) / (y[-1] - y[0])
    return int(k[np.argmax(y_norm - x_norm)])


@dataclass(frozen=True)
class Diagnosis:
    """What a DNA says about sampling with it.

    Attributes:
        grid: (N,) float64 ascending noise levels of the DNA.
        dna: (N,) float64 the DNA.
        gains: (N - 1,) float64 per-level gains ``d[i + 1] - d[i]``.
        negative: (M,) int64 grid indices j whose step down to j - 1 raises the DNA.
        plan: the adaptive plan (:func:`cotj.plan` with ``tau``): its ``budget`` is the smallest
            K with ``R(K) >= tau``, its ``ratio`` the curve R(K) for K = 1..max_steps.
        tau: the explained-gain target.
        knee: the knee of R(K) (:func:`knee`).
    """

    grid: NDArray[np.float64]
    dna: NDArray[np.float64]
    gains: NDArray[np.float64]
    negative: NDArray[np.int64]
    plan: Plan
    tau: float
    knee: int

    @property
    def ratio(self) -> NDArray[np.float64]:
        """(max_steps,) float64 ``R(K)`` for K = 1..max_steps."""
        assert self.plan.ratio is not None
        return self.plan.ratio

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: negative-gain levels (level, next lower level, gain, gain relative
        to ``d`` at the lower level), the tau choice and the knee with their R(K), and the plan."""
        neg = [
            {
                "level": float(self.grid[j]),
                "to": float(self.grid[j - 1]),
                "gain": float(self.gains[j - 1]),
                "relative": float(self.gains[j - 1] / self.dna[j - 1]) if self.dna[j - 1] > 0 else None,
            }
            for j in self.negative
        ]
        r = self.ratio
        return {
            "levels": len(self.grid),
            "negative_gains": neg,
            "tau": self.tau,
            "k_tau": self.plan.budget,
            "ratio_at_k_tau": float(r[self.plan.budget - 1]),
            "knee": self.knee,
            "ratio_at_knee": float(r[self.knee - 1]),
            "plan_levels": self.plan.levels.tolist(),
            "plan_cost": self.plan.cost,
        }


def diagnose(
    dna: ArrayLike, *, tau: float = 0.99, max_steps: int | None = None, grid: ArrayLike | None = None
) -> Diagnosis:
    """Diagnose one DNA row (N,): negative gains, the adaptive plan at ``tau`` (up to
    ``max_steps``, default N // 2) and the knee of its R(K); ``grid`` as in :func:`cotj.plan`."""
    g = gains(dna)
    if g.ndim != 1:
        raise ValueError(f"dna must be one row (N,), got shape {np.shape(dna)}")
    d = np.asarray(dna, dtype=np.float64)
    t = dna_grid(grid, d.shape[0])
    adaptive = plan(d, tau=tau, max_steps=max_steps, grid=grid)
    assert adaptive.ratio is not None
    return Diagnosis(t, d, g, negative_gains(d), adaptive, float(tau), knee(adaptive.ratio))


@dataclass(frozen=True)
class RunSignature:
    """The acceleration signature of a realised run against the DNA.

    Attributes:
        levels: (W,) float64 noise level of each window (the mean of its middle two states).
        signature: (B, W) float64 mean squared third divided difference of the latents, times 6
            (:func:`cotj.execute.acceleration_signature` with levels).
        dna_at: (B, W) float64 the DNA interpolated at ``levels``.
        correlation: (B,) float64 Spearman rank correlation of ``signature`` with ``dna_at``
            (:func:`cotj.execute.compare_with_dna`).
    """

    levels: NDArray[np.float64]
    signature: NDArray[np.float64]
    dna_at: NDArray[np.float64]
    correlation: NDArray[np.float64]


def run_signature(latents: Any, levels: ArrayLike, dna: ArrayLike, grid: ArrayLike | None = None) -> RunSignature:
    """Set a run's acceleration signature against the DNA.

    Args:
        latents: (S, B, ...) torch tensor, the states of the run in step order (S >= 5: the
            correlation needs 2 windows).
        levels: (S,) their noise levels, descending (the last is usually 0).
        dna: (N,) or (B, N) the DNA of the run's condition(s).
        grid: the DNA's grid (N,); default ``t_i = (i + 1)/N``.
    """
    from cotj.execute.probe import acceleration_signature, compare_with_dna

    lv = np.asarray(levels, dtype=np.float64)
    sig = acceleration_signature(latents, lv)
    mid = 0.5 * (lv[1:-2] + lv[2:-1])
    d = np.atleast_2d(np.asarray(dna, dtype=np.float64))
    t = dna_grid(grid, d.shape[1])
    corr = compare_with_dna(mid, sig, d, t)
    at = np.stack([np.interp(mid, t, row) for row in np.broadcast_to(d, (sig.shape[0], d.shape[1]))])
    return RunSignature(mid, sig, at, corr)
