"""Type stubs of the Rust extension ``cotj._core`` (rust/cotj-py). Use :mod:`cotj` instead:
this layer takes only C-contiguous float32/float64 arrays and int or int64-array lengths.

One call per result shape: :func:`plan_row` returns one plan, :func:`plan_batch` and
:func:`plan_dense` a padded batch; each result is a tuple of fixed length and types.

Errors: :class:`PlanError` (a ``ValueError``) for a planning argument out of range or of the wrong
shape, with the argument's name in the message (a grid of more than ``MAX_LEVELS`` levels is refused
before anything is allocated); MemoryError naming the buffer when an allocation fails; TypeError for
a wrong type. Long plans release the GIL and re-take it every 20 ms or so on the main thread to run
Python's signal handlers: Ctrl-C raises KeyboardInterrupt promptly.
"""

from typing import Literal, TypeAlias, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Lever",
    "PlanError",
    "plan_row",
    "plan_batch",
    "plan_dense",
    "plan_cost",
    "plan_cost_dense",
    "cost_matrix",
    "check_levels",
    "plan_pairs",
    "_lever_cache",
    "__version__",
    "MAX_LEVELS",
    "DEFAULT_BUDGET",
    "KERNEL",
    "MAX_PAIR_NODES",
]

__version__: str
MAX_LEVELS: int
"""Most levels a grid, a DNA row or a dense cost may have (10000): planning memory grows as N^2."""
DEFAULT_BUDGET: int
"""Steps per plan when a call gives neither ``budget`` nor ``tau`` (8): the one place it is set."""
MAX_PAIR_NODES: int
"""Most nodes (t = 0 and the grid levels, M = N + 1) the costs of a multistep solver may have (512): their
pair costs take 8·M³ bytes (1 GiB at this bound)."""
KERNEL: str
"""The DP arithmetic of this process: ``"fused"`` (AVX-512 or AVX2, with FMA) or ``"portable"``
(forced by the environment variable ``COTJ_PORTABLE=1``, read once at import)."""

class PlanError(ValueError):
    """A planning argument out of range or of the wrong shape, or no plan of the asked length; the
    message names the argument. A ``ValueError``: code that catches ValueError keeps working."""

@final
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

_RowPlan: TypeAlias = tuple[
    NDArray[np.int64], NDArray[np.float64], float, NDArray[np.float64] | None, NDArray[np.float64] | None
]
"""``(steps (K,), levels (K,), cost, curve, ratio)``; ``curve`` and ``ratio`` (max_steps,) for
adaptive plans, else None."""
_BatchPlan: TypeAlias = tuple[
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64] | None,
    NDArray[np.float64] | None,
]
"""``(steps (B, W) padded with -1, levels (B, W) padded with NaN, lengths (B,), cost (B,), curve,
ratio)``; ``curve`` and ``ratio`` (B, max_steps) for adaptive runs, else None."""

def plan_row(
    dna: NDArray[np.float32] | NDArray[np.float64],
    lever: Lever | None = None,
    budget: int | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: int | Literal["any", "top"] | None = None,
    last: int | Literal["any", "bottom"] | None = None,
    current: int | None = None,
) -> _RowPlan:
    """The plan of one DNA row (N,) on ``lever`` (None: the linear flow on the default grid of N
    levels). At most one of ``budget`` (default :data:`DEFAULT_BUDGET`) and ``tau``; ``max_steps``
    goes with ``tau`` (default N // 2); ``first`` / ``last`` None mean ``"any"``; ``current`` pins
    the first level."""

def plan_batch(
    dna: NDArray[np.float32] | NDArray[np.float64],
    lever: Lever | None = None,
    budget: int | NDArray[np.int64] | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: int | Literal["any", "top"] | None = None,
    last: int | Literal["any", "bottom"] | None = None,
    current: int | NDArray[np.int64] | None = None,
) -> _BatchPlan:
    """The plans of every row of ``dna`` (B, N); arguments as in :func:`plan_row`, and ``budget``
    and ``current`` may hold one value per row ((B,) int64)."""

def plan_dense(
    edges: NDArray[np.float64],
    start: NDArray[np.float64],
    end: NDArray[np.float64],
    lever: Lever | None = None,
    scale: NDArray[np.float32] | NDArray[np.float64] | None = None,
    budget: int | NDArray[np.int64] | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: int | Literal["any", "top"] | None = None,
    last: int | Literal["any", "bottom"] | None = None,
    current: int | NDArray[np.int64] | None = None,
) -> _BatchPlan:
    """Plans on a dense cost: ``edges`` (N, N) or (B, N, N), ``start``/``end`` (N,) or (B, N),
    ``scale`` (N,) or (B, N) or None (ones); one row shared or one per plan; N is the lever's
    (None: the edges', on the default grid). Other arguments as in :func:`plan_batch`."""

def plan_cost(dna: NDArray[np.float64], steps: NDArray[np.int64], lever: Lever) -> float:
    """Cost C of a plan (grid indices, strictly decreasing) for one DNA row (N,)."""

def plan_cost_dense(
    edges: NDArray[np.float64],
    start: NDArray[np.float64],
    end: NDArray[np.float64],
    steps: NDArray[np.int64],
    *,
    scale: NDArray[np.float64] | None = None,
) -> float:
    """Cost of a plan (grid indices) on one dense cost ``edges`` (N, N) with ``start``, ``end``, ``scale``
    (N,); ``inf`` when it uses a missing edge."""

def cost_matrix(dna: NDArray[np.float64], lever: Lever) -> NDArray[np.float64]:
    """(N, N) edge costs ``[j, i] = d_j L(j, i)`` for ``i < j``, inf elsewhere."""

def check_levels(name: str, n: int) -> None:
    """PlanError naming ``name`` unless ``n`` lies in 2..MAX_LEVELS."""

_PairPlans: TypeAlias = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]
"""``(nodes (B, W) padded with -1, lengths (B,), cost (B,))``."""

def plan_pairs(
    first: NDArray[np.float64],
    pairs: NDArray[np.float64],
    end: NDArray[np.float64],
    budget: int | NDArray[np.int64],
    current: int | NDArray[np.int64],
    *,
    previous: int | NDArray[np.int64] | None = None,
    scale: NDArray[np.float64] | None = None,
) -> _PairPlans:
    """Plans of a multistep solver over (previous, current) pairs of nodes 0..M (node 0 is t = 0):
    ``first`` (M, M), ``pairs`` (M, M, M), ``end`` (M,) its local errors
    (:class:`cotj.planning.multistep.SolverCost`); ``budget`` (evaluations), ``current`` (first node) and
    ``previous`` (node evaluated before, negative for none) ints or (B,) int64; ``scale`` (M,) or
    (B, M) factors of the steps from each node, or None (ones)."""

def _lever_cache() -> tuple[tuple[int, int], tuple[int, int]]:
    """``((levers kept, their bytes), (max levers, max bytes))`` of the ``Lever.default`` cache."""
