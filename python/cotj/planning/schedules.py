"""Noise-level grids and Gaussian paths ``x_t = a(t)·x0 + s(t)·eps`` on them (docs/method.md §1, §3).

A *grid* is an ascending array of N noise levels in (0, 1]; t = 1 is pure noise. A *schedule*
gives ``a`` and ``s`` at every grid level and sets the temporal lever of the plan graph. The
planner's default is the linear flow (rectified flow), ``a = 1 - t``, ``s = t``.

The fixed level sequences plans are compared with (:func:`uniform`, :func:`shifted`, :func:`karras`) are here too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj._deprecation import renamed

__all__ = ["MAX_STEPS", "Schedule", "check_schedule", "check_steps", "default_grid", "dna_grid", "karras", "linear_flow", "shifted", "uniform", "vp", "ve"]


class Schedule(NamedTuple):
    """``a(t)`` and ``s(t)`` on a grid: two (N,) float64 arrays."""

    a: NDArray[np.float64]
    s: NDArray[np.float64]


def check_schedule(grid: ArrayLike, a: ArrayLike, s: ArrayLike) -> Schedule:
    """``(a, s)`` on ``grid`` as a float64 :class:`Schedule`, checked to be a noising path: one finite value
    >= 0 per level, not both 0, and the signal-to-noise ratio ``a/s`` strictly falling as t rises (in
    whatever order the grid lists its levels). Raises ValueError naming the first level where it does not."""
    t, a, s = (np.asarray(v, dtype=np.float64) for v in (grid, a, s))
    if t.ndim != 1 or a.shape != t.shape or s.shape != t.shape:
        raise ValueError(f"grid, a and s must be 1-D of one length, got shapes {t.shape}, {a.shape}, {s.shape}")
    for name, v in (("grid", t), ("a", a), ("s", s)):
        if not np.all(np.isfinite(v)) or (name != "grid" and np.any(v < 0)):
            raise ValueError(f"schedule {name} must be finite{'' if name == 'grid' else ' and >= 0'}")
    if np.any((a == 0) & (s == 0)):
        raise ValueError("schedule a and s are both 0 at a level: no signal and no noise")
    order = np.argsort(t, kind="stable")
    lo, hi = order[:-1], order[1:]
    rising = t[hi] > t[lo]
    # a/s falls from lo to hi, written without division (s may be 0 at t = 0)
    bad = np.flatnonzero(rising & ~(a[lo] * s[hi] > a[hi] * s[lo]))
    if bad.size:
        i, j = lo[bad[0]], hi[bad[0]]
        raise ValueError(f"schedule's signal-to-noise ratio a/s must fall as t rises, but from t = {t[i]:.6g} to "
                         f"t = {t[j]:.6g} it goes from {a[i]:.6g}/{s[i]:.6g} to {a[j]:.6g}/{s[j]:.6g}")
    return Schedule(a, s)


def default_grid(n: int = 100) -> NDArray[np.float64]:
    """The default grid ``t_i = (i + 1) / n``, shape (n,), ascending, top level 1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    return np.arange(1, n + 1, dtype=np.float64) / n


def dna_grid(grid: ArrayLike | None, n: int) -> NDArray[np.float64]:
    """The noise levels (n,) float64 of an n-entry DNA: ``grid``, or :func:`default_grid` when None. Raises
    TypeError for a non-numeric ``grid`` and ValueError unless it has one level per DNA entry."""
    if grid is None:
        return default_grid(n)
    g = np.asarray(grid)
    if g.dtype.kind not in "fiu":
        raise TypeError(f"grid must be a real numeric array, got dtype {g.dtype}")
    if g.shape != (n,):
        raise ValueError(f"grid must have one level per DNA entry, shape ({n},), got {g.shape}")
    return g.astype(np.float64)


def linear_flow(grid: ArrayLike) -> Schedule:
    """Rectified flow: ``a = 1 - t``, ``s = t`` (SD3, Flux, Qwen-Image, Z-Image)."""
    t = np.asarray(grid, dtype=np.float64)
    return check_schedule(t, 1.0 - t, t.copy())


def vp(grid: ArrayLike, alphas_cumprod: ArrayLike) -> Schedule:
    """Variance-preserving path from a discrete ``alphas_cumprod`` table (DDPM, SD1.5, SDXL).

    Grid level t maps to the (fractional) training timestep ``t·(T - 1)`` of a T-entry table
    (e.g. ``scheduler.alphas_cumprod`` of a Diffusers scheduler), interpolated linearly;
    ``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)``.
    """
    t = np.asarray(grid, dtype=np.float64)
    table = np.asarray(alphas_cumprod, dtype=np.float64)
    if table.ndim != 1 or table.size < 2:
        raise ValueError(f"alphas_cumprod must be a 1-D table of at least 2 entries, got shape {table.shape}")
    if not np.all((table > 0) & (table <= 1)):
        raise ValueError("alphas_cumprod must lie in (0, 1]")
    if not np.all((t >= 0) & (t <= 1)):
        raise ValueError("grid must lie in [0, 1]: the table has no levels beyond")
    pos = np.arange(table.size, dtype=np.float64)
    alpha_bar = np.interp(t * (table.size - 1), pos, table)
    return check_schedule(t, np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar))


