"""One call from prompts to images: Predict -> Plan -> Execute on a Diffusers pipeline."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj import Plan, load_dna, plan_batch, plan_cost
from cotj.execute.schedulers import neutral_scheduler, planned_scheduler
from cotj.execute.vp_replan import replanning_scheduler
from cotj.planning.objectives import OBJECTIVES, TeacherCost
from cotj.planning.objectives import objective as objective_kwargs
from cotj.planning.planner import DEFAULT_BUDGET
from cotj.planning.solvers import MULTISTEP, SOLVERS

__all__ = ["SampleResult", "default_solver", "sample"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleResult:
    """What :func:`sample` made.

    Attributes:
        images: one entry per prompt, in order: what the pipeline returns for one image
            (a PIL image, or a (C, H, W) / (H, W, C) array or tensor row).
        plans: the plan each prompt ran (its levels are what the model saw).
        dna: (B, N) the DNA the plans were made from (predicted and aligned, or the mean DNA); None when the
            plans came from a teacher cost alone.
    """

    images: list[Any]
    plans: list[Plan]
    dna: NDArray[np.float64] | None


def _batch_size(prompt: str | Sequence[str] | None, prompt_embeds: Any) -> int:
    if prompt is not None:
        return 1 if isinstance(prompt, str) else len(prompt)
    if prompt_embeds is None:
        raise ValueError("give prompt (str or list) or prompt_embeds (B, L, D)")
    return int(prompt_embeds.shape[0])


def _dna(batch: int, predictor: Any, mean_dna: ArrayLike | str | None, embeddings: Any) -> NDArray[np.float64]:
    if (predictor is None) == (mean_dna is None):
        raise ValueError("give exactly one of predictor (a DNAPredictor) or mean_dna (N,) (array or file)")
    if predictor is not None:
        dna = np.asarray(predictor.predict(embeddings), dtype=np.float64).reshape(-1, predictor.config["n_levels"])
        if dna.shape[0] != batch:
            raise ValueError(f"the embeddings give {dna.shape[0]} rows for {batch} prompts")
        return dna
    row = load_dna(mean_dna) if isinstance(mean_dna, str) else np.asarray(mean_dna)
    if row.dtype.kind not in "iuf":
        raise TypeError(f"mean_dna must be real numbers (an array or a DNA file), got dtype {row.dtype}")
    row = row.astype(np.float64)
    if row.ndim != 1:
        raise ValueError(f"mean_dna must be one row (N,), got shape {row.shape}")
    return np.tile(row, (batch, 1))


def _rows(value: Any, idx: list[int], batch: int) -> Any:
    """The rows ``idx`` of a per-prompt argument (tensor or list of length B); others as they are."""
    if hasattr(value, "shape") and len(value.shape) > 0 and value.shape[0] == batch:
        return value[idx]
    if isinstance(value, (list, tuple)) and len(value) == batch:
        return [value[i] for i in idx]
    return value


def _per_prompt(generator: Any, batch: int) -> Any:
    """A single torch Generator for B > 1 prompts -> B generators seeded from it in prompt order, so a prompt's
    noise does not depend on which other prompts share its plan (and so run in the same pipeline call)."""
    import torch

    if batch == 1 or not isinstance(generator, torch.Generator):
        return generator
    seeds = torch.randint(0, 2**63 - 1, (batch,), generator=generator, device=generator.device).tolist()
    return [torch.Generator(device=generator.device).manual_seed(int(seed)) for seed in seeds]


def sample(
    pipe: Any,
    prompt: str | Sequence[str] | None = None,
    *,
    budget: int | ArrayLike | None = None,
    tau: float | None = None,
    max_steps: int | None = None,
    predictor: Any = None,
    mean_dna: ArrayLike | str | None = None,
    teacher: TeacherCost | str | os.PathLike[str] | None = None,
    objective: str | None = None,
    replan: bool | None = None,
    embed: Callable[[Sequence[str]], Any] | None = None,
    embeddings: Any = None,
    grid: ArrayLike | None = None,
    neutral: bool = False,
    atol: float = 1e-5,
    solver: str | None = None,
    **pipe_kwargs: Any,
) -> SampleResult:
    """Predict the DNA of each prompt, plan its schedule, and sample it with ``pipe``.

    Args:
        pipe: a Diffusers pipeline (flow-matching or discrete VP scheduler; see
            :mod:`cotj.execute.schedulers` for which schedulers run plans exactly).
        prompt: a prompt or a list of B prompts; or pass ``prompt_embeds`` (B, L, D) (and the
            pipeline's other embedding arguments) in ``pipe_kwargs``.
        budget: steps per prompt (int or (B,) ints); exclusive with ``tau`` (adaptive length,
            docs/method.md §5, with ``max_steps``). Default 8 steps.
        predictor: a :class:`cotj.predict.DNAPredictor`; its input is ``embeddings`` (B, D) if
            given, else ``embed(prompts)``, else ``prompt_embeds`` mean-pooled over tokens.
        mean_dna: instead of a predictor, one DNA row (N,) (or a file, :func:`cotj.load_dna`)
            used for every prompt ("CoTj-mean").
        teacher: the model's :class:`~cotj.planning.objectives.TeacherCost` (or the path of its JSON file, from
            :func:`cotj.predict.calibrate`): enables the "teacher" and "calibrated" objectives and replanning.
        objective: "paper" (the DNA alone), "teacher" or "calibrated" (:mod:`cotj.planning.objectives`); default "teacher"
            when ``teacher`` is given, else "paper".
        replan: closed-loop replanning after every step (:class:`~cotj.execute.replan.ReplanningScheduler`; one
            pipeline call per prompt, fixed ``budget``); default True when ``teacher`` is given, except for
            ``solver="heun"``, which runs open loop (True raises for it).
        grid: the DNA's grid (N,); default ``t_i = (i + 1)/N``.
        neutral: run on :func:`neutral_scheduler` of the pipeline's scheduler (Karras/beta/
            exponential spacing, ``shift_terminal`` and ``final_sigmas_type`` turned off)
            instead of raising for them.
        atol: tolerance of the exactness check on the levels the model sees.
        solver: run the levels with this solver of :mod:`cotj.execute.solvers`, exactly, through its Diffusers
            scheduler (:func:`cotj.execute.solver_scheduler`, on the linear flow with the pipeline scheduler's
            ``num_train_timesteps``; the pipeline's scheduler must be a flow-matching one): "euler", "heun" (2K - 1
            model evaluations for K levels), "dpmpp_2m" or "unipc" (``neutral`` does not apply: those schedulers
            are neutral). None (default): :func:`default_solver`: "unipc" closed loop when the teacher objective
            runs on a flow-matching pipeline and the teacher cost has a Gram matrix (the measured best pairing,
            docs/results.md), "euler" closed loop on a teacher cost without one (logged, with how to recalibrate),
            else the pipeline's own scheduler as configured, with first-order plans. With the teacher objective the
            plans are made for the solver's steps (:meth:`~cotj.planning.objectives.TeacherCost.plan`, docs/method.md §11): closed loop (the default)
            replans euler, dpmpp_2m and unipc after every evaluation from the current and previous levels
            (:class:`~cotj.execute.replan.ReplanningScheduler` around the solver's scheduler; dpmpp_2m and unipc
            need the teacher cost's Gram matrix and raise ValueError without one); heun runs open loop, its plan
            made for Heun's steps when the teacher cost has a Gram matrix, else the first-order teacher plan (a
            warning is logged), as open-loop dpmpp_2m and unipc plans do. ``tau``, and the "paper" and
            "calibrated" objectives, plan first-order steps whatever the solver.
        pipe_kwargs: passed to the pipeline; tensors and lists with B rows are split per prompt. One
            ``generator`` for B > 1 prompts becomes B generators seeded from it in prompt order, so each
            prompt's noise is the same however the prompts group by plan; pass ``latents`` or a list of B
            generators to choose the noise yourself.

    Returns:
        :class:`SampleResult` with the images, the plans (their ``levels`` are the levels run; Heun also
        evaluates each but the first a second time, :func:`cotj.execute.evaluation_levels`; the cost of teacher
        plans is the first-order teacher cost of their levels) and the DNA. Prompts that share a plan run in one
        pipeline call; the pipeline's scheduler is restored afterwards.

    Raises:
        InexactScheduleError: the scheduler cannot run a plan exactly.
        ValueError: missing or conflicting arguments.
    """
    batch = _batch_size(prompt, pipe_kwargs.get("prompt_embeds"))
    prompts = [prompt] if isinstance(prompt, str) else prompt
    tc = TeacherCost.load(os.fspath(teacher)) if isinstance(teacher, (str, os.PathLike)) else teacher
    objective = objective or ("paper" if tc is None else "teacher")
    if solver is not None and solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; known: {', '.join(SOLVERS)}")
    if replan and solver == "heun":
        raise ValueError("solver='heun' evaluates the model twice per level and runs open loop: pass replan=False")
    if solver is None:
        solver = default_solver(pipe.scheduler, tc, objective, tau=tau, replan=replan)
    replan = tc is not None and solver != "heun" if replan is None else replan
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if (replan or objective != "paper") and tc is None:
        raise ValueError(f"objective={objective!r} and replan need teacher (a TeacherCost or its file)")
    if replan and solver in MULTISTEP and tc is not None and tc.gram is None:
        raise ValueError(f"closed-loop replanning with solver={solver!r} plans its steps from the teacher cost's Gram "
                         "matrix, and this teacher cost has none: recalibrate (cotj.predict.calibrate records it), "
                         "or pass replan=False (open loop)")
    dna = None
    if objective != "teacher" or predictor is not None or mean_dna is not None:
        if predictor is not None and embeddings is None:
            if embed is not None and prompts is not None:
                embeddings = embed(list(prompts))
            elif pipe_kwargs.get("prompt_embeds") is not None:
                embeddings = pipe_kwargs["prompt_embeds"].float().mean(dim=1).cpu()
            else:
                raise ValueError("the predictor needs embeddings, embed(prompts) or prompt_embeds")
        dna = _dna(batch, predictor, mean_dna, embeddings)
    if "generator" in pipe_kwargs:
        pipe_kwargs["generator"] = _per_prompt(pipe_kwargs["generator"], batch)
    if replan:
        assert tc is not None  # checked above
        return _closed_loop(pipe, prompts, batch, tc, objective, dna, budget, tau, pipe_kwargs, solver)
    if objective == "paper":
        plans = list(plan_batch(dna, budget, grid=grid, tau=tau, max_steps=max_steps))
    else:
        assert tc is not None  # checked above: the other objectives need a teacher cost
        if objective == "teacher" and solver not in (None, "euler") and tau is None and tc.gram is not None:
            plans = _solver_plans(tc, solver, batch, budget)
        else:
            if objective == "teacher" and solver not in (None, "euler") and tau is None:
                log.warning("the teacher cost has no Gram matrix: solver=%r runs the first-order teacher plan "
                            "(recalibrate with cotj.predict.calibrate for plans made for its steps)", solver)
            if objective == "calibrated" and predictor is None:
                raise ValueError("the 'calibrated' objective needs a predictor (its DNA is scaled by the predictor's "
                                 "mean DNA)")
            ref = predictor.mean_dna.double().cpu().numpy() if predictor is not None else None
            kw = objective_kwargs(objective, dna=dna, mean_dna=ref, teacher=tc)
            rows = plan_batch(budget=budget, tau=tau, max_steps=max_steps, current=tc.grid.size - 1, **kw)
            plans = [rows[b if len(rows) > 1 else 0] for b in range(batch)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, p in enumerate(plans):
        groups.setdefault(tuple(int(i) for i in p.steps), []).append(b)
    original = pipe.scheduler
    if solver is not None:
        base = _solver_scheduler(original, solver)
    else:
        base = neutral_scheduler(original) if neutral else original
    images: list[Any] = [None] * batch
    try:
        for idx in groups.values():
            plan = plans[idx[0]]
            log.info("prompts %s: %d steps at levels %s", idx, plan.budget, np.round(plan.levels, 4).tolist())
            pipe.scheduler = planned_scheduler(base, plan, atol=atol)
            kwargs = {k: _rows(v, idx, batch) for k, v in pipe_kwargs.items()}
            if prompts is not None:
                kwargs["prompt"] = [prompts[i] for i in idx]
            out = pipe(num_inference_steps=plan.budget, **kwargs).images
            for b, image in zip(idx, out, strict=False):
                images[b] = image
    finally:
        pipe.scheduler = original
    return SampleResult(images, plans, dna)


def default_solver(scheduler: Any, teacher: TeacherCost | None, objective: str = "teacher", *, tau: float | None = None,
                   replan: bool | None = None) -> str | None:
    """The solver :func:`sample` runs when none is given: "unipc" for the teacher objective at a fixed budget on a
    flow-matching ``scheduler`` with a teacher cost that has a Gram matrix (UniPC on its solver-aware closed-loop
    plan: the best pairing measured, docs/results.md); "euler" when that teacher cost has no Gram matrix (a warning:
    recalibrate for UniPC); None (the pipeline's own scheduler, first-order plans) otherwise."""
    from cotj.paths import is_flow_scheduler

    if teacher is None or objective != "teacher" or tau is not None or replan is False:
        return None
    if not is_flow_scheduler(scheduler) or scheduler.config.get("invert_sigmas", False):
        return None
    if teacher.gram is None:
        log.warning("solver: euler (closed loop): this teacher cost has no Gram matrix, which UniPC's plans need; "
                    "recalibrate (cotj.predict.calibrate or `cotj calibrate`) to run the default, UniPC")
        return "euler"
    return "unipc"


def _solver_scheduler(scheduler: Any, solver: str) -> Any:
    """The scheduler that runs ``solver`` exactly in place of the pipeline's flow-matching ``scheduler``."""
    from cotj.execute.flow_schedulers import solver_scheduler
    from cotj.paths import is_flow_scheduler

    if not is_flow_scheduler(scheduler) or scheduler.config.get("invert_sigmas", False):
        raise ValueError(f"solver={solver!r} runs the linear flow's schedulers (cotj.execute.solver_scheduler); "
                         f"{type(scheduler).__name__} is not a flow-matching one: pass solver=None to run it")
    return solver_scheduler(solver, int(scheduler.config.num_train_timesteps))


def _solver_plans(teacher: TeacherCost, solver: str, batch: int, budget: Any) -> list[Plan]:
    """The open-loop teacher plans made for ``solver``'s steps (:meth:`TeacherCost.plan`; needs the Gram matrix),
    one per prompt, ``budget`` an int or (B,) ints; their cost is the first-order teacher cost of their levels."""
    budgets = np.broadcast_to(np.asarray(DEFAULT_BUDGET if budget is None else budget), (batch,))
    plans: dict[int, Plan] = {}
    for k in {int(k) for k in budgets}:
        levels = teacher.plan(solver, k)
        steps = np.searchsorted(teacher.grid, levels).astype(np.int64)
        plans[k] = Plan(steps, teacher.grid[steps], plan_cost(None, steps, cost=teacher.edges, end=teacher.end))
    return [plans[int(k)] for k in budgets]


def _closed_loop(pipe: Any, prompts: Sequence[str] | None, batch: int, teacher: TeacherCost, objective: str,
                 dna: NDArray[np.float64] | None, budget: Any, tau: float | None, pipe_kwargs: dict[str, Any],
                 solver: str | None) -> SampleResult:
    """One pipeline call per prompt under a :class:`ReplanningScheduler` (teacher cost, replanned every step) around
    the pipeline's scheduler (``solver`` None, first-order plans) or ``solver``'s scheduler (plans for its steps)."""
    budget = DEFAULT_BUDGET if budget is None and tau is None else budget
    if tau is not None or not isinstance(budget, (int, np.integer)):
        raise ValueError("replan needs one int budget (the number of model evaluations); tau does not apply")
    if objective != "teacher":
        raise ValueError(f"replan plans on the teacher cost; objective={objective!r} cannot replan")
    original = pipe.scheduler
    inner = original if solver is None else _solver_scheduler(original, solver)
    images: list[Any] = [None] * batch
    plans: list[Plan] = []
    try:
        for b in range(batch):
            pipe.scheduler = replanning_scheduler(inner, teacher, solver or "euler")  # VP: VPReplanningScheduler
            kwargs = {k: _rows(v, [b], batch) for k, v in pipe_kwargs.items()}
            if prompts is not None:
                kwargs["prompt"] = [prompts[b]]
            images[b] = pipe(num_inference_steps=int(budget), **kwargs).images[0]
            levels = np.asarray(pipe.scheduler.levels)
            steps = np.abs(teacher.grid[None, :] - levels[:, None]).argmin(1)
            cost = plan_cost(None, steps, cost=teacher.edges, end=teacher.end)  # open-loop units: the calibration mean
            plans.append(Plan(steps.astype(np.int64), levels, cost))
            log.info("prompt %d: replanned %d steps at levels %s", b, len(levels), np.round(levels, 4).tolist())
    finally:
        pipe.scheduler = original
    return SampleResult(images, plans, dna)

