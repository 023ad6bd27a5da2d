"""``cotj sample``: prompt -> PNG with the shipped shapes generator, Predict -> Plan -> Execute
(:func:`cotj.execute.sample`), printing the plan and the time each stage took."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from cotj.cli import _io, _pipeline
from cotj.planning.solvers import MULTISTEP, SOLVERS

__all__ = ["add_parser", "run"]

DESCRIPTION = """Sample one prompt with the shipped shapes generator (24x24 shapes) and write a PNG.

By default the schedule is planned on the shipped generator's teacher cost (its measured jump costs, the
objective that won the quality benchmark) and replanned after every step from what the sample shows (closed
loop, exactly K model evaluations). --open-loop keeps the first plan; --tau plans the length open loop.
--objective paper plans from the prompt's DNA instead, as the paper does: predicted by the shipped DNA predictor
(milliseconds), or with --true-dna extracted on the spot (100 levels and a 50-step reference sample: the oracle,
about 300 model calls); --predictor DIR predicts with another predictor and --mean-dna FILE plans one DNA for
every prompt (each of these implies --objective paper unless --objective calibrated scales the teacher cost by
that DNA). The shipped teacher cost and predictor belong to the shipped weights at guidance 2; with other
--weights or --guidance give --teacher FILE (cotj.predict.calibrate) or plan from the true DNA, the default then.
--uniform runs K uniform levels (1, 1 - 1/K, ..., 1/K) instead, for comparison. Prints the levels used, the
solver's model evaluations (NFE) and the time of each stage.

The default solver is UniPC (bh2) on its solver-aware plan, replanned after every step: on the shipped model's 64
held-out prompts 28.70 / 35.21 / 44.48 dB PSNR to the 100-step sample at 4 / 6 / 10 steps, against 27.54 / 31.27 /
37.74 for Euler on the same closed loop (docs/results.md). A teacher cost without a Gram matrix runs Euler closed loop instead (one
line says so; recalibrate with cotj calibrate). --solver runs the levels with another solver
(cotj.execute.solvers, exactly at the levels, through its Diffusers scheduler): euler (K model evaluations for K
levels; the default of --uniform, --tau, --open-loop and DNA plans), heun (2K - 1: a second evaluation at each next
level, the step to 0 Euler), dpmpp_2m (DPM-Solver++(2M)) or unipc (UniPC bh2), both K. With the teacher objective
the plan is made for the solver's steps, from the teacher cost's Gram matrix (docs/method.md §11): euler, dpmpp_2m
and unipc replan after each step (closed loop, from the current and previous levels); a teacher cost without a
Gram matrix cannot plan dpmpp_2m or unipc steps, so they then need --open-loop (the first-order plan, with a
warning) or a recalibrated --teacher FILE. heun runs open loop (replanning takes one evaluation per level), on
the plan for Heun's steps, or the first-order one without a Gram matrix. Plans from a DNA (--objective paper or
calibrated), --tau and --uniform are the same whatever the solver.

The prompt must be in the shapes grammar the model was trained on (cotj.models.shapes):
  COUNT [SIZE] COLOUR SHAPE[s] [POSITION][, BACKGROUND background]
--any-prompt runs any other text (at most 16 MiniLM tokens), which the model has never seen.

--pipeline DIR samples a local Diffusers pipeline instead (any prompt; the image at its own size): planned on
its teacher cost (--teacher FILE, made by cotj calibrate), closed loop (Flux, SD3 and Stable Diffusion UNets; a
VP pipeline replans on an EulerDiscreteScheduler of its configuration); or --uniform, or --mean-dna FILE. --guidance, --height
and --width default to the teacher cost's (a warning when they differ from it); --dtype and --device place it.

