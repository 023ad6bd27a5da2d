"""Planning objectives: what the edge cost of the plan graph is (docs/method.md, "Objectives").

Every objective is a :class:`~cotj.planning.dense.DenseCost` for a batch of prompts, so one DP serves them all.
With ``N`` grid levels ``t_0 < ... < t_{N-1}``, a plan ``j_1 > ... > j_K`` costs
``start[j_1] + sum_m w[j_m]·M[j_m, j_{m+1}] + end[j_K]``:

- ``"paper"``: the paper's objective, unchanged. ``M = L`` (the temporal lever), ``w = d`` (the DNA),
  ``start = -d``, ``end = d``. It reproduces the paper's plans and its released mean DNAs.
- ``"teacher"``: GITS-style. ``M[j, i]`` is the measured local error of one first-order step from level j to
  i on teacher trajectories, averaged over a calibration batch (:class:`TeacherCost`, made by
  :func:`cotj.predict.calibrate`); ``end[j]`` the same for the final step to t = 0; ``start = 0``.
- ``"calibrated"``: the teacher cost made prompt-specific by the DNA: row j is scaled by ``d_j / dbar_j``, the
  prompt's DNA over the mean DNA it was aligned to. It is the paper's ``d_j·L(j, i)`` with a per-model correction
  ``κ(j, i) = Mbar(j, i) / (dbar_j·L(j, i))`` fitted once from teacher runs, so that the edge cost matches the
  measured local error.

Closed-loop replanning (:mod:`cotj.execute.replan`) scales the rows of the teacher cost from what the running
sample shows (:meth:`TeacherCost.row_scale`), and replans the rest of the trajectory after every step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj import _core
from cotj._deprecation import warn
from cotj.planning.dense import DenseCost
from cotj.planning.multistep import SolverCost, plan_multistep, shared_solver_costs
from cotj.planning.planner import Plan, plan_batch
from cotj.planning.solvers import MULTISTEP, SOLVERS

__all__ = ["MAX_MULTISTEP_LEVELS", "MAX_TEACHER_LEVELS", "OBJECTIVES", "RowModel", "TeacherCost", "multistep_cost_bytes",
           "objective"]

OBJECTIVES = ("paper", "teacher", "calibrated")
"""The objectives :func:`objective` knows."""
_FORMAT = "cotj.teacher_cost/1"
MAX_TEACHER_LEVELS = 4096
"""Most grid levels a :class:`TeacherCost` holds (its edges are (N, N): 128 MiB of float64 at the bound)."""
MAX_MULTISTEP_LEVELS = 160
"""Most grid levels whose multistep solver costs (dpmpp_2m, unipc: (N + 1)³ pairs) are built
(:meth:`TeacherCost.solver_cost`): about 1 GiB at the bound (:func:`multistep_cost_bytes`)."""
MAX_ROW_FEATURES = 64
"""Most features per level a row model of a teacher cost file may have (the fitted ones have 2)."""
_MAX_LOG_SCALE = 700.0  # exp(±700) is finite and > 0 in float64
_MAX_GRAM = 1e100  # mean squares of states and estimates; the solver costs weigh them by factors far below 1e100


def multistep_cost_bytes(n: int) -> int:
    """Peak memory in bytes of building the multistep solver costs of an ``n``-level grid: about 32 float64
    arrays of (n + 1)³ (measured with tracemalloc: 30.3 of them for unipc, 19.2 for dpmpp_2m at n = 50 and 100).
    The single-step solvers' costs (euler, heun) are held to the same bound: about 24 arrays of (n + 1)² (11.3
    for euler, 20.3 for heun), so up to about 2,350 levels."""
    return 32 * 8 * (int(n) + 1) ** 3


def _single_step_cost_bytes(n: int) -> int:
    return 24 * 8 * (int(n) + 1) ** 2


@dataclass(frozen=True)
class RowModel:
    """How much harder than the calibration mean one sample's jumps are, from what the sampler sees.

    At grid level j the sampler knows ``features(x, x0_hat)`` (:func:`row_features`). On calibration trajectories
    a ridge regression per level maps those features to the log-scale of every row of the sample's local-error
    matrix: ``r = base + ((f - center[j]) / spread[j]) @ beta[j] + var[j] / 2`` (the last term turns the expected
    log into the expected scale of a log-normal).

    Attributes:
        base: (N,) mean log row scale over the calibration batch.
        center, spread: (N, F) mean and standard deviation of the features at each level.
        beta: (N, F, N) regression coefficients, features at level j -> log scale of every row.
        var: (N, N) residual variance of the log scale of every row given the features at level j.
    """

    base: NDArray[np.float64]
    center: NDArray[np.float64]
    spread: NDArray[np.float64]
    beta: NDArray[np.float64]
    var: NDArray[np.float64]

    def log_scale(self, level: NDArray[np.int64], features: NDArray[np.float64]) -> NDArray[np.float64]:
        """(B, N) expected log row scale for samples at grid levels ``level`` (B,) with ``features`` (B, F)."""
        z = (features - self.center[level]) / self.spread[level]
        return self.base + np.matmul(z[:, None, :], self.beta[level])[:, 0] + 0.5 * self.var[level]


def row_features(x: NDArray[np.float64], x0_hat: NDArray[np.float64]) -> NDArray[np.float64]:
    """(B, 2) what the sampler sees at a level: ``log mean(x0_hat²)`` and ``log mean((x - x0_hat)²)`` of each row
    of the states ``x`` (B, D) and clean estimates ``x0_hat`` (B, D) (on the linear flow the second is
    ``t²·|v|²``, with v the velocity)."""
    d = x - x0_hat
    squares = np.stack([np.einsum("bd,bd->b", x0_hat, x0_hat), np.einsum("bd,bd->b", d, d)], axis=-1) / x.shape[-1]
    return np.log(np.maximum(squares, np.finfo(np.float64).tiny))


@dataclass(frozen=True)
class TeacherCost:
    """A model's measured jump costs on a grid: the "teacher" and "calibrated" objectives and replanning.

    Attributes:
        grid: (N,) ascending noise levels of the teacher run (its top level is where sampling starts).
        edges: (N, N) ``[j, i]``: mean squared local error of one first-order step from level j down to i < j,
            measured from teacher states (inf on and above the diagonal).
        end: (N,) the same for the final step from level j to t = 0.
        n_samples: size of the calibration batch.
        rows: the closed-loop row model, if fitted.
        gram: (2N + 2, 2N + 2) the mean Gram matrix of the teacher's states and clean estimates at the N + 1
            nodes (t = 0 and the grid; :meth:`cotj.predict.teacher.Trajectories.gram`), if recorded: from it
            :meth:`solver_cost` gives the local errors of any solver of :mod:`cotj.planning.multistep`.
        settings: what the teacher runs were made with, if recorded (``cotj calibrate`` writes the pipeline's
            class, ``guidance``, ``height``, ``width``, ``seed``...): a flat dict of JSON scalars, saved as is.
    """

    grid: NDArray[np.float64]
    edges: NDArray[np.float64]
    end: NDArray[np.float64]
    n_samples: int
    rows: RowModel | None = None
    gram: NDArray[np.float64] | None = None
    settings: dict[str, Any] | None = None
    _solver_costs: dict[str, SolverCost] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("grid", "edges", "end"):
            _check_float_array(getattr(self, name), name)
        n = self.grid.shape[0] if self.grid.ndim == 1 else -1
        if self.grid.ndim != 1 or self.edges.shape != (n, n) or self.end.shape != (n,):
            raise ValueError(f"grid (N,), edges (N, N) and end (N,) must agree, got {self.grid.shape}, "
                             f"{self.edges.shape} and {self.end.shape}")  # fmt: skip
        if not 2 <= n <= MAX_TEACHER_LEVELS:
            raise ValueError(f"grid must hold 2..{MAX_TEACHER_LEVELS} levels (MAX_TEACHER_LEVELS), got {n}")
        if not (np.all(np.isfinite(self.grid)) and np.all(self.grid > 0) and np.all(self.grid <= 1)
                and np.all(np.diff(self.grid) > 0)):
            raise ValueError("grid must be finite noise levels in (0, 1], strictly ascending")
        below = np.tril(np.ones((n, n), dtype=bool), -1)
        if np.any(np.isnan(self.edges[below])) or np.any(self.edges[below] < 0) or np.any(~(self.end >= 0)):
            raise ValueError("edges (below the diagonal) and end must be non-negative and not NaN")
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, (int, np.integer)) or self.n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {self.n_samples!r}")
        if self.rows is not None:
            _check_rows(self.rows, n)
        if self.gram is not None:
            _check_float_array(self.gram, "gram")
            if self.gram.shape != (2 * n + 2, 2 * n + 2) or not np.all(np.isfinite(self.gram)):
                raise ValueError(f"gram must be finite with shape ({2 * n + 2}, {2 * n + 2}), got {self.gram.shape}")
            if np.any(np.diagonal(self.gram) < 0):
                raise ValueError("gram must be a Gram matrix: its diagonal (mean squares) must be >= 0")
            if np.max(np.abs(self.gram)) > _MAX_GRAM:
                raise ValueError(f"gram entries must lie within ±{_MAX_GRAM:g}: the solver costs, quadratic forms in "
                                 "them, would overflow float64")
        if self.settings is not None:
            _check_settings(self.settings)

    def solver_cost(self, solver: str) -> SolverCost:
        """The mean local errors of ``solver``'s steps on the teacher trajectories (:func:`cotj.planning.multistep.solver_costs`
        on :attr:`gram`, the linear flow), on nodes 0..N (node 0 is t = 0, node n the grid level n - 1)."""
        if self.gram is None:
            raise ValueError("this teacher cost has no Gram matrix: recalibrate (cotj.predict.calibrate records it)")
        if not isinstance(solver, str) or solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        n = self.grid.size
        if solver in MULTISTEP and n > MAX_MULTISTEP_LEVELS:
            raise ValueError(f"{solver} costs of a {n}-level teacher grid would take about "
                             f"{multistep_cost_bytes(n) / 2**30:.1f} GiB: multistep costs take at most "
                             f"MAX_MULTISTEP_LEVELS = {MAX_MULTISTEP_LEVELS} levels; plan euler or heun steps")
        if solver not in MULTISTEP and _single_step_cost_bytes(n) > multistep_cost_bytes(MAX_MULTISTEP_LEVELS):
            raise ValueError(f"{solver} costs of a {n}-level teacher grid would take about "
                             f"{_single_step_cost_bytes(n) / 2**30:.1f} GiB, more than the multistep costs at "
                             f"MAX_MULTISTEP_LEVELS ({multistep_cost_bytes(MAX_MULTISTEP_LEVELS) / 2**30:.1f} GiB): "
                             "plan first-order steps on the edges (objective('teacher'))")
        if solver not in self._solver_costs:  # computed once per solver (about a second for the pairs at N = 100)
            cost = shared_solver_costs(solver, self.gram, np.append(0.0, self.grid))  # once per content
            floor = 1e-12  # the teacher's own steps land on it: 0 up to rounding of the quadratic form
            pairs = None if cost.pairs is None else np.maximum(cost.pairs, floor)
            self._solver_costs[solver] = SolverCost(solver, np.maximum(cost.first, floor), pairs, np.maximum(cost.end, floor))
        return self._solver_costs[solver]

    def plan(self, solver: str, budget: int, *, current: int | None = None, previous: int | None = None,
             log_scale: ArrayLike | None = None) -> Plan:
        """The cheapest ``budget``-level :class:`~cotj.Plan` for ``solver`` from grid level ``current`` (default the
        top), after an evaluation at grid level ``previous`` (multistep solvers), rows scaled by
        ``exp(log_scale)`` (N,) (closed loop): the single-step solvers through :func:`cotj.plan_batch`, the
        multistep ones through :func:`cotj.planning.multistep.plan_multistep`.

        Raises:
            TypeError: ``current``, ``previous`` or ``budget`` not an int, ``log_scale`` not real numbers.
            ValueError: a grid index out of range, ``previous`` not above ``current``, ``budget`` not in
                1..current + 1, ``log_scale`` not (N,) or not finite, no Gram matrix (:meth:`solver_cost`).
        """
        n = self.grid.size
        top = n - 1 if current is None else _grid_index(current, "current", n)
        prev = None if previous is None else _grid_index(previous, "previous", n)
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
            raise TypeError(f"budget must be an int, got {type(budget).__name__}")
        if not 1 <= budget <= top + 1:
            raise ValueError(f"budget must be in 1..{top + 1} (the grid levels at or below current = {top}), "
                             f"got {budget}")
        w = np.ones(n) if log_scale is None else np.exp(_log_scale(log_scale, (n,)))
        cost = self.solver_cost(solver)
        if cost.pairs is None:
            if prev is not None:
                raise ValueError(f"{solver} is a single-step solver: it takes no previous level")
            dense = DenseCost(cost.first[1:, 1:], end=cost.end[1:] * w, scale=w, grid=self.grid)
            return plan_batch(dense, int(budget), current=top)[0]
        if prev is not None and not prev > top:
            raise ValueError(f"previous must be a grid level above current = {top} (evaluated before it), got {prev}")
        steps, total = plan_multistep(cost, int(budget), current=top, previous=prev, scale=w)
        return Plan(steps, self.grid[steps], total)

    def dense(self, log_scale: ArrayLike | None = None) -> DenseCost:
        """The first-order jump costs as a :class:`~cotj.DenseCost` on :attr:`grid`; with ``log_scale`` (B, N) (or
        (N,) for one row) row b's edges from level j and its final step from j are multiplied by
        ``exp(log_scale[b, j])`` (TypeError for non-real, ValueError for another shape or non-finite values)."""
        if log_scale is None:
            return DenseCost(self.edges, end=self.end, grid=self.grid)
        w = np.exp(_log_scale(log_scale, None, self.grid.size))
        return DenseCost(self.edges, end=w * self.end, scale=w, grid=self.grid)

    def plan_kwargs(self, log_scale: ArrayLike | None = None) -> dict[str, Any]:
        """Deprecated: keyword arguments of :func:`cotj.plan_batch` (``cost``); use :meth:`dense`."""
        warn("TeacherCost.plan_kwargs", "TeacherCost.dense(), a DenseCost to plan on")
        return {"cost": self.dense(log_scale)}

    def row_scale(self, level: ArrayLike, x: ArrayLike, x0_hat: ArrayLike) -> NDArray[np.float64]:
        """(B, N) log row scale of samples at grid levels ``level`` (B,) in states ``x`` (B, D) with clean
        estimates ``x0_hat`` (B, D) (or (B, ...), flattened per row): zeros without a row model.

        Raises:
            TypeError: ``level`` not ints, ``x`` or ``x0_hat`` not real numbers.
            ValueError: ``level`` outside the grid; ``x`` and ``x0_hat`` not of one shape with B rows, not finite, or
                so large that the row scale overflows.
        """
        lv = grid_levels(level, self.grid.size)
        xs = _real_rows(x, "x", lv.size)
        x0 = _real_rows(x0_hat, "x0_hat", lv.size)
        if xs.shape != x0.shape:
            raise ValueError(f"x and x0_hat must have one shape, got {xs.shape} and {x0.shape}")
        if self.rows is None:
            return np.zeros((lv.size, self.grid.size))
        with np.errstate(over="ignore", invalid="ignore"):
            scale = self.rows.log_scale(lv, row_features(xs, x0))
        if not np.all(np.abs(scale) < _MAX_LOG_SCALE):
            raise ValueError("x and x0_hat lie too far outside what the row model was fitted on: their row scale "
                             "overflows float64")
        return scale

    def save(self, path: str | Path) -> None:
        """Write as JSON (``edges`` below the diagonal only, every number to 7 significant digits, float32's
        precision); :meth:`load` reads it with numpy alone."""
        low = np.tril_indices(self.grid.size, -1)
        doc: dict[str, Any] = {"format": _FORMAT, "grid": self.grid.tolist(), "edges_below_diagonal": _digits(self.edges[low]),
                               "end": _digits(self.end), "n_samples": self.n_samples}  # fmt: skip
        if self.rows is not None:
            doc["rows"] = {k: _digits(getattr(self.rows, k)) for k in ("base", "center", "spread", "beta", "var")}
        if self.gram is not None:  # full precision: local errors are small differences of its entries
            doc["gram_upper"] = self.gram[np.triu_indices(self.gram.shape[0])].tolist()
        if self.settings is not None:
            doc["settings"] = self.settings
        Path(path).write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: str | Path) -> TeacherCost:
        """Read a file written by :meth:`save`.

        Every field is checked before anything is built from it: ``grid`` 2..:data:`MAX_TEACHER_LEVELS`
        ascending levels in (0, 1]; ``edges_below_diagonal`` N(N - 1)/2 and ``end`` N finite numbers >= 0;
        ``n_samples`` an int >= 1; the optional ``rows`` (the :class:`RowModel`'s five arrays, finite, ``spread``
        > 0, ``var`` >= 0) and ``gram_upper`` ((2N + 2)(2N + 3)/2 finite numbers) of their exact sizes. So
        memory stays within a small multiple of the file's size.

        Raises:
            ValueError: a malformed file, one line naming the file and the field.
            OSError: the file cannot be read.
        """
        text = Path(path).read_bytes()
        try:
            return cls._from_json(text)
        except ValueError as exc:  # the fields' checks and the constructor's
            raise ValueError(f"{path}: not a valid teacher cost file: {exc}") from None

    @classmethod
    def _from_json(cls, text: bytes) -> TeacherCost:
        try:
            doc = json.loads(text)
        except RecursionError:
            raise _Malformed("JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, bad UTF-8, too many digits
            raise _Malformed(f"not JSON ({str(exc)[:200]})") from None
        if not isinstance(doc, dict):
            raise _Malformed(f"not a {_FORMAT} document (a JSON object), got a JSON {type(doc).__name__}")
        if doc.get("format") != _FORMAT:
            raise _Malformed(f"format must be {_FORMAT!r}, got {str(doc.get('format'))[:80]!r}")
        for key in ("grid", "edges_below_diagonal", "end", "n_samples"):
            if key not in doc:
                raise _Malformed(f"field {key!r} is missing")
        grid = _numbers(doc["grid"], "grid")
        n = grid.size
        if grid.ndim != 1 or not 2 <= n <= MAX_TEACHER_LEVELS:
            raise _Malformed(f"grid must be a list of 2..{MAX_TEACHER_LEVELS} levels (MAX_TEACHER_LEVELS), got "
                             f"shape {grid.shape}")
        if not (np.all(grid > 0) and np.all(grid <= 1) and np.all(np.diff(grid) > 0)):
            raise _Malformed("grid must be noise levels in (0, 1], strictly ascending")
        low = _numbers(doc["edges_below_diagonal"], "edges_below_diagonal", (n * (n - 1) // 2,), n)
        end = _numbers(doc["end"], "end", (n,), n)
        for name, v in (("edges_below_diagonal", low), ("end", end)):
            if np.any(v < 0):
                raise _Malformed(f"{name} must be >= 0 (mean squared errors)")
        count = doc["n_samples"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _Malformed(f"n_samples must be an int >= 1, got {str(count)[:80]}")
        rows = None
        if "rows" in doc:
            r = doc["rows"]
            names = ("base", "center", "spread", "beta", "var")
            if not isinstance(r, dict) or sorted(r) != sorted(names):
                raise _Malformed(f"rows must be an object with exactly the fields {', '.join(names)}")
            center = _numbers(r["center"], "rows.center")
            if center.ndim != 2 or center.shape[0] != n or not 1 <= center.shape[1] <= MAX_ROW_FEATURES:
                raise _Malformed(f"rows.center must be (N, F) with N = {n} and F in 1..{MAX_ROW_FEATURES}, got "
                                 f"shape {center.shape}")
            f = center.shape[1]
            arrays = {"base": _numbers(r["base"], "rows.base", (n,), n), "center": center,
                      "spread": _numbers(r["spread"], "rows.spread", (n, f), n),
                      "beta": _numbers(r["beta"], "rows.beta", (n, f, n), n),
                      "var": _numbers(r["var"], "rows.var", (n, n), n)}  # fmt: skip
            if not np.all(arrays["spread"] > 0):
                raise _Malformed("rows.spread must be > 0 (standard deviations of the features)")
            if not np.all(arrays["var"] >= 0):
                raise _Malformed("rows.var must be >= 0 (variances)")
            rows = RowModel(**arrays)
        gram = None
        if "gram_upper" in doc:
            m = 2 * n + 2
            upper_values = _numbers(doc["gram_upper"], "gram_upper", (m * (m + 1) // 2,), n)
            upper = np.triu_indices(m)
            gram = np.zeros((m, m))
            gram[upper] = upper_values
            gram = gram + np.triu(gram, 1).T
            if np.any(np.diagonal(gram) < 0):
                raise _Malformed("gram_upper must hold a Gram matrix: its diagonal (mean squares) must be >= 0")
        edges = np.full((n, n), np.inf)
        edges[np.tril_indices(n, -1)] = low
        settings = doc.get("settings")
        if settings is not None:
            _check_settings(settings)
        return cls(grid, edges, end, count, rows, gram, settings)


class _Malformed(ValueError):
    """A field of a teacher cost file that is not what :meth:`TeacherCost.save` writes."""


def _check_settings(settings: Any) -> None:
    """Refuse :attr:`TeacherCost.settings` unless a dict of at most 64 str keys to JSON scalars (strings of at
    most 4096 characters)."""
    if not isinstance(settings, dict) or len(settings) > 64:
        raise _Malformed("settings must be an object of at most 64 fields")
    for key, value in settings.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, (bool, int, float, str))):
            raise _Malformed(f"settings must map names to numbers, strings, booleans or null; {str(key)[:80]!r} does not")
        if isinstance(value, str) and len(value) > 4096 or isinstance(value, float) and not np.isfinite(value):
            raise _Malformed(f"settings field {key[:80]!r} must be a finite number or a string of at most 4096 characters")


def _numbers(value: Any, name: str, shape: tuple[int, ...] | None = None, n: int = 0) -> NDArray[np.float64]:
    """The JSON field ``name`` as a float64 array: (nested) lists of finite real numbers, of ``shape`` if given
    (``n`` the grid's levels, for the message)."""
    if not isinstance(value, list):
        raise _Malformed(f"{name} must be a list of numbers, got a JSON {type(value).__name__}")
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "O":  # integers beyond int64, None, mixed: numbers only if float64 takes them
            arr = arr.astype(np.float64)
    except (ValueError, TypeError, OverflowError):
        raise _Malformed(f"{name} must be (nested) lists of numbers of one shape, within float64's range") from None
    if arr.dtype.kind not in "iuf":
        raise _Malformed(f"{name} must hold numbers, got {'booleans' if arr.dtype.kind == 'b' else 'text'}")
    arr = arr.astype(np.float64)
    if shape is not None and arr.shape != shape:
        raise _Malformed(f"{name} must have shape {shape} for a grid of {n} levels, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise _Malformed(f"{name} must be finite (no NaN or inf)")
    return arr


def _check_float_array(value: Any, name: str) -> None:
    if not isinstance(value, np.ndarray) or value.dtype != np.float64:
        raise TypeError(f"{name} must be a float64 numpy array, got {type(value).__name__}"
                        f"{f' of {value.dtype}' if isinstance(value, np.ndarray) else ''}")  # fmt: skip


def _check_rows(rows: RowModel, n: int) -> None:
    """ValueError unless ``rows`` is a finite row model of the shapes of an ``n``-level grid."""
    if not isinstance(rows, RowModel):
        raise TypeError(f"rows must be a RowModel, got {type(rows).__name__}")
    for name in ("base", "center", "spread", "beta", "var"):
        _check_float_array(getattr(rows, name), f"rows.{name}")
    f = rows.center.shape[-1] if rows.center.ndim == 2 else -1
    if (rows.base.shape, rows.center.shape, rows.spread.shape, rows.beta.shape, rows.var.shape) != (
            (n,), (n, f), (n, f), (n, f, n), (n, n)) or f < 1:
        raise ValueError("the row model's shapes do not match the grid: base (N,), center and spread (N, F), "
                         "beta (N, F, N), var (N, N)")
    for name in ("base", "center", "spread", "beta", "var"):
        if not np.all(np.isfinite(getattr(rows, name))):
            raise ValueError(f"rows.{name} must be finite")
    if not (np.all(rows.spread > 0) and np.all(rows.var >= 0)):
        raise ValueError("rows.spread must be > 0 and rows.var >= 0")


def _grid_index(value: object, name: str, n: int) -> int:
    """``value`` as a grid index in 0..n - 1 (TypeError unless an int, ValueError outside)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int grid index, got {type(value).__name__}")
    if not 0 <= value < n:
        raise ValueError(f"{name} must be a grid index in 0..{n - 1}, got {value}")
    return int(value)


def grid_levels(level: ArrayLike, n: int, name: str = "level") -> NDArray[np.int64]:
    """``level`` (B,) (or one int) as int64 grid indices in 0..n - 1: TypeError unless ints, ValueError when out
    of range or empty."""
    lv = np.asarray(level)
    if lv.dtype == np.int64 and lv.ndim == 1 and lv.size and 0 <= lv.min() and lv.max() < n:
        return lv  # the common case, checked in two reductions
    if lv.dtype.kind not in "iu":
        raise TypeError(f"{name} must be int grid indices, got {f'dtype {lv.dtype}' if lv.dtype.kind != 'O' else type(level).__name__}")
    if lv.ndim > 1 or lv.size == 0:
        raise ValueError(f"{name} must be one grid index or (B,) of them, got shape {lv.shape}")
    bad = (lv >= n) | (lv < 0) if lv.dtype.kind == "i" else lv >= n
    if np.any(bad):
        raise ValueError(f"{name} must be grid indices in 0..{n - 1}, got {lv.reshape(-1)[np.argmax(bad.reshape(-1))]}")
    return lv.astype(np.int64).reshape(-1)


def _real_rows(value: ArrayLike, name: str, rows: int) -> NDArray[np.float64]:
    """``value`` (B, ...) of real finite numbers as (B, D) float64, D >= 1."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got {f'dtype {arr.dtype}' if arr.dtype.kind != 'O' else type(value).__name__}")
    if arr.ndim < 1 or arr.shape[0] != rows or arr.size == 0:
        raise ValueError(f"{name} must be (B, ...) with B = {rows} rows (one per level) and at least one value per "
                         f"row, got shape {arr.shape}")
    out = arr.astype(np.float64).reshape(rows, -1)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return out


def _log_scale(value: ArrayLike, shape: tuple[int, ...] | None, n: int = 0) -> NDArray[np.float64]:
    """``log_scale`` as float64 of ``shape`` (None: (N,) or (B, N) with N = ``n``), finite, its exp finite and
    > 0."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"log_scale must be real numbers, got {f'dtype {arr.dtype}' if arr.dtype.kind != 'O' else type(value).__name__}")
    want = shape if shape is not None else ((n,) if arr.ndim == 1 else (arr.shape[0] if arr.ndim == 2 else -1, n))
    if arr.shape != want or arr.size == 0:
        what = f"{shape}" if shape is not None else f"(N,) or (B, N) with N = {n}"
        raise ValueError(f"log_scale must have shape {what}, got {arr.shape}")
    out = arr.astype(np.float64)
    if not np.all(np.abs(out) < _MAX_LOG_SCALE):
        raise ValueError(f"log_scale must be finite with |log_scale| < {_MAX_LOG_SCALE:g} (its exp a finite scale > 0)")
    return out


def _digits(a: NDArray[np.float64]) -> Any:
    """``a`` as nested lists of floats rounded to 7 significant digits."""
    return np.vectorize(lambda v: float(f"{v:.7g}"), otypes=[float])(a).tolist()


def objective(name: str, *, dna: ArrayLike | None = None, teacher: TeacherCost | None = None,
              mean_dna: ArrayLike | None = None) -> DenseCost:
    """The :class:`~cotj.DenseCost` of objective ``name`` (module docstring), to plan on:
    ``cotj.plan_batch(objective("teacher", teacher=tc), budget=8)``.

    Args:
        name: one of :data:`OBJECTIVES`.
        dna: (B, N) or (N,) DNA ("paper": required; "calibrated": the prompts' DNA).
        teacher: the model's :class:`TeacherCost` ("teacher", "calibrated").
        mean_dna: (N,) the DNA that ``dna`` is relative to ("calibrated"; the mean DNA a predictor aligns to).

    Returns:
        A :class:`~cotj.DenseCost`: "paper" on the default grid of N levels (the same plans as ``cotj.plan_batch(dna)``),
        the others on the teacher's grid.

    Raises:
        TypeError: ``teacher`` not a :class:`TeacherCost`; ``dna`` or ``mean_dna`` not real numbers.
        ValueError: an unknown ``name``, a missing argument, shapes that do not match the teacher grid, or a
            ``dna`` or ``mean_dna`` that is not finite and > 0 ("calibrated": each enters as a scale).
    """
    if not isinstance(name, str) or name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {name!r}")
    if name == "paper":
        if dna is None:
            raise ValueError("the 'paper' objective needs dna")
        return _paper(dna)
    if teacher is None:
        raise ValueError(f"the {name!r} objective needs teacher (a TeacherCost, from cotj.predict.calibrate)")
    if not isinstance(teacher, TeacherCost):
        raise TypeError(f"teacher must be a TeacherCost (TeacherCost.load reads its file), got {type(teacher).__name__}")
    if name == "teacher":
        return teacher.dense()
    if dna is None or mean_dna is None:
        raise ValueError("the 'calibrated' objective needs dna and mean_dna")
    d, ref = _positive(dna, "dna"), _positive(mean_dna, "mean_dna")
    if ref.shape != teacher.grid.shape or d.ndim not in (1, 2) or d.shape[-1] != ref.size:
        raise ValueError(f"dna (N,) or (B, N) and mean_dna (N,) must match the teacher grid of N = {teacher.grid.size} "
                         f"levels, got shapes {d.shape} and {ref.shape}")
    log_ratio = np.log(np.atleast_2d(d)) - np.log(ref)
    if not np.all(np.abs(log_ratio) < _MAX_LOG_SCALE):
        raise ValueError(f"dna / mean_dna must lie within exp(±{_MAX_LOG_SCALE:g}) (the scale of each level's jumps)")
    return teacher.dense(log_ratio)


def _paper(dna: ArrayLike) -> DenseCost:
    """The paper's objective as a dense cost: ``edges = L`` (the lever of the default grid), ``scale = d``,
    ``start = -d``, ``end = d``."""
    d = np.asarray(dna)
    if d.dtype.kind not in "iuf":
        raise TypeError(f"dna must be real numbers, got {f'dtype {d.dtype}' if d.dtype.kind != 'O' else type(dna).__name__}")
    if d.ndim not in (1, 2) or d.shape[-1] < 1:
        raise ValueError(f"dna must be (N,) or (B, N), got shape {d.shape}")
    d = d.astype(np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("dna must be finite and >= 0")
    lever = _core.Lever.default(d.shape[-1], "dna")
    return DenseCost(lever.matrix(), start=-d, end=d, scale=d, grid=lever.levels)


def _positive(value: ArrayLike, name: str) -> NDArray[np.float64]:
    """``value`` as float64: TypeError unless real numbers, ValueError unless finite and > 0."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got {f'dtype {arr.dtype}' if arr.dtype.kind != 'O' else type(value).__name__}")
    out = arr.astype(np.float64)
    if out.size == 0 or not np.all(np.isfinite(out)) or not np.all(out > 0):
        raise ValueError(f"{name} must be finite and > 0 for the 'calibrated' objective")
    return out
