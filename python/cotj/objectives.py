"""Planning objectives: what the edge cost of the plan graph is (docs/method.md, "Objectives").

Every objective gives the keyword arguments of :func:`cotj.plan_batch` for a batch of prompts, so one DP serves
them all. With ``N`` grid levels ``t_0 < ... < t_{N-1}``, a plan ``j_1 > ... > j_K`` costs
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

from cotj.multistep import SolverCost, plan_pairs, solver_costs

__all__ = ["OBJECTIVES", "RowModel", "TeacherCost", "objective"]

OBJECTIVES = ("paper", "teacher", "calibrated")
"""The objectives :func:`objective` knows."""
_FORMAT = "cotj.teacher_cost/1"


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
        return self.base + np.einsum("bf,bfn->bn", z, self.beta[level]) + 0.5 * self.var[level]


def row_features(x: NDArray[np.float64], x0_hat: NDArray[np.float64]) -> NDArray[np.float64]:
    """(B, 2) what the sampler sees at a level: ``log mean(x0_hat²)`` and ``log mean((x - x0_hat)²)`` of each row
    of the states ``x`` (B, D) and clean estimates ``x0_hat`` (B, D) (on the linear flow the second is
    ``t²·|v|²``, with v the velocity)."""
    tiny = np.finfo(np.float64).tiny
    return np.stack([np.log(np.maximum((x0_hat**2).mean(-1), tiny)),
                     np.log(np.maximum(((x - x0_hat) ** 2).mean(-1), tiny))], axis=-1)  # fmt: skip


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
            :meth:`solver_cost` gives the local errors of any solver of :mod:`cotj.multistep`.
    """

    grid: NDArray[np.float64]
    edges: NDArray[np.float64]
    end: NDArray[np.float64]
    n_samples: int
    rows: RowModel | None = None
    gram: NDArray[np.float64] | None = None
    _solver_costs: dict[str, SolverCost] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = self.grid.shape[0]
        if self.grid.ndim != 1 or self.edges.shape != (n, n) or self.end.shape != (n,):
            raise ValueError(f"grid (N,), edges (N, N) and end (N,) must agree, got {self.grid.shape}, "
                             f"{self.edges.shape} and {self.end.shape}")  # fmt: skip
        below = np.tril(np.ones((n, n), dtype=bool), -1)
        if np.any(np.isnan(self.edges[below])) or np.any(self.edges[below] < 0) or np.any(~(self.end >= 0)):
            raise ValueError("edges (below the diagonal) and end must be non-negative and not NaN")
        if self.gram is not None and (self.gram.shape != (2 * n + 2, 2 * n + 2) or not np.all(np.isfinite(self.gram))):
            raise ValueError(f"gram must be finite with shape ({2 * n + 2}, {2 * n + 2}), got {self.gram.shape}")

    def solver_cost(self, solver: str) -> SolverCost:
        """The mean local errors of ``solver``'s steps on the teacher trajectories (:func:`cotj.multistep.solver_costs`
        on :attr:`gram`, the linear flow), on nodes 0..N (node 0 is t = 0, node n the grid level n - 1)."""
        if self.gram is None:
            raise ValueError("this teacher cost has no Gram matrix: recalibrate (cotj.predict.calibrate records it)")
        if solver not in self._solver_costs:  # computed once per solver (about a second for the pairs at N = 100)
            cost = solver_costs(solver, self.gram, np.append(0.0, self.grid))
            floor = 1e-12  # the teacher's own steps land on it: 0 up to rounding of the quadratic form
            pairs = None if cost.pairs is None else np.maximum(cost.pairs, floor)
            self._solver_costs[solver] = SolverCost(solver, np.maximum(cost.first, floor), pairs, np.maximum(cost.end, floor))
        return self._solver_costs[solver]

    def plan(self, solver: str, budget: int, *, current: int | None = None, previous: int | None = None,
             log_scale: ArrayLike | None = None) -> NDArray[np.float64]:
        """The cheapest ``budget`` levels (K,) descending for ``solver`` from grid level ``current`` (default the
        top), after an evaluation at grid level ``previous`` (multistep solvers), rows scaled by
        ``exp(log_scale)`` (N,) (closed loop): the single-step solvers through :func:`cotj.plan_batch`, the
        multistep ones through :func:`cotj.multistep.plan_pairs`."""
        from cotj.planning import plan_batch

        cost = self.solver_cost(solver)
        n = self.grid.size
        top = n - 1 if current is None else int(current)
        w = np.ones(n) if log_scale is None else np.exp(np.asarray(log_scale, dtype=np.float64))
        if cost.pairs is None:
            if previous is not None:
                raise ValueError(f"{solver} is a single-step solver: it takes no previous level")
            plans = plan_batch(None, budget, cost=cost.first[1:, 1:], end=cost.end[1:] * w, scale=w, grid=self.grid,
                               current=top)
            return plans.levels[0]
        nodes = plan_pairs(cost, budget, current=top + 1, previous=None if previous is None else int(previous) + 1,
                           scale=np.append(1.0, w))
        return self.grid[nodes - 1]

    def plan_kwargs(self, log_scale: ArrayLike | None = None) -> dict[str, Any]:
        """Keyword arguments of :func:`cotj.plan_batch`: ``cost``, ``end`` and ``grid``; with ``log_scale`` (B, N)
        row b's edges from level j and its final step from j are multiplied by ``exp(log_scale[b, j])``."""
        kwargs: dict[str, Any] = {"cost": self.edges, "end": self.end, "grid": self.grid}
        if log_scale is not None:
            w = np.exp(np.asarray(log_scale, dtype=np.float64))
            kwargs.update(scale=w, end=w * self.end)
        return kwargs

    def row_scale(self, level: ArrayLike, x: ArrayLike, x0_hat: ArrayLike) -> NDArray[np.float64]:
        """(B, N) log row scale of samples at grid levels ``level`` (B,) in states ``x`` (B, D) with clean
        estimates ``x0_hat`` (B, D): zeros without a row model."""
        lv = np.asarray(level, dtype=np.int64).reshape(-1)
        if self.rows is None:
            return np.zeros((lv.size, self.grid.size))
        flat = (lv.size, -1)
        f = row_features(np.asarray(x, dtype=np.float64).reshape(flat), np.asarray(x0_hat, dtype=np.float64).reshape(flat))
        return self.rows.log_scale(lv, f)

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
        Path(path).write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: str | Path) -> TeacherCost:
        """Read a file written by :meth:`save`; a malformed file raises ValueError naming it."""
        try:
            doc = json.loads(Path(path).read_text())
            if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
                raise ValueError(f"not a {_FORMAT} document")
            grid = np.asarray(doc["grid"], dtype=np.float64)
            n = grid.size
            if grid.ndim != 1 or not 2 <= n <= 4096:
                raise ValueError(f"grid must be 2..4096 levels, got shape {grid.shape}")
            edges = np.full((n, n), np.inf)
            edges[np.tril_indices(n, -1)] = np.asarray(doc["edges_below_diagonal"], dtype=np.float64)
            rows = None
            if "rows" in doc:
                r = {k: np.asarray(v, dtype=np.float64) for k, v in doc["rows"].items()}
                rows = RowModel(r["base"], r["center"], r["spread"], r["beta"], r["var"])
                f = rows.center.shape[-1] if rows.center.ndim == 2 else -1
                if (rows.base.shape, rows.center.shape, rows.spread.shape, rows.beta.shape, rows.var.shape) != (
                        (n,), (n, f), (n, f), (n, f, n), (n, n)):
                    raise ValueError("the row model's shapes do not match the grid")
            gram = None
            if "gram_upper" in doc:
                upper = np.triu_indices(2 * n + 2)
                gram = np.zeros((2 * n + 2, 2 * n + 2))
                gram[upper] = np.asarray(doc["gram_upper"], dtype=np.float64)
                gram = gram + np.triu(gram, 1).T
            return cls(grid, edges, np.asarray(doc["end"], dtype=np.float64), int(doc["n_samples"]), rows, gram)
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a valid teacher cost file ({exc})") from None


