"""Training and evaluating a :class:`~cotj.predict.predictor.DNAPredictor` on (embedding, DNA)
pairs with the cosine loss (docs/method.md §8): the DNA's shape is learnt, its scale restored by alignment."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from tqdm.auto import tqdm

from cotj.predict.predictor import DNAPredictor, _matrix

__all__ = ["LOSSES", "CosineReport", "TrainReport", "cosine_scores", "train_predictor"]

LOSSES = ("cosine", "log_mse")
"""The training losses of :func:`train_predictor`."""


@dataclass(frozen=True)
class CosineReport:
    """Cosine similarity between predicted and true DNA: ``scores`` (B,), their mean and median."""

    scores: NDArray[np.float64]
    mean: float
    median: float


@dataclass(frozen=True)
class TrainReport:
    """What training did: per-epoch mean train loss and validation cosine, the epoch kept (best
    validation cosine, 0-based), and the validation cosines of that epoch."""

    train_loss: list[float]
    val_cosine: list[float]
    best_epoch: int
    validation: CosineReport


def _cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(pred, target, dim=1, eps=1e-12)


def _loss(name: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean loss of network outputs against targets (B, N): ``1 - cos`` or the MSE (of log DNA)."""
    return (1.0 - _cosine(out, target)).mean() if name == "cosine" else (out - target).pow(2).mean()


def cosine_scores(predictor: DNAPredictor, embeddings: ArrayLike, dna: ArrayLike) -> CosineReport:
    """Cosine similarity of the predictor's raw DNA shape with the true DNA, per pair: embeddings (B, D),
    dna (B, N). The raw output is scored, as the paper does; alignment (:func:`cotj.align_dna`) rescales
    and shifts each row, so the aligned DNA the planner uses scores somewhat differently."""
    pred = torch.as_tensor(predictor.predict(embeddings, align=False))  # the DNA, also for the log target
    y = _matrix("dna", dna, predictor.config["n_levels"]).double()
    if y.shape[0] != pred.shape[0]:
        raise ValueError(f"embeddings and dna must have the same number of rows, got {pred.shape[0]} and {y.shape[0]}")
    scores = _cosine(pred, y).numpy()
    return CosineReport(scores, float(scores.mean()), float(np.median(scores)))


def train_predictor(
    embeddings: ArrayLike,
    dna: ArrayLike,
    *,
    hidden: int = 256,
    dropout: float = 0.6,
    val_fraction: float = 0.1,
    epochs: int = 300,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    patience: int = 30,
    seed: int = 0,
    progress: bool = True,
    loss: str = "cosine",
) -> tuple[DNAPredictor, TrainReport]:
    """Fit a :class:`DNAPredictor` to pairs with AdamW: the loss ``1 - cos(pred, dna)`` (the paper's; ``loss =
    "cosine"``), or the mean squared error of log DNA (``loss = "log_mse"``: every level counts by its ratio, not
    by its size, as the planner uses it; the predictor's target is then "log").

    Args:
        embeddings: (B, D) condition embeddings (e.g. mean-pooled prompt-encoder states).
        dna: (B, N) true DNA rows (:func:`cotj.predict.extract_dna`).
        hidden, dropout: the MLP's size and dropout.
        val_fraction: share of pairs held out (random, by ``seed``) for early stopping.
        epochs: most passes over the training pairs.
        batch_size, lr, weight_decay: AdamW mini-batch training.
        patience: stop after this many epochs without a better validation score (cosine, or minus the log MSE).
        loss: "cosine" or "log_mse".
        seed: seeds the split, the initialisation and the batch order.
        progress: tqdm bar over epochs (only when stderr is a terminal).

    Returns:
        The predictor (best validation epoch, eval mode, statistics from the training split:
        embedding mean/std and mean DNA) and a :class:`TrainReport`.
    """
    x = _matrix("embeddings", embeddings)
    y = _matrix("dna", dna)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings and dna must have the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, int(round(val_fraction * x.shape[0])))
    if x.shape[0] - n_val < 2:
        raise ValueError(f"need at least {n_val + 2} pairs for a validation split of {val_fraction}, got {x.shape[0]}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "log_mse" and not bool(torch.all(y > 0)):
        raise ValueError("the log_mse loss needs positive dna")
    target = y.log() if loss == "log_mse" else y
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(x.shape[0], generator=gen)
    val, train = order[:n_val], order[n_val:]
    torch.manual_seed(seed)
    model = DNAPredictor(x.shape[1], y.shape[1], hidden, dropout, target="log" if loss == "log_mse" else "dna")
    model.set_statistics(x[train].mean(0), x[train].std(0), y[train].mean(0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    val_cos: list[float] = []
    best, best_state, best_epoch = -np.inf, copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(epochs), desc="DNA predictor", unit="epoch", disable=None if progress else True)
    for epoch in bar:
        model.train()
        perm = train[torch.randperm(len(train), generator=gen)]
        total = 0.0
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            batch_loss = _loss(loss, model(x[idx]), target[idx])
            opt.zero_grad()
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(idx)
        losses.append(total / len(perm))
        model.eval()
        with torch.no_grad():
            val_cos.append(float(_cosine(model.dna(x[val]), y[val]).mean()))
            score = val_cos[-1] if loss == "cosine" else -float(_loss(loss, model(x[val]), target[val]))
        bar.set_postfix(val_cos=f"{val_cos[-1]:.4f}")
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return model, TrainReport(losses, val_cos, best_epoch, cosine_scores(model, x[val], y[val]))
