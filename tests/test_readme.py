"""The documentation's examples run as written.

- Every Python block of the README, of docs/guide.md and of the package index description (python/README.pypi.md),
  from a directory outside the checkout (as after ``pip install``).
- The command lines of the README's "Command line" section, as a user types them after the set-up: in a bash
  shell whose PATH starts with the venv's bin directory (what ``source .venv/bin/activate`` gives), from an empty
  temporary directory, one after the other (later lines read what earlier ones wrote). Each must exit 0 and leave
  ``git status --porcelain`` of the checkout as it was. A line is run when it calls ``cotj``; a line whose
  comment starts with ``long:`` (``# long: 11 min``) is skipped: it takes minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {"README": README, "guide": (ROOT / "docs" / "guide.md").read_text(),
        "pypi": (ROOT / "python" / "README.pypi.md").read_text()}
BLOCKS = [(f"{name}-block{i}", code) for name, text in DOCS.items()
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.S))]


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_python_example_runs(name, code, tmp_path, monkeypatch):
    assert ROOT not in tmp_path.resolve().parents
    monkeypatch.chdir(tmp_path)
    exec(compile(code, name, "exec"), {})


def section(markdown: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, flags=re.S | re.M)
    if match is None:
        raise ValueError(f"no section '## {title}'")
    return match.group(1)


def bash_lines(markdown: str) -> list[str]:
    """The lines of the text's bash blocks, without blank and comment-only lines."""
    return [line for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S) for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def is_long(line: str) -> bool:
    """A line marked as taking minutes: its comment starts with ``long:``."""
    return re.search(r"\s#\s*long:", line) is not None


def calls_cotj(line: str) -> bool:
    """The line runs the ``cotj`` command (first, or after a pipe or ``&&``)."""
    return re.search(r"(^|[|&;]\s*)cotj\s", line.strip()) is not None


CLI = [line for line in bash_lines(section(README, "Command line")) if calls_cotj(line) and not is_long(line)]


def test_the_line_rules():
    assert is_long("python benches/quality.py --tier 1    # long: 9 min")
    assert not is_long("cotj plan qwen-image --budget 10    # K, cost, long levels")
    assert calls_cotj("printf '1\\n' | cotj predict --prompts - | cotj plan -")
    assert not calls_cotj("python -m cotj_testbed.bench --quick")
    assert section("## A\nx\n## Command line\ny\nz\n## B\nw\n", "Command line") == "y\nz\n"


def test_the_readme_lists_its_commands():
    assert any(line.startswith("cotj plan qwen-image") for line in CLI)
    assert any(line.startswith("cotj sample ") for line in CLI)
    assert any("| cotj plan -" in line for line in CLI)


def test_the_readme_says_how_to_reach_the_venv():
    setup = section(README, "Set up")
    assert "source .venv/bin/activate" in setup and ".venv/bin/" in setup
    assert "download.pytorch.org/whl/cpu" in setup  # the smaller CPU-only torch


def test_every_long_line_of_the_readme_states_its_time():
    long = [line for line in bash_lines(README) if is_long(line)]
    assert long
    for line in long:
        assert re.search(r"long: \d+(\.\d+)? (s|min|h)\b", line), line


def git_status() -> str | None:
    """``git status --porcelain`` of the checkout, or None outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    done = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


@pytest.mark.slow
def test_the_readme_command_lines_run_as_typed(tmp_path):
    venv = Path(sys.prefix)  # the environment running the tests: what `source .venv/bin/activate` selects
    assert (venv / "bin" / "cotj").is_file(), f"no cotj command in {venv / 'bin'}: run the README's set-up"
    assert ROOT not in tmp_path.resolve().parents
    env = {**os.environ, "PATH": str(venv / "bin") + os.pathsep + os.environ.get("PATH", ""),
           "VIRTUAL_ENV": str(venv), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    before = git_status()
    for line in CLI:
        files = {p for p in tmp_path.rglob("*")}
        done = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (line, done.stderr[-3000:])
        assert done.stdout.strip() or set(tmp_path.rglob("*")) - files, line  # it printed or wrote something
    changed = set((git_status() or "").splitlines()) ^ set((before or "").splitlines())
    assert not changed, sorted(changed)  # nothing written into the checkout
