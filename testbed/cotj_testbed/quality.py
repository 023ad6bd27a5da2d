"""The quality benchmark (issue 5): schedules of K steps against the reference endpoint of the same noise.

For each held-out condition one noise is drawn (seeded by the condition alone) and every schedule samples
from it with a first-order solver (Euler on the flow, DDIM on a VP path: :func:`cotj.execute.solvers.solve`). The
schedules: uniform in t, SD3's shift 3, EDM's rho = 7 mapped to the flow, a GITS-style data-set schedule and
an OSS-style per-sample optimum (:mod:`cotj_testbed.baselines`), and CoTj planned from the training set's
mean DNA, from the predicted DNA, from the true DNA of that very sample (oracle), and adaptive (tau = 0.99,
predicted DNA). Every schedule starts from the noise itself at its first level, as Diffusers pipelines do
when given ``sigmas=``. The reference endpoint: the exact ODE solution (Tier 1, :mod:`cotj.models.analytic`)
or a 100-step Euler sample (Tier 2, the shapes model). Metrics: per-sample MSE to the reference and PSNR
``10·log10(R²/MSE)`` averaged over samples, R the stated data range (Tier 1: the peak-to-peak range of the
reference endpoints; Tier 2: 1, images in [0, 1]); on Tier 2 also the attribute accuracy of
:mod:`cotj_testbed.classifier`.

Entry points: :func:`cotj_testbed.quality_tier1.run_tier1` and :func:`cotj_testbed.quality_tier2.run_tier2` (both
return a results dict) and :func:`cotj_testbed.quality_report.write_report` (JSON, markdown, plots); ``benches/quality.py`` is
the command line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm.auto import tqdm

import cotj
from cotj.execute.replan import Replanner, replan_sample
from cotj.execute.solvers import solve
from cotj.planning.objectives import TeacherCost, objective
from cotj.planning.schedules import karras, shifted, uniform
from cotj.predict import DNAPredictor, cosine_scores, train_predictor
from cotj.predict.teacher import Trajectories
from cotj_testbed import baselines
from cotj_testbed.outputs import bar_disable

__all__ = [
    "KS",
    "MATCH_STEPS",
    "SCHEDULES",
    "TEACHER_SCHEDULES",
    "Problem",
    "closed_loop_sample",
    "cost_curves",
    "crossing",
    "evaluate",
    "grid_cost",
    "planning_time",
    "predict_dna",
    "predictor_report",
    "schedule_levels",
]

log = logging.getLogger(__name__)

KS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 15, 20, 25)
"""Step budgets (NFE) of the benchmark."""
LONG_KS: tuple[int, ...] = (30, 40, 50)
"""Longer budgets the full runs add, so that "NFE to match uniform-50" can be read off for every schedule."""
SCHEDULES: dict[str, str] = {
    "uniform": "uniform",
    "shift3": "SD3 shift 3",
    "karras": "Karras rho=7",
    "gits": "GITS-style (data set)",
    "oss": "OSS-style (per sample, upper ref.)",
    "cotj_mean": "CoTj mean DNA",
    "cotj_pred": "CoTj predicted DNA",
    "cotj_oracle": "CoTj true DNA (oracle)",
    "teacher": "teacher cost (open loop)",
    "calibrated_pred": "calibrated, predicted DNA",
    "calibrated_oracle": "calibrated, true DNA (oracle)",
    "closed_loop": "teacher cost, closed-loop replanning",
    "closed_loop_pred": "calibrated (predicted DNA), closed loop",
    "closed_loop_oracle": "calibrated (true DNA), closed loop",
}
"""Fixed-budget schedules: JSON key -> display name. The adaptive run is ``cotj_adaptive``. The "cotj_*" rows
plan with the paper's objective; "teacher", "calibrated_*" and "closed_loop" with the measured jump costs of
:func:`cotj.predict.calibrate` on the calibration set (:mod:`cotj.planning.objectives`, :mod:`cotj.execute.replan`)."""
TEACHER_SCHEDULES = ("teacher", "calibrated_pred", "calibrated_oracle", "closed_loop", "closed_loop_pred", "closed_loop_oracle")
"""The schedules that need the problem's teacher cost."""
MATCH_STEPS = 50
"""The uniform budget whose quality the "NFE to match" column asks for."""


