"""A dense cost: what a plan minimises when it is not the paper's DNA objective (docs/method.md §3, §10).

A plan ``j_1 > ... > j_K`` (grid indices, noisiest first) costs
``start[j_1] + sum_m scale[j_m]·edges[j_m, j_{m+1}] + end[j_K]``. ``edges[j, i]`` is the jump from level j down to
i < j (entries with i >= j are ignored, ``+inf`` is no edge); ``start`` and ``end`` default to zeros (``+inf``: the
level may not start / end a plan), ``scale`` to ones. The DNA objective is the case ``edges = L`` (the lever of
the grid), ``scale = d``, ``start = -d``, ``end = d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj import _core
from cotj._core import PlanError
from cotj._deprecation import warn

__all__ = ["DenseCost"]

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _asarray(name: str, value: object) -> np.ndarray:
    """``np.asarray(value)``, a ragged nested list refused with a message naming ``name``."""
    try:
        return np.asarray(value)
    except ValueError:
        raise PlanError(f"{name} must be a rectangular array (every row of the same length), got a ragged nested sequence") from None


def _float_array(name: str, value: object) -> np.ndarray:
    """``value`` as a C-contiguous native float32/float64 array (other real dtypes widened)."""
    if type(value) is np.ndarray and value.dtype in _FLOATS and value.flags.c_contiguous:
        return value
    if value is None:
        raise TypeError(f"{name} must be a real numeric array, got None")
    arr = _asarray(name, value)
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)
        elif arr.dtype.itemsize > 8:
            arr = arr.astype(np.float64)
        elif not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
    elif kind in "iu":
        arr = arr.astype(np.float64)
    else:
        raise TypeError(f"{name} must be a real numeric array (float32 or float64), got dtype {arr.dtype}")
    return np.asarray(arr, order="C")  # keeps a 0-d array 0-d, for the shape errors


def _float64_array(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as a C-contiguous native float64 array."""
    if type(value) is np.ndarray and value.dtype.char == "d" and value.flags.c_contiguous and value.dtype.isnative:
        return value
    return _float_array(name, value).astype(np.float64, copy=False)


@dataclass(frozen=True, eq=False)
class DenseCost:
    """A dense cost to plan on instead of a DNA: ``cotj.plan(DenseCost(edges, end=e), budget=8)``.

    Attributes:
        edges: (N, N) float64, one matrix shared by every plan, or (B, N, N), one per plan; no NaN or ``-inf``.
        start: (N,) or (B, N) float64 cost of entering at each level; None: zeros.
        end: (N,) or (B, N) float64 cost of stopping at each level; None: zeros.
        scale: (N,) or (B, N) float32/float64 weight of the source level of each jump, finite and >= 0; None: ones.
        grid: (N,) ascending noise levels of the N columns; None: the planner's grid (default ``t_i = (i+1)/N``).

    Values are checked when a plan is made (errors name the argument); types and dimensions here.
    """

    edges: NDArray[np.float64]
    start: NDArray[np.float64] | None = None
    end: NDArray[np.float64] | None = None
    scale: NDArray[np.floating[Any]] | None = None
    grid: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        edges = _float64_array("edges", self.edges)
        if edges.ndim not in (2, 3):
            raise PlanError(f"edges must be (N, N) or (B, N, N), got shape {edges.shape}")
        _core.check_levels("edges", edges.shape[-1])
        object.__setattr__(self, "edges", edges)
        for name in ("start", "end", "scale"):
            value = getattr(self, name)
            if value is not None:
                arr = _float_array(name, value) if name == "scale" else _float64_array(name, value)
                if arr.ndim not in (1, 2):
                    raise PlanError(f"{name} must be (N,) or (B, N), got shape {arr.shape}")
                object.__setattr__(self, name, arr)
        if self.grid is not None:
            grid = _float64_array("grid", self.grid)
            if grid.shape != (self.n,):
                raise PlanError(f"grid must be ({self.n},), one level per column of edges, got shape {grid.shape}")
            object.__setattr__(self, "grid", grid)

    @property
    def n(self) -> int:
        """Grid levels N."""
        return int(self.edges.shape[-1])

    def arrays(self, batch: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """``(edges, start, end, scale)`` as the core takes them (zeros for a missing start or end); without
        ``batch`` every array must be one plan's."""
        start = np.zeros(self.n) if self.start is None else self.start
        end = np.zeros(self.n) if self.end is None else self.end
        if not batch:
            for name, a, ndim, want in (("edges", self.edges, 2, "(N, N)"), ("start", start, 1, "(N,)"),
                                        ("end", end, 1, "(N,)"), ("scale", self.scale, 1, "(N,)")):
                if a is not None and a.ndim != ndim:
                    raise PlanError(f"{name} must be {want}; use cotj.plan_batch for a batch, got shape {a.shape}")
        return self.edges, start, end, self.scale

    def keys(self) -> tuple[str, ...]:
        """Deprecated: ``**cost`` as keyword arguments of :func:`cotj.plan_batch` (the dict that
        :func:`cotj.objective` returned before it returned a :class:`DenseCost`)."""
        warn("splatting an objective (**cotj.objective(...))", "cotj.plan_batch(cotj.objective(...), budget)")
        return ("dna", "cost")

    def __getitem__(self, key: str) -> Any:
        return {"dna": None, "cost": self}[key]
