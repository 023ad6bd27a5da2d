"""The Plan stage: cheapest sampling schedules from Diffusion DNA (docs/method.md §3–5).

Conventions: a DNA row is (N,) float, one entry per grid level, grid ascending (index 0 is the
least noisy level). A plan lists grid indices in *sampling order*, noisiest first; its ``levels``
are the matching noise levels t (for flow models, the sigmas a scheduler takes). The heavy work
runs in Rust (``cotj._core``) with the GIL released; this module converts and documents. The core
checks every value and holds the defaults; a planning argument it refuses raises :class:`PlanError`
(a ``ValueError``), a wrong type ``TypeError``.

Instead of a DNA, every planning call also takes a :class:`~cotj.planning.dense.DenseCost` (any cost of jumps
between grid levels, :mod:`cotj.planning.dense`). The DNA form is the special case ``edges = L``, ``scale = d``,
``start = -d``, ``end = d`` with L the lever of the grid (docs/method.md §3): same plans, same costs, same
tie-breaking.

Replanning: ``current=j`` pins the plan's first level to grid index j. A sampler at level j with
k model evaluations left calls ``plan_batch(..., current=j, budget=k)`` and gets the best k-level
plan from where it is (j itself, then k - 1 levels below it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj import _core
from cotj._core import PlanError
from cotj._deprecation import warn
from cotj.planning.dense import DenseCost, _asarray, _float_array
from cotj.planning.schedules import Schedule, check_schedule

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DenseCost", "Plan", "PlanBatch", "PlanError", "Planner", "plan", "plan_batch", "plan_cost", "cost_matrix"]

DEFAULT_BUDGET: int = _core.DEFAULT_BUDGET
"""Steps per plan when neither ``budget`` nor ``tau`` is given (the core's default, read from it)."""
First = int | Literal["any", "top"]
Last = int | Literal["any", "bottom"]
ScheduleLike = Schedule | tuple[ArrayLike, ArrayLike]


@dataclass(slots=True)
class Plan:
    """One plan.

    Attributes:
        steps: (K,) int64 grid indices, noisiest first.
        levels: (K,) float64 noise levels t of ``steps``.
        cost: the plan cost C (docs/method.md §3–4); more negative is better.
        curve: adaptive runs only, (max_steps,) float64 ``C*_K`` for K = 1..max_steps
            (inf where no plan of that length exists).
        ratio: adaptive runs only, (max_steps,) float64 explained-gain ratio ``R(K)``.
    """

    steps: NDArray[np.int64]
    levels: NDArray[np.float64]
    cost: float
    curve: NDArray[np.float64] | None = None
    ratio: NDArray[np.float64] | None = None

    @property
    def budget(self) -> int:
        """Number of steps K (= model evaluations, NFE)."""
        return len(self.steps)

    def sigmas(self, terminal: float = 0.0) -> NDArray[np.float64]:
        """The levels followed by the terminal level: (K + 1,) float64, the full descent."""
        return np.append(self.levels, terminal)

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(slots=True)
class PlanBatch:
    """Plans of a batch of B DNA rows, padded to the longest plan W.

    Attributes:
        steps: (B, W) int64 grid indices, noisiest first, -1 past each row's length.
        levels: (B, W) float64 noise levels, NaN past each row's length.
        lengths: (B,) int64 number of steps of each row.
        cost: (B,) float64 plan cost of each row.
        curve: adaptive runs only, (B, max_steps) float64 ``C*_K``.
        ratio: adaptive runs only, (B, max_steps) float64 ``R(K)``.
    """

    steps: NDArray[np.int64]
    levels: NDArray[np.float64]
    lengths: NDArray[np.int64]
    cost: NDArray[np.float64]
    curve: NDArray[np.float64] | None = None
    ratio: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, b: int) -> Plan:
        k = int(self.lengths[b])
        return Plan(
            self.steps[b, :k],
            self.levels[b, :k],
            float(self.cost[b]),
            None if self.curve is None else self.curve[b],
            None if self.ratio is None else self.ratio[b],
        )

    def __iter__(self) -> Iterator[Plan]:
        return (self[b] for b in range(len(self)))


def _dna_array(dna: object) -> np.ndarray:
    """The DNA of a planning call as float32/float64; None refused."""
    if dna is None:
        raise TypeError("dna is None and cost= was not given: give a DNA row (N,) (or rows (B, N)) or a cotj.DenseCost")
    return _float_array("dna", dna)


Source = ArrayLike | DenseCost | None
"""What a planning call plans on: DNA rows, or a :class:`DenseCost`."""


