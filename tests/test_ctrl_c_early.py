"""Ctrl-C that comes early, before the core's first signal check, still stops a long plan.

The binding checks for signals every ``Stop::PERIOD`` (20 ms) of work; a SIGINT that arrives before the first
check (while the default grid of a wide DNA is built, or in the first 20 ms of a call) must not be lost to the
Python code that finds out whether the call runs on the main thread. Each case runs in a child process that would
plan for several seconds uninterrupted, and must raise KeyboardInterrupt within 2 s of the signal.
"""

from __future__ import annotations

import pytest

from cli_helpers import ctrl_c_latency

EARLY = {  # (levels of the DNA, seconds between "ready" and SIGINT); each plan runs for seconds uninterrupted, so a
    # parent that a loaded machine wakes late still signals while the plan runs
    "in the first 20 ms of the call": (4000, 0.005),
    "while the default grid of a wide DNA is built": (5000, 0.2),
}


@pytest.mark.parametrize(("levels", "delay"), EARLY.values(), ids=EARLY.keys())
def test_an_early_ctrl_c_stops_a_long_plan(levels, delay):
    latency = ctrl_c_latency(f"x = np.linspace(0.01, 1, {levels}) ** 1.5", "cotj.plan(x, tau=0.99)", delay, timeout=60)
    assert latency < 2.0, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"
