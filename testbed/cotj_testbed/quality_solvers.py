"""The solver study of the quality benchmark: every solver on the same plans, at equal NFE.

For each NFE budget n and each solver of :mod:`cotj.execute.solvers` (Euler, Heun, DPM-Solver++(2M), UniPC), the
solver gets the most levels it can run within n model evaluations (:func:`cotj.planning.solvers.budget_for`: Heun
spends two per level) and runs every schedule of :data:`SCHEDULES` at that many levels, from the same noise as the
main benchmark, scored against the same reference (:mod:`cotj_testbed.quality`):

- the fixed "uniform" and "shift3" levels and the "gits" data-set schedule;
- "ld3": an LD3-style data-set schedule, the K levels learnt by gradient descent through this solver on the
  calibration samples (:func:`cotj_testbed.ld3.ld3_schedule`; not for Heun);
- cotj's default objective ("teacher": the teacher cost, first-order steps) and the paper's ("cotj_pred");
- "solver_aware": the teacher cost of *this* solver's steps (:meth:`cotj.planning.objectives.TeacherCost.plan`,
  docs/method.md §11), a data-set schedule made for the solver; for Euler it is "teacher" and is not run twice;
- "closed_loop": that cost replanned after every evaluation from what the sample shows
  (:func:`cotj.execute.replan.replan_sample` with the solver; for Euler cotj's default). Heun, which evaluates
  twice per level, is not replanned.

The reference point of "NFE to match" is the main benchmark's: uniform Euler at 50 steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from cotj.execute.replan import Replanner, replan_sample
from cotj.execute.solvers import solve
from cotj.planning.schedules import uniform
from cotj.planning.solvers import SOLVERS, budget_for
from cotj_testbed.ld3 import ld3_schedule
from cotj_testbed.outputs import bar_disable
from cotj_testbed.per_sample import CostSet, cost_set, per_sample_grams, plan_nodes
from cotj_testbed.quality import MATCH_STEPS, Problem, _scores, _summary, crossing, grid_cost, schedule_levels

__all__ = ["DATASET_SCHEDULES", "DEFAULT", "NFES", "SCHEDULES", "ceiling_levels", "evaluate_solvers", "headroom", "paired",
           "schedule_for_solver", "solver_findings"]

log = logging.getLogger(__name__)

NFES: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 15, 20, 30)
"""NFE budgets of the solver study."""
SCHEDULES: dict[str, str] = {
    "uniform": "uniform",
    "shift3": "SD3 shift 3",
    "gits": "GITS-style (data set)",
    "cotj_pred": "CoTj paper objective (predicted DNA)",
    "teacher": "cotj default objective (teacher cost, first-order)",
    "solver_aware": "teacher cost of this solver's steps",
    "closed_loop": "solver-aware teacher cost, closed loop",
    "ceiling": "per-sample ceiling (this solver's cost on the sample's own teacher run)",
    "ld3": "LD3-style (levels learnt through this solver, data set)",
}
"""Schedules of the solver study: JSON key -> display name."""


def schedule_for_solver(problem: Problem, name: str, solver: str, k: int) -> NDArray[np.float64] | None:
    """(B, K) levels of open-loop schedule ``name`` at K levels for ``solver``; None when the run would repeat
    another ("solver_aware" for Euler is "teacher")."""
    if name == "ceiling":
        return ceiling_levels(problem, solver, k)
    if name == "ld3":
        return ld3_schedule(problem, solver, k)  # None for Heun
    if name != "solver_aware":
        return schedule_levels(problem, name, k)
    if solver == "euler":
        return None
    if problem.teacher_cost is None:
        raise ValueError("solver_aware needs the problem's teacher cost")
    return np.tile(problem.teacher_cost.plan(solver, k).levels, (problem.noise.shape[0], 1))  # needs its Gram matrix


_CEILING_COSTS: dict[str, CostSet] = {}
_CEILING_RUNS: list[Any] = []  # the teacher runs whose per-sample costs _CEILING_COSTS holds, by solver


def ceiling_levels(problem: Problem, solver: str, k: int) -> NDArray[np.float64]:
    """(B, K) each held-out sample's cheapest K levels for ``solver`` on its own teacher run (its own Gram matrix,
    :func:`cotj_testbed.per_sample.cost_set`): an OSS-style per-sample ceiling for any solver, which needs the
    sample's 100-step run and so is no sampler."""
    if not _CEILING_RUNS or _CEILING_RUNS[0] is not problem.teacher:  # another problem: its own runs
        _CEILING_COSTS.clear()
        _CEILING_RUNS[:] = [problem.teacher]
    if solver not in _CEILING_COSTS:
        _CEILING_COSTS[solver] = cost_set(solver, per_sample_grams(problem.teacher.states, problem.teacher.x0),
                                          problem.teacher.levels[1:])  # fmt: skip
    own = _CEILING_COSTS[solver]
    top = own.end.shape[1] - 1
    return np.stack([problem.teacher.levels[plan_nodes(own.one(b), k, top)] for b in range(own.end.shape[0])])


