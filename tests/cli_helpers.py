"""Running the ``cotj`` command line in a subprocess, as a user would, for the tests/test_cli_*.py files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
QWEN = DATA / "qwenimage_mean_dna.json"
TURBO = DATA / "zimageturbo_mean_dna.json"


def cotj(*args: object, stdin: str | None = None, cwd: Path | None = None, timeout: float = 120,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m cotj ARGS`` with one torch thread and no progress bars; text output captured."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cotj", *map(str, args)], input=stdin, capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env=full_env)


def one_line_error(done: subprocess.CompletedProcess, command: str) -> str:
    """Assert a failed run printed exactly one line ``cotj <command>: error: ...`` and no traceback;
    returns the line."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cotj {command}: error: "), lines[0]
    assert "Traceback" not in done.stderr
    return lines[0]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, and asserts it is not blank."""
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        pixels = img.convert("L")
        lo, hi = pixels.getextrema()
        assert hi - lo > 50, f"{path} looks blank"
        assert sum(1 for count in pixels.histogram() if count) > 8, f"{path} has almost no tones"
        return img.size


def _sigint_default() -> None:
    """``preexec_fn`` of a child that must receive Ctrl-C: SIGINT unblocked and at its default disposition, whatever
    the test process inherited or a library in it set (a child starts with its parent's signal mask and ignored
    signals, and then would never see the SIGINT a Ctrl-C test sends)."""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_latency(setup: str, call: str, delay: float, timeout: float = 120) -> float:
    """Run ``setup`` (Python lines, after ``import time, numpy as np, cotj``) in a child, then ``call`` (one line),
    send SIGINT ``delay`` seconds after ``call`` starts, assert the child raised KeyboardInterrupt (not that
    ``call`` finished) and return the seconds between the signal and the KeyboardInterrupt."""
    import os
    import signal
    import time

    code = (f"import time, numpy as np, cotj\n{setup}\nprint('ready', flush=True)\n"
            f"try:\n    {call}\n    print('finished')\nexcept KeyboardInterrupt:\n    print('interrupted', time.time())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_sigint_default)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    assert out.startswith("interrupted"), f"the call ran on after SIGINT: {out!r} {err[-2000:]}"
    return float(out.split()[1]) - sent
