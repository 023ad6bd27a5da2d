"""Noise-level grids and Gaussian paths ``x_t = a(t)·x0 + s(t)·eps`` on them (SPEC 1, 3).

A *grid* is an ascending array of N noise levels in (0, 1]; t = 1 is pure noise. A *schedule*
gives ``a`` and ``s`` at every grid level and sets the temporal lever of the plan graph. The
planner's default is the linear flow (rectified flow), ``a = 1 - t``, ``s = t``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Schedule", "default_grid", "linear_flow", "vp", "ve"]


class Schedule(NamedTuple):
    """``a(t)`` and ``s(t)`` on a grid: two (N,) float64 arrays."""

    a: NDArray[np.float64]
    s: NDArray[np.float64]


def default_grid(n: int = 100) -> NDArray[np.float64]:
    """The default grid ``t_i = (i + 1) / n``, shape (n,), ascending, top level 1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    return np.arange(1, n + 1, dtype=np.float64) / n


def linear_flow(grid: ArrayLike) -> Schedule:
    """Rectified flow: ``a = 1 - t``, ``s = t`` (SD3, Flux, Qwen-Image, Z-Image)."""
    t = np.asarray(grid, dtype=np.float64)
    return Schedule(1.0 - t, t.copy())


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
    pos = np.arange(table.size, dtype=np.float64)
    alpha_bar = np.interp(t * (table.size - 1), pos, table)
    return Schedule(np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar))


def ve(grid: ArrayLike, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Schedule:
    """Variance-exploding / EDM path ``a = 1``, ``s = sigma(t)`` with Karras' rho-interpolation
    ``sigma(t) = (sigma_min^(1/rho) + t·(sigma_max^(1/rho) - sigma_min^(1/rho)))^rho``."""
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    t = np.asarray(grid, dtype=np.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return Schedule(np.ones_like(t), (lo + t * (hi - lo)) ** rho)
