"""Numpy helpers on Diffusion DNA arrays: scale alignment (docs/method.md §8), gains (docs/method.md §2), loading,
and the released mean DNAs that ship with the package (:func:`mean_dna`).

Loading is the one place files and text become arrays: every malformed input (an empty or truncated file, a
``.npy`` header claiming more data than the file holds, JSON without the DNA, ragged rows, non-numbers) raises
ValueError or TypeError naming the source, and nothing is allocated beyond the size of the input.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from importlib.resources import files
from pathlib import Path
from tokenize import TokenError
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["align_dna", "gains", "load_dna", "mean_dna", "mean_dna_names", "parse_dna"]

_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _finite(name: str, value: ArrayLike) -> NDArray[np.float64]:
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError):  # ragged rows, more than 32 dimensions
        raise ValueError(f"{name} must be numbers in rows of equal length") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def align_dna(pred: ArrayLike, reference: ArrayLike) -> NDArray[np.float64]:
    """Restore the scale of a predicted DNA from a reference DNA (docs/method.md §8).

    ``b' = b·std(a)/std(b)``, then shifted so that ``min(b') = min(a)``; a constant prediction
    becomes ``mean(a)`` everywhere. ``pred`` is (N,) or (B, N) (row by row), ``reference`` (N,),
    typically the training set's mean DNA. Returns float64 of ``pred``'s shape. Rows are scaled to
    unit maximum first, so any finite magnitude aligns; ValueError if the aligned values overflow float64.
    """
    b = _finite("pred", pred)
    a = _finite("reference", reference)
    if a.ndim != 1:
        raise ValueError(f"reference must be 1-D (N,), got shape {a.shape}")
    if b.ndim not in (1, 2) or b.shape[-1] != a.shape[0]:
        raise ValueError(f"pred must be (N,) or (B, N) with N = {a.shape[0]}, got shape {b.shape}")
    rows = np.atleast_2d(b)
    peak_b = np.max(np.abs(rows), axis=1, keepdims=True)
    rows = rows / np.where(peak_b > 0, peak_b, 1.0)  # the alignment ignores b's scale: avoid overflow in std
    peak_a = float(np.max(np.abs(a))) or 1.0
    a = a / peak_a
    std_b = rows.std(axis=1, keepdims=True)
    flat = std_b < 1e-12
    scaled = rows * (a.std() / np.where(flat, 1.0, std_b))
    out = scaled - scaled.min(axis=1, keepdims=True) + a.min()
    with np.errstate(over="ignore"):
        out = np.where(flat, a.mean(), out) * peak_a
    if not np.all(np.isfinite(out)):
        raise ValueError("align_dna overflows float64: the reference's spread is too large for its scale")
    return out.reshape(b.shape)


def gains(dna: ArrayLike) -> NDArray[np.float64]:
    """Per-level gains: ``g[..., i] = d[..., i + 1] - d[..., i]``, the drop of the one-step error
    when stepping down from ``t_{i+1}`` to ``t_i``. Shape (..., N - 1). A negative gain marks a
    level where one more step undoes work (e.g. t = 1 in distilled models)."""
    d = _finite("dna", dna)
    if d.ndim < 1 or d.shape[-1] < 2:
        raise ValueError(f"dna must have at least 2 levels on its last axis, got shape {d.shape}")
    return np.diff(d, axis=-1)


def _json_rows(body: str, source: str) -> Any:
    """The DNA of JSON text: a list, a list of lists, ``{"dna": ...}``, or one of those per line."""
    try:
        try:
            values = [json.loads(body)]
        except json.JSONDecodeError:
            try:
                values = [json.loads(line) for line in body.splitlines() if line.strip()]
            except json.JSONDecodeError as exc:
                raise ValueError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ValueError(f"{source} is not valid DNA: JSON nested too deeply") from None
    if any(isinstance(v, dict) and "dna" not in v for v in values):
        raise ValueError(f"{source}: a JSON object must hold the DNA under the key 'dna'")
    rows = [v["dna"] if isinstance(v, dict) else v for v in values]
    return rows[0] if len(rows) == 1 else rows


def _csv_rows(body: str, source: str) -> NDArray[np.float64]:
    """The DNA of CSV text: one row of comma-separated numbers per line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": refused below
            return np.loadtxt(io.StringIO(body), delimiter=",", ndmin=1)
    except ValueError as exc:
        raise ValueError(f"{source} is not CSV numbers: {' '.join(str(exc).split())}") from None


def parse_dna(text: str, source: str = "stdin") -> NDArray[np.float64]:
    """DNA from text: JSON (a list, a list of lists, ``{"dna": ...}``, or one JSON array per line)
    or CSV (one row of comma-separated numbers per line). Returns (N,) or (B, N) float64.

    Raises:
        ValueError: no data, malformed JSON or CSV, rows of unequal length, not 1-D or 2-D, NaN or
            inf (the message names ``source``).
        TypeError: values that are not numbers.
    """
    body = text.strip()
    data = _json_rows(body, source) if body[:1] in ("[", "{") else _csv_rows(body, source)
    return _nonempty(data, source)


