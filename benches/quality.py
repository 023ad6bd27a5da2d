"""Quality benchmark (issue 5): PSNR/MSE to the reference endpoint for every schedule and budget.

Tier 1 (exact Gaussian-mixture flow model), a few minutes on one core:

    python benches/quality.py --tier 1                      # benches/results/quality_tier1.{json,md}, _psnr.png, _costs.png
    python benches/quality.py --tier 1 --quick --out /tmp/q # seconds

Training DNA sharded over processes (gloo), then the benchmark reusing it:

    torchrun --standalone --nproc_per_node 2 benches/quality.py --tier 1 --extract runs/quality/tier1_dna
    python benches/quality.py --tier 1 --dna runs/quality/tier1_dna

Tier 2 (shapes text-to-image model) once weights exist:

    python benches/quality.py --tier 2 --weights python/cotj/models/weights/shapes_unet.safetensors
    python benches/quality.py --tier 2 --weights runs/shapes     # a training run's EMA checkpoint

The shipped DNA predictor was trained by a run on the training DNA of 2,048 prompts (2 processes):

    torchrun --standalone --nproc_per_node 2 benches/quality.py --tier 2 --extract runs/quality/tier2_dna
    python benches/quality.py --tier 2 --dna runs/quality/tier2_dna --threads 2 \
        --save-predictor python/cotj/models/weights/shapes_dna_predictor

The shipped teacher cost (cotj.predict.calibrate on 256 training prompts), and the committed Tier 2 results, which
plan from the shipped predictor and teacher cost:

    python benches/quality.py --tier 2 --calibrate python/cotj/models/weights/shapes_teacher_cost.json --threads 2
    python benches/quality.py --tier 2 --threads 2 --predictor python/cotj/models/weights/shapes_dna_predictor \
        --teacher python/cotj/models/weights/shapes_teacher_cost.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--tier", type=int, choices=[1, 2], required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds; Tier 1 only)")
    parser.add_argument("--extract", metavar="DIR", help="only extract the DNA (sharded under torchrun) into DIR")
    parser.add_argument("--dna", metavar="DIR", help="training DNA written by --extract (else extracted in-process)")
    parser.add_argument("--weights", help="Tier 2: generator weights file or training run directory")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"report directory (default {RESULTS})")
    parser.add_argument("--save-predictor", type=Path, metavar="DIR",
                        help="Tier 2: save the DNA predictor trained on the training DNA here "
                             "(the shipped one: python/cotj/models/weights/shapes_dna_predictor)")
    parser.add_argument("--calibrate", type=Path, metavar="JSON",
                        help="Tier 2: only measure the model's teacher cost (cotj.predict.calibrate) and write it here")
    parser.add_argument("--predictor", type=Path, metavar="DIR",
                        help="Tier 2: plan from this saved DNA predictor instead of training one (no training DNA needed)")
    parser.add_argument("--validation", action="store_true",
                        help="Tier 2: benchmark training prompts after the teacher's (the split methods are chosen on)")
    parser.add_argument("--schedules", type=lambda v: tuple(v.split(",")), metavar="NAME,...",
                        help="only these schedules (keys of cotj_testbed.quality.SCHEDULES)")
    parser.add_argument("--from-json", type=Path, metavar="JSON", help="only rewrite the report (markdown, plots) of a results file")
    parser.add_argument("--stem", help="report file names (default quality_tier{1,2}[_quick][_validation])")
    parser.add_argument("--teacher", type=Path, metavar="JSON", help="Tier 2: the teacher cost to use (else calibrated here)")
    parser.add_argument("--save-samples", type=Path, metavar="NPZ", help="also save every final sample, level and the references")
    parser.add_argument("--ks", type=lambda v: tuple(int(k) for k in v.split(",")), metavar="K,K,...",
                        help="step budgets (default 2,3,4,5,6,8,10,15,20,25,30,40,50)")
    parser.add_argument("--solvers", type=lambda v: tuple(v.split(",")), metavar="NAME,...",
                        help="run the solver study instead (euler,heun,dpmpp_2m,unipc): every solver on the same plans at "
                             "equal NFE; --schedules then picks from cotj_testbed.quality_solvers.SCHEDULES")
    parser.add_argument("--nfes", type=lambda v: tuple(int(k) for k in v.split(",")), metavar="N,N,...",
                        help="NFE budgets of the solver study (default 2,3,4,5,6,8,10,15,20,30)")
    parser.add_argument("--n-test", type=int, help="held-out conditions / prompts (default Tier 1: 256, Tier 2: 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick and args.tier != 1:
        parser.error("--quick is for Tier 1")
    if args.tier != 2 and (args.save_predictor or args.calibrate or args.predictor or args.teacher):
        parser.error("--save-predictor, --calibrate, --predictor and --teacher are for Tier 2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from cotj.models import generator
    from cotj_testbed import quality_report, quality_tier1, quality_tier2

    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if "solvers" in results:  # the findings follow the code that reads the runs
            from cotj_testbed.quality_solvers import solver_findings

            results["findings"] = solver_findings(results)
        paths = quality_report.write_report(results, args.out, args.stem or args.from_json.stem)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return 0
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    if args.tier == 1:
        cfg = quality_tier1.Tier1Config.quick() if args.quick else quality_tier1.Tier1Config()
    else:
        cfg = quality_tier2.Tier2Config()
    overrides = {"ks": args.ks, "n_test": args.n_test}
    if args.validation:
        overrides["validation"] = True
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.calibrate:
        quality_tier2.tier2_calibrate(cfg, generator.load_pipeline(args.weights), progress=progress).save(args.calibrate)
        print(f"wrote {args.calibrate}")
        return 0
    if args.extract:
        if args.tier == 1:
            quality_tier1.tier1_extract(cfg, out=args.extract, progress=progress)
        else:
            quality_tier2.tier2_extract(cfg, args.weights, args.extract, progress=progress)
        return 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        parser.error("under torchrun only --extract runs; run the benchmark itself in one process")
    samples: dict[str, np.ndarray] | None = {} if args.save_samples else None
    if args.tier == 1:
        results = quality_tier1.run_tier1(cfg, dna_dir=args.dna, progress=progress, samples=samples, schedules=args.schedules,
                                          solvers=args.solvers, nfes=args.nfes)
    else:
        pipe = generator.load_pipeline(args.weights)
        results = quality_tier2.run_tier2(cfg, pipe=pipe, dna_dir=args.dna, progress=progress, samples=samples,
                                          predictor_out=args.save_predictor, predictor=args.predictor, teacher=args.teacher,
                                          schedules=args.schedules, solvers=args.solvers, nfes=args.nfes)
    stem = args.stem or (f"quality_tier{args.tier}" + ("_solvers" if args.solvers else "") + ("_quick" if args.quick else "")
                         + ("_validation" if args.validation else ""))
    paths = quality_report.write_report(results, args.out, stem)
    if samples is not None:
        args.save_samples.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save_samples, **samples)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
