"""The Plan stage: cheapest sampling schedules from Diffusion DNA (SPEC 3-5).

Conventions: a DNA row is (N,) float, one entry per grid level, grid ascending (index 0 is the
least noisy level). A plan lists grid indices in *sampling order*, noisiest first; its ``levels``
are the matching noise levels t (for flow models, the sigmas a scheduler takes). The heavy work
runs in Rust (``cotj._core``) with the GIL released; this module converts and documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj import _core
from cotj.schedules import Schedule

__all__ = ["Plan", "PlanBatch", "Planner", "plan", "plan_batch", "plan_cost", "cost_matrix"]

First = Union[int, Literal["any", "top"]]
Last = Union[int, Literal["any", "bottom"]]
ScheduleLike = Union[Schedule, "tuple[ArrayLike, ArrayLike]"]


@dataclass(slots=True)
class Plan:
    """One plan.

    Attributes:
        steps: (K,) int64 grid indices, noisiest first.
        levels: (K,) float64 noise levels t of ``steps``.
        cost: the plan cost C (SPEC 3); more negative is better.
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


def _dna_array(dna: ArrayLike, ndim: int) -> np.ndarray:
    """``dna`` as a C-contiguous native float32/float64 array of ``ndim`` dimensions."""
    if type(dna) is np.ndarray and dna.ndim == ndim and dna.dtype.char in "fd" and dna.flags.c_contiguous and dna.dtype.isnative:
        return dna
    arr = np.asarray(dna)
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
        raise TypeError(f"dna must be a real numeric array (float32 or float64), got dtype {arr.dtype}")
    if arr.ndim != ndim:
        want = "(N,); use cotj.plan_batch for a (B, N) batch" if ndim == 1 else "(B, N); use cotj.plan for one (N,) row"
        raise ValueError(f"dna must be {ndim}-D {want}, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def _window(name: str, value: object, n: int, pinned: str) -> int:
    if value == "any":
        return n
    if value == pinned:
        return 1
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if 1 <= value <= n:
            return int(value)
        raise ValueError(f"{name} must allow between 1 and {n} levels, got {value}")
    raise ValueError(f"{name} must be 'any', {pinned!r} or an int number of levels, got {value!r}")


def _int_arg(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _budget_arg(budget: object) -> int | np.ndarray:
    if type(budget) is int:
        return budget
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, (bool, np.bool_)):
        return int(budget)
    if isinstance(budget, (bool, np.bool_, float, np.floating)):
        raise TypeError(f"budget must be an int or an int array, got {type(budget).__name__}")
    arr = np.asarray(budget)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"budget must be an int or an int array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"budget array must be 1-D (B,), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


class Planner:
    """Plans on one grid and path with fixed start/end rules; reuse it across calls.

    Args:
        grid: (N,) ascending noise levels in (0, 1]; default ``t_i = (i+1)/N`` with N taken from
            each DNA row (its lever is cached).
        schedule: ``(a, s)`` of the Gaussian path on the grid (see :mod:`cotj.schedules`); default
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

    def _resolve(self, n: int) -> tuple[_core.Lever, int, int]:
        lever = self._lever if self._lever is not None else _core.Lever.default(n)
        n = lever.n
        return lever, _window("first", self.first, n, "top"), _window("last", self.last, n, "bottom")

    def plan_batch(
        self,
        dna: ArrayLike,
        budget: int | ArrayLike | None = None,
        *,
        tau: float | None = None,
        max_steps: int | None = None,
    ) -> PlanBatch:
        """Plan every row of ``dna`` (B, N). See :func:`cotj.plan_batch`."""
        arr = _dna_array(dna, 2)
        return PlanBatch(*self._call(arr, budget, tau, max_steps))

    def plan(
        self,
        dna: ArrayLike,
        budget: int | None = None,
        *,
        tau: float | None = None,
        max_steps: int | None = None,
    ) -> Plan:
        """Plan one DNA row (N,). See :func:`cotj.plan`."""
        arr = _dna_array(dna, 1)
        if budget is not None and not isinstance(budget, (int, np.integer)):
            raise TypeError(f"budget must be an int for one row, got {type(budget).__name__}")
        steps, levels, _, cost, curve, ratio = self._call(arr, budget, tau, max_steps)
        return Plan(steps, levels, cost, curve, ratio)

    def _call(self, arr: np.ndarray, budget: object, tau: float | None, max_steps: int | None) -> tuple:
        lever, first, last = self._resolve(arr.shape[-1])
        if tau is None:
            if max_steps is not None:
                raise ValueError("max_steps goes with tau (adaptive length); give budget alone for a fixed length")
            b = 8 if budget is None else _budget_arg(budget)
            return _core.plan_batch(arr, lever, budget=b, first=first, last=last)
        if budget is not None:
            raise ValueError("give either budget (fixed length) or tau (adaptive length), not both")
        if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, (int, float, np.integer, np.floating)):
            raise TypeError(f"tau must be a float in (0, 1], got {type(tau).__name__}")
        kmax = None if max_steps is None else _int_arg("max_steps", max_steps)
        return _core.plan_batch(arr, lever, tau=float(tau), max_steps=kmax, first=first, last=last)

    def plan_cost(self, dna: ArrayLike, steps: ArrayLike) -> float:
        """The cost C of a given plan for one DNA row (N,). See :func:`cotj.plan_cost`."""
        arr = np.asarray(_dna_array(dna, 1), dtype=np.float64)
        s = np.asarray(steps)
        if s.dtype.kind == "f":
            return self._level_cost(arr, s)
        if s.dtype.kind not in "iu" or s.ndim != 1:
            raise TypeError(f"steps must be a 1-D array of grid indices (int) or noise levels (float), got dtype {s.dtype} and shape {s.shape}")
        lever, _, _ = self._resolve(arr.shape[0])
        return _core.plan_cost(arr, np.ascontiguousarray(s, dtype=np.int64), lever)

    def _level_cost(self, d: np.ndarray, levels: np.ndarray) -> float:
        """Cost of a plan given as noise levels: DNA (and a, s) interpolated linearly in t."""
        if levels.ndim != 1 or levels.size == 0 or not np.all(np.isfinite(levels)):
            raise ValueError("steps as noise levels must be a non-empty 1-D finite array")
        if np.any(np.diff(levels) >= 0):
            raise ValueError("steps as noise levels must be strictly decreasing (noisiest first)")
        grid_lever = self._resolve(d.shape[0])[0]
        grid = grid_lever.levels
        if levels[-1] < grid[0] or levels[0] > grid[-1]:
            raise ValueError(f"steps as noise levels must lie within the grid [{grid[0]}, {grid[-1]}], got {levels[0]} .. {levels[-1]}")
        # A one-level plan costs 0; the call also checks the DNA itself, so an error names its own indices.
        base = _core.plan_cost(d, np.zeros(1, dtype=np.int64), grid_lever)
        if len(levels) == 1:
            return base
        t = levels[::-1].copy()
        schedule = None if self._schedule is None else tuple(np.interp(t, grid, v) for v in self._schedule)
        lever, _ = _make_lever(t, schedule)
        dna = np.ascontiguousarray(np.interp(t, grid, d))
        return _core.plan_cost(dna, np.arange(len(t) - 1, -1, -1, dtype=np.int64), lever)

    def cost_matrix(self, dna: ArrayLike) -> NDArray[np.float64]:
        """Dense edge costs (N, N) of one DNA row. See :func:`cotj.cost_matrix`."""
        arr = np.asarray(_dna_array(dna, 1), dtype=np.float64)
        lever, _, _ = self._resolve(arr.shape[0])
        return _core.cost_matrix(arr, lever)


def _make_lever(grid: ArrayLike | None, schedule: ScheduleLike | None) -> tuple[_core.Lever | None, Schedule | None]:
    """The lever of ``grid`` and ``schedule`` (None for the default grid), with the schedule as
    float64 arrays."""
    if grid is None:
        if schedule is not None:
            raise ValueError("schedule needs grid: give the levels a and s are sampled at")
        return None, None
    g = np.asarray(grid)
    if g.dtype.kind not in "fiu":
        raise TypeError(f"grid must be a real numeric array, got dtype {g.dtype}")
    if g.ndim != 1:
        raise ValueError(f"grid must be 1-D (N,), got shape {g.shape}")
    g = np.ascontiguousarray(g, dtype=np.float64)
    if schedule is None:
        return _core.Lever(g), None
    try:
        a, s = schedule
    except (TypeError, ValueError):
        raise TypeError("schedule must be a pair (a, s) of arrays, e.g. cotj.schedules.vp(grid, alphas_cumprod)") from None
    arrays = []
    for name, v in (("a", a), ("s", s)):
        v = np.asarray(v)
        if v.dtype.kind not in "fiu":
            raise TypeError(f"schedule {name} must be a real array, got dtype {v.dtype}")
        if v.ndim != 1:
            raise ValueError(f"schedule {name} must be 1-D (N,), one value per grid level, got shape {v.shape}")
        arrays.append(np.ascontiguousarray(v, dtype=np.float64))
    return _core.Lever(g, *arrays), Schedule(*arrays)


def plan_batch(
    dna: ArrayLike,
    budget: int | ArrayLike | None = None,
    *,
    grid: ArrayLike | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: First = "any",
    last: Last = "any",
    schedule: ScheduleLike | None = None,
) -> PlanBatch:
    """Plan every row of a DNA batch: the serving call.

    Args:
        dna: (B, N) float32 or float64 one-step reconstruction errors, one row per prompt, one
            column per grid level (ascending t). Finite and non-negative.
        budget: steps per plan (NFE): an int for every row or a (B,) int array, each in 1..N.
            Default 8. Exclusive with ``tau``.
        grid: (N,) ascending noise levels in (0, 1]; default ``t_i = (i+1)/N``.
        tau: adaptive length: the smallest K whose plan explains a fraction ``tau`` in (0, 1] of
            the gain of the ``max_steps`` plan (SPEC 5). The paper uses 0.99.
        max_steps: longest adaptive plan, default N // 2.
        first: ``"any"``, ``"top"`` (first step at the grid's top level) or int k (one of the k
            highest levels).
        last: ``"any"``, ``"bottom"`` (last step at the grid's lowest level) or int k (one of the
            k lowest levels).
        schedule: ``(a, s)`` of a Gaussian path on ``grid`` (VP, EDM...); default linear flow.

    Returns:
        A :class:`PlanBatch`: (B, W) steps and levels noisiest first (padded with -1 / NaN),
        lengths, costs, and for adaptive runs the curves ``C*_K`` and ``R(K)``.

    Raises:
        ValueError: a value out of range (NaN or negative DNA, budget, tau, grid, windows...).
        TypeError: a wrong type (complex or object DNA, float budget...).
    """
    return Planner(grid, schedule, first=first, last=last).plan_batch(dna, budget, tau=tau, max_steps=max_steps)


def plan(
    dna: ArrayLike,
    budget: int | None = None,
    *,
    grid: ArrayLike | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    first: First = "any",
    last: Last = "any",
    schedule: ScheduleLike | None = None,
) -> Plan:
    """Plan one DNA row (N,); arguments as in :func:`plan_batch`. Returns a :class:`Plan`."""
    return Planner(grid, schedule, first=first, last=last).plan(dna, budget, tau=tau, max_steps=max_steps)


def plan_cost(
    dna: ArrayLike,
    steps: ArrayLike,
    *,
    grid: ArrayLike | None = None,
    schedule: ScheduleLike | None = None,
) -> float:
    """The cost C of any plan for one DNA row (N,) (SPEC 3), to score your own schedules.

    ``steps`` is either grid indices (int, strictly decreasing) or noise levels (float, strictly
    decreasing, within the grid), in which case the DNA is interpolated linearly in t.
    """
    return Planner(grid, schedule).plan_cost(dna, steps)


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