def _nonempty(data: ArrayLike, source: str) -> NDArray[np.float64]:
    """``data`` as finite float64 rows (N,) or (B, N) with at least one number."""
    arr = _finite(f"dna in {source}", data)
    if arr.ndim not in (1, 2):
        raise ValueError(f"dna in {source} must be one row (N,) or rows (B, N), got shape {str(arr.shape)[:80]}")
    if arr.size == 0:
        raise ValueError(f"{source} holds no DNA (no numbers)")
    return arr


def _read_npy(path: Path) -> NDArray[Any]:
    """A ``.npy`` array, read only after its header's shape and dtype are checked against the file
    size (a header may claim terabytes); no pickle."""
    with path.open("rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version not in _NPY_HEADERS:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = _NPY_HEADERS[version](f)
        except (ValueError, SyntaxError, TokenError, RecursionError) as exc:  # numpy parses the header as Python
            raise ValueError(f"{path.name} is not a valid .npy file: {' '.join(str(exc).split())[:200]}") from None
        if dtype.kind not in "fiu":
            raise TypeError(f"dna in {path.name} must be a real numeric array, got dtype {dtype}")
        if len(shape) not in (1, 2):
            raise ValueError(f"dna in {path.name} must be one row (N,) or rows (B, N), got shape {str(shape)[:80]}")
        claimed = math.prod(shape) * dtype.itemsize
        held = path.stat().st_size - f.tell()
        if claimed != held:
            raise ValueError(f"{path.name} is not a valid .npy file: its header claims shape {shape} of {dtype} "
                             f"({claimed} bytes) but the file holds {held} bytes of data")
        data = np.frombuffer(f.read(claimed), dtype=dtype)
    return data.reshape(shape, order="F" if fortran else "C")


def load_dna(path: str | Path) -> NDArray[np.float64]:
    """Read DNA from ``.npy``, ``.json`` (a list, a list of lists, or ``{"dna": ...}``) or
    ``.csv`` (one row per line). Returns (N,) or (B, N) float64.

    Raises:
        ValueError: another suffix; an empty, truncated or malformed file; no numbers; not 1-D or 2-D;
            NaN or inf.
        TypeError: values that are not real numbers.
        OSError: the file cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _nonempty(_read_npy(path), path.name)
    if suffix not in (".json", ".csv"):
        raise ValueError(f"path must end in .npy, .json or .csv, got {path.name!r}")
    try:
        body = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text") from None
    if suffix == ".json" and body[:1] not in ("[", "{"):
        raise ValueError(f"{path.name} is not valid JSON DNA: it must hold an array or an object")
    return _nonempty(_json_rows(body, path.name) if suffix == ".json" else _csv_rows(body, path.name), path.name)


def _mean_dna_folder() -> Any:
    """The package folder of the shipped mean DNAs, one ``<name>.json`` each (works from a wheel)."""
    return files("cotj") / "data" / "mean_dna"


def mean_dna_names() -> tuple[str, ...]:
    """The names :func:`mean_dna` knows, sorted: ``("qwen-image", "z-image-turbo")``."""
    return tuple(sorted(f.name.removesuffix(".json") for f in _mean_dna_folder().iterdir() if f.name.endswith(".json")))


def mean_dna(name: str) -> NDArray[np.float64]:
    """The released training-set mean DNA of a model, shipped inside the package.

    ``name`` is one of :func:`mean_dna_names`: ``"qwen-image"`` (Qwen-Image) or ``"z-image-turbo"``
    (Z-Image-Turbo), the ``Y_mean`` of the paper's released predictors (UnicomAI/CoTj ``norm_data.pt``).

    Returns a new (N,) float64 array, N = 100, on the default grid ``t_i = (i+1)/N``
    (:func:`cotj.default_grid`): index 0 is t = 0.01, the last index t = 1 (pure noise). Values are
    the paper's endpoint DNA (docs/method.md §2), the mean squared error of the one-step clean
    estimate in the model's latent space, averaged over the training prompts; all positive. Plans
    depend on its shape, not its overall scale. Use it to plan every prompt of that model
    ("CoTj-mean") or as the reference of :func:`align_dna`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    names = mean_dna_names()
    if name not in names:
        raise ValueError(f"no shipped mean DNA named {name!r}; available: {', '.join(map(repr, names))}")
    text = (_mean_dna_folder() / f"{name}.json").read_text(encoding="utf-8")
    return np.asarray(json.loads(text)["dna"], dtype=np.float64)
