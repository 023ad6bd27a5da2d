"""An online difficulty probe: the latents a run passes through and their acceleration signature.

Record the state after every step of a pipeline run (:class:`LatentRecorder`, a
``callback_on_step_end``), take third finite differences across steps
(:func:`acceleration_signature`): where the trajectory bends hard, the step was hard. Compare it
with the DNA at the same levels (:func:`compare_with_dna`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from cotj.execute.schedulers import seen_levels

__all__ = ["LatentRecorder", "acceleration_signature", "compare_with_dna"]


class LatentRecorder:
    """``callback_on_step_end`` for Diffusers pipelines: stores the latents after each step and
    the noise level they are at.

    Usage: ``rec = LatentRecorder(); pipe(..., callback_on_step_end=rec)``; optionally
    ``LatentRecorder(start=latents, start_level=1.0)`` to include the initial state.

    Attributes:
        latents: list of (B, ...) float32 CPU tensors, one per recorded state.
        levels: list of float, the noise level of each state (0 after the last step).
    """

    def __init__(self, start: torch.Tensor | None = None, start_level: float = 1.0) -> None:
        self.latents: list[torch.Tensor] = []
        self.levels: list[float] = []
        if start is not None:
            self.latents.append(start.detach().float().cpu().clone())
            self.levels.append(float(start_level))

    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        levels, last = seen_levels(pipe.scheduler)
        self.latents.append(callback_kwargs["latents"].detach().float().cpu().clone())
        self.levels.append(float(levels[step + 1]) if step + 1 < len(levels) else float(last))
        return {}

    def signature(self, per_level: bool = False) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The acceleration signature of the recorded run: ``(levels (S-3,), values (B, S-3))``;
        see :func:`acceleration_signature`."""
        stack = torch.stack(self.latents)
        lv = np.asarray(self.levels, dtype=np.float64)
        return lv[1:-2] * 0.5 + lv[2:-1] * 0.5, acceleration_signature(stack, lv if per_level else None)


def acceleration_signature(latents: torch.Tensor, levels: ArrayLike | None = None) -> NDArray[np.float64]:
    """Mean squared third finite difference of a latent trajectory, per sample and window.

    Args:
        latents: (S, B, ...) states along a run, S >= 4, in step order.
        levels: (S,) their noise levels. None: plain differences across steps
            (``x[j+3] - 3x[j+2] + 3x[j+1] - x[j]``). Given: third divided differences times 6
            (an estimate of ``d³x/dt³``), which does not grow with the step size.

    Returns:
        (B, S - 3) float64; window j spans states j..j+3 (its level is the mean of the middle two).
    """
    if latents.ndim < 2 or latents.shape[0] < 4:
        raise ValueError(f"latents must be (S, B, ...) with S >= 4 states, got shape {tuple(latents.shape)}")
    x = latents.double().flatten(2)
    if levels is None:
        d3 = x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]
    else:
        t = torch.as_tensor(np.asarray(levels, dtype=np.float64))
        if t.shape != (x.shape[0],) or torch.any(t[1:] == t[:-1]):
            raise ValueError(f"levels must be ({x.shape[0]},) distinct noise levels, got shape {tuple(t.shape)}")
        d = x
        for order in (1, 2, 3):
            span = (t[order:] - t[:-order]).reshape(-1, 1, 1)
            d = (d[1:] - d[:-1]) / span
        d3 = 6.0 * d
    return d3.pow(2).mean(2).T.numpy()


def _ranks(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.argsort(np.argsort(v, axis=-1), axis=-1).astype(np.float64)


def compare_with_dna(
    levels: ArrayLike, signature: ArrayLike, dna: ArrayLike, grid: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Rank correlation (Spearman) per sample between an acceleration signature (B, W) at
    ``levels`` (W,) and the DNA (B, N) or (N,) interpolated at those levels. Positive: the run
    bent hardest where the DNA says the levels are hard. Returns (B,) float64 in [-1, 1]."""
    lv = np.asarray(levels, dtype=np.float64)
    sig = np.atleast_2d(np.asarray(signature, dtype=np.float64))
    d = np.atleast_2d(np.asarray(dna, dtype=np.float64))
    g = np.arange(1, d.shape[1] + 1) / d.shape[1] if grid is None else np.asarray(grid, dtype=np.float64)
    if sig.shape[1] != lv.size or lv.size < 2:
        raise ValueError(f"signature must be (B, {lv.size}) with at least 2 windows, got shape {sig.shape}")
    if d.shape[0] not in (1, sig.shape[0]) or g.shape != (d.shape[1],):
        raise ValueError(f"dna must be (N,) or ({sig.shape[0]}, N) on a grid of N levels, got {d.shape} and grid {g.shape}")
    at = np.stack([np.interp(lv, g, row) for row in np.broadcast_to(d, (sig.shape[0], d.shape[1]))])
    rs, rd = _ranks(sig), _ranks(at)
    rs -= rs.mean(1, keepdims=True)
    rd -= rd.mean(1, keepdims=True)
    den = np.sqrt((rs**2).sum(1) * (rd**2).sum(1))
    return np.where(den > 0, (rs * rd).sum(1) / np.where(den > 0, den, 1.0), 0.0)
