"""Adapters: a Diffusers denoiser as the plain callable ``model(x_t, t, cond) -> prediction``.

The callable form is what :func:`cotj.predict.extract_dna` evaluates: ``x_t`` is a batch of
states (n, ...), ``t`` their noise levels (n,) on the project's scale (0 clean, 1 noise; for flow
models the sigmas), ``cond`` the condition of each row. Each adapter also says what its model
predicts (``prediction``) and the Gaussian path it lives on (``schedule(grid)``), and is an
``nn.Module`` so its device and dtype are those of the wrapped model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from cotj.paths import prediction_of
from cotj.planning.schedules import Schedule, linear_flow, vp

__all__ = ["FluxDenoiser", "SD3Denoiser", "UNetDenoiser"]


def _cond_tensor(cond: Any, key: str) -> torch.Tensor:
    if isinstance(cond, torch.Tensor):
        return cond
    if isinstance(cond, dict) and key in cond:
        return cond[key]
    raise TypeError(f"cond must be a tensor or a dict with key {key!r}, got {type(cond).__name__}")


class FluxDenoiser(torch.nn.Module):
    """A ``FluxTransformer2DModel`` on packed latents, as ``FluxPipeline`` runs it.

    ``x_t`` is (n, seq, C) packed latents (what ``FluxPipeline(..., output_type="latent")``
    returns and ``latents=`` takes), ``t`` (n,) sigmas, ``cond`` a dict with ``"prompt_embeds"``
    (n, L, D) and ``"pooled_prompt_embeds"`` (n, P) (the pipeline's own keyword names).

    Args:
        transformer: the pipeline's transformer.
        height, width: image size in pixels.
        vae_scale_factor: the pipeline's ``vae_scale_factor`` (8 for Flux).
        guidance: the distilled guidance scale of guidance-embedding models (Flux-dev), used
            when ``transformer.config.guidance_embeds``; true classifier-free guidance is
            ``extract_dna``'s ``guidance_scale``.
    """

    prediction = "flow"
    transformer: Any  # a Diffusers FluxTransformer2DModel (untyped)
    img_ids: torch.Tensor

    def __init__(
        self, transformer: torch.nn.Module, height: int, width: int, vae_scale_factor: int = 8, guidance: float = 3.5
    ) -> None:
        super().__init__()
        from diffusers import FluxPipeline

        self.transformer = transformer
        self.guidance = float(guidance)
        rows, cols = int(height) // (vae_scale_factor * 2), int(width) // (vae_scale_factor * 2)
        if rows < 1 or cols < 1:
            raise ValueError(f"height and width must be at least {vae_scale_factor * 2} pixels, got {height}x{width}")
        ids = FluxPipeline._prepare_latent_image_ids(1, rows, cols, "cpu", torch.float32)
        self.register_buffer("img_ids", ids, persistent=False)

    @classmethod
    def from_pipeline(cls, pipe: Any, height: int, width: int, guidance: float = 3.5) -> FluxDenoiser:
        """The adapter of a ``FluxPipeline``'s transformer at an image size."""
        return cls(pipe.transformer, height, width, pipe.vae_scale_factor, guidance)

    def schedule(self, grid: ArrayLike) -> Schedule:
        """The linear flow on ``grid``."""
        return linear_flow(grid)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Velocity (n, seq, C) at states ``x_t`` (n, seq, C) and sigmas ``t`` (n,)."""
        if x_t.ndim != 3 or x_t.shape[1] != self.img_ids.shape[0]:
            raise ValueError(f"x_t must be packed latents (n, {self.img_ids.shape[0]}, C), got shape {tuple(x_t.shape)}")
        text = _cond_tensor(cond, "prompt_embeds")
        if not isinstance(cond, dict) or "pooled_prompt_embeds" not in cond:
            raise TypeError("cond must be a dict with 'prompt_embeds' and 'pooled_prompt_embeds'")
        dtype = x_t.dtype
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((x_t.shape[0],), self.guidance, device=x_t.device, dtype=torch.float32)
        return self.transformer(
            hidden_states=x_t,
            timestep=t.to(dtype),
            guidance=guidance,
            pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
            encoder_hidden_states=text.to(dtype),
            txt_ids=torch.zeros(text.shape[1], 3, device=x_t.device, dtype=dtype),
            img_ids=self.img_ids.to(dtype),
            return_dict=False,
        )[0]


class SD3Denoiser(torch.nn.Module):
    """An ``SD3Transformer2DModel`` on latents (n, C, h, w), as ``StableDiffusion3Pipeline`` runs it: the
    transformer's timestep is ``t·T`` (T = the scheduler's ``num_train_timesteps``), ``cond`` a dict with
    ``"prompt_embeds"`` (n, L, D) and ``"pooled_prompt_embeds"`` (n, P) (the pipeline's own keyword names).
    Classifier-free guidance is the caller's (``extract_dna``'s ``guidance_scale``)."""

    prediction = "flow"
    transformer: Any  # a Diffusers SD3Transformer2DModel (untyped)

    def __init__(self, transformer: torch.nn.Module, num_train_timesteps: int = 1000) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_train_timesteps = int(num_train_timesteps)

    @classmethod
    def from_pipeline(cls, pipe: Any) -> SD3Denoiser:
        """The adapter of a ``StableDiffusion3Pipeline``'s transformer (its scheduler's ``num_train_timesteps``)."""
        return cls(pipe.transformer, int(pipe.scheduler.config.get("num_train_timesteps", 1000)))

    def schedule(self, grid: ArrayLike) -> Schedule:
        """The linear flow on ``grid``."""
        return linear_flow(grid)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Velocity (n, C, h, w) at latents ``x_t`` (n, C, h, w) and sigmas ``t`` (n,)."""
        if x_t.ndim != 4:
            raise ValueError(f"x_t must be latents (n, C, h, w), got shape {tuple(x_t.shape)}")
        text = _cond_tensor(cond, "prompt_embeds")
        if not isinstance(cond, dict) or "pooled_prompt_embeds" not in cond:
            raise TypeError("cond must be a dict with 'prompt_embeds' and 'pooled_prompt_embeds'")
        dtype = x_t.dtype
        return self.transformer(
            hidden_states=x_t,
            timestep=(t * self.num_train_timesteps).to(dtype),
            encoder_hidden_states=text.to(dtype),
            pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
            return_dict=False,
        )[0]


