"""Run the speed benchmarks (Python API with pytest-benchmark): the table of benches/README.md, or a
regression check of cotj's own benchmarks against a saved baseline.

    python benches/speed.py                  # the table: both cores, then RAYON_NUM_THREADS=1
    python benches/speed.py --quick          # fewer rounds
    python benches/speed.py --save-baseline  # time cotj's benchmarks and save them as "baseline"
    python benches/speed.py --compare        # time them again; fail if a median is >10% slower

The table is markdown: median time per call, prompts per second, and the ratio to the numpy and
networkx baselines, with the machine and the date. The regression runs time the benchmarks whose
name says ``cotj`` or ``small_calls`` (not the slow numpy and networkx references), save them in
pytest-benchmark's storage (``.benchmarks/`` at the repository root, one folder per machine and
Python) and exit with status 1 when the comparison fails; ``--fail`` sets the threshold in
pytest-benchmark's syntax (``median:10%``, ``min:5%``, ``mean:0.000002`` seconds...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from cotj import _core

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STORAGE = ROOT / ".benchmarks"
"""pytest-benchmark's default storage for runs started at the repository root."""
REGRESSION = "cotj or small_calls"
"""The ``-k`` expression of the benchmarks a regression run times: cotj's own, not the references."""


def pytest(*args: str, env: dict[str, str] | None = None) -> int:
    """Runs benches/test_speed.py with the benchmarks enabled and ``args``; its exit status."""
    cmd = [sys.executable, "-m", "pytest", str(HERE / "test_speed.py"), "-q", "--benchmark-enable", "-p", "no:cacheprovider", *args]
    return subprocess.run(cmd, env=env, cwd=ROOT).returncode


def run(threads: int | None, quick: bool) -> dict[str, float]:
    """Median seconds per call of every benchmark, by test name."""
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        args = [f"--benchmark-json={out}"]
        if quick:
            args += ["--benchmark-max-time=0.2", "--benchmark-min-rounds=3"]
        if pytest(*args, env=env):
            sys.exit("the benchmarks failed")
        data = json.loads(out.read_text())
    return {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}


def save_baseline(name: str) -> int:
    """Times the regression benchmarks and saves them as ``name``."""
    return pytest("-k", REGRESSION, f"--benchmark-save={name}")


