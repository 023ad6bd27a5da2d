"""Per-sample planning study: how much of the per-sample headroom a predictor of the sample's costs recovers.

Every sample has its own local-error costs: those of its own teacher trajectory, from its own Gram matrix
(:meth:`cotj_testbed.trajectory_store.StoredTrajectories.grams`, :func:`cotj.planning.multistep.solver_costs`). The cheapest
plan on them is the per-sample ceiling (OSS-style, for any solver). A data-set schedule plans every sample on the
mean cost. A closed-loop sampler sees, at each level it visits, the state and the clean estimate; a *cost predictor*
maps that to an estimate of the sample's costs, and the sampler replans on it.

This module scores cost predictors offline, on stored teacher runs, by the regret of the plans they make:
``10·log10(cost_s(plan) / cost_s(optimal plan))``, the sample's own summed local error of the plan against the
best plan's, in dB. The closed loop is simulated on the teacher trajectory: at each visited level the predictor
sees the teacher's state and estimate there (the sampler's own are close to them when its plan is good). The
predictors that score well are then run as real samplers (:mod:`cotj_testbed.quality`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import cotj
from cotj.planning.multistep import SolverCost, plan_multistep, solver_costs
from cotj.planning.objectives import row_features
from cotj.planning.schedules import default_grid
from cotj.planning.solvers import SOLVERS
from cotj_testbed import outputs

log = logging.getLogger(__name__)

__all__ = ["IDEAS", "CostSet", "Study", "closed_loop_plan", "cost_set", "log_row_scales", "per_sample_grams", "plan_cost",
           "plan_nodes", "pooled", "regret_db", "run_study"]

FLOOR = 1e-12


@dataclass(frozen=True)
class CostSet:
    """Per-sample costs of one solver for B samples on M nodes (node 0 = t = 0, node n = grid level n - 1).

    Attributes:
        first: (B, M, M) the step j -> i without a previous level; end: (B, M) the last step, j -> 0.
        pairs: (B, M, M, M) float32 the step j -> i after k (multistep solvers), else None.
    """

    solver: str
    first: NDArray[np.float64]
    end: NDArray[np.float64]
    pairs: NDArray[np.float32] | None

    def one(self, b: int) -> SolverCost:
        return SolverCost(self.solver, self.first[b], None if self.pairs is None else self.pairs[b].astype(np.float64),
                          self.end[b])  # fmt: skip

    def mix(self, weights: NDArray[np.float64]) -> SolverCost:
        """The weighted mean (weights (B,), summing to 1) of the samples' costs: the cost of the mixed Gram."""
        nz = np.nonzero(weights)[0]
        w = weights[nz]
        first = np.tensordot(w, self.first[nz], 1)
        end = w @ self.end[nz]
        pairs = None
        if self.pairs is not None:
            pairs = np.zeros(self.pairs.shape[1:])
            for b, wb in zip(nz, w):
                pairs += wb * self.pairs[b]
        return SolverCost(self.solver, first, pairs, end)


def per_sample_grams(states: NDArray[np.floating], x0: NDArray[np.floating]) -> NDArray[np.float64]:
    """(B, 2M, 2M) each sample's Gram ``V·Vᵀ/D`` of its states (B, M, D) then its clean estimates (node 0: the
    endpoint itself), the per-sample terms of :meth:`cotj.predict.teacher.Trajectories.gram`."""
    est = np.array(x0, dtype=np.float64)
    est[:, 0] = states[:, 0]
    v = np.concatenate([np.asarray(states, dtype=np.float64), est], axis=1)
    return np.einsum("bmd,bnd->bmn", v, v) / v.shape[2]


def cost_set(solver: str, grams: NDArray[np.float64], grid: NDArray[np.float64] | None = None) -> CostSet:
    """Per-sample :class:`CostSet` of ``solver`` from per-sample Grams (B, 2M, 2M), floored like the teacher cost."""
    levels = np.append(0.0, default_grid(100) if grid is None else grid)
    firsts, ends, pairs = [], [], []
    for g in grams:
        c = solver_costs(solver, g, levels)
        firsts.append(np.maximum(c.first, FLOOR))
        ends.append(np.maximum(c.end, FLOOR))
        if c.pairs is not None:
            pairs.append(np.maximum(c.pairs, FLOOR).astype(np.float32))
    return CostSet(solver, np.stack(firsts), np.stack(ends), np.stack(pairs) if pairs else None)


