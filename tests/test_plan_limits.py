"""Limits of the Plan stage: no input aborts the interpreter or allocates without bound,
long plans stop on Ctrl-C, the lever cache stays bounded, and awkward numbers get named errors.

Cases that aborted the interpreter before run in a child process, so that an abort fails the test
instead of killing the run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cli_helpers
import cotj
from cotj import _core

D = np.linspace(0.01, 1.0, 20)
B = np.tile(D, (3, 1))
OUT_OF_RANGE = r"is out of range \(no grid has more than MAX_LEVELS = 10000 levels\)"


def child(code: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Runs ``code`` (after ``import numpy as np, cotj``) in a fresh interpreter."""
    prelude = "import numpy as np, cotj\nfrom cotj import _core\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_max_levels_is_exported():
    assert cotj.MAX_LEVELS == _core.MAX_LEVELS == 10_000


TOO_WIDE = r"{name} has {n} levels, more than MAX_LEVELS = 10000"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ("cotj.plan_batch(np.empty((0, 1_000_000)), 8)", TOO_WIDE.format(name="dna", n=1000000)),
        ("cotj.plan_batch(np.empty((0, 1_000_000)), tau=0.9)", TOO_WIDE.format(name="dna", n=1000000)),
        ("cotj.plan(np.zeros(200_000), 8)", TOO_WIDE.format(name="dna", n=200000)),
        ("cotj.cost_matrix(np.zeros(200_000))", TOO_WIDE.format(name="dna", n=200000)),
        ("cotj.plan_cost(np.zeros(200_000), np.array([5, 1]))", TOO_WIDE.format(name="dna", n=200000)),
        ("cotj.Planner(np.linspace(1e-6, 1, 200_000))", TOO_WIDE.format(name="grid", n=200000)),
        ("cotj.Planner(np.linspace(1e-6, 1, 200_000), (np.ones(200_000), np.ones(200_000)))", TOO_WIDE.format(name="grid", n=200000)),
        ("_core.Lever(np.linspace(1e-6, 1, 10_001))", TOO_WIDE.format(name="grid", n=10001)),
        ("_core.Lever.default(2**62)", TOO_WIDE.format(name="n", n=2**62)),
        ("cotj.plan_batch(cotj.DenseCost(np.empty((0, 20_000, 20_000))), 4)", TOO_WIDE.format(name="edges", n=20000)),
        ("cotj.plan_cost(np.ones(10), np.linspace(1, 0.1, 20_000))", r"steps as noise levels has 20000 levels, more than MAX_LEVELS"),
        ("cotj.plan(np.array([0.5]), 1)", r"dna must have at least 2 levels, got 1"),
        ("cotj.plan(cotj.DenseCost(np.zeros((1, 1))), 1)", r"edges must have at least 2 levels, got 1"),
    ],
)
def test_too_many_or_too_few_levels_are_refused_before_allocating(call, match):
    done = child(f"""
        try:
            {call}
        except ValueError as e:
            print(e)
        else:
            print("no error")
    """)
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-2000:]}"
    assert len(done.stdout.splitlines()) == 1, done.stdout
    assert re.search(match, done.stdout), done.stdout


def test_cotj_plan_refuses_a_row_of_200k_levels_in_one_line():
    done = cli_helpers.cotj("plan", "-", stdin=json.dumps([0.5] * 200_000))
    line = cli_helpers.one_line_error(done, "plan")
    assert "dna has 200000 levels, more than MAX_LEVELS = 10000" in line


