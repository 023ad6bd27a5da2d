"""Reading and writing for the commands: DNA from files or stdin, flag types, JSON and tables,
figures. numpy only."""

from __future__ import annotations

import argparse
import json
import math
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import cotj
from cotj.planning.dna import load_dna, parse_dna
from cotj.planning.schedules import MAX_STEPS

STDIN = "-"
SHAPES, ANALYTIC = "shapes", "analytic"
"""The values of ``--model``: the shipped shapes generator and the analytic Gaussian-mixture flow model."""
DEPRECATED_MODELS = {"testbed": SHAPES}
"""Old ``--model`` names that still work for one release, and the name each stands for."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model a command runs and how (:func:`add_model_flags`; :mod:`cotj.cli._models` takes it).

    ``model`` is :data:`SHAPES` (the shipped shapes generator, or ``weights``: a file or a training run folder,
    sampled at ``guidance``) or :data:`ANALYTIC` (the exact Gaussian-mixture flow model of dimension ``dim`` from
    the family ``family_seed``). ``seed`` seeds each prompt's noise; ``reference_steps`` is the length of the
    reference a DNA is scored against (None: the model's default); ``batch_size`` rows per model call;
    ``progress`` shows progress bars."""

    model: str = SHAPES
    weights: str | None = None
    guidance: float = 2.0
    seed: int = 0
    dim: int = 64
    family_seed: int = 0
    reference_steps: int | None = None
    batch_size: int = 64
    progress: bool = True


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The :class:`ModelSpec` of a command's parsed :func:`add_model_flags`."""
    return ModelSpec(model=args.model, weights=args.weights, guidance=args.guidance, seed=args.seed, dim=args.dim,
                     family_seed=args.family_seed, reference_steps=getattr(args, "reference_steps", None),
                     batch_size=getattr(args, "batch_size", 64), progress=not args.quiet)


def read_array(source: str, what: str = "DNA") -> NDArray[np.float64]:
    """A float64 array from a .npy/.json/.csv file (:func:`cotj.load_dna`), ``-`` (stdin,
    :func:`cotj.planning.dna.parse_dna`) or, for a DNA, the name of a mean DNA the package ships (:func:`cotj.mean_dna`):
    every malformed input is a ValueError or TypeError naming it (and ``what`` it should hold)."""
    if what == "DNA" and source != STDIN and source in cotj.mean_dna_names():
        return cotj.mean_dna(source)
    path = Path(source)
    if source != STDIN and not path.is_file():
        shipped = f" or a shipped mean DNA ({', '.join(cotj.mean_dna_names())})" if what == "DNA" else ""
        raise FileNotFoundError(2, f"no {what} file{shipped}", source)
    try:
        return parse_dna(_stdin_text(), "stdin") if source == STDIN else load_dna(path)
    except (ValueError, TypeError) as exc:
        if what == "DNA":
            raise
        message = str(exc)
        for word in ("dna in ", "no DNA", "valid DNA", "JSON DNA", "the DNA"):
            message = message.replace(word, word.replace("dna", what).replace("DNA", what))
        raise type(exc)(message) from None


def _stdin_text() -> str:
    """Standard input as text: ValueError unless it is UTF-8."""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("stdin is not UTF-8 text") from None


def read_rows(source: str) -> NDArray[np.float64]:
    """DNA rows (B, N) from a file or stdin; one row (N,) becomes (1, N)."""
    arr = read_array(source)
    if arr.ndim not in (1, 2):
        raise ValueError(f"DNA in {source} must be one row (N,) or rows (B, N), got shape {arr.shape}")
    return np.atleast_2d(arr)


def read_lines(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 text file (or ``-`` for stdin), stripped, each checked by :func:`check_text`
    (ValueError naming the file and the line)."""
    if path == STDIN:
        text = _stdin_text()
    else:
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text (a binary file?)") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            lines.append(check_text(line.strip(), f"line {number} of {path}"))
    if not lines:
        raise ValueError(f"{path} has no prompts (no non-empty lines)")
    return lines


def check_text(text: str, what: str) -> str:
    """``text`` if it is text a tokenizer takes: encodable as UTF-8 (a command-line argument of bytes that are
    not UTF-8 arrives with lone surrogates), no control characters, and at least one visible character (not only
    spaces or invisible ones such as the zero-width space). ValueError naming ``what`` otherwise."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not UTF-8 text (binary bytes?)") from None
    categories = [unicodedata.category(c) for c in text]
    if any(cat == "Cc" and c not in "\t\n\r" for c, cat in zip(text, categories, strict=True)):
        raise ValueError(f"{what} holds control characters (binary bytes?)")
    if not any(cat[0] in "LNPS" for cat in categories):
        raise ValueError(f"{what} is empty: it has no visible character (only spaces or invisible ones, such as "
                         "zero-width spaces)")
    return text


def window(pinned: str) -> Any:
    """argparse type for ``--first`` / ``--last``: ``any``, ``pinned`` or a positive int."""

    def parse(text: str) -> str | int:
        if text in ("any", pinned):
            return text
        try:
            return positive_int(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"must be 'any', '{pinned}' or a number of levels: {exc}") from None

    return parse


MAX_INT = 2**31 - 1
"""Largest int any integer flag takes (bigger values overflow the libraries' C integers)."""


