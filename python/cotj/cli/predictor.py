"""``cotj train-predictor`` and ``cotj predict``: the DNA predictor (:mod:`cotj.predict`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cotj.cli import _io

__all__ = ["add_parser", "run_predict", "run_train"]

TRAIN = """Train a DNA predictor (MLP, cosine loss; cotj.predict.train_predictor) on pairs of condition
embeddings (B, D) and true DNA (B, N), e.g. the files 'cotj dna' writes, and report the cosine
similarity on the held-out validation split. Writes DIR/dna_predictor.safetensors and .json.

With --from-official MODEL_STATE NORM_DATA, import the paper's released predictor instead
(model_state.pth and norm_data.pt; read with torch.load(weights_only=True)) and write it in
cotj's format; --embeddings/--dna then evaluate it.

Examples:
  cotj train-predictor --embeddings runs/dna.embeddings.npy --dna runs/dna.npy --out runs/predictor
  cotj train-predictor --from-official qwenimage_model_state.pth qwenimage_norm_data.pt --out runs/qwen"""

PREDICT = """Predict the DNA of conditions with a trained predictor: from embeddings (.npy, (B, D)) or from
prompts (embedded as the model's condition: MiniLM for the shapes generator). Without --predictor, prompts of
the shipped shapes generator go to its shipped predictor. The DNA is aligned to the
predictor's mean DNA (docs/method.md §8). Writes --out (.npy) or prints JSON rows (pipe into 'cotj plan -').
With --dna TRUE.npy, also reports the cosine similarity with the true DNA (on stderr).

Examples:
  echo "two red circles on the left" | cotj predict --prompts - | cotj plan - --budget 6
  cotj predict --predictor runs/predictor --prompts prompts.txt | cotj plan - --budget 6
  cotj predict --from-official model_state.pth norm_data.pt --embeddings emb.npy --out dna.npy"""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    t = sub.add_parser("train-predictor", parents=parents, help="train (or import) a DNA predictor",
                       description=TRAIN, formatter_class=fmt)
    t.add_argument("--embeddings", metavar="FILE", help="condition embeddings (B, D): .npy, .json or .csv")
    t.add_argument("--dna", metavar="FILE", help="true DNA (B, N): .npy, .json or .csv")
    t.add_argument("--out", required=True, metavar="DIR", help="directory to write the predictor to")
    t.add_argument("--from-official", nargs=2, metavar=("MODEL_STATE", "NORM_DATA"),
                   help="import the paper's released predictor instead of training")
    t.add_argument("--epochs", type=_io.positive_int, default=300, help="most epochs (default 300)")
    t.add_argument("--patience", type=_io.positive_int, default=30, help="early-stopping patience (default 30)")
    t.add_argument("--hidden", type=_io.positive_int, default=256, help="first hidden width (default 256)")
    t.add_argument("--dropout", type=_io.finite_float, default=0.6, help="dropout (default 0.6)")
    t.add_argument("--lr", type=_io.finite_float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    t.add_argument("--batch-size", type=_io.positive_int, default=128, help="pairs per step (default 128)")
    t.add_argument("--val-fraction", type=_io.finite_float, default=0.1, help="held-out share (default 0.1)")
    t.add_argument("--seed", type=_io.seed, default=0, help="split, initialisation and batch order (default 0)")
    t.add_argument("--threads", type=_io.int_in(1, 1024), default=1, help="torch threads (default 1)")
    t.add_argument("--format", choices=("table", "json"), default="table", help="report format")
    t.set_defaults(run=run_train, prog=t.prog)

    p = sub.add_parser("predict", parents=parents, help="predict the DNA of prompts or embeddings",
                       description=PREDICT, formatter_class=fmt)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--predictor", metavar="DIR",
                        help="a predictor written by 'cotj train-predictor' (default with --model shapes: the shipped "
                             "one, trained on the shipped generator's DNA at guidance 2)")
    source.add_argument("--from-official", nargs=2, metavar=("MODEL_STATE", "NORM_DATA"),
                        help="the paper's released predictor files")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--embeddings", metavar="FILE", help="condition embeddings (B, D)")
    given.add_argument("--prompts", metavar="FILE", help="prompt file (one per line, - for stdin), embedded by --model")
    p.add_argument("--dna", metavar="FILE", help="true DNA (B, N) to score the prediction against (cosine)")
    p.add_argument("--out", metavar="OUT.npy", help="write the predicted DNA here instead of printing JSON")
    p.add_argument("--raw", action="store_true", help="the raw MLP output, not aligned to the mean DNA")
    _io.add_model_flags(p, reference=False)
    p.set_defaults(run=run_predict, prog=p.prog)


def _load(args: argparse.Namespace) -> Any:
    from cotj.predict import DNAPredictor

    if args.from_official:
        state, norm = args.from_official
        for f in (state, norm):
            if not Path(f).is_file():
                raise FileNotFoundError(2, "no official checkpoint file", f)
        return DNAPredictor.from_official(state, norm)
    directory = args.predictor
    if directory is None:
        from cotj.cli import _models

        directory = _models.shipped_predictor(_io.model_spec(args))
        if directory is None:
            raise ValueError("give --predictor DIR or --from-official: the shipped predictor is only for --model "
                             "shapes with its shipped weights at --guidance 2")
    if not (Path(directory) / "dna_predictor.json").is_file():
        raise FileNotFoundError(2, "no DNA predictor (dna_predictor.json) in", str(directory))
    return DNAPredictor.load(directory, device="cpu")


def run_train(args: argparse.Namespace) -> int:
    import torch

    from cotj.predict import cosine_scores, train_predictor

    torch.set_num_threads(args.threads)

    pair = (args.embeddings, args.dna)
    if args.from_official:
        if (pair[0] is None) != (pair[1] is None):
            raise ValueError("give both --embeddings and --dna to evaluate the imported predictor, or neither")
        model = _load(args)
        report = {"source": "official", "parameters": sum(p.numel() for p in model.net.parameters())}
        if pair[0] is not None:
            ev = cosine_scores(model, _io.read_array(pair[0], "embeddings"), _io.read_array(pair[1], "DNA"))
            report.update(cosine_mean=ev.mean, cosine_median=ev.median, pairs=len(ev.scores))
    else:
        if None in pair:
            raise ValueError("train-predictor needs --embeddings and --dna (or --from-official)")
        model, rep = train_predictor(
            _io.read_array(pair[0], "embeddings"), _io.read_array(pair[1], "DNA"), hidden=args.hidden,
            dropout=args.dropout, val_fraction=args.val_fraction, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, patience=args.patience, seed=args.seed, progress=not args.quiet)
        report = {"source": "trained", "parameters": sum(p.numel() for p in model.net.parameters()),
                  "epochs_run": len(rep.train_loss), "best_epoch": rep.best_epoch + 1,
                  "cosine_mean": rep.validation.mean, "cosine_median": rep.validation.median,
                  "pairs": len(rep.validation.scores)}
    out = model.save(args.out)
    report["out"] = str(out)
    if args.format == "json":
        _io.print_json(report)
        return 0
    print(f"wrote {out}: {model.config['in_dim']} -> {model.config['n_levels']} levels, "
          f"{report['parameters']:,} parameters ({report['source']})")
    if "cosine_mean" in report:
        where = "validation" if report["source"] == "trained" else "evaluation"
        line = (f"{where} cosine: mean {report['cosine_mean']:.4f}, median {report['cosine_median']:.4f} "
                f"({report['pairs']} pairs)")
        if "best_epoch" in report:
            line += f"; best epoch {report['best_epoch']} of {report['epochs_run']}"
        print(line)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from cotj.predict import cosine_scores

    if args.out and Path(args.out).suffix != ".npy":
        raise ValueError(f"--out must end in .npy, got {args.out!r}")
    torch.set_num_threads(args.threads)
    model = _load(args)
    if args.embeddings:
        emb = _io.read_array(args.embeddings, "embeddings")
    else:
        from cotj.cli import _models

        emb = _models.embeddings(_io.model_spec(args), _io.read_lines(args.prompts))
    dna = np.atleast_2d(model.predict(emb, align=not args.raw))
    if args.dna:
        report = cosine_scores(model, np.atleast_2d(emb), _io.read_array(args.dna))
        print(f"cosine with --dna: mean {report.mean:.4f}, median {report.median:.4f} ({len(report.scores)} pairs)",
              file=sys.stderr)
    if args.out:
        np.save(args.out, dna)
        print(f"wrote {args.out} {dna.shape}")
    else:
        _io.print_json(dna)
    return 0
