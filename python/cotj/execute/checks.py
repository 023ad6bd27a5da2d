"""Input and output checks shared by the samplers of :mod:`cotj.execute` (torch tensors)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["check_cond", "check_finite", "check_inputs", "check_noise"]


def check_inputs(denoiser: Any, noise: Any, cond: Any, prediction: str | None) -> str:
    """Check a sampler's inputs (a callable denoiser, ``noise`` (B, ...), ``cond`` with B rows or None); returns the
    prediction type: ``prediction``, else the denoiser's ``prediction`` attribute."""
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as model(x_t, t, cond), got {type(denoiser).__name__}")
    prediction = prediction or getattr(denoiser, "prediction", None)
    if prediction is None:
        raise ValueError("prediction is required for a denoiser without a 'prediction' attribute")
    check_noise(noise)
    check_cond(cond, noise.shape[0])
    return str(prediction)


def check_noise(noise: Any) -> None:
    """TypeError unless ``noise`` is a real floating torch tensor (B, ...), ValueError unless it has B >= 1 rows
    of finite values."""
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a torch tensor (B, ...), got {type(noise).__name__}")
    if not noise.is_floating_point():
        raise TypeError(f"noise must be a real floating tensor, got dtype {noise.dtype}")
    if noise.ndim < 1 or noise.shape[0] < 1 or noise.numel() == 0:
        raise ValueError(f"noise must be (B, ...) with B >= 1 rows, got shape {tuple(noise.shape)}")
    if not bool(torch.isfinite(noise).all()):
        raise ValueError("noise holds NaN or inf")


def check_cond(cond: Any, batch: int) -> None:
    """ValueError unless ``cond`` is None or has one row per noise row (``batch``)."""
    if cond is None:
        return
    rows = cond.shape[0] if hasattr(cond, "shape") and len(cond.shape) > 0 else (len(cond) if hasattr(cond, "__len__") else None)
    if rows is None or isinstance(cond, (str, bytes)):
        raise TypeError(f"cond must be None or (B, ...) per-row conditions (a tensor), got {type(cond).__name__}")
    if rows != batch:
        raise ValueError(f"cond must have one row per noise row ({batch}), got {rows}")


def check_finite(value: Any, what: str, step: int, levels: Any) -> None:
    """ValueError naming ``what`` and the ``step`` (at noise levels ``levels``) unless ``value`` is finite."""
    finite = torch.isfinite(value.reshape(value.shape[0], -1)).all(1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        level = float(np.asarray(levels).reshape(-1)[row if np.size(levels) > 1 else 0])
        raise ValueError(f"{what} at step {step} (t = {level:.4g}, row {row}) holds NaN or inf: the model's output "
                         "overflowed (too large a guidance scale?)")