def evaluate_solvers(problem: Problem, nfes: Sequence[int] = NFES, solvers: Sequence[str] = tuple(SOLVERS),
                     schedules: Sequence[str] = tuple(SCHEDULES), *, progress: bool = True) -> dict[str, Any]:
    """Run every (solver, schedule, NFE) and score it; returns ``{"solvers": {solver: {schedule: {NFE: summary}}},
    "uniform_50": summary, "nfes": [...], "findings": ...}`` (:func:`solver_findings`). A summary is the main
    benchmark's (:func:`cotj_testbed.quality.evaluate`) plus the levels count ``k`` and the NFE actually spent."""
    unknown = (set(solvers) - set(SOLVERS)) | (set(schedules) - set(SCHEDULES))
    if unknown:
        raise ValueError(f"unknown solvers or schedules {sorted(unknown)}; solvers: {list(SOLVERS)}, schedules: {list(SCHEDULES)}")
    runs = [(s, name, n) for s in solvers for name in schedules for n in nfes]
    results: dict[str, Any] = {"solvers": {s: {name: {} for name in schedules} for s in solvers}, "nfes": list(nfes),
                               "schedule_names": {k: SCHEDULES[k] for k in schedules}}  # fmt: skip
    reference = [("euler", "uniform_50", MATCH_STEPS)]
    for solver, name, n in tqdm(reference + runs, desc="solver runs", unit="run", disable=bar_disable(progress)):
        k = budget_for(solver, n) if name != "uniform_50" else n
        if name == "closed_loop":
            if solver == "heun" or problem.teacher_cost is None:
                continue
            replanner = Replanner(problem.teacher_cost, k, solver=solver)
            x, levels = replan_sample(problem.denoiser, problem.noise, problem.cond, replanner, prediction=problem.prediction)
        else:
            planned = np.tile(uniform(k), (problem.noise.shape[0], 1)) if name == "uniform_50" else \
                schedule_for_solver(problem, name, solver, k)  # fmt: skip
            if planned is None:
                continue
            levels = planned
            x = solve(problem.denoiser, problem.noise, problem.cond, levels, solver, prediction=problem.prediction,
                      batch_size=problem.batch_size)
        summary = _summary(_scores(problem, x), levels, grid_cost(problem.dna, levels, problem.grid), None)
        summary.update(k=int(k), nfe=int(n), psnr_samples=[round(float(v), 4) for v in _scores(problem, x)["psnr"]])
        if name == "uniform_50":
            results["uniform_50"] = summary
        else:
            results["solvers"][solver][name][str(n)] = summary
    results["findings"] = solver_findings(results)
    return results


