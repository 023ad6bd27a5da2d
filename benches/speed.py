"""Run the speed benchmarks (Python API with pytest-benchmark) and print the table of benches/README.md.

    python benches/speed.py            # both cores, then RAYON_NUM_THREADS=1
    python benches/speed.py --quick    # fewer rounds

Prints a markdown table: median time per call, prompts per second, and the ratio to the numpy
and networkx baselines, with the machine and the date.
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

HERE = Path(__file__).resolve().parent


def run(threads: int | None, quick: bool) -> dict[str, float]:
    """Median seconds per call of every benchmark, by test name."""
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE / "test_speed.py"), "-q", "--benchmark-enable",
               f"--benchmark-json={out}", "-p", "no:cacheprovider"]
        if quick:
            cmd += ["--benchmark-max-time=0.2", "--benchmark-min-rounds=3"]
        subprocess.run(cmd, check=True, env=env, cwd=HERE.parent)
        data = json.loads(out.read_text())
    return {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}


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
        ("dense cost, one plan, K = 8, shared (N, N) matrix (`cotj.plan(None, cost=...)`)", "test_dense_one_cotj", "test_plan_one_numpy", None, 1),
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
    head = f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}. Date: {dt.date.today()}."
    return head + "\n\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    both = run(None, args.quick)
    one = run(1, args.quick)
    print(table(both, one))


if __name__ == "__main__":
    main()