# ---------------------------------------------------------------------------------------------- sampling


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Problem:
    """What one benchmark run compares schedules on (B held-out samples, a grid of N levels).

    Attributes:
        denoiser: ``model(x_t, t, cond) -> prediction`` sampled by every schedule.
        prediction: what it predicts ("flow" for both tiers).
        noise: (B, ...) one noise per held-out condition. cond: (B, ...) the conditions.
        reference: (B, ...) the reference endpoint of each noise.
        teacher: trajectories of the B held-out samples (the OSS-style schedules plan on them).
        calibration: trajectories of training samples (the GITS-style schedule).
        grid: (N,) the DNA grid. dna: (B, N) true DNA of the held-out samples (same noise and reference).
        mean_dna: (N,) training-set mean DNA. predicted_dna: (B, N) predicted and aligned DNA.
        output: final state -> metric space (identity; Tier 2: image in [0, 1]).
        data_range: R of the PSNR.
        accuracy: optional ``accuracy(images) -> {attribute: accuracy}`` (Tier 2).
        batch_size: rows per model call while sampling.
        teacher_cost: the model's measured jump costs (:func:`cotj.predict.calibrate` on training samples) for
            the :data:`TEACHER_SCHEDULES`; None leaves them out.
        calibration_cond: (C, ...) the conditions of the ``calibration`` samples (the LD3-style schedule,
            :mod:`cotj_testbed.ld3`); None: no LD3 schedule.
        grad_denoiser: the same model, differentiable in its inputs (no ``no_grad`` inside, weights frozen), for
            the LD3-style schedule; None: ``denoiser``.
    """

    denoiser: Any
    prediction: str
    noise: torch.Tensor
    cond: torch.Tensor
    reference: torch.Tensor
    teacher: Trajectories
    calibration: Trajectories
    grid: NDArray[np.float64]
    dna: NDArray[np.float64]
    mean_dna: NDArray[np.float64]
    predicted_dna: NDArray[np.float64]
    output: Callable[[torch.Tensor], torch.Tensor]
    data_range: float
    accuracy: Callable[[torch.Tensor], dict[str, float]] | None = None
    batch_size: int | None = None
    teacher_cost: TeacherCost | None = None
    calibration_cond: Any = None
    grad_denoiser: Any = None


