"""The DNA predictor (SPEC 6): condition embedding -> DNA shape, an MLP ``in -> 256 -> 128 -> N``.

The input standardisation ``(x - x_mean)/(x_std + 1e-9)`` and the reference mean DNA used to
restore the scale (:func:`cotj.align_dna`) are buffers of the module, so they travel with the
weights. Files: ``<dir>/dna_predictor.safetensors`` (tensors) and ``<dir>/dna_predictor.json``
(sizes and dropout); no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from safetensors.torch import load_file, save_file

from cotj import align_dna

__all__ = ["DNAPredictor"]

_WEIGHTS, _CONFIG = "dna_predictor.safetensors", "dna_predictor.json"


def _matrix(name: str, value: ArrayLike | torch.Tensor, width: int | None = None) -> torch.Tensor:
    x = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must be a real array, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or (width is not None and x.shape[1] != width):
        want = f"(B, {width}) or ({width},)" if width is not None else "(B, D)"
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if not torch.all(torch.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x.float()


class DNAPredictor(torch.nn.Module):
    """MLP from a condition embedding (D,) to the DNA shape (N,), with its standardisation.

    Args:
        in_dim: embedding width D.
        n_levels: DNA length N (grid levels).
        hidden: first hidden width (the second is half of it); the paper uses 256.
        dropout: dropout after each hidden layer (paper: 0.6).

    Buffers: ``x_mean`` (D,), ``x_std`` (D,) (training-set embedding statistics) and
    ``mean_dna`` (N,) (the training set's mean DNA, the alignment reference).
    """

    def __init__(self, in_dim: int, n_levels: int = 100, hidden: int = 256, dropout: float = 0.6) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("n_levels", n_levels), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an int >= 2, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config: dict[str, Any] = {"in_dim": in_dim, "n_levels": n_levels, "hidden": hidden, "dropout": float(dropout)}
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, hidden // 2),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden // 2, n_levels),
        )
        self.register_buffer("x_mean", torch.zeros(in_dim))
        self.register_buffer("x_std", torch.ones(in_dim))
        self.register_buffer("mean_dna", torch.ones(n_levels))

    def set_statistics(self, x_mean: ArrayLike, x_std: ArrayLike, mean_dna: ArrayLike) -> None:
        """Store the embedding mean and std (D,) and the reference mean DNA (N,)."""
        d, n = self.config["in_dim"], self.config["n_levels"]
        for name, value, width in (("x_mean", x_mean, d), ("x_std", x_std, d), ("mean_dna", mean_dna, n)):
            t = _matrix(name, value, width)
            if t.shape[0] != 1:
                raise ValueError(f"{name} must be one row ({width},), got shape {tuple(t.shape)}")
            getattr(self, name).copy_(t[0])

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Raw DNA shape (B, N) from embeddings (B, D), standardised inside."""
        return self.net((embedding - self.x_mean) / (self.x_std + 1e-9))

    def predict(self, embedding: ArrayLike | torch.Tensor, align: bool = True) -> NDArray[np.float64]:
        """DNA (B, N) float64 for embeddings (B, D) or (D,) -> (N,), in eval mode; aligned to
        ``mean_dna`` (SPEC 6) unless ``align=False``."""
        x = _matrix("embedding", embedding, self.config["in_dim"])
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                out = self(x.to(self.x_mean.device)).double().cpu().numpy()
        finally:
            self.train(was_training)
        if align:
            out = align_dna(out, self.mean_dna.double().cpu().numpy())
        ndim = embedding.ndim if isinstance(embedding, torch.Tensor) else np.ndim(embedding)
        return out[0] if ndim == 1 else out

    def save(self, directory: str | Path) -> Path:
        """Write ``dna_predictor.safetensors`` and ``dna_predictor.json`` into ``directory``
        (created if needed); returns the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / _WEIGHTS))
        (directory / _CONFIG).write_text(json.dumps({"format": "cotj.DNAPredictor/1", **self.config}, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> DNAPredictor:
        """Read a predictor written by :meth:`save`, onto ``device`` (default CUDA when present,
        else CPU), in eval mode."""
        directory = Path(directory)
        config = json.loads((directory / _CONFIG).read_text())
        if config.pop("format", None) != "cotj.DNAPredictor/1":
            raise ValueError(f"{directory / _CONFIG} is not a cotj DNAPredictor config")
        model = cls(**config)
        device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        model.load_state_dict(load_file(str(directory / _WEIGHTS), device="cpu"))
        return model.to(device).eval()

    @classmethod
    def from_official(cls, model_state: str | Path, norm_data: str | Path) -> DNAPredictor:
        """Import the paper's released predictor (``model_state.pth``, ``norm_data.pt``).

        Both files are read with ``torch.load(weights_only=True, map_location="cpu")`` (no pickled
        code runs). ``model_state`` holds the ``net.0``/``net.3``/``net.6`` Linear layers of the
        reference ``SimpleMLP``; ``norm_data`` holds ``X_mean``, ``X_std`` and ``Y_mean`` (the
        mean DNA). Sizes are read from the tensors; returns the predictor in eval mode, on CPU.
        """
        state: dict[str, Any] = torch.load(model_state, weights_only=True, map_location="cpu")
        norm: dict[str, Any] = torch.load(norm_data, weights_only=True, map_location="cpu")
        keys = {f"net.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError(f"{model_state} must hold exactly the layers {sorted(keys)}")
        if not isinstance(norm, dict) or not {"X_mean", "X_std", "Y_mean"} <= set(norm):
            raise ValueError(f"{norm_data} must hold X_mean, X_std and Y_mean")
        hidden, in_dim = state["net.0.weight"].shape
        n_levels = state["net.6.weight"].shape[0]
        model = cls(int(in_dim), int(n_levels), int(hidden))
        model.net.load_state_dict({k[len("net."):]: v for k, v in state.items()})
        model.set_statistics(norm["X_mean"].reshape(-1), norm["X_std"].reshape(-1), norm["Y_mean"].reshape(-1))
        return model.eval()