class DeprecatedDense(TypedDict, total=False):
    """The dense-cost keywords of the previous release, still taken for one release (with a warning): give a
    :class:`DenseCost` instead."""

    cost: ArrayLike | DenseCost | None
    start: ArrayLike | None
    end: ArrayLike | None
    scale: ArrayLike | None


def _dense_of(dna: Source, deprecated: DeprecatedDense) -> DenseCost | None:
    """The dense cost of a planning call (None for the DNA form), with the deprecated ``cost=`` array and
    ``start``/``end``/``scale`` keywords turned into one."""
    unknown = set(deprecated) - set(DeprecatedDense.__annotations__)
    if unknown:
        raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
    cost, start, end, scale = (deprecated.get(k) for k in ("cost", "start", "end", "scale"))
    loose = [name for name, v in (("start", start), ("end", end), ("scale", scale)) if v is not None]
    if cost is not None and dna is not None:
        raise PlanError("give either dna or cost=, not both (dna=None with a dense cost)")
    dense = cost if cost is not None else dna
    if isinstance(dense, DenseCost):
        if loose:
            raise PlanError(f"{', '.join(loose)} go in the DenseCost, not beside it")
        return dense
    if cost is None:
        if loose:
            raise PlanError(f"{', '.join(loose)} go with cost= (a dense cost, cotj.DenseCost); the DNA form sets them "
                            "from dna")
        return None
    warn("the cost=, start=, end= and scale= keywords", "cotj.DenseCost(edges, start, end, scale) as the first argument")
    return DenseCost(cost, start, end, scale)  # type: ignore[arg-type]


def _same_grid(dense: DenseCost, grid: NDArray[np.float64] | None) -> None:
    """Refuse a dense cost whose own grid differs from the planner's."""
    if dense.grid is not None and grid is not None and not np.array_equal(dense.grid, grid):
        raise PlanError("the DenseCost's grid differs from grid=: give one of them")