def budget(text: str) -> int | NDArray[np.int64]:
    """argparse type for ``--budget``: an int, or a comma list (one K per DNA row)."""
    try:
        values = [positive_int(v) for v in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"must be an int or a comma list of ints: {exc}") from None
    return values[0] if len(values) == 1 else np.asarray(values, dtype=np.int64)


def probability(text: str) -> float:
    """argparse type for ``--tau``: a float in (0, 1]."""
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite float (no nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_in(low: int, high: int = MAX_INT) -> Any:
    """argparse type: an int in ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int in {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an int in {low}..{high}, got {text}")
        return value

    return parse


positive_int = int_in(1)
"""argparse type: an int in 1..MAX_INT."""
steps = int_in(1, MAX_STEPS)
"""argparse type of every flag that sets a number of steps or levels a model runs: an int in 1..MAX_STEPS
(:data:`cotj.planning.schedules.MAX_STEPS`)."""
seed = int_in(0, 2**32 - 1)
"""argparse type for seeds: an int in 0..2**32 - 1."""


def figsize(text: str) -> tuple[float, float]:
    """argparse type for ``--size``: ``WIDTHxHEIGHT`` in inches, e.g. ``6.4x4``."""
    try:
        w, h = (float(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in inches, e.g. 6.4x4, got {text!r}") from None
    if not (0 < w <= 40 and 0 < h <= 40):
        raise argparse.ArgumentTypeError(f"width and height must be in (0, 40] inches, got {text!r}")
    return w, h


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays as lists and non-finite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def print_json(value: Any) -> None:
    print(json.dumps(jsonable(value), allow_nan=False))


def plan_record(p: cotj.Plan) -> dict[str, Any]:
    """One plan as a JSON object: steps, levels, cost, budget, and curve/ratio when adaptive."""
    out: dict[str, Any] = {"steps": p.steps, "levels": p.levels, "cost": p.cost, "budget": p.budget}
    if p.ratio is not None:
        out["curve"], out["ratio"] = p.curve, p.ratio
    return out


def levels_text(levels: NDArray[np.float64]) -> str:
    return " ".join(f"{v:.3g}" for v in levels)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def png_path(out: str | Path) -> Path:
    """``--out`` as a Path, refused unless it ends in .png; check it before any slow work."""
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png file, got {str(out)[:200]!r}")
    return path


def save_figure(fig: Any, out: str | Path, dpi: int) -> Path:
    """Write a Figure as PNG (parent folder created); returns the path."""
    path = png_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def model_name(text: str) -> str:
    """argparse type for ``--model``: the name as given, or the one a deprecated name stands for
    (:data:`DEPRECATED_MODELS`), after one warning line on stderr."""
    if text in DEPRECATED_MODELS:
        print(f"cotj: warning: --model {text} is deprecated and will be removed in the next release; use --model "
              f"{DEPRECATED_MODELS[text]}", file=sys.stderr)
        return DEPRECATED_MODELS[text]
    return text


def add_model_flags(p: argparse.ArgumentParser, *, reference: bool = True) -> None:
    """Flags selecting and configuring the model (shared by dna, predict, diagnose, sample)."""
    p.add_argument("--model", type=model_name, choices=(SHAPES, ANALYTIC), default=SHAPES,
                   help="shapes: the shipped shapes generator (prompts are text); analytic: the exact "
                        "Gaussian-mixture flow model (prompts are condition ids) (default shapes)")
    p.add_argument("--weights", metavar="PATH",
                   help="shapes generator weights: a file or a training run directory (default: the shipped file)")
    p.add_argument("--guidance", type=finite_float, default=2.0,
                   help="shapes classifier-free guidance scale (default 2)")
    p.add_argument("--seed", type=seed, default=0, help="noise seed (default 0)")
    p.add_argument("--dim", type=int_in(1, 4096), default=64, help="analytic: data dimension, 1..4096 (default 64)")
    p.add_argument("--family-seed", type=seed, default=0, help="analytic: seed of the mixture family (default 0)")
    p.add_argument("--threads", type=int_in(1, 1024), default=1,
                   help="torch threads (default 1: the small models run fastest on one, and share the machine)")
    if reference:
        p.add_argument("--reference-steps", type=int_in(1, MAX_STEPS), metavar="S",
                       help="steps of the reference the DNA is scored against: the shapes generator's own first-order "
                            "sample (default 50) or the analytic models' exact ODE endpoint (RK4, default 200)")
        p.add_argument("--batch-size", type=positive_int, default=64, help="model rows per call (default 64)")


def resolve_solver(args: argparse.Namespace, scheduler: Any, teacher: Any) -> str:
    """The value of ``--solver``: as given, else :func:`cotj.execute.pipeline.default_solver` for this run on the
    pipeline's ``scheduler`` and ``teacher`` cost (None: plans from a DNA or uniform levels), "euler" where that
    leaves the pipeline's own scheduler."""
    if args.solver is not None:
        return str(args.solver)
    from cotj.execute.pipeline import default_solver

    open_loop = getattr(args, "uniform", False) or getattr(args, "open_loop", False)
    return default_solver(scheduler, teacher, tau=args.tau, replan=False if open_loop else None) or "euler"
