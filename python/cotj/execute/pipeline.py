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
from cotj.planning import objectives
from cotj.planning.objectives import OBJECTIVES, TeacherCost
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
    """Predict the DNA of each prompt, plan its schedule, and sample it with the Diffusers pipeline ``pipe``.

    ``prompt``: one or B prompts (or ``prompt_embeds`` (B, L, D) in ``pipe_kwargs``). ``budget``: model evaluations
    per prompt, an int or (B,) ints (default 8); or ``tau`` (adaptive, up to ``max_steps``). The plan comes from a
    ``predictor`` (a :class:`cotj.predict.DNAPredictor` on ``embeddings``, ``embed(prompts)`` or pooled
    ``prompt_embeds``), a ``mean_dna`` row or file, or a ``teacher`` cost (:class:`~cotj.TeacherCost` or its file),
    with ``objective`` "paper", "teacher" (default with a teacher) or "calibrated". ``replan``: closed loop, replanned
    after every evaluation (default with a teacher). ``solver``: "euler", "heun", "dpmpp_2m" or "unipc", run exactly
    through its scheduler; default :func:`default_solver` (UniPC closed loop with a teacher cost that has a Gram
    matrix). ``grid``: the DNA's grid; ``neutral``: run on :func:`~cotj.execute.neutral_scheduler` of the pipeline's
    scheduler; ``atol``: tolerance of the exactness check. Other keywords go to the pipeline (rows split per prompt;
    one ``generator`` becomes B generators seeded from it in prompt order).

    Returns a :class:`SampleResult` (images, the plan each prompt ran, the DNA). Prompts sharing a plan run in one
    pipeline call; the pipeline's scheduler is restored afterwards. Raises
    :class:`~cotj.execute.InexactScheduleError` when the scheduler cannot run a plan exactly, ValueError for missing
    or conflicting arguments. The whole story: docs/method.md §9 and §11.
    """
    batch = _batch_size(prompt, pipe_kwargs.get("prompt_embeds"))
    prompts = [prompt] if isinstance(prompt, str) else prompt
    opts = _options(pipe.scheduler, teacher, objective, solver, replan, tau)
    dna = None
    if opts.objective != "teacher" or predictor is not None or mean_dna is not None:
        dna = _dna(batch, predictor, mean_dna, _embeddings(predictor, embeddings, embed, prompts, pipe_kwargs))
    if "generator" in pipe_kwargs:
        pipe_kwargs["generator"] = _per_prompt(pipe_kwargs["generator"], batch)
    if opts.replan:
        assert opts.teacher is not None  # checked by _options
        return _closed_loop(pipe, prompts, batch, opts.teacher, opts.objective, dna, budget, tau, pipe_kwargs,
                            opts.solver)
    plans = _open_loop_plans(opts, batch, dna, predictor, budget, tau, max_steps, grid)
    original = pipe.scheduler
    if opts.solver is not None:
        base = _solver_scheduler(original, opts.solver)
    else:
        base = neutral_scheduler(original) if neutral else original
    try:
        images = _run_groups(pipe, base, prompts, plans, pipe_kwargs, atol)
    finally:
        pipe.scheduler = original
    return SampleResult(images, plans, dna)


@dataclass(frozen=True)
class _Options:
    """What :func:`sample` runs, its arguments checked and its defaults resolved."""

    teacher: TeacherCost | None
    objective: str
    solver: str | None
    replan: bool


