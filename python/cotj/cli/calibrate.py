"""``cotj calibrate``: a local Diffusers pipeline's teacher cost (:class:`cotj.planning.objectives.TeacherCost`), from
first-order teacher runs of a prompt file (:mod:`cotj.cli._pipeline`), resumable and sharded under torchrun."""

from __future__ import annotations

import argparse
from typing import Any

from cotj.cli import _io

__all__ = ["add_parser", "run"]

DESCRIPTION = """Calibrate a local Diffusers pipeline: run every prompt once through all N levels of a grid with
the first-order solver (the teacher), and write the model's measured jump costs, row model and Gram matrix as a
teacher cost JSON (cotj.predict.calibrate's TeacherCost). cotj sample --pipeline DIR --teacher FILE then plans
on it, closed loop.

The pipeline folder is what pipe.save_pretrained(DIR) writes (model_index.json and its parts); it is loaded
offline with its own text encoders. Known: FluxPipeline, StableDiffusion3Pipeline (flow matching),
StableDiffusionPipeline and StableDiffusionXLPipeline UNets on a discrete VP scheduler (epsilon or v prediction;
their grid is on integer training timesteps). --guidance, --height and --width are recorded in the JSON; cotj
sample warns when it runs other ones.

Cost: prompts x N model evaluations, twice that with classifier-free guidance (SD3, SD: guidance > 1; Flux's
guidance is distilled into the model). It prints the count before starting and an estimate of the time after
the first batch. Batches are saved in OUT.parts/ as they finish: run the same command again to resume; the
folder is removed once OUT is written. Under torchrun each process runs its share of the batches (one GPU each,
cuda:LOCAL_RANK) and rank 0 writes OUT.

Examples:
  cotj calibrate --pipeline ./flux-schnell --prompts prompts.txt --out flux_teacher.json --height 1024 --width 1024
  cotj calibrate --pipeline ./sd3-medium --prompts prompts.txt --out sd3_teacher.json --guidance 7 --levels 50
  torchrun --nproc-per-node 4 -m cotj calibrate --pipeline ./flux-dev --prompts prompts.txt --out teacher.json"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    from cotj.cli import _pipeline

    p = sub.add_parser("calibrate", parents=parents, help="teacher cost of a local Diffusers pipeline (for cotj sample --pipeline)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", required=True, metavar="FILE", help="calibration prompts, one per line (or - for stdin)")
    p.add_argument("--out", required=True, metavar="OUT.json", help="teacher cost file to write")
    _pipeline.add_pipeline_flags(p, required=True)
    p.add_argument("--guidance", type=_io.finite_float, metavar="G",
                   help="guidance scale (default the pipeline's: Flux 3.5 distilled, SD3 7, SD 7.5, SDXL 5)")
    p.add_argument("--levels", type=_io.int_in(2, 1000), default=100, metavar="N",
                   help="grid levels N, 2..1000 (default 100; model evaluations grow with N)")
    p.add_argument("--batch-size", type=_io.int_in(1, 4096), default=4, metavar="B",
                   help="prompts per teacher run (default 4; host memory about 43 bytes x B x (N + 1) x latent size)")
    p.add_argument("--seed", type=_io.seed, default=0, help="noise seed (a prompt's noise depends on it and the prompt)")
    p.add_argument("--threads", type=_io.int_in(1, 1024), metavar="T", help="torch CPU threads (default torch's)")
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if Path(args.out).suffix.lower() != ".json":
        raise ValueError(f"--out must be a .json file, got {args.out[:200]!r}")
    prompts = _io.read_lines(args.prompts)
    from cotj.cli import _pipeline

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loaded = _pipeline.load_pipeline(args.pipeline, dtype=args.dtype, device=args.device, progress=not args.quiet)
    h, w = loaded.default_size()
    guidance = loaded.default_guidance() if args.guidance is None else args.guidance
    height, width = args.height or h, args.width or w
    cost = _pipeline.calibrate_pipeline(loaded, prompts, args.out, levels=args.levels, guidance=guidance,
                                        height=height, width=width, seed=args.seed, batch_size=args.batch_size,
                                        progress=not args.quiet)
    if cost is not None:
        gram = "with its Gram matrix" if cost.gram is not None else "no Gram matrix"
        print(f"wrote {args.out}: {loaded.name}, {cost.n_samples} prompts, {cost.grid.size} levels, {gram}; guidance "
              f"{guidance:g}, {height}x{width} ({cost.settings['seconds']:.1f} s)")
    return 0
