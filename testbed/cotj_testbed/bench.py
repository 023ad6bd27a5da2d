"""``python -m cotj_testbed.bench``: the benchmark tables of the repository's ``benches/`` folder in one call
(thin: the benchmarks themselves live there)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from cotj_testbed import outputs

__all__ = ["main", "run"]

BENCHES = Path(__file__).resolve().parents[2] / "benches"
"""The checkout's benches/ folder (this distribution is installed from the checkout)."""

DESCRIPTION = """Run the benchmarks of the repository's benches/ folder and print (or write) their tables.

Speed: benches/speed.py's run() and table(): the Python API against numpy and networkx baselines,
on both cores and with RAYON_NUM_THREADS=1 (pytest-benchmark; the 'bench' extra).
Quality (--quality): runs benches/quality.py --tier T (1: the exact Gaussian-mixture model,
2: the shapes model, with --weights) and prints its table; it also writes its report files
(JSON, markdown, PSNR plot) into runs/quality/, or with --update into benches/results/ (the
committed report). benches/ is the checkout's, or give --benches DIR.

Examples (times measured on the project's 2-core machine):
  python -m cotj_testbed.bench --quick
  python -m cotj_testbed.bench --no-speed --quality --tier 1 --out runs/tables.md   # 8 min"""


def _folder(given: str | None) -> Path:
    folder = Path(given) if given is not None else BENCHES
    if not (folder / "speed.py").is_file():
        raise FileNotFoundError(2, "no speed benchmark (benches/speed.py); give --benches DIR", str(folder / "speed.py"))
    return folder


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cotj_benches_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args: argparse.Namespace) -> int:
    folder = _folder(args.benches)
    quality = folder / "quality.py"
    if args.quality and not quality.is_file():
        raise FileNotFoundError(2, "no quality benchmark yet (benches/quality.py is not written)", str(quality))
    if args.no_speed and not args.quality:
        raise ValueError("--no-speed without --quality leaves nothing to run")
    if args.out is not None:
        outputs.output(args.out, "--out", update=args.update)
    tables = []
    if not args.no_speed:
        speed = _module(folder / "speed.py")
        tables.append("## Speed\n\n" + speed.table(speed.run(None, args.quick), speed.run(1, args.quick)))
    if args.quality:
        cmd = [sys.executable, str(quality), "--tier", str(args.tier), *(["--quick"] if args.quick else []),
               *(["--weights", args.weights] if args.weights else []), *(["--update"] if args.update else [])]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=folder.parent)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ChildProcessError(f"{quality} failed with status {done.returncode}: {last}")
        tables.append("## Quality\n\n" + done.stdout.strip())
    text = "\n\n".join(tables) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = outputs.Parser(prog="python -m cotj_testbed.bench", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benches", metavar="DIR", help=f"the benches/ folder (default {BENCHES})")
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    p.add_argument("--no-speed", action="store_true", help="skip the speed benchmark")
    p.add_argument("--quality", action="store_true", help="run the quality benchmark (benches/quality.py)")
    p.add_argument("--tier", type=int, choices=(1, 2), default=1, help="quality benchmark tier (default 1)")
    p.add_argument("--weights", metavar="PATH", help="tier 2: the shapes generator's weights (file or run folder)")
    p.add_argument("--out", metavar="FILE", help="write the tables (markdown) here instead of printing them")
    p.add_argument("--update", action="store_true",
                   help="the quality benchmark replaces the committed report in benches/results/")
    args = p.parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError, ChildProcessError) as exc:
        outputs.fail(p, exc)


if __name__ == "__main__":
    raise SystemExit(main())