def ve(grid: ArrayLike, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Schedule:
    """Variance-exploding / EDM path ``a = 1``, ``s = sigma(t)`` with Karras' rho-interpolation
    ``sigma(t) = (sigma_min^(1/rho) + t·(sigma_max^(1/rho) - sigma_min^(1/rho)))^rho``."""
    if not 0 < sigma_min < sigma_max < np.inf:
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not 0 < rho < np.inf:
        raise ValueError(f"rho must be positive and finite, got {rho}")
    t = np.asarray(grid, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow and t outside [0, 1] are refused by the check
        lo, hi = np.float64(sigma_min) ** (1 / rho), np.float64(sigma_max) ** (1 / rho)
        sigma = (lo + t * (hi - lo)) ** rho
    return check_schedule(t, np.ones_like(t), sigma)


# ------------------------------------------------------------------ fixed level sequences (baselines)
# K descending levels in (0, 1] on the linear flow (the sigmas of a flow-matching scheduler): where the model is
# evaluated; the sampler's last step goes from the last level to 0 (NFE = K).

MAX_STEPS = 10_000
"""Most steps (model evaluations) a fixed level sequence has, and most steps or grid levels any ``cotj`` command
flag asks a model for: memory and time grow with it, and no sampler needs more."""


@renamed(k="budget")
def check_steps(budget: object) -> int:
    """``budget`` as a number of steps: an int in 1..:data:`MAX_STEPS` (TypeError or ValueError naming it
    otherwise)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise TypeError(f"budget must be an int, got {type(budget).__name__}")
    if not 1 <= budget <= MAX_STEPS:
        raise ValueError(f"budget must be in 1..{MAX_STEPS} (MAX_STEPS), got {budget}")
    return int(budget)


@renamed(k="budget")
def uniform(budget: int) -> NDArray[np.float64]:
    """``1, (K-1)/K, ..., 1/K``: K = ``budget`` evenly spaced levels from the top, (K,) float64."""
    k = check_steps(budget)
    return np.arange(k, 0, -1, dtype=np.float64) / k


@renamed(k="budget")
def shifted(budget: int, shift: float = 3.0) -> NDArray[np.float64]:
    """SD3's static time shift of :func:`uniform`: ``t' = s·t / (1 + (s - 1)·t)``; s > 1 spends
    more steps at high noise. (K,) float64."""
    if not 0 < shift < np.inf:
        raise ValueError(f"shift must be > 0 and finite, got {shift}")
    t = uniform(budget)
    return shift * t / (1.0 + (shift - 1.0) * t)


@renamed(k="budget")
def karras(budget: int, rho: float = 7.0, sigma_min: float = 0.002, sigma_max: float = 80.0) -> NDArray[np.float64]:
    """EDM's spacing (Karras et al. 2022) mapped to the flow: K = ``budget`` levels, (K,) float64.

    EDM sigmas ``σ_m = (σ_max^(1/ρ) + m/(K-1)·(σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ``, m = 0..K-1 (K = 1: σ_max),
    become flow levels by ``t = σ/(1 + σ)``: the EDM state ``x0 + σ·eps`` divided by ``1 + σ`` is the flow
    state ``(1 - t)·x0 + t·eps``. With EDM's defaults the first level is t = 80/81 ≈ 0.988 (the flow's
    t = 1 is σ = ∞) and the last t ≈ 0.002.
    """
    k = check_steps(budget)
    if not 0 < sigma_min < sigma_max < np.inf:
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not 0 < rho < np.inf:
        raise ValueError(f"rho must be > 0 and finite, got {rho}")
    ramp = np.linspace(0.0, 1.0, k) if k > 1 else np.zeros(1)
    with np.errstate(over="ignore", invalid="ignore"):
        lo, hi = np.float64(sigma_min) ** (1.0 / rho), np.float64(sigma_max) ** (1.0 / rho)
        sigma = (hi + ramp * (lo - hi)) ** rho
        levels = sigma / (1.0 + sigma)
    if not np.all(np.isfinite(levels) & (levels > 0)) or np.any(np.diff(levels) >= 0):
        raise ValueError(f"karras levels overflow float64 or collapse for rho={rho}, sigma_min={sigma_min}, "
                         f"sigma_max={sigma_max}: choose a smaller rho")
    return levels