def latest(name: str) -> Path:
    """The newest saved run called ``name`` (pytest-benchmark names it ``NNNN_name.json``)."""
    runs = sorted(STORAGE.glob(f"*/[0-9][0-9][0-9][0-9]_{name}.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        sys.exit(f"no saved run called {name!r} in {STORAGE}: save one first with --save-baseline {name}")
    return runs[-1]


def compare(name: str, fail: str) -> int:
    """Times the regression benchmarks again and compares them with the newest run ``name``."""
    return pytest("-k", REGRESSION, f"--benchmark-compare={latest(name)}", f"--benchmark-compare-fail={fail}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(both: dict[str, float], one: dict[str, float]) -> str:
    def us(s: float) -> str:
        return f"{s * 1e6:,.1f} µs" if s < 1e-3 else f"{s * 1e3:,.2f} ms" if s < 1 else f"{s:,.2f} s"

    rows = [
        ("one prompt, K = 8 (`cotj.plan`)", "test_plan_one_cotj", "test_plan_one_numpy", "test_plan_one_networkx", 1),
        ("one prompt, adaptive τ = 0.99, max_steps = 50", "test_adaptive_one_cotj", None, "test_adaptive_one_networkx", 1),
        ("`plan_batch` 4096 prompts, K = 8", "test_batch_cotj", "test_batch_numpy", None, 4096),
        ("4096 prompts in calls of 8 rows, 1 Python thread", "test_small_calls_one_python_thread", "test_batch_numpy", None, 4096),
        ("4096 prompts in calls of 8 rows, 2 Python threads", "test_small_calls_two_python_threads", "test_batch_numpy", None, 4096),
        ("dense cost, one plan, K = 8, shared (N, N) matrix (`cotj.plan(cotj.DenseCost(...))`)", "test_dense_one_cotj", "test_plan_one_numpy", None, 1),
        ("dense cost, 4096 plans, K = 8, shared matrix + per-row `scale`", "test_dense_batch_cotj", "test_batch_numpy", None, 4096),
    ]
    lines = [
        "| case | cotj, 2 cores | cotj, RAYON_NUM_THREADS=1 | prompts/s (2 cores) | numpy baseline | × numpy | networkx baseline | × networkx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, mine, np_name, nx_name, count in rows:
        t = both[mine]
        cells = [label, us(t), us(one[mine]), f"{count / t:,.0f}"]
        for name in (np_name, nx_name):
            cells += [us(both[name]), f"{both[name] / t:,.0f}×"] if name else ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    head = (f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"DP kernel {_core.KERNEL}, load average {load}. Date: {dt.date.today()}.")
    return head + "\n\n" + "\n".join(lines)


def multistep_table(both: dict[str, float], one: dict[str, float]) -> str:
    """The multistep solvers' planning (the Rust pair DP, issue 17): medians against the targets, and planning as
    a share of the model calls of a closed-loop sample of the shapes generator."""
    def us(s: float) -> str:
        return f"{s * 1e6:,.0f} µs" if s < 1e-3 else f"{s * 1e3:,.2f} ms" if s < 1 else f"{s:,.2f} s"

    rows = [
        ("one UniPC plan, K = 10 (`TeacherCost.plan`)", "test_pairs_plan_cotj[unipc]", "test_pairs_plan_numpy", "≤ 1 ms"),
        ("one DPM-Solver++(2M) plan, K = 10", "test_pairs_plan_cotj[dpmpp_2m]", None, "≤ 1 ms"),
        ("first closed-loop replanning step, UniPC (`Replanner.next`)", "test_replan_first_step_cotj[unipc]",
         "test_replan_first_step_numpy", "≤ 0.5 ms"),
        ("first closed-loop replanning step, DPM-Solver++(2M)", "test_replan_first_step_cotj[dpmpp_2m]", None, "≤ 0.5 ms"),
    ]
    lines = ["| case | cotj, 2 cores | cotj, RAYON_NUM_THREADS=1 | numpy pair DP | × numpy | target |", "|---|---|---|---|---|---|"]
    for label, mine, ref_name, target in rows:
        cells = [label, us(both[mine]), us(one[mine])]
        cells += [us(both[ref_name]), f"{both[ref_name] / both[mine]:,.0f}×"] if ref_name else ["—", "—"]
        lines.append("| " + " | ".join(cells + [target]) + " |")
    call = both["test_model_call_shapes"]
    lines += ["", f"One model call of the shapes generator (batch 1, guidance 2, torch's default threads): {us(call)}.", "",
              "| solver | planning of one closed-loop sample, K = 10 (plan + 10 replanning steps) | per model call | share of a model call (target < 1 %) |",
              "|---|---|---|---|"]
    for solver in ("euler", "dpmpp_2m", "unipc"):
        t = both[f"test_closed_loop_planning_cotj[{solver}]"]
        lines.append(f"| {solver} | {us(t)} | {us(t / 10)} | {100 * t / 10 / call:.3f} % |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run of the table)")
    parser.add_argument("--save-baseline", metavar="NAME", nargs="?", const="baseline",
                        help="time cotj's benchmarks and save them as NAME (default: baseline)")
    parser.add_argument("--compare", metavar="NAME", nargs="?", const="baseline",
                        help="time cotj's benchmarks and compare them with the newest run NAME (default: baseline)")
    parser.add_argument("--fail", default="median:10%", metavar="EXPR",
                        help="with --compare: the regression that fails the run (default: median:10%%)")
    args = parser.parse_args()
    if args.save_baseline:
        sys.exit(save_baseline(args.save_baseline))
    if args.compare:
        sys.exit(compare(args.compare, args.fail))
    both = run(None, args.quick)
    one = run(1, args.quick)
    print(table(both, one))
    print()
    print(multistep_table(both, one))


if __name__ == "__main__":
    main()