def solver_findings(results: dict[str, Any]) -> dict[str, Any]:
    """What the table says: the best (solver, schedule) pairing at each NFE, each pairing's NFE to match uniform
    Euler at 50 steps, and for each higher-order solver the gain of its best schedule over Euler's best at each
    NFE (where it stops paying: the gain falls to 0 or below)."""
    nfes, by_solver = results["nfes"], results["solvers"]
    target = results["uniform_50"]["psnr"]

    def psnr(solver: str, name: str, n: int) -> float | None:
        run = by_solver[solver].get(name, {}).get(str(n))
        return None if run is None else run["psnr"]

    best: dict[str, Any] = {}
    for n in nfes:
        cands = [(p, s, name) for s in by_solver for name in by_solver[s]
                 if name != "ceiling" and (p := psnr(s, name, n)) is not None]  # the ceiling is no sampler
        p, s, name = max(cands)
        best[str(n)] = {"solver": s, "schedule": name, "psnr": p}
    match = {s: {name: crossing(nfes, [psnr(s, name, n) for n in nfes], target)[1] for name in by_solver[s]
                 if any(psnr(s, name, n) is not None for n in nfes)} for s in by_solver}  # fmt: skip

    def best_of(solver: str, n: int) -> float | None:
        vals = [p for name in by_solver[solver] if name != "ceiling" and (p := psnr(solver, name, n)) is not None]
        return max(vals) if vals else None

    gain = {}
    if "euler" in by_solver:
        for s in by_solver:
            if s != "euler":
                gain[s] = {str(n): (None if (a := best_of(s, n)) is None or (b := best_of("euler", n)) is None
                                    else a - b) for n in nfes}  # fmt: skip
    return {"target_psnr": target, "best": best, "nfe_to_match_uniform_50": match, "gain_over_euler": gain,
            "headroom": headroom(results)}


DATASET_SCHEDULES = ("uniform", "shift3", "gits", "teacher", "solver_aware", "ld3")
"""The schedules that give every sample the same levels (fixed formulas and data-set schedules)."""
DEFAULT = ("unipc", "closed_loop")
"""cotj's default pairing (:func:`cotj.execute.pipeline.default_solver`)."""


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean paired difference ``a - b`` of per-sample scores and its 95 % interval (normal approximation,
    ``1.96·sd/sqrt(n)``)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
    return {"mean": float(d.mean()), "half_width": float(half), "n": int(d.size)}


def headroom(results: dict[str, Any]) -> dict[str, Any]:
    """Per NFE: the best data-set pairing (:data:`DATASET_SCHEDULES` on any solver, by mean PSNR), the default
    (:data:`DEFAULT`), the default solver's per-sample ceiling, the default's paired difference to the best
    data-set pairing (95 % interval), and the share of the gap from that pairing to the ceiling the default
    recovers."""
    by_solver, out = results["solvers"], {}
    solver, name = DEFAULT
    for n in results["nfes"]:
        cands = [(run["psnr"], s, sched, run) for s in by_solver for sched in DATASET_SCHEDULES
                 if (run := by_solver[s].get(sched, {}).get(str(n))) is not None]  # fmt: skip
        default = by_solver.get(solver, {}).get(name, {}).get(str(n))
        if not cands or default is None:
            continue
        psnr, s, sched, best = max(cands, key=lambda c: c[0])
        row: dict[str, Any] = {"best_dataset": {"solver": s, "schedule": sched, "psnr": psnr}, "default": default["psnr"]}
        if "psnr_samples" in default and "psnr_samples" in best:
            row["default_minus_best_dataset"] = paired(default["psnr_samples"], best["psnr_samples"])
        ceiling = by_solver.get(solver, {}).get("ceiling", {}).get(str(n))
        if ceiling is not None:
            row["ceiling"] = ceiling["psnr"]
            gap = ceiling["psnr"] - psnr
            row["share_of_gap"] = (default["psnr"] - psnr) / gap if gap > 0 else None
        out[str(n)] = row
    return out
