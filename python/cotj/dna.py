"""Numpy helpers on Diffusion DNA arrays: scale alignment (SPEC 6), gains (SPEC 2), loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["align_dna", "gains", "load_dna"]


def _finite(name: str, value: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def align_dna(pred: ArrayLike, reference: ArrayLike) -> NDArray[np.float64]:
    """Restore the scale of a predicted DNA from a reference DNA (SPEC 6).

    ``b' = b·std(a)/std(b)``, then shifted so that ``min(b') = min(a)``; a constant prediction
    becomes ``mean(a)`` everywhere. ``pred`` is (N,) or (B, N) (row by row), ``reference`` (N,),
    typically the training set's mean DNA. Returns float64 of ``pred``'s shape.
    """
    b = _finite("pred", pred)
    a = _finite("reference", reference)
    if a.ndim != 1:
        raise ValueError(f"reference must be 1-D (N,), got shape {a.shape}")
    if b.ndim not in (1, 2) or b.shape[-1] != a.shape[0]:
        raise ValueError(f"pred must be (N,) or (B, N) with N = {a.shape[0]}, got shape {b.shape}")
    rows = np.atleast_2d(b)
    std_b = rows.std(axis=1, keepdims=True)
    flat = std_b < 1e-12
    scaled = rows * (a.std() / np.where(flat, 1.0, std_b))
    out = scaled - scaled.min(axis=1, keepdims=True) + a.min()
    out = np.where(flat, a.mean(), out)
    return out.reshape(b.shape)


def gains(dna: ArrayLike) -> NDArray[np.float64]:
    """Per-level gains: ``g[..., i] = d[..., i + 1] - d[..., i]``, the drop of the one-step error
    when stepping down from ``t_{i+1}`` to ``t_i``. Shape (..., N - 1). A negative gain marks a
    level where one more step undoes work (e.g. t = 1 in distilled models)."""
    d = _finite("dna", dna)
    if d.ndim < 1 or d.shape[-1] < 2:
        raise ValueError(f"dna must have at least 2 levels on its last axis, got shape {d.shape}")
    return np.diff(d, axis=-1)


def load_dna(path: str | Path) -> NDArray[np.float64]:
    """Read DNA from ``.npy``, ``.json`` (a list, a list of lists, or ``{"dna": ...}``) or
    ``.csv`` (one row per line). Returns (N,) or (B, N) float64."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = np.load(path, allow_pickle=False)
    elif suffix == ".json":
        raw = json.loads(path.read_text())
        data = raw["dna"] if isinstance(raw, dict) else raw
    elif suffix == ".csv":
        data = np.loadtxt(path, delimiter=",", ndmin=1)
    else:
        raise ValueError(f"path must end in .npy, .json or .csv, got {path.name!r}")
    return _finite(f"dna in {path.name}", data)