Examples:
  cotj sample "two red circles on the left" --budget 4 --out red.png
  cotj sample "two red circles on the left" --budget 4 --objective paper --out red_paper.png
  cotj sample "a small blue square" --tau 0.99 --max-steps 20 --out blue.png
  cotj sample "a small blue square" --budget 4 --uniform --out blue_uniform.png
  cotj sample "two red circles on the left" --budget 4 --solver dpmpp_2m --out red_dpm.png
  cotj sample --pipeline ./flux-schnell --teacher flux_teacher.json "a lighthouse at dusk" --budget 6 --out l.png"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sample", parents=parents, help="prompt -> PNG with the shipped shapes generator or a Diffusers pipeline",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"The shapes grammar: {grammar()}.")
    p.add_argument("prompt", help="a prompt of the shapes grammar, e.g. 'two red circles on the left'")
    p.add_argument("--any-prompt", action="store_true",
                   help="accept a prompt outside the shapes grammar (the model never saw one; expect noise)")
    p.add_argument("--out", required=True, metavar="OUT.png", help="image file to write")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--budget", type=_io.steps, metavar="K", help=f"steps, 1..{_io.MAX_STEPS} (default 8)")
    length.add_argument("--tau", type=_io.probability, help="adaptive length (smallest K with R(K) >= tau)")
    p.add_argument("--max-steps", type=_io.steps, metavar="K",
                   help=f"longest adaptive plan (with --tau), 1..{_io.MAX_STEPS}")
    dna = p.add_mutually_exclusive_group()
    dna.add_argument("--predictor", metavar="DIR", help="predict the DNA with this predictor")
    dna.add_argument("--true-dna", action="store_true", help="extract the prompt's true DNA first (the oracle)")
    dna.add_argument("--mean-dna", metavar="FILE", help="plan from this one DNA row (.npy, .json, .csv)")
    dna.add_argument("--uniform", action="store_true", help="uniform levels instead of a plan (needs --budget)")
    p.add_argument("--objective", choices=["paper", "teacher", "calibrated"],
                   help="what a plan minimises (cotj.planning.objectives); default teacher where a teacher cost applies, else paper")
    p.add_argument("--teacher", metavar="JSON", help="the model's teacher cost (default: the shipped one, for the shipped model)")
    p.add_argument("--open-loop", action="store_true", help="do not replan after each step (teacher objective)")
    p.add_argument("--solver", choices=list(SOLVERS),
                   help="the solver that runs the levels, and that teacher plans are made for (default: unipc closed "
                        "loop where the teacher cost has a Gram matrix, as the shipped one does; else euler); heun "
                        "costs 2K - 1 evaluations and runs open loop")
    p.add_argument("--scale", type=_io.int_in(1, 64), default=8,
                   help="upscale the PNG by this factor, 1..64 (default 8)")
    _io.add_model_flags(p)
    _pipeline.add_pipeline_flags(p, required=False)
    p.set_defaults(run=run, prog=p.prog, guidance=None)  # None: 2 for the shapes, the teacher cost's for --pipeline


def grammar() -> str:
    """The shapes grammar in one line, from :mod:`cotj.models.shapes`."""
    from cotj.models import shapes

    counts = "|".join(shapes._COUNT_WORDS)  # noqa: SLF001 - the grammar's own word lists
    positions = "|".join(shapes._POSITION_PHRASES)  # noqa: SLF001
    return (f"COUNT [SIZE] COLOUR SHAPE[s] [POSITION][, BACKGROUND background] with COUNT {counts} (plural shape "
            f"after two and three), SIZE {'|'.join(shapes.SIZES)}, COLOUR {'|'.join(shapes.COLOURS)}, "
            f"SHAPE {'|'.join(shapes.SHAPES)}, POSITION {positions}, BACKGROUND {'|'.join(shapes.BACKGROUNDS)}")


def check_prompt(prompt: str, any_prompt: bool) -> None:
    """Refuse an empty prompt, and one outside the shapes grammar unless ``any_prompt``."""
    from cotj.models.shapes import parse_prompt

    _io.check_text(prompt, "the prompt")
    if any_prompt:
        return
    try:
        parse_prompt(prompt)
    except ValueError as exc:  # one line naming the word that does not fit
        raise ValueError(f"{exc}; the grammar is in 'cotj sample --help', or pass --any-prompt to run other "
                         "text") from None