def plan_nodes(cost: SolverCost, budget: int, current: int, previous: int | None = None,
               scale: NDArray[np.float64] | None = None) -> NDArray[np.int64]:
    """The cheapest ``budget`` nodes from ``current`` on ``cost`` (rows scaled by ``scale`` (M,))."""
    m = cost.end.size
    w = np.ones(m - 1) if scale is None else scale[1:]
    if cost.pairs is not None:
        steps, _ = plan_multistep(cost, budget, current=current - 1, previous=None if previous is None else previous - 1,
                                  scale=w)
        return steps + 1
    dense = cotj.DenseCost(cost.first[1:, 1:], end=cost.end[1:] * w, scale=w, grid=default_grid(m - 1))
    return cotj.plan_batch(dense, budget, current=current - 1).steps[0].astype(np.int64) + 1


def plan_cost(cost: SolverCost, nodes: Sequence[int] | NDArray[np.int64]) -> float:
    """The summed local error of a plan (nodes, descending) under ``cost``."""
    nodes = [int(n) for n in nodes]
    total = float(cost.end[nodes[-1]])
    for n in range(len(nodes) - 1):
        if n == 0 or cost.pairs is None:
            total += cost.first[nodes[n], nodes[n + 1]]
        else:
            total += cost.pairs[nodes[n - 1], nodes[n], nodes[n + 1]]
    return float(total)


Predictor = Callable[[int, int, list[int]], tuple[SolverCost, NDArray[np.float64] | None]]
"""(sample, current node, nodes visited so far) -> (the cost to plan on, row scale (M,) or None)."""


def closed_loop_plan(predict: Predictor, sample: int, budget: int, top: int = 100) -> list[int]:
    """The nodes a closed-loop sampler visits: it replans on ``predict``'s cost at every visited node."""
    nodes = [top]
    while len(nodes) < budget:
        cost, scale = predict(sample, nodes[-1], nodes)
        prev = nodes[-2] if len(nodes) > 1 and cost.pairs is not None else None
        nodes.append(int(plan_nodes(cost, budget - len(nodes) + 1, nodes[-1], prev, scale)[1]))
    return nodes


def regret_db(own: CostSet, plans: Sequence[Sequence[int]], budget: int) -> NDArray[np.float64]:
    """(B,) each sample's plan's cost over its own optimum's, in dB (0: the per-sample ceiling)."""
    out = []
    for b, nodes in enumerate(plans):
        c = own.one(b)
        best = plan_cost(c, plan_nodes(c, budget, c.end.size - 1))
        out.append(10 * np.log10(plan_cost(c, nodes) / best))
    return np.array(out)


