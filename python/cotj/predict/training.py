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

__all__ = ["CosineReport", "TrainReport", "cosine_scores", "train_predictor"]


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


def cosine_scores(predictor: DNAPredictor, embeddings: ArrayLike, dna: ArrayLike) -> CosineReport:
    """Cosine similarity of the predictor's raw DNA shape with the true DNA, per pair: embeddings (B, D),
    dna (B, N). The raw output is scored, as the paper does; alignment (:func:`cotj.align_dna`) rescales
    and shifts each row, so the aligned DNA the planner uses scores somewhat differently."""
    pred = torch.as_tensor(predictor.predict(embeddings, align=False))
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
) -> tuple[DNAPredictor, TrainReport]:
    """Fit a :class:`DNAPredictor` to pairs with AdamW and the loss ``1 - cos(pred, dna)``.

    Args:
        embeddings: (B, D) condition embeddings (e.g. mean-pooled prompt-encoder states).
        dna: (B, N) true DNA rows (:func:`cotj.predict.extract_dna`).
        hidden, dropout: the MLP's size and dropout.
        val_fraction: share of pairs held out (random, by ``seed``) for early stopping.
        epochs: most passes over the training pairs.
        batch_size, lr, weight_decay: AdamW mini-batch training.
        patience: stop after this many epochs without a better validation cosine.
        seed: seeds the split, the initialisation and the batch order.
        progress: tqdm bar over epochs.

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
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(x.shape[0], generator=gen)
    val, train = order[:n_val], order[n_val:]
    torch.manual_seed(seed)
    model = DNAPredictor(x.shape[1], y.shape[1], hidden, dropout)
    model.set_statistics(x[train].mean(0), x[train].std(0), y[train].mean(0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    val_cos: list[float] = []
    best, best_state, best_epoch = -np.inf, copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(epochs), desc="DNA predictor", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        perm = train[torch.randperm(len(train), generator=gen)]
        total = 0.0
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            loss = (1.0 - _cosine(model(x[idx]), y[idx])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(perm))
        model.eval()
        with torch.no_grad():
            val_cos.append(float(_cosine(model(x[val]), y[val]).mean()))
        bar.set_postfix(val_cos=f"{val_cos[-1]:.4f}")
        if val_cos[-1] > best:
            best, best_state, best_epoch = val_cos[-1], copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return model, TrainReport(losses, val_cos, best_epoch, cosine_scores(model, x[val], y[val]))
