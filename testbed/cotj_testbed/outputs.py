"""Where the harness's commands write, what they check before a long run, and how they show progress.

One rule for every command of ``benches/`` and ``cotj_testbed``: results go to a run folder under ``runs/`` (ignored
by git) or anywhere outside the checkout; a path inside the checkout that git does not ignore (the committed results
in ``benches/results/``, the shipped weights, ``docs/gallery/``, or a new file beside them) is written only when the
command is given ``--update``, the flag of the commands that regenerate the committed files. :func:`output` applies
the rule, :func:`default_output` picks a command's default destination from it.

Inputs are checked before anything long starts (:func:`need_file`, :func:`need_dir`); a failed check is a
:class:`UsageError`, which :func:`fail` prints as one line (exit status 2), as :class:`Parser` prints argparse's
own errors.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from cotj.cli._io import positive_int

__all__ = ["CHECKOUT", "RUNS", "Parser", "UsageError", "bar_disable", "committed", "default_output", "fail", "int_list",
           "need_dir", "need_file", "output", "positive_int", "show_progress"]  # fmt: skip

CHECKOUT = Path(__file__).resolve().parents[2]
"""The checkout this distribution is installed from (it is installed in editable mode by the README's set-up)."""
RUNS = CHECKOUT / "runs"
"""The run folders (``/runs/`` in ``.gitignore``)."""


class UsageError(ValueError):
    """A bad command-line argument: one line naming the option and the path or value at fault."""


def committed(path: str | Path) -> bool:
    """Whether writing ``path`` changes the checkout's ``git status``: it lies inside the checkout and git does not
    ignore it (a tracked file, or a new one beside the tracked files). Outside a git checkout nothing is."""
    target = Path(path).expanduser().resolve()
    try:
        rel = target.relative_to(CHECKOUT)
    except ValueError:
        return False
    if not (CHECKOUT / ".git").exists():
        return False
    try:
        done = subprocess.run(["git", "-C", str(CHECKOUT), "check-ignore", "-q", "--", str(rel)],
                              capture_output=True, timeout=30, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return not target.is_relative_to(RUNS)  # no git to ask: only runs/ is known to be ignored
    if done.returncode not in (0, 1):
        return not target.is_relative_to(RUNS)
    return done.returncode == 1  # 0: ignored, 1: not ignored (tracked files never count as ignored)


def output(path: str | Path, option: str, *, update: bool = False, can_update: bool = True) -> Path:
    """``path`` as a Path if the command may write it: outside the checkout, in an ignored folder (``runs/``), or
    anywhere with ``update``. Else :class:`UsageError` naming ``option`` and the path; ``can_update`` says whether
    the command has ``--update`` to suggest."""
    path = Path(path)
    if not update and committed(path):
        hint = " (or pass --update to replace the committed files)" if can_update else ""
        raise UsageError(f"{option} {path}: inside the checkout's committed files; write under {RUNS} or outside "
                         f"the checkout{hint}")  # fmt: skip
    return path


def default_output(run_path: str | Path, committed_path: str | Path, update: bool) -> Path:
    """A command's default destination: ``committed_path`` with ``--update``, else ``run_path`` (under ``runs/``)."""
    return Path(committed_path if update else run_path)


def need_file(path: str | Path, option: str) -> Path:
    """``path`` as a Path if it is an existing file, else :class:`UsageError` naming ``option`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{option} {path}: " + ("is a folder, not a file" if path.is_dir() else "no such file"))
    return path


def need_dir(path: str | Path, option: str, files: Iterable[str] = (), made_by: str = "") -> Path:
    """``path`` as a Path if it is an existing folder holding every name of ``files``, else :class:`UsageError`
    naming ``option``, the path and (``made_by``) the command that writes such a folder."""
    path = Path(path)
    hint = f" (written by {made_by})" if made_by else ""
    if not path.is_dir():
        raise UsageError(f"{option} {path}: " + ("is a file, not a folder" if path.exists() else "no such folder") + hint)
    missing = [name for name in files if not (path / name).exists()]
    if missing:
        raise UsageError(f"{option} {path}: no {', '.join(missing)} in it{hint}")
    return path


def fail(parser: argparse.ArgumentParser, message: object) -> NoReturn:
    """Print ``prog: error: message`` (one line) and exit with status 2."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (a bad or missing argument) are one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        fail(self, message)


def int_list(value: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers >= 1 (budgets, sizes)."""
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {value!r}")
    return out




def show_progress(wanted: bool = True) -> bool:
    """Whether a command shows progress bars: ``wanted`` (not ``--no-progress``) and stderr is a terminal, so a
    log file or a pipe gets no bars. For the library calls that take ``progress=``."""
    return wanted and sys.stderr.isatty()


def bar_disable(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a bar the caller wants (``progress``): ``None`` (tqdm turns it off when its stream is
    not a terminal), else ``True``."""
    return None if progress else True
