"""Type stubs of the Rust extension ``cotj._core`` (rust/cotj-py). Use :mod:`cotj` instead:
this layer takes only C-contiguous float32/float64 arrays and raw window sizes.

Errors: ValueError for a value out of range (a grid of more than ``MAX_LEVELS`` levels is refused
before anything is allocated), MemoryError naming the buffer when an allocation fails, TypeError
for a wrong type. Long plans release the GIL and re-take it every 20 ms or so on the main thread to
run Python's signal handlers: Ctrl-C raises KeyboardInterrupt promptly.
"""

from typing import overload

import numpy as np
from numpy.typing import NDArray

__version__: str
MAX_LEVELS: int
"""Most levels a grid, a DNA row or a dense cost may have (10000): planning memory grows as N^2."""
KERNEL: str
"""The DP kernel of this process: ``"fused"`` (AVX2 + FMA) or ``"portable"`` (forced by the
environment variable ``COTJ_PORTABLE=1``, read once at import)."""

class Lever:
    """A grid of noise levels with its temporal lever L(j, i) (immutable, thread-safe)."""

    def __new__(
        cls,
        grid: NDArray[np.float64],
        a: NDArray[np.float64] | None = None,
        s: NDArray[np.float64] | None = None,
    ) -> Lever:
        """Linear-flow lever on ``grid`` (N,), or the Gaussian-path lever with ``a``, ``s`` (N,)."""

    @staticmethod
    def default(n: int, name: str = "n") -> Lever:
        """Linear-flow lever on ``t_i = (i+1)/n`` (n in 2..MAX_LEVELS; ``name`` is the argument n
        came from, for errors). The most recently used are cached, within the bounds
        :func:`_lever_cache` reports."""

    @property
    def n(self) -> int:
        """Number of grid levels N."""

    @property
    def levels(self) -> NDArray[np.float64]:
        """The grid levels (N,), ascending (a copy)."""

    def matrix(self) -> NDArray[np.float64]:
        """(N, N) with ``[j, i] = L(j, i)`` for ``i < j``, 0 elsewhere."""

_Row = tuple[
    NDArray[np.int64], NDArray[np.float64], int, float, NDArray[np.float64] | None, NDArray[np.float64] | None
]
_Batch = tuple[
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64] | None,
    NDArray[np.float64] | None,
]

@overload
def plan_batch(
    dna: NDArray[np.float32] | NDArray[np.float64],
    lever: Lever,
    *,
    budget: int | NDArray[np.int64] | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: int,
    last: int,
    current: int | NDArray[np.int64] | None = None,
) -> _Batch: ...
@overload
def plan_batch(
    dna: NDArray[np.float32] | NDArray[np.float64],
    lever: Lever,
    *,
    budget: int | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: int,
    last: int,
    current: int | None = None,
) -> _Row: ...
def plan_dense(
    cost: NDArray[np.float64],
    start: NDArray[np.float64],
    end: NDArray[np.float64],
    lever: Lever,
    *,
    scale: NDArray[np.float32] | NDArray[np.float64] | None = None,
    budget: int | NDArray[np.int64] | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: int,
    last: int,
    current: int | NDArray[np.int64] | None = None,
) -> _Batch:
    """Plans on a dense cost: ``cost`` (N, N) or (B, N, N), ``start``/``end`` (N,) or (B, N),
    ``scale`` (N,) or (B, N) or None (ones); one row shared or one per plan. Always the batch
    tuple of :func:`plan_batch`."""

def plan_cost(dna: NDArray[np.float64], steps: NDArray[np.int64], lever: Lever) -> float:
    """Cost C of a plan (grid indices, strictly decreasing) for one DNA row (N,)."""

def plan_cost_dense(
    cost: NDArray[np.float64],
    start: NDArray[np.float64],
    end: NDArray[np.float64],
    steps: NDArray[np.int64],
    *,
    scale: NDArray[np.float64] | None = None,
) -> float:
    """Cost of a plan (grid indices) on one dense cost (N, N) with ``start``, ``end``, ``scale``
    (N,); ``inf`` when it uses a missing edge."""

def cost_matrix(dna: NDArray[np.float64], lever: Lever) -> NDArray[np.float64]:
    """(N, N) edge costs ``[j, i] = d_j L(j, i)`` for ``i < j``, inf elsewhere."""

def check_levels(name: str, n: int) -> None:
    """ValueError naming ``name`` unless ``n`` lies in 2..MAX_LEVELS."""

def _lever_cache() -> tuple[tuple[int, int], tuple[int, int]]:
    """``((levers kept, their bytes), (max levers, max bytes))`` of the ``Lever.default`` cache."""