def pooled(x: NDArray[np.float32], side: int = 24, factor: int = 4) -> NDArray[np.float64]:
    """(..., 3·(side/factor)²) average-pooled images of flattened (..., 3·side²) pixel vectors."""
    lead = tuple(x.shape[:-1])
    im = x.reshape(lead + (3, side // factor, factor, side // factor, factor)).astype(np.float64)
    return im.mean(axis=(-1, -3)).reshape(lead + (-1,))


def log_row_scales(costs: CostSet, mean: SolverCost) -> NDArray[np.float64]:
    """(B, M) each sample's log row scale: ``log`` of the mean ratio of its steps from node j (``first[j, :]`` and,
    for multistep solvers, ``pairs[:, j, :]``) to the mean cost's; 0 at node 0 (the definition of
    :func:`cotj.predict.teacher.fit_teacher_cost`, extended to the pair steps)."""
    fin_f = np.isfinite(mean.first)
    out = np.zeros_like(costs.end, dtype=np.float64)
    for b in range(len(out)):
        num = np.where(fin_f, costs.first[b] / np.where(fin_f, mean.first, 1.0), 0.0).sum(1)
        cnt = fin_f.sum(1).astype(np.float64)
        if costs.pairs is not None and mean.pairs is not None:
            fin_p = np.isfinite(mean.pairs)
            num += np.where(fin_p, costs.pairs[b] / np.where(fin_p, mean.pairs, 1.0), 0.0).sum((0, 2))
            cnt += fin_p.sum((0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b] = np.where(cnt > 0, np.log(num / np.maximum(cnt, 1)), 0.0)
    out[:, 0] = 0.0
    return out


@dataclass
class Study:
    """The data of the per-sample study for one solver: calibration runs (C samples) and validation runs (B)."""

    solver: str
    cal_states: NDArray[np.float32]
    cal_x0: NDArray[np.float32]
    val_states: NDArray[np.float32]
    val_x0: NDArray[np.float32]
    cal: CostSet
    own: CostSet
    mean: SolverCost

    def __post_init__(self) -> None:
        self.cal_rows = log_row_scales(self.cal, self.mean)
        self.val_rows = log_row_scales(self.own, self.mean)
        self.levels = np.append(0.0, default_grid(self.mean.end.size - 1))

    def velocity(self, states: NDArray[np.float32], x0: NDArray[np.float32]) -> NDArray[np.float64]:
        """(.., M, D) the flow velocity ``(x - x0_hat)/t`` at every node (0 at node 0)."""
        v = np.zeros(states.shape)
        v[:, 1:] = (states[:, 1:].astype(np.float64) - x0[:, 1:]) / self.levels[1:, None]
        return v


def _ridge(x: NDArray[np.float64], y: NDArray[np.float64], lam: float) -> NDArray[np.float64]:
    x1 = np.concatenate([np.ones((x.shape[0], 1)), x], 1)
    pen = lam * x.shape[0] * np.eye(x1.shape[1])
    pen[0, 0] = 0.0
    return np.linalg.solve(x1.T @ x1 + pen, x1.T @ y)


def _scalar_rows(st: Study, lam: float = 0.04) -> Predictor:
    """Ridge, level by level, of every row's log scale on the two features of :func:`cotj.planning.objectives.row_features`
    (the shipped row model's features, refitted on this solver's row scales)."""
    def feats(states: NDArray[np.float32], x0: NDArray[np.float32]) -> NDArray[np.float64]:
        b, m, d = states.shape
        return row_features(states.reshape(-1, d).astype(np.float64), x0.reshape(-1, d).astype(np.float64)).reshape(b, m, -1)

    fc, fv = feats(st.cal_states, st.cal_x0), feats(st.val_states, st.val_x0)
    center, spread = fc.mean(0), fc.std(0) + 1e-9
    coef = [_ridge((fc[:, j] - center[j]) / spread[j], st.cal_rows, lam) for j in range(fc.shape[1])]

    def predict(b: int, j: int, nodes: list[int]) -> tuple[SolverCost, NDArray[np.float64] | None]:
        z = np.append(1.0, (fv[b, j] - center[j]) / spread[j])
        return st.mean, np.exp(z @ coef[j])

    return predict


def _feedback(st: Study) -> Predictor:
    """The scalar ridge, with the current row's log scale replaced by a regression on the observed error of the
    jump just taken, ``log mean(((t_p - t_j)/2·(v_j - v_p))²)`` (the embedded error estimate of an ODE solver: the
    change of velocity between the previous evaluation p and this one j), fitted per (j, p) on calibration runs."""
    first = _scalar_rows(st)
    vc, vv, t = st.velocity(st.cal_states, st.cal_x0), st.velocity(st.val_states, st.val_x0), st.levels
    cache: dict[tuple[int, int], NDArray[np.float64]] = {}

    def observed(v: NDArray[np.float64], j: int, p: int) -> NDArray[np.float64]:
        return np.log((((t[p] - t[j]) / 2 * (v[:, j] - v[:, p])) ** 2).mean(-1) + 1e-30)

    def predict(b: int, j: int, nodes: list[int]) -> tuple[SolverCost, NDArray[np.float64] | None]:
        cost, scale = first(b, j, nodes)
        if len(nodes) < 2 or scale is None:
            return cost, scale
        p = nodes[-2]
        if (j, p) not in cache:
            cache[j, p] = _ridge(observed(vc, j, p)[:, None], st.cal_rows[:, j : j + 1], 0.0)
        out = scale.copy()
        out[j] = np.exp(cache[j, p][0, 0] + cache[j, p][1, 0] * observed(vv[b : b + 1], j, p)[0])
        return cost, out

    return predict


def _neighbours(st: Study, k: int, costs: bool, history: bool = False) -> Predictor:
    """The k calibration runs nearest to the sample at the current node (standardised 4x4-pooled clean estimates;
    ``history``: summed over every node visited), their mean row scales (``costs`` False) or their mean costs
    (the cost of their mean Gram matrix)."""
    fc, fv = pooled(st.cal_x0, factor=4), pooled(st.val_x0, factor=4)
    spread = fc.std(0) + 1e-9

    def predict(b: int, j: int, nodes: list[int]) -> tuple[SolverCost, NDArray[np.float64] | None]:
        seen = nodes if history else [j]
        d = sum((((fc[:, n] - fv[b, n]) / spread[n]) ** 2).sum(-1) for n in seen)
        near = np.argsort(d)[:k]
        if costs:
            w = np.zeros(d.size)
            w[near] = 1.0 / k
            return st.cal.mix(w), None
        return st.mean, np.exp(st.cal_rows[near]).mean(0)

    return predict


def _oracle(st: Study, rows: str) -> Predictor:
    """The sample's own row scales (an upper reference): ``all`` rows, the ``current`` row only (the scalar ridge
    elsewhere), only ``after_first`` evaluation or the ``first_only`` (the scalar ridge after it)."""
    ridge = _scalar_rows(st)

    def predict(b: int, j: int, nodes: list[int]) -> tuple[SolverCost, NDArray[np.float64] | None]:
        true = np.exp(st.val_rows[b])
        if rows == "all" or (rows == "after_first" and len(nodes) > 1) or (rows == "first_only" and len(nodes) == 1):
            return st.mean, true
        cost, scale = ridge(b, j, nodes)
        if rows == "current" and scale is not None:
            scale = scale.copy()
            scale[j] = true[j]
        return cost, scale

    return predict


IDEAS: dict[str, tuple[str, Callable[[Study], Predictor]]] = {
    "mean": ("data-set cost (GITS-style, the calibration mean), open loop", lambda st: lambda b, j, n: (st.mean, None)),
    "scalar_rows": ("row scales from the two scalars (the shipped row model's features)", _scalar_rows),
    "feedback": ("the scalars, current row from the observed error of the last jump", _feedback),
    "knn_rows": ("row scales of the 8 nearest calibration runs (pooled x0_hat)", lambda st: _neighbours(st, 8, False)),
    "knn_costs": ("costs of the 8 nearest calibration runs (pooled x0_hat)", lambda st: _neighbours(st, 8, True)),
    "knn_costs_history": ("the same, distance summed over the visited nodes", lambda st: _neighbours(st, 8, True, True)),
    "oracle_rows": ("oracle: the sample's own row scales", lambda st: _oracle(st, "all")),
    "oracle_current_row": ("oracle: own current row only, scalar ridge elsewhere", lambda st: _oracle(st, "current")),
    "oracle_after_first": ("oracle: own row scales after the first evaluation", lambda st: _oracle(st, "after_first")),
    "oracle_first_only": ("oracle: own row scales for the first decision only", lambda st: _oracle(st, "first_only")),
}
"""Cost predictors of the study: key -> (description, factory)."""


def run_study(store: str | Path, solver: str, budgets: Sequence[int], ideas: Sequence[str],
              calibration: str = "calibration", validation: str = "validation") -> dict[str, dict[int, float]]:
    """Mean regret (dB, :func:`regret_db`) of each idea's simulated closed loop at each budget, on the validation
    runs, with predictors fitted on the calibration runs (:mod:`cotj_testbed.trajectory_store`)."""
    from cotj_testbed.trajectory_store import load

    cal, val = load(store, calibration), load(store, validation)
    cal_costs = cost_set(solver, cal.grams())
    own = cost_set(solver, val.grams())
    w = np.full(cal_costs.end.shape[0], 1.0 / cal_costs.end.shape[0])
    st = Study(solver, cal.states, cal.x0, val.states, val.x0, cal_costs, own, cal_costs.mix(w))
    out: dict[str, dict[int, float]] = {}
    for name in ideas:
        predict = IDEAS[name][1](st)
        out[name] = {k: float(regret_db(own, [closed_loop_plan(predict, b, k) for b in range(own.end.shape[0])], k).mean())
                     for k in budgets}  # fmt: skip
        log.info("%s %s: %s", solver, name, out[name])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = outputs.Parser(prog="python -m cotj_testbed.per_sample",
                            description="Per-sample planning study: regret of cost predictors on the validation runs.",
                            epilog="About 3 min (--solver euler) and 8 min (--solver unipc) on two cores (docs/results.md).")
    parser.add_argument("store", type=Path, help="teacher runs written by python -m cotj_testbed.trajectory_store")
    parser.add_argument("--solver", default="euler", choices=[n for n, s in SOLVERS.items() if s.replans])
    parser.add_argument("--ks", type=outputs.int_list, default=(4, 6, 10), help="budgets, comma-separated")
    parser.add_argument("--ideas", default=",".join(IDEAS), help=f"comma-separated, of {', '.join(IDEAS)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ideas = args.ideas.split(",")
    unknown = set(ideas) - set(IDEAS)
    if unknown:
        parser.error(f"unknown ideas {sorted(unknown)}")
    try:
        outputs.need_dir(args.store, "store", ["calibration_0.npz", "validation_0.npz"], "python -m cotj_testbed.trajectory_store")
    except outputs.UsageError as exc:
        outputs.fail(parser, exc)
    ks = list(args.ks)
    table = run_study(args.store, args.solver, ks, ideas)
    print(f"| {args.solver}: idea | " + " | ".join(f"K={k}" for k in ks) + " |\n|---|" + "---|" * len(ks))
    for name, row in table.items():
        print(f"| {IDEAS[name][0]} | " + " | ".join(f"{row[k]:.2f}" for k in ks) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
