"""``cotj dna``: the true DNA of every prompt of a file (:func:`cotj.predict.extract_dna`),
sharded over processes under torchrun (:mod:`cotj.predict.shard`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from cotj.cli import _io

__all__ = ["add_parser", "run"]

DESCRIPTION = """Extract the true DNA of each prompt with a model (cotj.predict.extract_dna): the one-step
reconstruction error at every level of the grid t_i = (i+1)/N.

PROMPTS: a file with one prompt per line (or - for stdin): text for the shapes generator,
condition ids (ints) for the analytic model.
Writes into the folder OUT: dna.npy ((B, N) float64, one row per prompt in file order),
grid.npy, items.json (the prompts in row order), embeddings.npy ((B, D) condition embeddings, what
'cotj train-predictor' learns from) and settings.json (model, seed, guidance, reference).
Under torchrun (WORLD_SIZE > 1) each process takes a block of the prompts and rank 0 gathers the
rows (gloo, cotj.predict.shard). A prompt's noise depends only on the prompt and --seed, so the
result does not depend on the number of processes.

Examples:
  cotj dna prompts.txt --out runs/dna
  printf '0\\n1\\n2\\n' | cotj dna - --model analytic --out runs/analytic
  torchrun --nproc-per-node 2 -m cotj dna prompts.txt --out runs/dna"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dna", parents=parents, help="true DNA of a prompt file with the shapes or analytic model",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompts", help="prompt file, one per line, or - for stdin")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write dna.npy and its companions into")
    p.add_argument("--levels", type=_io.int_in(2, _io.MAX_STEPS), default=100, metavar="N",
                   help=f"grid size N, 2..{_io.MAX_STEPS} (default 100)")
    _io.add_model_flags(p)
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from cotj.cli import _models

    _models.use_threads(args.threads)
    prompts = _io.read_lines(args.prompts)
    result = _models.extract(_io.model_spec(args), prompts, args.levels)
    if result is None:  # a torchrun rank other than 0: rank 0 writes
        return 0
    out = result.save(args.out)
    emb = _models.embeddings(_io.model_spec(args), prompts)
    np.save(out / "embeddings.npy", emb)
    settings = {"model": args.model, "seed": args.seed, "levels": args.levels, "processes": result.world_size,
                "seconds": result.seconds, "evaluations_per_prompt": result.evaluations}
    if args.model == _io.SHAPES:
        settings.update(weights=args.weights, guidance=args.guidance, reference_steps=args.reference_steps or 50)
    else:
        settings.update(dim=args.dim, family_seed=args.family_seed, reference_rk4_steps=args.reference_steps or 200)
    (out / "settings.json").write_text(json.dumps(settings) + "\n")
    print(f"wrote {out}: dna.npy {result.dna.shape}, embeddings.npy {emb.shape}, grid.npy, items.json, settings.json "
          f"({result.world_size} process{'es' if result.world_size > 1 else ''}, {result.seconds:.1f} s)")
    return 0