class UNetDenoiser(torch.nn.Module):
    """A ``UNet2DConditionModel`` (SD 1.x/2.x style, or SDXL's) with its discrete VP scheduler.

    Level t is the training timestep ``t·(T - 1)`` (fractional where it falls between integers),
    as in :func:`cotj.planning.schedules.vp`; ``x_t`` (n, C, h, w) is the VP state ``a·x0 + s·eps`` (the
    scaled input the UNet takes), ``cond`` the text states (n, L, D), bare or as
    ``{"prompt_embeds": ...}``; an SDXL UNet also takes ``"text_embeds"`` (n, P) (the pooled
    embeddings) and ``"time_ids"`` (n, 6) in the dict, its ``added_cond_kwargs``. The prediction
    type comes from the scheduler's config.
    """

    def __init__(self, unet: torch.nn.Module, scheduler: Any) -> None:
        super().__init__()
        if not hasattr(scheduler, "alphas_cumprod"):
            raise TypeError(f"scheduler must be a discrete VP scheduler with alphas_cumprod, got {type(scheduler).__name__}")
        self.unet = unet
        self.prediction = prediction_of(scheduler)
        self.alphas_cumprod = np.asarray(scheduler.alphas_cumprod, dtype=np.float64)

    def schedule(self, grid: ArrayLike) -> Schedule:
        """The VP path of the scheduler's ``alphas_cumprod`` on ``grid``."""
        return vp(grid, self.alphas_cumprod)

    def path(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a(t), s(t)`` (n,) float64 on ``t``'s device at levels ``t`` (n,): the VP path of :meth:`schedule`,
        except that level 0 is the clean end (``a = 1, s = 0``), where the samplers' last step lands (as in
        :func:`cotj.predict.extract_dna`). What the teacher runs (:func:`cotj.predict.calibrate`) step on."""
        levels = t.detach().double().cpu().numpy()
        table = self.alphas_cumprod
        alpha_bar = np.interp(levels * (table.size - 1), np.arange(table.size, dtype=np.float64), table)
        alpha_bar = np.where(levels == 0, 1.0, alpha_bar)
        a, s = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)
        return torch.from_numpy(a).to(t.device), torch.from_numpy(s).to(t.device)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """The UNet's output (n, C, h, w) at states ``x_t`` and levels ``t`` (n,)."""
        text = _cond_tensor(cond, "prompt_embeds")
        timestep = t.to(torch.float32) * (len(self.alphas_cumprod) - 1)
        added = {k: cond[k] for k in ("text_embeds", "time_ids") if isinstance(cond, dict) and k in cond}
        return self.unet(x_t, timestep, encoder_hidden_states=text.to(x_t.dtype), added_cond_kwargs=added or None,
                         return_dict=False)[0]