def save_png(image: np.ndarray, out: str | Path, scale: int) -> Path:
    """An (H, W, 3) float image in [0, 1] as an 8-bit PNG, each pixel a ``scale``-wide block."""
    from PIL import Image

    path = _io.png_path(out)
    if not np.all(np.isfinite(image)):
        raise ValueError("the sample holds NaN or inf: the model's output overflowed (too large a --guidance?)")
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def run(args: argparse.Namespace) -> int:
    if args.pipeline:
        return _pipeline.sample_command(args)
    if args.height or args.width:
        raise ValueError("--height and --width go with --pipeline (the shapes generator makes 24x24 images)")
    args.guidance = _io.ModelSpec.guidance if args.guidance is None else args.guidance
    if args.model != _io.SHAPES:
        raise ValueError("sample runs the shipped shapes generator; the analytic models have no images")
    _io.png_path(args.out)
    check_prompt(args.prompt, args.any_prompt)
    if args.uniform and args.budget is None:
        raise ValueError("--uniform needs --budget K")
    if args.max_steps is not None and args.tau is None:
        raise ValueError("--max-steps goes with --tau")
    given = _read_inputs(args)
    from cotj.cli import _models
    from cotj.execute import nfe, sample

    _models.use_threads(args.threads)
    clock = time.perf_counter()
    pipe = _models.shapes_pipeline(args.weights)
    latents = _models.noise(_io.model_spec(args), pipe, [args.prompt])
    print(f"model: loaded in {time.perf_counter() - clock:.2f} s")
    run_kwargs = dict(latents=latents, guidance_scale=args.guidance, output_type="np")
    if args.uniform:
        from cotj.planning.schedules import uniform

        levels = uniform(args.budget)
        clock = time.perf_counter()
        args.solver = _io.resolve_solver(args, pipe.scheduler, None)
        _use_solver(pipe, args.solver)
        image = pipe(args.prompt, sigmas=levels.tolist(), **run_kwargs).images[0]
        print(f"uniform: {args.budget} steps at t = {_io.levels_text(levels)}")
        k = args.budget
    else:
        clock = time.perf_counter()
        plan_kwargs = _plan_source(args, pipe, _models, given)
        print(f"plan from: {plan_kwargs.pop('what')} in {time.perf_counter() - clock:.2f} s")
        clock = time.perf_counter()
        plan_args = dict(budget=args.budget, tau=args.tau, max_steps=args.max_steps, **plan_kwargs, **run_kwargs)
        result = sample(pipe, args.prompt, solver=args.solver, **plan_args)
        image, plan = result.images[0], result.plans[0]
        extra = f", R(K) = {plan.ratio[plan.budget - 1]:.4f}" if plan.ratio is not None else ""
        how = "replanned after each step, " if plan_kwargs.get("replan") else ""
        print(f"plan: {plan.budget} steps at t = {_io.levels_text(plan.levels)} ({how}cost {plan.cost:.4g}{extra})")
        k = plan.budget
    print(f"solver: {args.solver}, NFE {nfe(args.solver, k)} for {k} levels")
    print(f"sampling: {time.perf_counter() - clock:.2f} s")
    print(f"wrote {save_png(image, args.out, args.scale)}")
    return 0


def _use_solver(pipe: Any, solver: str) -> None:
    """Run ``pipe`` with the scheduler of ``solver`` (:func:`cotj.execute.solver_scheduler`); Euler keeps the
    pipeline's own."""
    if solver != "euler":
        from cotj.execute import solver_scheduler

        pipe.scheduler = solver_scheduler(solver)