def _options(scheduler: Any, teacher: TeacherCost | str | os.PathLike[str] | None, objective: str | None,
             solver: str | None, replan: bool | None, tau: float | None) -> _Options:
    """Load the teacher cost, resolve the objective, solver and replanning defaults, and refuse what conflicts."""
    tc = TeacherCost.load(os.fspath(teacher)) if isinstance(teacher, (str, os.PathLike)) else teacher
    objective = objective or ("paper" if tc is None else "teacher")
    if solver is not None and solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; known: {', '.join(SOLVERS)}")
    if replan and solver is not None and not SOLVERS[solver].replans:
        raise ValueError(f"solver={solver!r} evaluates the model twice per level and runs open loop: pass replan=False")
    if solver is None:
        solver = default_solver(scheduler, tc, objective, tau=tau, replan=replan)
    if replan is None:
        replan = tc is not None and (solver is None or SOLVERS[solver].replans)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if (replan or objective != "paper") and tc is None:
        raise ValueError(f"objective={objective!r} and replan need teacher (a TeacherCost or its file)")
    if replan and solver in MULTISTEP and tc is not None and tc.gram is None:
        raise ValueError(f"closed-loop replanning with solver={solver!r} plans its steps from the teacher cost's Gram "
                         "matrix, and this teacher cost has none: recalibrate (cotj.predict.calibrate records it), "
                         "or pass replan=False (open loop)")
    return _Options(tc, objective, solver, bool(replan))


def _embeddings(predictor: Any, embeddings: Any, embed: Callable[[Sequence[str]], Any] | None,
                prompts: Sequence[str] | None, pipe_kwargs: dict[str, Any]) -> Any:
    """The predictor's input: ``embeddings``, else ``embed(prompts)``, else ``prompt_embeds`` mean-pooled."""
    if predictor is None or embeddings is not None:
        return embeddings
    if embed is not None and prompts is not None:
        return embed(list(prompts))
    if pipe_kwargs.get("prompt_embeds") is not None:
        return pipe_kwargs["prompt_embeds"].float().mean(dim=1).cpu()
    raise ValueError("the predictor needs embeddings, embed(prompts) or prompt_embeds")


def _open_loop_plans(opts: _Options, batch: int, dna: NDArray[np.float64] | None, predictor: Any, budget: Any,
                     tau: float | None, max_steps: int | None, grid: ArrayLike | None) -> list[Plan]:
    """One plan per prompt, made before sampling."""
    if opts.objective == "paper":
        return list(plan_batch(dna, budget, grid=grid, tau=tau, max_steps=max_steps))
    tc, solver = opts.teacher, opts.solver
    assert tc is not None  # the other objectives need a teacher cost (_options)
    made_for_solver = opts.objective == "teacher" and solver not in (None, "euler") and tau is None
    if made_for_solver and tc.gram is not None:
        return _solver_plans(tc, str(solver), batch, budget)
    if made_for_solver:
        log.warning("the teacher cost has no Gram matrix: solver=%r runs the first-order teacher plan "
                    "(recalibrate with cotj.predict.calibrate for plans made for its steps)", solver)
    if opts.objective == "calibrated" and predictor is None:
        raise ValueError("the 'calibrated' objective needs a predictor (its DNA is scaled by the predictor's mean DNA)")
    ref = predictor.mean_dna.double().cpu().numpy() if predictor is not None else None
    cost = objectives.objective(opts.objective, dna=dna, mean_dna=ref, teacher=tc)
    rows = plan_batch(cost, budget, tau=tau, max_steps=max_steps, current=tc.grid.size - 1)
    return [rows[b if len(rows) > 1 else 0] for b in range(batch)]


def _run_groups(pipe: Any, base: Any, prompts: Sequence[str] | None, plans: list[Plan], pipe_kwargs: dict[str, Any],
                atol: float) -> list[Any]:
    """Run the prompts that share a plan in one pipeline call each, on ``base`` set to their plan."""
    batch = len(plans)
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, p in enumerate(plans):
        groups.setdefault(tuple(int(i) for i in p.steps), []).append(b)
    images: list[Any] = [None] * batch
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
    return images


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
        made = teacher.plan(solver, k)
        plans[k] = Plan(made.steps, made.levels, plan_cost(teacher.dense(), made.steps))
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
            cost = plan_cost(teacher.dense(), steps)  # open-loop units: the calibration mean
            plans.append(Plan(steps.astype(np.int64), levels, cost))
            log.info("prompt %d: replanned %d steps at levels %s", b, len(levels), np.round(levels, 4).tolist())
    finally:
        pipe.scheduler = original
    return SampleResult(images, plans, dna)

