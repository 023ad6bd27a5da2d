"""The DNA predictor (docs/method.md §8): condition embedding -> DNA shape, an MLP ``in -> 256 -> 128 -> N``.

The input standardisation ``(x - x_mean)/(x_std + 1e-9)`` and the reference mean DNA used to
restore the scale (:func:`cotj.align_dna`) are buffers of the module, so they travel with the
weights. Files: ``<dir>/dna_predictor.safetensors`` (tensors) and ``<dir>/dna_predictor.json``
(sizes and dropout); no pickle.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from cotj import align_dna

__all__ = ["MAX_PARAMETERS", "DNAPredictor"]

_WEIGHTS, _CONFIG = "dna_predictor.safetensors", "dna_predictor.json"
_SIZES = ("in_dim", "n_levels", "hidden")
TARGETS = ("dna", "log")
"""What a predictor's network outputs (:class:`DNAPredictor`)."""
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_MAX_CONFIG_BYTES = 65_536
MAX_PARAMETERS = 50_000_000
"""Largest network (weights and buffers) a DNAPredictor builds, 200 MB of float32; the paper's is 1M."""


def _check_config(in_dim: Any, n_levels: Any, hidden: Any, dropout: Any) -> None:
    """Raise ValueError naming the first size or the dropout that is not valid, or if the network
    would exceed :data:`MAX_PARAMETERS`."""
    for name, v in zip(_SIZES, (in_dim, n_levels, hidden)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"{name} must be an int >= 2, got {v!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    count = sum(math.prod(shape) for shape in _shapes(in_dim, n_levels, hidden).values())
    if count > MAX_PARAMETERS:
        raise ValueError(f"in_dim={in_dim}, n_levels={n_levels}, hidden={hidden} make {count:,} parameters, more than "
                         f"MAX_PARAMETERS = {MAX_PARAMETERS:,}")


def _shapes(in_dim: int, n_levels: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of the predictor's state dict."""
    half = hidden // 2
    return {"net.0.weight": (hidden, in_dim), "net.0.bias": (hidden,), "net.3.weight": (half, hidden),
            "net.3.bias": (half,), "net.6.weight": (n_levels, half), "net.6.bias": (n_levels,),
            "x_mean": (in_dim,), "x_std": (in_dim,), "mean_dna": (n_levels,)}


def _check_shapes(path: Path, found: dict[str, tuple[int, ...]], want: dict[str, tuple[int, ...]]) -> None:
    """Raise ValueError naming the first tensor of ``path`` that is missing, unexpected or of the wrong shape."""
    missing, unexpected = sorted(want.keys() - found.keys()), sorted(found.keys() - want.keys())
    if missing:
        raise ValueError(f"{path} lacks the tensor {missing[0]!r}")
    if unexpected:
        raise ValueError(f"{path} holds an unexpected tensor {unexpected[0][:80]!r}")
    for name, shape in want.items():
        if tuple(found[name]) != shape:
            raise ValueError(f"{path}: {name} has shape {tuple(found[name])}, the sizes need {shape}")


def _read_config(path: Path) -> dict[str, Any]:
    """The sizes and dropout of a ``dna_predictor.json``, each checked (ValueError naming the file and key)."""
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{path} holds {path.stat().st_size:,} bytes, more than a predictor config's "
                         f"{_MAX_CONFIG_BYTES:,}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid JSON: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(config, dict) or config.get("format") != "cotj.DNAPredictor/1":
        raise ValueError(f"{path} is not a cotj DNAPredictor config (a JSON object with format 'cotj.DNAPredictor/1')")
    keys = {*_SIZES, "dropout"}
    missing, unknown = sorted(keys - config.keys()), sorted(config.keys() - keys - {"format", "target"})
    if missing:
        raise ValueError(f"{path} lacks the key {missing[0]!r}")
    if unknown:
        raise ValueError(f"{path} has an unknown key {unknown[0][:80]!r}")
    target = config.get("target", "dna")
    if target not in TARGETS:
        raise ValueError(f"{path}: target must be one of {', '.join(TARGETS)}, got {target!r}")
    config = {k: config[k] for k in keys}
    try:
        _check_config(**config)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return {**config, "target": target}


def _read_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a safetensors file from its header, without reading the data."""
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}
            dtypes = {name: s.get_dtype() for name, s in slices.items()}
            shapes = {name: tuple(s.get_shape()) for name, s in slices.items()}
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a valid safetensors file: {exc}") from None
    for name, dtype in dtypes.items():
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{path}: {name[:80]} has dtype {dtype}, not a float")
    return shapes


def _torch_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a file that is not one gives ValueError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4": the refusal below says it all
            return torch.load(path, weights_only=True, map_location="cpu")
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler raises many types for a malformed file
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        reason = next((line for line in lines if "Unpickler error" in line), lines[0])[:200]
        raise ValueError(f"{path} is not a weights-only torch file ({type(exc).__name__}: {reason})") from None


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
        target: what the network outputs: "dna" (the paper's: the DNA's shape, scale restored by alignment) or
            "log" (log DNA, trained with MSE: the scale is learnt, so :meth:`predict` does not align).

    Buffers: ``x_mean`` (D,), ``x_std`` (D,) (training-set embedding statistics) and
    ``mean_dna`` (N,) (the training set's mean DNA, the alignment reference).

    Raises ValueError for a size that is not an int >= 2, a dropout outside [0, 1), or a network of more
    than :data:`MAX_PARAMETERS` parameters.
    """

    x_mean: torch.Tensor
    x_std: torch.Tensor
    mean_dna: torch.Tensor

    def __init__(self, in_dim: int, n_levels: int = 100, hidden: int = 256, dropout: float = 0.6,
                 target: str = "dna") -> None:
        super().__init__()
        _check_config(in_dim, n_levels, hidden, dropout)
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
        self.config: dict[str, Any] = {"in_dim": in_dim, "n_levels": n_levels, "hidden": hidden, "dropout": float(dropout)}
        if target != "dna":  # configs of the paper's target stay as they were
            self.config["target"] = target
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

    def dna(self, embedding: torch.Tensor) -> torch.Tensor:
        """The network's DNA (B, N) from embeddings (B, D): its output, or the exponential of it for the log target."""
        out = self(embedding)
        return out.exp() if self.config.get("target") == "log" else out

    def predict(self, embedding: ArrayLike | torch.Tensor, align: bool = True) -> NDArray[np.float64]:
        """DNA (B, N) float64 for embeddings (B, D) or (D,) -> (N,), in eval mode; aligned to
        ``mean_dna`` (docs/method.md §8) unless ``align=False`` or the target is "log" (its scale is learnt)."""
        x = _matrix("embedding", embedding, self.config["in_dim"])
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                out = self.dna(x.to(self.x_mean.device)).double().cpu().numpy()
        finally:
            self.train(was_training)
        if align and self.config.get("target") != "log":
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
        else CPU), in eval mode.

        The JSON's sizes are checked, then against the tensor shapes in the safetensors header, before
        anything is allocated. Raises ValueError naming the file and the key or tensor at fault (malformed
        JSON or safetensors, a missing, unknown or invalid key, a shape that disagrees, NaN or inf weights)
        and OSError if a file cannot be read.
        """
        directory = Path(directory)
        config = _read_config(directory / _CONFIG)
        weights = directory / _WEIGHTS
        _check_shapes(weights, _read_header(weights), _shapes(config["in_dim"], config["n_levels"], config["hidden"]))
        state = load_file(str(weights), device="cpu")
        for name, tensor in state.items():
            if not torch.all(torch.isfinite(tensor)):
                raise ValueError(f"{weights}: {name} holds NaN or inf")
        model = cls(**config)
        model.load_state_dict(state)
        device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        return model.to(device).eval()

    @classmethod
    def from_official(cls, model_state: str | Path, norm_data: str | Path) -> DNAPredictor:
        """Import the paper's released predictor (``model_state.pth``, ``norm_data.pt``).

        Both files are read with ``torch.load(weights_only=True, map_location="cpu")`` (no pickled
        code runs). ``model_state`` holds the ``net.0``/``net.3``/``net.6`` Linear layers of the
        reference ``SimpleMLP``; ``norm_data`` holds ``X_mean``, ``X_std`` and ``Y_mean`` (the
        mean DNA). Sizes are read from the tensors; returns the predictor in eval mode, on CPU.
        Raises ValueError naming the file for anything else (not a weights-only torch file, pickled code,
        other keys, values that are not float tensors, shapes that disagree).
        """
        state, norm = _torch_file(model_state), _torch_file(norm_data)
        keys = {f"net.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError(f"{model_state} must hold exactly the layers {sorted(keys)}")
        norm_keys = ("X_mean", "X_std", "Y_mean")
        if not isinstance(norm, dict) or not set(norm_keys) <= set(norm):
            raise ValueError(f"{norm_data} must hold X_mean, X_std and Y_mean")
        for path, values, names in ((model_state, state, sorted(keys)), (norm_data, norm, norm_keys)):
            for k in names:
                if not (isinstance(values[k], torch.Tensor) and values[k].is_floating_point()):
                    raise ValueError(f"{path}: {k} must be a float tensor, got {type(values[k]).__name__}")
        if state["net.0.weight"].ndim != 2 or state["net.6.weight"].ndim != 2:
            raise ValueError(f"{model_state}: net.0.weight and net.6.weight must be matrices")
        (hidden, in_dim), n_levels = state["net.0.weight"].shape, state["net.6.weight"].shape[0]
        want = _shapes(int(in_dim), int(n_levels), int(hidden))
        _check_shapes(Path(model_state), {k: tuple(v.shape) for k, v in state.items()},
                      {k: v for k, v in want.items() if k.startswith("net.")})
        model = cls(int(in_dim), int(n_levels), int(hidden))
        model.net.load_state_dict({k[len("net."):]: v for k, v in state.items()})
        model.set_statistics(norm["X_mean"].reshape(-1), norm["X_std"].reshape(-1), norm["Y_mean"].reshape(-1))
        return model.eval()