def _read_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The files the flags name, read before the model loads (a missing or malformed one fails at once):
    ``teacher`` (the :class:`~cotj.TeacherCost` of ``--teacher``) and ``mean_dna`` (the row of ``--mean-dna``),
    None where not given; ``--predictor`` and ``--weights`` are checked to exist."""
    if args.predictor and not (Path(args.predictor) / "dna_predictor.json").is_file():
        raise FileNotFoundError(2, "no DNA predictor (dna_predictor.json) in", args.predictor)
    if args.weights and not Path(args.weights).exists():
        raise FileNotFoundError(2, "no shapes generator weights file or training run directory", args.weights)
    teacher = None
    if args.teacher:
        if not Path(args.teacher).is_file():
            raise FileNotFoundError(2, "no teacher cost file", args.teacher)
        from cotj.planning.objectives import TeacherCost

        teacher = TeacherCost.load(args.teacher)
    return dict(teacher=teacher, mean_dna=_io.read_array(args.mean_dna) if args.mean_dna else None)


def _plan_source(args: argparse.Namespace, pipe: Any, models: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The planning arguments of :func:`cotj.execute.sample` (objective, teacher cost, replanning, DNA); ``what``
    describes them. ``given``: the files :func:`_read_inputs` read."""
    teacher = args.teacher or models.shipped_teacher(_io.model_spec(args))
    from_dna = bool(args.predictor or args.true_dna or args.mean_dna)
    objective = args.objective or ("teacher" if teacher is not None and not from_dna else "paper")
    if objective == "paper":
        args.solver = _io.resolve_solver(args, pipe.scheduler, None)
        if args.open_loop:
            raise ValueError("--open-loop goes with the teacher objective (paper plans are open loop)")
        return _dna_source(args, pipe, models, given)
    if teacher is None:
        raise ValueError(f"--objective {objective} needs --teacher FILE: no shipped teacher cost applies to this model")
    if objective == "teacher" and from_dna:
        raise ValueError("--objective teacher plans without a DNA: drop --predictor, --true-dna and --mean-dna")
    from cotj.planning.objectives import TeacherCost

    cost = given["teacher"] if args.teacher else TeacherCost.load(teacher)
    args.solver = _io.resolve_solver(args, pipe.scheduler, cost if objective == "teacher" else None)
    replan = objective == "teacher" and not args.open_loop and args.tau is None and (args.solver is None or SOLVERS[args.solver].replans)
    out: dict[str, Any] = dict(teacher=cost, objective=objective, replan=replan)
    if objective == "calibrated":
        dna = _dna_source(args, pipe, models, given)
        out.update(dna, what=f"teacher cost {teacher} scaled by the DNA {dna['what']}")
        return out
    if replan and args.solver in MULTISTEP and cost.gram is None:
        raise ValueError(f"the teacher cost {teacher} has no Gram matrix, which closed-loop {args.solver} plans need: "
                         "give --teacher FILE recalibrated (cotj.predict.calibrate records it), or --open-loop")
    how = ", closed loop" if replan else ""
    if args.solver != "euler" and args.tau is None:
        how += f", planned for {args.solver}'s steps" if cost.gram is not None else ", first-order plan (no Gram matrix)"
    out["what"] = f"teacher cost {teacher}{how}"
    return out


def _dna_source(args: argparse.Namespace, pipe: Any, models: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The DNA arguments of :func:`cotj.execute.sample`, and ``what`` describes them."""
    predictor = args.predictor
    if predictor is None and not (args.true_dna or args.mean_dna):
        predictor = models.shipped_predictor(_io.model_spec(args))
    if predictor is not None:
        from cotj.predict import DNAPredictor

        return dict(predictor=DNAPredictor.load(predictor, device="cpu"), what=f"predicted by {predictor}",
                    embed=lambda prompts: models.embeddings(_io.model_spec(args), prompts))
    if args.mean_dna:
        return dict(mean_dna=given["mean_dna"], what=f"one row from {args.mean_dna}")
    what = f"the prompt's true DNA (100 levels against a {args.reference_steps or 50}-step reference)"
    return dict(mean_dna=models.prompt_dna(_io.model_spec(args), args.prompt, pipe), what=what)
