"""``cotj plot``: PNG figures of a DNA and of its plans (:mod:`cotj.analysis.plots`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import cotj
from cotj.cli import _io

__all__ = ["add_parser", "schedule_set"]

DESCRIPTION = """PNG figures (matplotlib; the 'plot' extra). Figures:
  dna        DNA curves of one or more files' rows, log scale
  cost       the cost matrix as a heatmap with the chosen path drawn on it
  ratio      R(K) against K with tau, the chosen K and the knee marked
  gains      per-level gains, negative gains (steps that undo work) highlighted
  schedules  planned levels against uniform and shifted levels of the same K

Examples:
  cotj plot dna qwen-image z-image-turbo --out dna.png
  cotj plot cost qwen-image --budget 10 --out cost.png"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plot", parents=parents, help="PNG figures: DNA, cost heatmap, R(K), gains, schedules",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    figures = p.add_subparsers(title="figures", dest="figure", required=True, metavar="<figure>")
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--out", required=True, metavar="OUT.png", help="PNG file to write")
    out.add_argument("--dpi", type=_io.int_in(1, 1200), default=100, help="pixels per inch, 1..1200 (default 100)")
    out.add_argument("--size", type=_io.figsize, metavar="WxH", help="figure size in inches (default per figure)")
    one = argparse.ArgumentParser(add_help=False)
    one.add_argument("dna", help="DNA file (.npy, .json, .csv), - for stdin, or a shipped mean DNA: qwen-image, z-image-turbo")
    one.add_argument("--row", type=int, default=0, help="which row of a (B, N) file (default 0)")
    one.add_argument("--grid", metavar="FILE", help="the DNA's noise levels (N,); default (i+1)/N")
    common = [*parents, out]

    def figure(name: str, help_text: str, run: Any, extra: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        f = figures.add_parser(name, parents=[*common, *extra], help=help_text, description=help_text)
        f.set_defaults(run=run, prog=f.prog)
        return f

    f = figure("dna", "DNA curves of every row of one or more files (log scale)", _dna, [])
    f.add_argument("files", nargs="+", help="DNA files (.npy, .json, .csv), - for stdin, or shipped mean DNA names")
    f.add_argument("--labels", help="comma list, one legend entry per row (default: file names)")
    f.add_argument("--grid", metavar="FILE", help="the DNA's noise levels (N,); default (i+1)/N")
    f = figure("cost", "the cost matrix d_j·L(j, i) as a heatmap, with the plan's path", _cost, [one])
    f.add_argument("--budget", type=_io.steps, default=8, metavar="K",
                   help="steps of the drawn plan (default 8)")
    f = figure("ratio", "R(K) against K with tau, the chosen K and the knee", _ratio, [one])
    f.add_argument("--tau", type=_io.probability, default=0.99, help="explained-gain target (default 0.99)")
    f.add_argument("--max-steps", type=_io.steps, metavar="K", help="longest plan (default N // 2)")
    figure("gains", "per-level gains, negative gains highlighted", _gains, [one])
    f = figure("schedules", "planned levels against uniform and shifted levels of the same K", _schedules, [one])
    f.add_argument("--budget", type=_io.steps, default=8, metavar="K", help="steps (default 8)")
    f.add_argument("--shift", type=_io.finite_float, default=3.0,
                   help="the shifted schedule's shift s (default 3, as SD3)")


def _save(args: argparse.Namespace, fig: Any) -> int:
    print(f"wrote {_io.save_figure(fig, args.out, args.dpi)}")
    return 0


def _size(args: argparse.Namespace) -> dict[str, Any]:
    return {"figsize": args.size} if args.size else {}


def _one(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    rows = _io.read_rows(args.dna)
    if not -rows.shape[0] <= args.row < rows.shape[0]:
        raise ValueError(f"--row {args.row} is out of range: {args.dna} has {rows.shape[0]} rows")
    grid = _io.read_array(args.grid, "grid") if args.grid else None
    return rows[args.row], grid


def _dna(args: argparse.Namespace) -> int:
    from cotj.analysis import plots

    rows, names = [], []
    for source in args.files:
        d = _io.read_rows(source)
        stem = "stdin" if source == _io.STDIN else Path(source).stem
        rows.append(d)
        names += [stem] if len(d) == 1 else [f"{stem}[{b}]" for b in range(len(d))]
    widths = {r.shape[1] for r in rows}
    if len(widths) != 1:
        raise ValueError(f"the files' DNA have different lengths {sorted(widths)}: one grid per figure")
    labels = args.labels.split(",") if args.labels else names
    grid = _io.read_array(args.grid, "grid") if args.grid else None
    return _save(args, plots.dna_curves(np.concatenate(rows), labels, grid, **_size(args)))


def _cost(args: argparse.Namespace) -> int:
    from cotj.analysis import plots

    dna, grid = _one(args)
    p = cotj.plan(dna, args.budget, grid=grid)
    title = f"Edge costs and the planned path (K = {p.budget}, C = {p.cost:.3g})"
    return _save(args, plots.cost_heatmap(cotj.cost_matrix(dna, grid=grid), p.steps, grid, title=title, **_size(args)))


def _ratio(args: argparse.Namespace) -> int:
    from cotj.analysis import plots
    from cotj.analysis.diagnose import diagnose

    dna, grid = _one(args)
    d = diagnose(dna, tau=args.tau, max_steps=args.max_steps, grid=grid)
    return _save(args, plots.ratio_curve(d.ratio, tau=d.tau, chosen=d.plan.budget, knee=d.knee, **_size(args)))


def _gains(args: argparse.Namespace) -> int:
    from cotj.analysis import plots

    dna, grid = _one(args)
    return _save(args, plots.gain_bars(cotj.gains(dna), grid, **_size(args)))


def schedule_set(dna: np.ndarray, k: int, shift: float, grid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Planned, uniform and shifted levels of K steps (:func:`cotj.planning.schedules.uniform`,
    :func:`~cotj.planning.schedules.shifted`), named with their cost C under ``dna``."""
    from cotj.planning.schedules import shifted as shifted_levels
    from cotj.planning.schedules import uniform as uniform_levels

    uniform, shifted = uniform_levels(k), shifted_levels(k, shift)
    planned = cotj.plan(dna, k, grid=grid).levels

    def cost(levels: np.ndarray) -> str:
        return f"C = {cotj.plan_cost(dna, levels, grid=grid):.4g}"

    return {f"planned\n{cost(planned)}": planned, f"uniform\n{cost(uniform)}": uniform,
            f"shifted (s = {shift:g})\n{cost(shifted)}": shifted}


def _schedules(args: argparse.Namespace) -> int:
    from cotj.analysis import plots

    dna, grid = _one(args)
    named = schedule_set(dna, args.budget, args.shift, grid)
    return _save(args, plots.schedule_comparison(named, title=f"Schedules of K = {args.budget} steps", **_size(args)))
