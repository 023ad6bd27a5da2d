"""Shared by the property-test files (tests/test_property_*.py): hypothesis settings, extreme values, the
check of a refusal, and the runner that executes a file's properties in a child pytest process, so that an
input that aborts the interpreter (a failed allocation, a panic across the FFI) fails the run's test
instead of killing the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CHILD = "COTJ_PROPERTY_CHILD"
in_child = pytest.mark.skipif(os.environ.get(CHILD) != "1", reason="runs in a child process (see tests/property_child.py)")
EXAMPLES = int(os.environ.get("COTJ_PROPERTY_EXAMPLES", "150"))
"""Examples per property; raise it (e.g. 5000) for a deeper search."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_MESSAGE = 1000

EXTREME = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e-300, 2.0**63, -(2.0**63)]),
)
DTYPES = st.sampled_from(["<f8", ">f8", "<f4", "<f2", "|i1", "<i8", "<u8", "|b1", "<c16"])


def refused_well(exc: BaseException) -> None:
    """A documented refusal: ValueError or TypeError with a short, non-empty message."""
    assert isinstance(exc, (ValueError, TypeError)), repr(exc)
    assert 0 < len(str(exc)) <= MAX_MESSAGE, str(exc)[:2000]


def run_properties_in_child(test_file: str, timeout: float = 1500) -> None:
    """Runs the tests of ``test_file`` in a child pytest process and asserts they all ran and passed; the
    caller's test (named ``..._aborts_the_interpreter``) is left out there, and skipped when this process is
    itself the child."""
    if os.environ.get(CHILD) == "1":
        pytest.skip("this is the child")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test_file, "-k", "not aborts_the_interpreter"],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, CHILD: "1", "OMP_NUM_THREADS": "1"},
        cwd=Path(test_file).parent,
    )
    where = "killed by signal " + str(-done.returncode) if done.returncode < 0 else f"exit status {done.returncode}"
    assert done.returncode == 0, f"child pytest ended with {where}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1], done.stdout[-2000:]