def _digits(a: NDArray[np.float64]) -> Any:
    """``a`` as nested lists of floats rounded to 7 significant digits."""
    return np.vectorize(lambda v: float(f"{v:.7g}"), otypes=[float])(a).tolist()


def objective(name: str, *, dna: ArrayLike | None = None, teacher: TeacherCost | None = None,
              mean_dna: ArrayLike | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`cotj.plan_batch` that plan with objective ``name`` (module docstring).

    Args:
        name: one of :data:`OBJECTIVES`.
        dna: (B, N) or (N,) DNA ("paper": required; "calibrated": the prompts' DNA).
        teacher: the model's :class:`TeacherCost` ("teacher", "calibrated").
        mean_dna: (N,) the DNA that ``dna`` is relative to ("calibrated"; the mean DNA a predictor aligns to).

    Returns:
        ``{"dna": ...}`` for "paper"; ``{"cost", "end", "grid"[, "scale"]}`` otherwise. Pass them on with the
        budget: ``cotj.plan_batch(**objective("teacher", teacher=tc), budget=8)``.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {name!r}")
    if name == "paper":
        if dna is None:
            raise ValueError("the 'paper' objective needs dna")
        return {"dna": dna}
    if teacher is None:
        raise ValueError(f"the {name!r} objective needs teacher (a TeacherCost, from cotj.predict.calibrate)")
    if name == "teacher":
        return {"dna": None, **teacher.plan_kwargs()}
    if dna is None or mean_dna is None:
        raise ValueError("the 'calibrated' objective needs dna and mean_dna")
    d, ref = np.asarray(dna, dtype=np.float64), np.asarray(mean_dna, dtype=np.float64)
    if ref.shape != teacher.grid.shape or d.shape[-1] != ref.size:
        raise ValueError(f"dna (..., N) and mean_dna (N,) must match the teacher grid of {teacher.grid.size} levels")
    if np.any(~(ref > 0)) or np.any(~(d > 0)):
        raise ValueError("dna and mean_dna must be positive for the 'calibrated' objective")
    return {"dna": None, **teacher.plan_kwargs(np.log(np.atleast_2d(d) / ref))}
