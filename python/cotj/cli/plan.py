"""``cotj plan``: DNA rows -> plans (:func:`cotj.plan_batch`), as a table or JSON. numpy only."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from numpy.typing import NDArray

import cotj
from cotj.cli import _io
from cotj.planning.schedules import check_schedule

__all__ = ["add_parser", "add_plan_flags", "budget", "plan_options", "run"]

DESCRIPTION = """Plan the sampling schedule of each DNA row (cotj.plan_batch).

Input: a .npy, .json or .csv file with one row (N,) or many (B, N), or '-' to read stdin
(a JSON array, a JSON array of arrays, one JSON array per line, or CSV lines).
Output: a table, or with --format json a list with one object per row:
{"steps", "levels", "cost", "budget"} and, for adaptive runs (--tau), "curve" (C*_K) and
"ratio" (R(K)) for K = 1..max_steps (null where no plan of that length exists).

Example: cotj plan qwen-image --budget 10
         cotj plan dna.npy --tau 0.99 --max-steps 50 --format json"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", parents=parents, help="DNA -> plan(s), as a table or JSON",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_plan_flags(p)
    p.add_argument("dna", help="DNA file (.npy, .json, .csv), - for stdin, or a shipped mean DNA: qwen-image, z-image-turbo")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    p.set_defaults(run=run, prog=p.prog)


def add_plan_flags(p: argparse.ArgumentParser) -> None:
    """The flags of :func:`cotj.plan_batch`; shared with the commands that plan."""
    length = p.add_mutually_exclusive_group()
    length.add_argument("--budget", type=budget, metavar="K",
                        help=f"steps per plan, 1..{_io.MAX_STEPS}: an int, or a comma list with one K per row (default 8)")
    length.add_argument("--tau", type=_io.probability,
                        help="adaptive length: the smallest K whose plan explains this share of the gain (paper: 0.99)")
    p.add_argument("--max-steps", type=_io.steps, metavar="K",
                   help=f"longest adaptive plan, 1..{_io.MAX_STEPS} (with --tau; default N // 2)")
    p.add_argument("--first", type=_io.window("top"), default="any", metavar="any|top|INT",
                   help="levels that may start a plan: any, top (t = 1 only), or the INT highest (default any)")
    p.add_argument("--last", type=_io.window("bottom"), default="any", metavar="any|bottom|INT",
                   help="levels that may end a plan: any, bottom (lowest only), or the INT lowest (default any)")
    p.add_argument("--grid", metavar="FILE", help="the DNA's noise levels (N,), ascending in (0, 1]; default (i+1)/N")
    p.add_argument("--schedule", metavar="FILE",
                   help="the path x_t = a·x0 + s·eps on the grid as a (2, N) array (rows a and s); needs --grid; "
                        "default the linear flow")


def budget(text: str) -> int | NDArray[np.int64]:
    """argparse type for ``--budget``: an int in 1..MAX_STEPS, or a comma list of them (one K per DNA row)."""
    try:
        values = [_io.steps(v) for v in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"must be an int or a comma list of ints: {exc}") from None
    return values[0] if len(values) == 1 else np.asarray(values, dtype=np.int64)


def plan_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`cotj.plan_batch` from the parsed flags."""
    grid = _io.read_array(args.grid, "grid") if args.grid else None
    schedule = None
    if args.schedule:
        a_s = _io.read_array(args.schedule, "schedule")
        if a_s.ndim != 2 or a_s.shape[0] != 2:
            raise ValueError(f"--schedule must hold two rows (a and s), got shape {a_s.shape}")
        schedule = (a_s[0], a_s[1])
        if grid is not None:
            try:
                schedule = check_schedule(grid, *schedule)
            except ValueError as exc:
                raise ValueError(f"--schedule: {exc}") from None
    return dict(budget=args.budget, tau=args.tau, max_steps=args.max_steps, first=args.first, last=args.last,
                grid=grid, schedule=schedule)


def run(args: argparse.Namespace) -> int:
    dna = _io.read_rows(args.dna)
    batch = cotj.plan_batch(dna, **plan_options(args))
    plans = list(batch)
    if args.format == "json":
        _io.print_json([_io.plan_record(p) for p in plans])
        return 0
    adaptive = batch.ratio is not None
    header = ["row", "K", "cost", *(["R(K)"] if adaptive else []), "levels (noisiest first)"]
    rows = []
    for b, p in enumerate(plans):
        ratio = [f"{p.ratio[p.budget - 1]:.4f}"] if adaptive and p.ratio is not None else []
        rows.append([str(b), str(p.budget), f"{p.cost:.6g}", *ratio, _io.levels_text(p.levels)])
    print(_io.table(header, rows))
    if batch.ratio is not None:
        print(f"adaptive: smallest K with R(K) >= tau = {args.tau:g} (max_steps {batch.ratio.shape[1]})")
    return 0