def schedule_levels(problem: Problem, name: str, k: int) -> NDArray[np.float64]:
    """(B, K) levels of open-loop schedule ``name`` (a :data:`SCHEDULES` key but "closed_loop") at budget K for
    every held-out row."""
    b = problem.noise.shape[0]
    if name in TEACHER_SCHEDULES:
        tc = problem.teacher_cost
        if tc is None or name.startswith("closed_loop"):
            raise ValueError(f"{name!r} needs a teacher cost and is not an open-loop schedule" if tc is None else
                             "closed_loop has no levels before it runs: use closed_loop_sample")  # fmt: skip
        dna = {"calibrated_pred": problem.predicted_dna, "calibrated_oracle": problem.dna}.get(name)
        cost = objective("teacher", teacher=tc) if dna is None else objective("calibrated", dna=dna, mean_dna=problem.mean_dna, teacher=tc)
        levels = cotj.plan_batch(cost, k, current=tc.grid.size - 1).levels  # teacher runs start at the top
        return np.tile(levels, (b // levels.shape[0], 1))
    fixed = {"uniform": uniform, "shift3": shifted, "karras": karras}
    if name in fixed:
        return np.tile(fixed[name](k), (b, 1))
    if name == "gits":
        return np.tile(baselines.gits(problem.calibration, k), (b, 1))
    if name == "oss":
        return baselines.oss(problem.teacher, k)
    if name == "cotj_mean":
        return np.tile(cotj.plan(problem.mean_dna, k, grid=problem.grid).levels, (b, 1))
    dna = {"cotj_pred": problem.predicted_dna, "cotj_oracle": problem.dna}.get(name)
    if dna is None:
        raise ValueError(f"unknown schedule {name!r}; known: {sorted(SCHEDULES)}")
    return cotj.plan_batch(dna, k, grid=problem.grid).levels


def closed_loop_sample(problem: Problem, k: int, name: str = "closed_loop") -> tuple[torch.Tensor, NDArray[np.float64]]:
    """Sample every held-out row with K evaluations, replanning after each (:func:`cotj.execute.replan.replan_sample`
    on the problem's teacher cost; "closed_loop_pred" / "_oracle" add the predicted / true DNA's log ratio to the
    mean DNA as the prior row scale): (final states, (B, K) levels)."""
    if problem.teacher_cost is None:
        raise ValueError("closed_loop needs the problem's teacher cost")
    dna = {"closed_loop_pred": problem.predicted_dna, "closed_loop_oracle": problem.dna}.get(name)
    prior = None if dna is None else np.log(dna / problem.mean_dna)
    replanner = Replanner(problem.teacher_cost, k, prior)
    return replan_sample(problem.denoiser, problem.noise, problem.cond, replanner, prediction=problem.prediction)


def grid_cost(dna: NDArray[np.float64], levels: NDArray[np.float64], grid: NDArray[np.float64]) -> NDArray[np.float64]:
    """(B,) the CoTj cost (:func:`cotj.plan_cost`) of each row's levels snapped to the nearest grid level,
    on that row's DNA; NaN where snapping merges two levels (e.g. Karras below the grid's bottom)."""
    out = np.full(len(dna), np.nan)
    for b, row in enumerate(levels):
        steps = np.abs(grid[None, :] - row[np.isfinite(row), None]).argmin(axis=1)
        if np.all(np.diff(steps) < 0):
            out[b] = cotj.plan_cost(dna[b], steps, grid=grid)
    return out


def _scores(problem: Problem, x: torch.Tensor) -> dict[str, Any]:
    """Per-sample MSE (B,) and PSNR (B,) of final states ``x`` against the reference, in metric space."""
    err = (problem.output(x).double() - problem.output(problem.reference).double()).pow(2).flatten(1).mean(1).numpy()
    return {"mse": err, "psnr": 10.0 * np.log10(problem.data_range**2 / np.maximum(err, 1e-30))}


def _summary(scores: dict[str, Any], levels: NDArray[np.float64], cost: NDArray[np.float64],
             accuracy: dict[str, float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"mse": float(scores["mse"].mean()), "psnr": float(scores["psnr"].mean()),
           "psnr_median": float(np.median(scores["psnr"])),
           "cost": float(np.nanmean(cost)) if np.isfinite(cost).any() else None,
           "levels_mean": [float(v) for v in np.nanmean(levels, axis=0)]}  # fmt: skip
    if accuracy is not None:
        out["accuracy"] = accuracy
    return out


def evaluate(problem: Problem, ks: Sequence[int] = KS, tau: float = 0.99, *, progress: bool = True,
             samples: dict[str, NDArray[np.float64]] | None = None, schedules: Sequence[str] | None = None) -> dict[str, Any]:
    """Sample every schedule at every budget and score it.

    Returns ``{"schedules": {name: {K: summary}}, "adaptive": summary + NFE, "uniform_50": summary,
    "nfe_to_match_uniform_50": {name: ...}, "cost_curves": ...}`` (:func:`cost_curves`); a summary holds the
    mean MSE, mean and median PSNR, the mean CoTj cost of the (grid-snapped) schedule on the true DNA
    (:func:`grid_cost`), the mean level at each step position and, on Tier 2, the attribute accuracy. If ``samples`` is a dict it receives, for
    every run ``"{name}/K{k}"`` (``cotj_adaptive/Ktau`` for the adaptive run, ``uniform_50/K50`` when 50 is
    not among ``ks``), the final outputs (``.../x``) and the levels (``.../levels``, (B, K), NaN padded).
    ``schedules`` limits the run to those :data:`SCHEDULES` keys (uniform always runs: the reference of NFE to match).
    """
    adaptive = cotj.plan_batch(problem.predicted_dna, grid=problem.grid, tau=tau)
    unknown = set(schedules or ()) - set(SCHEDULES)
    if unknown:
        raise ValueError(f"unknown schedules {sorted(unknown)}; known: {sorted(SCHEDULES)}")
    names = [n for n in SCHEDULES if (problem.teacher_cost is not None or n not in TEACHER_SCHEDULES)
             and (schedules is None or n in schedules or n == "uniform")]  # fmt: skip
    runs: list[tuple[str, str, Any]] = [(name, str(k), None if name.startswith("closed_loop") else schedule_levels(problem, name, k))
                                        for name in names for k in ks]  # fmt: skip
    runs.append(("cotj_adaptive", "tau", adaptive.levels))
    if MATCH_STEPS not in ks:
        runs.append(("uniform_50", str(MATCH_STEPS), uniform(MATCH_STEPS)))
    results: dict[str, Any] = {"schedules": {name: {} for name in names}}
    for name, k, levels in tqdm(runs, desc="schedules", unit="run", disable=bar_disable(progress)):
        if levels is None:
            x, levels = closed_loop_sample(problem, int(k), name)
        else:
            x = solve(problem.denoiser, problem.noise, problem.cond, levels, "euler", prediction=problem.prediction,
                      batch_size=problem.batch_size)
        rows = np.tile(levels, (len(problem.dna), 1)) if levels.ndim == 1 else levels
        acc = problem.accuracy(problem.output(x)) if problem.accuracy is not None else None
        summary = _summary(_scores(problem, x), rows, grid_cost(problem.dna, rows, problem.grid), acc)
        if samples is not None:
            samples[f"{name}/K{k}/x"] = problem.output(x).double().numpy()
            samples[f"{name}/K{k}/levels"] = rows
        if name == "cotj_adaptive":
            nfe = adaptive.lengths
            summary.update(tau=tau, nfe_mean=float(nfe.mean()), nfe_min=int(nfe.min()), nfe_max=int(nfe.max()))
            results["adaptive"] = summary
        elif name == "uniform_50":
            results["uniform_50"] = summary
        else:
            results["schedules"][name][k] = summary
    results.setdefault("uniform_50", results["schedules"]["uniform"].get(str(MATCH_STEPS)))
    results["nfe_to_match_uniform_50"] = _nfe_to_match(results, ks)
    results["cost_curves"] = cost_curves(problem)
    return results


def cost_curves(problem: Problem, jump: int = 10) -> dict[str, list[float]]:
    """What a jump of ``jump`` grid levels costs, by its starting level t_j (held-out means): the realised
    squared local error of one first-order step from the teacher's state (:attr:`Trajectories.jump_costs`,
    what GITS/OSS minimise), CoTj's edge cost ``d_j·L(j, i)`` on the true DNA (the final jump to 0: ``d_j``),
    and the mean DNA ``d_j`` itself. Grid and teacher levels must agree (teacher level m = grid level m - 1)."""
    t = problem.teacher.levels
    if not np.allclose(t[1:], problem.grid):
        raise ValueError("the teacher's levels must be 0 followed by the DNA grid")
    src = np.arange(jump, t.size)
    lever = ((t[src] - t[src - jump]) / t[src]) ** 2
    return {"t": t[src].tolist(), "t_next": t[src - jump].tolist(),
            "teacher": problem.teacher.jump_costs[:, src, src - jump].mean(0).tolist(),
            "cotj": (problem.dna[:, src - 1] * lever).mean(0).tolist(),
            "dna": problem.dna[:, src - 1].mean(0).tolist()}  # fmt: skip


def crossing(budgets: Sequence[int], psnr: Sequence[float | None], target: float) -> tuple[int | None, float | None]:
    """Where a PSNR-against-budget polyline first reaches ``target``: (the index of that budget, the NFE where it
    crosses, linear between neighbouring budgets), or (None, None). None entries (runs not made) never reach it."""
    for i, p in enumerate(psnr):
        if p is not None and p >= target:
            prev = psnr[i - 1] if i else None
            if prev is None or p <= prev:
                return i, float(budgets[i])
            return i, float(budgets[i - 1] + (target - prev) / (p - prev) * (budgets[i] - budgets[i - 1]))
    return None, None


def _nfe_to_match(results: dict[str, Any], ks: Sequence[int]) -> dict[str, Any]:
    """Per schedule, the smallest benchmark K whose mean PSNR reaches uniform-50's, and the NFE where the
    PSNR-against-K polyline crosses it (:func:`crossing`); None if no K reaches it."""
    target = results["uniform_50"]["psnr"]
    out: dict[str, Any] = {"target_psnr": target}
    for name, by_k in results["schedules"].items():
        hit, nfe = crossing(ks, [by_k[str(k)]["psnr"] for k in ks], target)
        out[name] = {"k": ks[hit] if hit is not None else None, "nfe": nfe}
    ad = results["adaptive"]
    out["cotj_adaptive"] = {"k": None, "nfe": ad["nfe_mean"] if ad["psnr"] >= target else None}
    return out


def predict_dna(emb_train: NDArray[np.float64], dna_train: NDArray[np.float64], emb_test: NDArray[np.float64],
                dna_test: NDArray[np.float64], epochs: int, seed: int, progress: bool
                ) -> tuple[NDArray[np.float64], dict[str, Any], DNAPredictor]:
    """Train the DNA predictor (cosine loss, docs/method.md §8) and predict the held-out DNA (aligned to the training
    mean). Returns it, :func:`predictor_report` (plus the validation cosine) and the predictor."""
    model, report = train_predictor(emb_train, dna_train, epochs=epochs, seed=seed, progress=progress)
    info = predictor_report(model, emb_test, dna_test)
    info.update(validation_cosine_mean=report.validation.mean, best_epoch=report.best_epoch, n_train=int(len(dna_train)))
    return model.predict(emb_test), info, model


def predictor_report(model: DNAPredictor, emb_test: NDArray[np.float64], dna_test: NDArray[np.float64],
                     levels: Sequence[float] = (0.01, 0.1, 0.5, 0.9, 1.0), ks: Sequence[int] = (4, 6, 10)) -> dict[str, Any]:
    """How good a DNA predictor is on held-out prompts, against the alternative of using its mean DNA for all.

    Cosine (the paper's figure: mean/median of the raw prediction, and of the aligned one); the median
    ``|log(pred/true)|`` at ``levels`` (the planner uses DNA ratios across the whole range); and the paper
    objective's plan regret at budgets ``ks``: the true-DNA cost of the plan made from the prediction minus that of
    the oracle plan (mean over prompts; 0 is perfect).
    """
    heldout = cosine_scores(model, emb_test, dna_test)
    mean, predicted = model.mean_dna.double().cpu().numpy(), model.predict(emb_test)
    grid = cotj.default_grid(dna_test.shape[1])

    def cosine(a: NDArray[np.float64]) -> NDArray[np.float64]:
        return (a * dna_test).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(dna_test, axis=1))

    def regret(source: NDArray[np.float64], k: int) -> float:
        plans = cotj.plan_batch(source, k)
        made = [cotj.plan_cost(d, p.steps) for d, p in zip(dna_test, plans)]
        return float(np.mean(np.array(made) - cotj.plan_batch(dna_test, k).cost))

    idx = [int(np.abs(grid - t).argmin()) for t in levels]
    flat, aligned = cosine(np.tile(mean, (len(dna_test), 1))), cosine(predicted)
    log_err = {name: {f"{grid[i]:.2f}": float(np.median(np.abs(np.log(src[:, i] / dna_test[:, i])))) for i in idx}
               for name, src in (("predicted", predicted), ("mean_dna", np.tile(mean, (len(dna_test), 1))))}  # fmt: skip
    return {"heldout_cosine_mean": heldout.mean, "heldout_cosine_median": heldout.median,
            "aligned_cosine_mean": float(aligned.mean()), "aligned_cosine_median": float(np.median(aligned)),
            "mean_dna_cosine_mean": float(flat.mean()), "mean_dna_cosine_median": float(np.median(flat)),
            "median_abs_log_error": log_err,
            "plan_regret": {name: {str(k): regret(src, k) for k in ks}
                            for name, src in (("predicted", predicted), ("mean_dna", np.tile(mean, (len(dna_test), 1))))},
            "n_heldout": int(len(dna_test)), "in_dim": int(emb_test.shape[1])}  # fmt: skip


def planning_time(dna: NDArray[np.float64], k: int = 10, tau: float = 0.99, *, pipe: Any = None,
                  repeats: int = 200, step_repeats: int = 20) -> dict[str, Any]:
    """Median wall time (ms, this process's threads) of planning one prompt against one denoising step
    of the Tier 2 model.

    Planning: a fixed-budget plan (K = ``k``) and an adaptive one (``tau``, up to N/2 steps) of the DNA row
    (N,), and one forward pass of a DNA predictor of the Tier 2 size (MiniLM width 384 -> N; untrained:
    the weights do not change the time). The step: one guided velocity evaluation of ``pipe`` (a
    ShapesPipeline; default the shipped weights, else the same architecture randomly initialised) on one
    24 x 24 image, i.e. the UNet on a batch of 2 (conditional and null prompt), guidance 2.
    """
    from cotj.models import generator as shapes_model
    from cotj.models.text import EMBED_DIM, MAX_TOKENS

    def median_ms(fn: Callable[[], Any], n: int) -> float:
        fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(times))

    weights = "given pipeline"
    if pipe is None:
        try:
            pipe, weights = shapes_model.ShapesPipeline.from_shipped(), str(shapes_model.WEIGHTS)
        except FileNotFoundError:
            torch.manual_seed(0)
            pipe = shapes_model.ShapesPipeline(shapes_model.build_unet().eval(), shapes_model.flow_scheduler())
            weights = "random initialisation (no trained weights yet; same architecture, same cost)"
    predictor = DNAPredictor(EMBED_DIM, dna.shape[0]).eval()
    emb = np.random.default_rng(0).standard_normal(EMBED_DIM)
    side = pipe.unet.config.sample_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, 3, side, side), generator=gen)
    tokens = torch.randn((1, MAX_TOKENS, EMBED_DIM), generator=gen)
    null = torch.zeros((1, MAX_TOKENS, EMBED_DIM))

    def step() -> torch.Tensor:  # the guided velocity, as ShapesPipeline.velocity computes it for g = 2
        with torch.no_grad():
            v_null, v_cond = pipe.unet(torch.cat([x, x]), torch.full((2,), 500.0), torch.cat([null, tokens])).sample.chunk(2)
        return v_null + 2.0 * (v_cond - v_null)

    out: dict[str, Any] = {"plan_ms": median_ms(lambda: cotj.plan(dna, k), repeats),
           "plan_adaptive_ms": median_ms(lambda: cotj.plan(dna, tau=tau), repeats),
           "predictor_ms": median_ms(lambda: predictor.predict(emb), repeats),
           "unet_step_ms": median_ms(step, step_repeats), "k": k, "tau": tau, "threads": torch.get_num_threads(),
           "unet_weights": weights}  # fmt: skip
    planning = out["plan_ms"] + out["predictor_ms"]
    out["percent_of_step"] = 100.0 * planning / out["unet_step_ms"]
    out["percent_of_step_adaptive"] = 100.0 * (out["plan_adaptive_ms"] + out["predictor_ms"]) / out["unet_step_ms"]
    return out
