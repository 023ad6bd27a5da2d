"""Ctrl-C that comes early, before the core's first signal check, still stops a long plan.

The binding checks for signals every ``Stop::PERIOD`` (20 ms) of work; a SIGINT that arrives before the first
check (while the default grid of a wide DNA is built, or in the first 20 ms of a call) used to be consumed by the
Python code that finds out whether the call runs on the main thread, and the plan ran to its end. Each case runs in
a child process that would plan for several seconds uninterrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cli_helpers import sigint_default

EARLY = {  # (levels of the DNA, seconds between "ready" and SIGINT); each plan runs for seconds uninterrupted, so a
    # parent that a loaded machine wakes late still signals while the plan runs
    "in the first 20 ms of the call": (4000, 0.005),
    "while the default grid of a wide DNA is built": (5000, 0.2),
}


@pytest.mark.parametrize(("levels", "delay"), EARLY.values(), ids=EARLY.keys())
def test_an_early_ctrl_c_stops_a_long_plan(levels, delay):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, numpy as np, cotj
        x = np.linspace(0.01, 1, {levels}) ** 1.5
        print("ready", flush=True)
        start = time.time()
        try:
            cotj.plan(x, tau=0.99)
            print("finished", time.time() - start)
        except KeyboardInterrupt:
            print("interrupted", time.time())
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=sigint_default)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out.startswith("interrupted"), f"the plan ran on after SIGINT: {out!r} {err[-2000:]}"
    latency = float(out.split()[1]) - sent
    assert latency < 2.0, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"
