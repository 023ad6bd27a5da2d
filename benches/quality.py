"""Quality benchmark (issue 5): PSNR/MSE to the reference endpoint for every schedule and budget.

Reports go to a run folder, runs/quality/ (ignored by git), or to --out DIR; the committed results in benches/results/
and the shipped predictor and teacher cost are written only with --update, which the commands that made them carry.
Times measured on the project's 2-core machine (no GPU).

Tier 1 (exact Gaussian-mixture flow model):

    python benches/quality.py --tier 1                      # runs/quality/quality_tier1.{json,md}, _psnr.png, _costs.png; 9 min, 1 thread
    python benches/quality.py --tier 1 --update             # the same into benches/results/ (the committed report)
    python benches/quality.py --tier 1 --quick --out /tmp/q # seconds
    python benches/quality.py --tier 1 --solvers euler,heun,dpmpp_2m,unipc --n-test 128   # the solver study, 11 min

Training DNA sharded over processes (gloo), then the benchmark reusing it:

    torchrun --standalone --nproc_per_node 2 benches/quality.py --tier 1 --extract runs/quality/tier1_dna
    python benches/quality.py --tier 1 --dna runs/quality/tier1_dna

Tier 2 (shapes text-to-image model) once weights exist:

    python benches/quality.py --tier 2 --weights python/cotj/models/weights/shapes_unet.safetensors
    python benches/quality.py --tier 2 --weights runs/shapes     # a training run's EMA checkpoint

The shipped DNA predictor was trained by a run on the training DNA of 2,048 prompts (2 processes; long: the
extraction took 72 min, see benches/README.md):

    torchrun --standalone --nproc_per_node 2 benches/quality.py --tier 2 --extract runs/quality/tier2_dna
    python benches/quality.py --tier 2 --dna runs/quality/tier2_dna --threads 2 --save-predictor --update

The shipped teacher cost (cotj.predict.calibrate on 256 training prompts, 11 min), and the committed Tier 2 results
(50 min), which plan from the shipped predictor and teacher cost:

    python benches/quality.py --tier 2 --calibrate --update --threads 2
    python benches/quality.py --tier 2 --threads 2 --predictor python/cotj/models/weights/shapes_dna_predictor \\
        --teacher python/cotj/models/weights/shapes_teacher_cost.json --update

Without --update, --calibrate and --save-predictor write runs/quality/shapes_teacher_cost.json and
runs/quality/shapes_dna_predictor/ (or the path given after them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cotj_testbed import outputs

RESULTS = Path(__file__).resolve().parent / "results"
"""The committed reports (written with --update)."""
RUN = outputs.RUNS / "quality"
"""The default run folder of the reports."""
SHIPPED = outputs.CHECKOUT / "python" / "cotj" / "models" / "weights"
"""The shipped weights: the predictor and the teacher cost that --save-predictor and --calibrate replace with --update."""
SHIPPED_PREDICTOR, SHIPPED_TEACHER = SHIPPED / "shapes_dna_predictor", SHIPPED / "shapes_teacher_cost.json"
DEFAULT = "(default)"
"""The value of --calibrate and --save-predictor given without a path."""


def parser() -> argparse.ArgumentParser:
    p = outputs.Parser(description=__doc__.split("\n\n")[0],
                       epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--tier", type=int, choices=[1, 2], required=True)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds; Tier 1 only)")
    p.add_argument("--extract", metavar="DIR", help="only extract the DNA (sharded under torchrun) into DIR")
    p.add_argument("--dna", metavar="DIR", help="training DNA written by --extract (else extracted in-process)")
    p.add_argument("--weights", help="Tier 2: generator weights file or training run directory")
    p.add_argument("--out", type=Path, help=f"report directory (default {RUN}; with --update {RESULTS})")
    p.add_argument("--update", action="store_true",
                   help="write the committed files: reports into benches/results/, --save-predictor and --calibrate "
                        "without a path into the shipped weights")
    p.add_argument("--save-predictor", nargs="?", const=DEFAULT, metavar="DIR",
                   help=f"Tier 2: save the DNA predictor trained on the training DNA here (default {RUN}/"
                        f"{SHIPPED_PREDICTOR.name}; with --update the shipped one, {SHIPPED_PREDICTOR})")
    p.add_argument("--calibrate", nargs="?", const=DEFAULT, metavar="JSON",
                   help=f"Tier 2: only measure the model's teacher cost (cotj.predict.calibrate) and write it here "
                        f"(default {RUN}/{SHIPPED_TEACHER.name}; with --update the shipped one, {SHIPPED_TEACHER}); 11 min")
    p.add_argument("--predictor", type=Path, metavar="DIR",
                   help="Tier 2: plan from this saved DNA predictor instead of training one (no training DNA needed)")
    p.add_argument("--validation", action="store_true",
                   help="Tier 2: benchmark training prompts after the teacher's (the split methods are chosen on)")
    p.add_argument("--schedules", type=lambda v: tuple(v.split(",")), metavar="NAME,...",
                   help="only these schedules (keys of cotj_testbed.quality.SCHEDULES)")
    p.add_argument("--from-json", type=Path, metavar="JSON", help="only rewrite the report (markdown, plots) of a results file")
    p.add_argument("--stem", help="report file names (default quality_tier{1,2}[_quick][_validation])")
    p.add_argument("--teacher", type=Path, metavar="JSON", help="Tier 2: the teacher cost to use (else calibrated here)")
    p.add_argument("--save-samples", type=Path, metavar="NPZ", help="also save every final sample, level and the references")
    p.add_argument("--ks", type=outputs.int_list, metavar="K,K,...", help="step budgets (default 2,3,4,5,6,8,10,15,20,25,30,40,50)")
    p.add_argument("--solvers", type=lambda v: tuple(v.split(",")), metavar="NAME,...",
                   help="run the solver study instead (euler,heun,dpmpp_2m,unipc): every solver on the same plans at "
                        "equal NFE; --schedules then picks from cotj_testbed.quality_solvers.SCHEDULES")
    p.add_argument("--nfes", type=outputs.int_list, metavar="N,N,...", help="NFE budgets of the solver study (default 2,3,4,5,6,8,10,15,20,30)")
    p.add_argument("--n-test", type=outputs.positive_int, help="held-out conditions / prompts (default Tier 1: 256, Tier 2: 64)")
    p.add_argument("--threads", type=outputs.positive_int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (there are none when stderr is not a terminal)")
    return p


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Every argument a run needs, checked before it starts: raises :class:`cotj_testbed.outputs.UsageError` (one
    line naming the option) for a missing input, a committed output without ``--update``, an unknown name or a
    combination that does not run. Returns the output paths the run writes (``out`` always; ``calibrate``,
    ``save_predictor``, ``extract`` and ``save_samples`` when asked for)."""
    fail = outputs.UsageError
    if args.quick and args.tier != 1:
        raise fail("--quick is for Tier 1")
    if args.tier != 2 and (args.save_predictor or args.calibrate or args.predictor or args.teacher or args.validation):
        raise fail("--save-predictor, --calibrate, --predictor, --teacher and --validation are for Tier 2")
    if args.predictor is not None and args.save_predictor is not None:
        raise fail("--save-predictor saves the predictor trained here; --predictor plans from a saved one instead")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not args.extract:
        raise fail("under torchrun only --extract runs; run the benchmark itself in one process")
    if args.from_json is not None:
        outputs.need_file(args.from_json, "--from-json")
    if args.weights is not None:
        if Path(args.weights).is_dir():
            outputs.need_dir(args.weights, "--weights", ("checkpoint.safetensors", "config.json"), "python -m cotj_testbed.train")
        else:
            outputs.need_file(args.weights, "--weights")
    if args.dna is not None:
        outputs.need_dir(args.dna, "--dna", ("items.json", "dna.npy", "grid.npy"), "--extract")
    if args.predictor is not None:
        outputs.need_dir(args.predictor, "--predictor", ("dna_predictor.json", "dna_predictor.safetensors"),
                         "--save-predictor or cotj train-predictor")  # fmt: skip
    if args.teacher is not None:
        outputs.need_file(args.teacher, "--teacher")
    if args.schedules is not None or args.solvers is not None:
        from cotj_testbed import quality, quality_solvers

        known = quality_solvers.SCHEDULES if args.solvers is not None else quality.SCHEDULES
        unknown = sorted(set(args.schedules or ()) - set(known))
        if unknown:
            raise fail(f"--schedules: unknown {', '.join(unknown)}; known: {', '.join(known)}")
        unknown = sorted(set(args.solvers or ()) - set(quality_solvers.SOLVERS))
        if unknown:
            raise fail(f"--solvers: unknown {', '.join(unknown)}; known: {', '.join(quality_solvers.SOLVERS)}")
    paths: dict[str, Path] = {}
    out = args.out if args.out is not None else outputs.default_output(RUN, RESULTS, args.update)
    paths["out"] = outputs.output(out, "--out", update=args.update)
    for option, run_path, shipped in (("calibrate", RUN / SHIPPED_TEACHER.name, SHIPPED_TEACHER),
                                      ("save_predictor", RUN / SHIPPED_PREDICTOR.name, SHIPPED_PREDICTOR)):
        given = getattr(args, option)
        if given is not None:
            path = outputs.default_output(run_path, shipped, args.update) if given == DEFAULT else Path(given)
            paths[option] = outputs.output(path, "--" + option.replace("_", "-"), update=args.update)
    for option in ("extract", "save_samples"):
        if getattr(args, option) is not None:
            paths[option] = outputs.output(getattr(args, option), "--" + option.replace("_", "-"), update=args.update)
    return paths


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    try:
        paths = check(args)
    except outputs.UsageError as exc:
        outputs.fail(cli, exc)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from cotj.models import generator
    from cotj_testbed import quality_report, quality_tier1, quality_tier2

    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if "solvers" in results:  # the findings follow the code that reads the runs
            from cotj_testbed.quality_solvers import solver_findings

            results["findings"] = solver_findings(results)
        written = quality_report.write_report(results, paths["out"], args.stem or args.from_json.stem)
        print("wrote " + ", ".join(str(p) for p in written.values()))
        return 0
    torch.set_num_threads(args.threads)
    progress = outputs.show_progress(not args.no_progress)
    cfg: Any
    if args.tier == 1:
        cfg = quality_tier1.Tier1Config.quick() if args.quick else quality_tier1.Tier1Config()
    else:
        cfg = quality_tier2.Tier2Config()
    overrides = {"ks": args.ks, "n_test": args.n_test}
    if args.validation:
        overrides["validation"] = True
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if "calibrate" in paths:
        target = paths["calibrate"]
        target.parent.mkdir(parents=True, exist_ok=True)
        quality_tier2.tier2_calibrate(cfg, generator.load_pipeline(args.weights), progress=progress).save(target)
        print(f"wrote {target}")
        return 0
    if "extract" in paths:
        if args.tier == 1:
            quality_tier1.tier1_extract(cfg, out=paths["extract"], progress=progress)
        else:
            quality_tier2.tier2_extract(cfg, args.weights, paths["extract"], progress=progress)
        return 0
    samples: dict[str, np.ndarray] | None = {} if args.save_samples else None
    if args.tier == 1:
        results = quality_tier1.run_tier1(cfg, dna_dir=args.dna, progress=progress, samples=samples, schedules=args.schedules,
                                          solvers=args.solvers, nfes=args.nfes)
    else:
        pipe = generator.load_pipeline(args.weights)
        results = quality_tier2.run_tier2(cfg, pipe=pipe, dna_dir=args.dna, progress=progress, samples=samples,
                                          predictor_out=paths.get("save_predictor"), predictor=args.predictor,
                                          teacher=args.teacher, schedules=args.schedules, solvers=args.solvers, nfes=args.nfes)
    stem = args.stem or (f"quality_tier{args.tier}" + ("_solvers" if args.solvers else "") + ("_quick" if args.quick else "")
                         + ("_validation" if args.validation else ""))
    written = quality_report.write_report(results, paths["out"], stem)
    if samples is not None:
        paths["save_samples"].parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(paths["save_samples"], **samples)
    print(written["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