def test_a_failed_allocation_is_a_memory_error_not_an_abort():
    """Under a 1 GiB address-space limit the (N, N) outputs and the DP layers of N = 10000 cannot be
    allocated: each is a MemoryError naming the buffer, and the interpreter goes on."""
    done = child("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        d = np.linspace(0.01, 1, 10_000)
        for call in (lambda: cotj.cost_matrix(d), lambda: _core.Lever.default(10_000).matrix(),
                     lambda: cotj.plan(d, tau=0.9, max_steps=10_000)):
            try:
                call()
            except MemoryError as e:
                print(e)
        print(cotj.plan(d[:100], 4).budget)
    """)
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-2000:]}"
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout
    assert lines[0].startswith("out of memory: the cost matrix (N^2 floats) needs 762.9 MiB")
    assert lines[1].startswith("out of memory: the lever matrix (N^2 floats) needs 762.9 MiB")
    assert lines[2].startswith("out of memory: the planning layers (budget x N floats) needs 762.9 MiB")
    assert lines[3] == "4"


def test_the_lever_cache_stays_bounded_across_many_widths():
    (entries, size), (max_entries, max_bytes) = _core._lever_cache()
    for n in range(2, 400, 3):
        cotj.plan(np.linspace(0.01, 1, n), 1)
        (entries, size), _ = _core._lever_cache()
        assert entries <= max_entries and size <= max_bytes
    assert entries == max_entries


def test_memory_stays_bounded_across_many_widths():
    """Planning 60 widths of ~1000 levels (4 MB of lever each, 240 MB if all were kept) keeps the
    resident memory of a fresh interpreter within the cache bound plus a margin."""
    done = child("""
        def rss():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
        cotj.plan(np.linspace(0.01, 1, 999), 2)
        before = rss()
        for n in range(1000, 1060):
            cotj.plan(np.linspace(0.01, 1, n), 2)
        print(rss() - before)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    grown = float(done.stdout)
    cap = _core._lever_cache()[1][1] / 2**20
    assert grown < cap + 24, f"RSS grew by {grown:.0f} MiB over 60 widths (cache bound {cap:.0f} MiB)"


INTERRUPTIBLE = {  # (the input, built before the clock starts; the plan)
    "one row, adaptive (O(N^3))": ("x = np.linspace(0.01, 1, 5000) ** 1.5", "cotj.plan(x, tau=0.99)"),
    "a batch on the thread pool": ("x = np.tile(np.linspace(0.01, 1, 2000) ** 1.5, (32, 1))", "cotj.plan_batch(x, tau=0.99)"),
    "a dense cost": ("x = np.tril(np.ones((4000, 4000)), -1)", "cotj.plan(cotj.DenseCost(x), tau=0.99)"),
}


@pytest.mark.parametrize(("setup", "call"), INTERRUPTIBLE.values(), ids=INTERRUPTIBLE.keys())
def test_ctrl_c_stops_a_long_plan(setup, call):
    """SIGINT half a second into a plan of several seconds raises KeyboardInterrupt within ~100 ms."""
    latency = cli_helpers.ctrl_c_latency(f"cotj.plan(np.linspace(0.01, 1, 100), 4)\n{setup}", call, 0.5, timeout=30)
    assert latency < 0.5, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: cotj.plan(D, 2**70), ValueError, r"budget = 1180591620717411303424 " + OUT_OF_RANGE),
        (lambda: cotj.plan(D, -(2**70)), ValueError, r"budget = -1180591620717411303424 " + OUT_OF_RANGE),
        (lambda: cotj.plan(D, np.uint64(2**64 - 1)), ValueError, r"budget = 18446744073709551615 " + OUT_OF_RANGE),
        (lambda: cotj.plan_batch(B, np.array([3, 2**64 - 1, 4], dtype=np.uint64)), ValueError, r"budget\[1\] = 18446744073709551615 " + OUT_OF_RANGE),
        (lambda: cotj.plan_batch(B, np.array([3, 30, 4], dtype=np.uint64)), ValueError, r"budget\[1\] must lie in 1..=20"),
        (lambda: cotj.plan(D, tau=0.9, max_steps=2**70), ValueError, r"max_steps = 1180591620717411303424 " + OUT_OF_RANGE),
        (lambda: cotj.plan(D, 4, current=2**70), ValueError, r"current = 1180591620717411303424 " + OUT_OF_RANGE),
        (lambda: cotj.plan_batch(B, 4, current=np.array([19, 2**63, 19], dtype=np.uint64)), ValueError, r"current\[1\] = 9223372036854775808 " + OUT_OF_RANGE),
        (lambda: cotj.plan(D, 4, first=np.array([1, 2])), ValueError, r"first must be 'any', 'top' or an int number of levels, got array\(\[1, 2\]\)"),
        (lambda: cotj.plan(D, 4, last=np.array(["any"])), ValueError, r"last must be 'any', 'bottom' or an int"),
        (lambda: cotj.plan(D, 4, first=[1]), ValueError, r"first must be 'any', 'top' or an int"),
        (lambda: cotj.plan(cotj.DenseCost(np.tril(np.ones((10, 10)), -1), start=np.full(10, np.inf)), tau=0.9), ValueError,
         r"the default max_steps = 5 is infeasible for row 0: every plan of 1..=5 levels"),
        (lambda: _core.plan_batch(B, _core.Lever.default(20), budget=2**64, first=20, last=20), ValueError, r"budget = 18446744073709551616 " + OUT_OF_RANGE),
        (lambda: cotj.plan(cotj.DenseCost(np.float64(1.0)), 4), ValueError, r"edges must be \(N, N\) or \(B, N, N\), got shape \(\)"),
        (lambda: cotj.plan_batch(cotj.DenseCost(np.empty((0, 2**20, 2**20))), 4), ValueError, r"edges has 1048576 levels, more than MAX_LEVELS"),
    ],
)
def test_awkward_numbers_get_named_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_default_max_steps_is_feasible_under_pinned_ends():
    """N // 2 = 1 on two levels with both ends pinned: the default is raised to 2 rather than blamed."""
    p = cotj.plan(np.array([0.3, 0.7]), tau=0.9, first="top", last="bottom")
    assert list(p.steps) == [1, 0] and len(p.curve) == 2
    assert cotj.plan(D, tau=0.9).curve.shape == (10,)


def test_the_portable_kernel_can_be_forced():
    """COTJ_PORTABLE=1 (read once per process) selects the non-FMA DP, which plans the same."""
    code = """
        d = np.linspace(0.01, 1, 300) ** 1.7
        p = cotj.plan_batch(np.stack([d, d[::-1]]), tau=0.99)
        print(_core.KERNEL)
        print(p.steps.tolist())
    """
    portable = child(code, COTJ_PORTABLE="1")
    default = child(code, COTJ_PORTABLE="0")
    assert portable.returncode == default.returncode == 0, portable.stderr + default.stderr
    assert portable.stdout.splitlines()[0] == "portable"
    assert default.stdout.splitlines()[0] in ("fused", "portable")
    assert portable.stdout.splitlines()[1] == default.stdout.splitlines()[1]
