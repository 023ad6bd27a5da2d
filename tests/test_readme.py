"""The README's Python examples run as written, from a directory outside the checkout (as after ``pip install``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    assert ROOT not in tmp_path.resolve().parents
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})


# The command-line examples that need no model (numpy and matplotlib only): every line of the README's bash blocks
# that runs `cotj plan`, `cotj diagnose` on a DNA or `cotj plot`, as a shell would, from an empty directory.
SHELL = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
         for line in block.splitlines()
         if re.match(r"^(echo .*\| )?cotj (plan|plot|diagnose (?!--prompt))", line.strip())]  # fmt: skip


def test_readme_lists_its_planning_commands():
    assert len(SHELL) >= 4 and any(c.startswith("cotj plan qwen-image") for c in SHELL)


@pytest.mark.parametrize("command", SHELL, ids=[f"cli{i}" for i in range(len(SHELL))])
def test_readme_command_runs_outside_the_checkout(command, tmp_path):
    import os
    import subprocess
    import sys

    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "MPLBACKEND": "Agg"}
    done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (command, done.stderr)
    assert done.stdout.strip() or any(tmp_path.iterdir())  # it printed a plan or wrote its figure
