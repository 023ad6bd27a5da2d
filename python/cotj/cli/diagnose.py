"""``cotj diagnose``: what a DNA says (negative gains, the knee of R(K)) and, for a prompt run
with a model, whether the run bent where the DNA says levels are hard (:mod:`cotj.analysis.diagnose`)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from cotj.analysis.diagnose import diagnose
from cotj.cli import _io

__all__ = ["add_parser", "run"]

DESCRIPTION = """Diagnose a DNA: the levels whose step down raises the one-step error (negative gains: steps that
undo work, e.g. t = 1 in distilled models), where extra steps stop paying (the smallest K with
R(K) >= tau, and the knee of the R(K) curve), and the plan at tau.

With --prompt (text for the shapes generator, a condition id with --model analytic) the DNA is extracted
with the model, and a uniform run of --run-steps steps from the same noise is recorded: its
acceleration signature (mean squared third finite difference of the states, the DDiT seed) is
set against the DNA at the same levels, with their Spearman rank correlation.

Examples:
  cotj diagnose z-image-turbo --max-steps 8
  cotj diagnose --model analytic --prompt 3 --format json"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diagnose", parents=parents, help="negative gains, the knee of R(K), a run's signature",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("dna", nargs="?", help="DNA file (.npy, .json, .csv; every row is diagnosed), - for stdin, or a shipped mean DNA name")
    source.add_argument("--prompt", help="a prompt (shapes) or condition id (analytic): extract its DNA and run it")
    p.add_argument("--tau", type=_io.probability, default=0.99, help="explained-gain target (default 0.99)")
    p.add_argument("--max-steps", type=_io.steps, metavar="K", help="longest plan (default N // 2)")
    p.add_argument("--grid", metavar="FILE", help="the DNA's noise levels (N,); default (i+1)/N")
    p.add_argument("--run-steps", type=_io.int_in(1, _io.MAX_STEPS), default=50, metavar="S",
                   help="with --prompt: steps of the recorded uniform run (default 50)")
    p.add_argument("--plot", metavar="OUT.png", help="with --prompt: also draw the signature against the DNA")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    _io.add_model_flags(p)
    p.set_defaults(run=run, prog=p.prog)


def _label(args: argparse.Namespace) -> str:
    return f"“{args.prompt}”" if args.model == _io.SHAPES else f"condition {args.prompt}"


def _signature(args: argparse.Namespace) -> tuple[np.ndarray, dict[str, Any]]:
    """The prompt's DNA (N,) and its run's signature report."""
    from cotj.analysis.diagnose import run_signature
    from cotj.cli import _models

    if args.run_steps < 5:
        raise ValueError(f"--run-steps must be >= 5 (a signature needs 2 windows of 4 states), got {args.run_steps}")
    if args.grid:
        raise ValueError("--grid goes with a DNA file; --prompt extracts on the default grid")
    _models.use_threads(args.threads)
    pipe = _models.shapes_pipeline(args.weights) if args.model == _io.SHAPES else None
    dna = _models.prompt_dna(_io.model_spec(args), args.prompt, pipe)
    states, levels = _models.realised_run(_io.model_spec(args), args.prompt, args.run_steps, pipe=pipe)
    sig = run_signature(states, levels, dna)
    hardest = int(np.argmax(sig.signature[0]))
    report = {"run_steps": args.run_steps, "correlation": float(sig.correlation[0]),
              "hardest_window_level": float(sig.levels[hardest]), "levels": sig.levels,
              "signature": sig.signature[0], "dna_at_levels": sig.dna_at[0]}
    if args.plot:
        from cotj.analysis import plots

        fig = plots.signature_vs_dna(sig.levels, sig.signature[0], sig.dna_at[0], correlation=float(sig.correlation[0]),
                                     title=f"{_label(args)}: a {args.run_steps}-step run against the DNA")
        report["plot"] = str(_io.save_figure(fig, args.plot, 100))
    return dna, report


def _text(name: str, summary: dict[str, Any]) -> str:
    lines = [f"{name}: N = {summary['levels']} levels"]
    neg = summary["negative_gains"]
    if neg:
        lines.append("  negative gains (the step down from t raises the one-step error: it undoes work):")
        for g in neg:
            rel = f" ({-100 * g['relative']:.1f} % of d there)" if g["relative"] is not None else ""
            lines.append(f"    t = {g['level']:.3g} -> {g['to']:.3g}: d rises by {-g['gain']:.4g}{rel}")
    else:
        lines.append("  negative gains: none (every step down lowers the one-step error)")
    lines.append(f"  R(K) >= tau = {summary['tau']:g} first at K = {summary['k_tau']} "
                 f"(R = {summary['ratio_at_k_tau']:.4f})")
    lines.append(f"  knee of R(K): K = {summary['knee']} (R = {summary['ratio_at_knee']:.4f}); "
                 "past it each extra step explains little")
    lines.append(f"  plan at tau: t = {_io.levels_text(np.asarray(summary['plan_levels']))} "
                 f"(cost {summary['plan_cost']:.4g})")
    run = summary.get("run")
    if run:
        lines.append(f"  acceleration signature of a {run['run_steps']}-step uniform run: Spearman correlation with "
                     f"the DNA {run['correlation']:+.3f}; it bends hardest at t = {run['hardest_window_level']:.3g}")
        if "plot" in run:
            lines.append(f"  wrote {run['plot']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.prompt is None and args.plot:
        raise ValueError("--plot draws a run's signature: it needs --prompt")
    if args.prompt is not None:
        dna, report = _signature(args)
        rows, names, grid = dna[None], [_label(args)], None
        runs: list[dict[str, Any] | None] = [report]
    else:
        rows = _io.read_rows(args.dna)
        names = [f"row {b}" for b in range(len(rows))]
        grid = _io.read_array(args.grid, "grid") if args.grid else None
        runs = [None] * len(rows)
    summaries = []
    for row, run_report in zip(rows, runs):
        summary = diagnose(row, tau=args.tau, max_steps=args.max_steps, grid=grid).to_dict()
        if run_report is not None:
            summary["run"] = run_report
        summaries.append(summary)
    if args.format == "json":
        _io.print_json(summaries)
    else:
        print("\n".join(_text(n, s) for n, s in zip(names, summaries)))
    return 0