def _dna_row(dna: object) -> np.ndarray:
    """One DNA row (N,) as float64, for the calls that take float64 only."""
    arr = _dna_array(dna)
    if arr.ndim != 1:
        raise PlanError(f"dna must be 1-D (N,), got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)


def _one_int(name: str, value: object) -> object:
    """``value`` if it is one int (or None), for ``name`` (budget, current) of one plan."""
    if value is None or isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return value
    raise TypeError(f"{name} must be an int for one plan, got {type(value).__name__}")


def _per_row_int(name: str, value: object) -> int | np.ndarray | None:
    """None, an int, or a (B,) int64 array of one value per row, for ``name`` (budget, current)."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (bool, np.bool_, float, np.floating)):
        raise TypeError(f"{name} must be an int or an int array, got {type(value).__name__}")
    arr = _asarray(name, value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an int or an int array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise PlanError(f"{name} array must be 1-D (B,), got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        b = int(np.argmax(arr > np.iinfo(np.int64).max))
        raise PlanError(f"{name}[{b}] = {arr[b]} is out of range (no grid has more than MAX_LEVELS = {_core.MAX_LEVELS} levels)")
    return np.ascontiguousarray(arr, dtype=np.int64)


class Planner:
    """Plans on one grid and path with fixed start/end rules; reuse it across calls.

    Args:
        grid: (N,) ascending noise levels in (0, 1]; default ``t_i = (i+1)/N`` with N taken from
            each DNA row (its lever is cached).
        schedule: ``(a, s)`` of the Gaussian path on the grid (see :mod:`cotj.planning.schedules`); default
            the linear flow. Needs ``grid``.
        first: which levels may start a plan: ``"any"``, ``"top"`` (pin to the grid's top level),
            or an int k (only the k highest levels).
        last: which levels may end a plan: ``"any"``, ``"bottom"`` (pin to the grid's lowest
            level), or an int k (only the k lowest levels).
    """

    __slots__ = ("_lever", "_schedule", "first", "last")

    def __init__(
        self,
        grid: ArrayLike | None = None,
        schedule: ScheduleLike | None = None,
        *,
        first: First = "any",
        last: Last = "any",
    ) -> None:
        self._lever, self._schedule = _make_lever(grid, schedule)
        self.first = first
        self.last = last

    @property
    def grid(self) -> NDArray[np.float64] | None:
        """The grid (N,), or None for the default grid of each DNA's width."""
        return None if self._lever is None else self._lever.levels

    def _lever_for(self, n: int, name: str) -> _core.Lever:
        """The lever for rows of ``n`` levels (of the argument ``name``: dna or cost)."""
        return self._lever if self._lever is not None else _core.Lever.default(n, name)

    def plan_batch(
        self,
        dna: Source,
        budget: int | ArrayLike | None = None,
        *,
        tau: float | None = None,
        max_steps: int | None = None,
        current: int | ArrayLike | None = None,
        **deprecated: Unpack[DeprecatedDense],
    ) -> PlanBatch:
        """Plan every row of ``dna`` (B, N), or of a :class:`DenseCost`. See :func:`cotj.plan_batch`."""
        k, at = _per_row_int("budget", budget), _per_row_int("current", current)
        dense = _dense_of(dna, deprecated)
        if dense is None:
            return PlanBatch(*_core.plan_batch(_dna_array(dna), self._lever, budget=k, tau=tau, max_steps=max_steps,
                                               first=self.first, last=self.last, current=at))
        return self._plan_dense(dense, True, k, tau, max_steps, at)

    def plan(
        self,
        dna: Source,
        budget: int | None = None,
        *,
        tau: float | None = None,
        max_steps: int | None = None,
        current: int | None = None,
        **deprecated: Unpack[DeprecatedDense],
    ) -> Plan:
        """Plan one DNA row (N,), or one :class:`DenseCost` (N, N). See :func:`cotj.plan`."""
        dense = _dense_of(dna, deprecated)
        if dense is None:
            return _plan_row(dna, self._lever, budget, tau, max_steps, self.first, self.last, current)
        return self._plan_dense(dense, False, _one_int("budget", budget), tau, max_steps, _one_int("current", current))[0]

    def _plan_dense(self, dense: DenseCost, batch: bool, budget: Any, tau: Any, max_steps: Any, current: Any) -> PlanBatch:
        """The plans of a dense cost; lengths and ``current`` as the core takes them."""
        _no_schedule_with_cost(self._schedule, dense)
        _same_grid(dense, self.grid)
        lever = self._lever if dense.grid is None else _core.Lever(dense.grid)
        edges, start, end, scale = dense.arrays(batch)
        return PlanBatch(*_core.plan_dense(edges, start, end, lever, scale=scale, budget=budget, tau=tau,
                                           max_steps=max_steps, first=self.first, last=self.last, current=current))

    def plan_cost(
        self,
        dna: Source,
        steps: ArrayLike,
        **deprecated: Unpack[DeprecatedDense],
    ) -> float:
        """The cost C of a given plan for one DNA row (N,) or one :class:`DenseCost` (N, N). See
        :func:`cotj.plan_cost`."""
        s = _asarray("steps", steps)
        dense = _dense_of(dna, deprecated)
        if dense is not None:
            return self._dense_cost(dense, s)
        arr = _dna_row(dna)
        if s.dtype.kind == "f":
            return self._level_cost(arr, s)
        return _core.plan_cost(arr, _grid_indices(s, arr.shape[0]), self._lever_for(arr.shape[0], "dna"))

    def _dense_cost(self, dense: DenseCost, steps: np.ndarray) -> float:
        """Cost of a plan given as grid indices on a dense cost: ``inf`` if it uses a missing edge."""
        if self.grid is not None and len(self.grid) != dense.n:
            raise PlanError(f"edges has {dense.n} levels per row but the grid has {len(self.grid)}")
        _same_grid(dense, self.grid)
        edges, start, end, scale = dense.arrays(batch=False)
        w = None if scale is None else scale.astype(np.float64, copy=False)
        return _core.plan_cost_dense(edges, start, end, _grid_indices(steps, dense.n), scale=w)

    def _level_cost(self, d: np.ndarray, levels: np.ndarray) -> float:
        """Cost of a plan given as noise levels: DNA (and a, s) interpolated linearly in t."""
        if levels.ndim != 1 or levels.size == 0 or not np.all(np.isfinite(levels)):
            raise PlanError("steps as noise levels must be a non-empty 1-D finite array")
        if np.any(np.diff(levels) >= 0):
            raise PlanError("steps as noise levels must be strictly decreasing (noisiest first)")
        if len(levels) > _core.MAX_LEVELS:
            raise PlanError(f"steps as noise levels has {len(levels)} levels, more than MAX_LEVELS = {_core.MAX_LEVELS}")
        grid_lever = self._lever_for(d.shape[0], "dna")
        grid = grid_lever.levels
        if levels[-1] < grid[0] or levels[0] > grid[-1]:
            raise PlanError(f"steps as noise levels must lie within the grid [{grid[0]}, {grid[-1]}], got {levels[0]} .. {levels[-1]}")
        # A one-level plan costs 0; the call also checks the DNA itself, so an error names its own indices.
        base = _core.plan_cost(d, np.zeros(1, dtype=np.int64), grid_lever)
        if len(levels) == 1:
            return base
        t = levels[::-1].copy()
        schedule = None if self._schedule is None else tuple(np.interp(t, grid, v) for v in self._schedule)
        lever, _ = _grid_lever(t, schedule)
        dna = np.ascontiguousarray(np.interp(t, grid, d))
        return _core.plan_cost(dna, np.arange(len(t) - 1, -1, -1, dtype=np.int64), lever)

    def cost_matrix(self, dna: ArrayLike) -> NDArray[np.float64]:
        """Dense edge costs (N, N) of one DNA row. See :func:`cotj.cost_matrix`."""
        if dna is None:
            raise TypeError("dna must be a DNA row (N,), got None")
        arr = _dna_row(dna)
        return _core.cost_matrix(arr, self._lever_for(arr.shape[0], "dna"))


def _plan_row(dna: object, lever: _core.Lever | None, budget: Any, tau: Any, max_steps: Any, first: Any, last: Any,
              current: Any) -> Plan:
    """The plan of one DNA row (N,) on ``lever`` (None: the default grid of N levels)."""
    return Plan(*_core.plan_row(_dna_array(dna), lever, budget, tau, max_steps, first, last, current))


def _grid_indices(steps: np.ndarray, n: int) -> np.ndarray:
    """``steps`` (K,) int as int64 indices of an ``n``-level grid (the core checks the range; an unsigned
    index past int64 is refused here, by its own value)."""
    if steps.dtype.kind not in "iu" or steps.ndim != 1:
        raise TypeError(f"steps must be a 1-D array of grid indices (int) or noise levels (float, DNA form only), got dtype {steps.dtype} and shape {steps.shape}")
    if steps.dtype.kind == "u" and steps.size and steps.max() > np.iinfo(np.int64).max:
        raise PlanError(f"steps index {steps.max()} is outside the grid (0..{n})")
    return np.ascontiguousarray(steps, dtype=np.int64)


def _no_schedule_with_cost(schedule: object, dna: object, deprecated: DeprecatedDense | None = None) -> None:
    """Refuse ``schedule`` together with a dense cost (``dna`` a :class:`DenseCost`, or a deprecated ``cost=``);
    the module functions call it before the schedule is checked as a path."""
    dense = isinstance(dna, DenseCost) or bool(deprecated and deprecated.get("cost") is not None)
    if schedule is not None and dense:
        raise PlanError("schedule shapes the DNA form's lever only; it does not apply to cost=")


def _make_lever(grid: ArrayLike | None, schedule: ScheduleLike | None) -> tuple[_core.Lever | None, Schedule | None]:
    """The lever of ``grid`` and ``schedule`` (None for the default grid), with the schedule as
    float64 arrays."""
    if grid is None:
        if schedule is not None:
            raise PlanError("schedule needs grid: give the levels a and s are sampled at")
        return None, None
    return _grid_lever(grid, schedule)


def _grid_lever(grid: ArrayLike, schedule: ScheduleLike | None) -> tuple[_core.Lever, Schedule | None]:
    """The lever of a given ``grid`` and ``schedule``, with the schedule as float64 arrays."""
    g = _asarray("grid", grid)
    if g.dtype.kind not in "fiu":
        raise TypeError(f"grid must be a real numeric array, got dtype {g.dtype}")
    if g.ndim != 1:
        raise PlanError(f"grid must be 1-D (N,), got shape {g.shape}")
    g = np.ascontiguousarray(g, dtype=np.float64)
    if schedule is None:
        return _core.Lever(g), None
    try:
        a, s = schedule
    except (TypeError, ValueError):
        raise TypeError("schedule must be a pair (a, s) of arrays, e.g. cotj.planning.schedules.vp(grid, alphas_cumprod)") from None
    arrays = []
    for name, v in (("a", a), ("s", s)):
        v = _asarray(f"schedule {name}", v)
        if v.dtype.kind not in "fiu":
            raise TypeError(f"schedule {name} must be a real array, got dtype {v.dtype}")
        if v.ndim != 1:
            raise PlanError(f"schedule {name} must be 1-D (N,), one value per grid level, got shape {v.shape}")
        arrays.append(np.ascontiguousarray(v, dtype=np.float64))
    lever = _core.Lever(g, *arrays)  # shapes and the grid first, then the path itself
    return lever, check_schedule(g, *arrays)


def plan_batch(
    dna: Source,
    budget: int | ArrayLike | None = None,
    *,
    grid: ArrayLike | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: First = "any",
    last: Last = "any",
    schedule: ScheduleLike | None = None,
    current: int | ArrayLike | None = None,
    **deprecated: Unpack[DeprecatedDense],
) -> PlanBatch:
    """Plan every row of a DNA batch (B, N) float32/float64, or of a :class:`DenseCost`: the serving call.

    ``budget``: steps per plan (= model evaluations), an int or (B,) ints in 1..N, default :data:`DEFAULT_BUDGET`;
    or ``tau`` in (0, 1]: the shortest plan that explains that share of the gain of the ``max_steps`` plan (default
    N // 2). ``grid``: (N,) ascending levels in (0, 1], default ``t_i = (i+1)/N``. ``first`` / ``last``: ``"any"``,
    ``"top"`` / ``"bottom"`` or an int k (one of the k highest / lowest levels). ``schedule``: ``(a, s)`` of a
    Gaussian path on ``grid`` (DNA form only; :mod:`cotj.planning.schedules`). ``current``: an int or (B,) grid
    indices where each plan starts (replanning: a sampler at level j with k evaluations left asks for
    ``current=j, budget=k``). ``cost``, ``start``, ``end``, ``scale``: deprecated, give a :class:`DenseCost`.

    Returns a :class:`PlanBatch` ((B, W) steps and levels noisiest first, padded with -1 / NaN). Raises
    :class:`PlanError` (a ValueError naming the argument) for a value out of range or of the wrong shape, or a dense
    cost with no finite plan; TypeError for a wrong type; MemoryError when the DP does not fit; KeyboardInterrupt
    on Ctrl-C. Arguments in full: docs/method.md §3–5, §10.
    """
    _no_schedule_with_cost(schedule, dna, deprecated)
    planner = Planner(grid, schedule, first=first, last=last)
    return planner.plan_batch(dna, budget, tau=tau, max_steps=max_steps, current=current, **deprecated)


def plan(
    dna: Source,
    budget: int | None = None,
    *,
    grid: ArrayLike | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: First = "any",
    last: Last = "any",
    schedule: ScheduleLike | None = None,
    current: int | None = None,
    **deprecated: Unpack[DeprecatedDense],
) -> Plan:
    """Plan one DNA row (N,), or one :class:`DenseCost` with (N, N) edges; arguments as in :func:`plan_batch`
    (``budget`` and ``current`` one int). Returns a :class:`Plan`."""
    if grid is None and schedule is None and not deprecated and not isinstance(dna, DenseCost):
        return _plan_row(dna, None, budget, tau, max_steps, first, last, current)  # the serving call: no Planner to build
    _no_schedule_with_cost(schedule, dna, deprecated)
    planner = Planner(grid, schedule, first=first, last=last)
    return planner.plan(dna, budget, tau=tau, max_steps=max_steps, current=current, **deprecated)


def plan_cost(
    dna: Source,
    steps: ArrayLike,
    *,
    grid: ArrayLike | None = None,
    schedule: ScheduleLike | None = None,
    **deprecated: Unpack[DeprecatedDense],
) -> float:
    """The cost C of any plan for one DNA row (N,) (docs/method.md §3), to score your own schedules.

    ``steps`` is either grid indices (int, strictly decreasing) or noise levels (float, strictly decreasing, within
    the grid; the DNA is interpolated linearly in t). For a :class:`DenseCost` ``steps`` must be grid indices; the
    result is ``inf`` when the plan uses a missing (``+inf``) edge, start or end. ``cost``, ``start``, ``end``,
    ``scale``: deprecated, give a :class:`DenseCost`.
    """
    _no_schedule_with_cost(schedule, dna, deprecated)
    return Planner(grid, schedule).plan_cost(dna, steps, **deprecated)


def cost_matrix(
    dna: ArrayLike,
    *,
    grid: ArrayLike | None = None,
    schedule: ScheduleLike | None = None,
) -> NDArray[np.float64]:
    """Dense edge costs of one DNA row: (N, N) float64 with ``[j, i] = d_j·L(j, i)`` for the jump
    from level j down to level i < j, and ``inf`` where there is no edge (i >= j). Entering at j
    costs ``-d_j`` and leaving from i costs ``+d_i``."""
    return Planner(grid, schedule).cost_matrix(dna)
