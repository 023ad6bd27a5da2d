"""The Tier 2 generator: a small pixel-space Diffusers UNet and a ``DiffusionPipeline`` that samples it.

Flow convention (rectified flow): ``x_t = (1 - t)·x0 + t·eps``, the UNet predicts the velocity ``v = eps - x0``
and receives the timestep ``t·1000``. Conditioning is MiniLM token embeddings ``(B, 16, 384)``
(:mod:`cotj.models.text`); the null condition for classifier-free guidance is the empty prompt ``""``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from cotj.models.text import EMBED_DIM, default_encoder

RESOLUTION = 24
"""Side of the generated images, pixels."""
WEIGHTS = Path(__file__).resolve().parent / "weights" / "shapes_unet.safetensors"
"""The shipped generator weights (EMA), if present."""
PREDICTOR = WEIGHTS.parent / "shapes_dna_predictor"
"""The shipped DNA predictor of the shipped generator (a :class:`cotj.predict.DNAPredictor` directory: MiniLM
mean-pooled prompt embedding (384,) -> DNA (100,)), trained by the Tier 2 quality benchmark."""
TEACHER = WEIGHTS.parent / "shapes_teacher_cost.json"
"""The shipped teacher cost of the shipped generator (a :class:`cotj.planning.objectives.TeacherCost`: measured jump costs
and the closed-loop row model, :func:`cotj.predict.calibrate` on 256 training prompts at guidance 2): what
``cotj sample`` plans and replans with by default."""
PREDICTOR_GUIDANCE = 2.0
"""The guidance scale the shipped predictor's training DNA was measured at (DNA depends on it)."""
NULL_PROMPT = ""


def unet_config(resolution: int = RESOLUTION) -> dict:
    """Config of the shipped UNet (3.1M parameters): 24 -> 12 -> 6, cross-attention at 12 and 6."""
    return dict(
        sample_size=resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 96),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=EMBED_DIM,
        attention_head_dim=32,
        norm_num_groups=16,
    )


def build_unet(config: dict | None = None) -> UNet2DConditionModel:
    """A freshly initialised UNet (``config`` defaults to :func:`unet_config`)."""
    return UNet2DConditionModel(**(config if config is not None else unet_config()))


def trained_unet(config: dict, state: dict[str, torch.Tensor]) -> UNet2DConditionModel:
    """The UNet of ``config`` with the weights ``state`` (float32, eval mode): built on the meta device and given
    the tensors of ``state``, so no random initialisation is computed and thrown away. RuntimeError if ``state``
    does not hold exactly the UNet's weights."""
    with torch.device("meta"):
        unet = build_unet(config)
    unet.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    unset = [name for name, t in [*unet.named_parameters(), *unet.named_buffers()] if t.is_meta]
    if unset:  # a tensor the state dict does not hold (a non-persistent buffer)
        raise RuntimeError(f"the UNet's {unset[0]} is not in the weights")
    return unet.eval()


def flow_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The scheduler the model is sampled with: flow-matching Euler, no shift, so sigmas are the levels t."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


class ShapesPipeline(DiffusionPipeline):
    """Text-to-image sampling of the shapes model with classifier-free guidance.

    Components: ``unet`` (:class:`UNet2DConditionModel`), ``scheduler`` (a flow-matching scheduler whose sigmas
    are the levels t). Prompts are encoded with :func:`cotj.models.text.default_encoder` unless ``prompt_embeds``
    are given.
    """

    def __init__(self, unet: UNet2DConditionModel, scheduler: FlowMatchEulerDiscreteScheduler) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)

    @classmethod
    def from_shipped(cls, weights: str | Path = WEIGHTS) -> ShapesPipeline:
        """The pipeline with the package's trained weights (offline; raises FileNotFoundError if not shipped)."""
        from safetensors import safe_open

        weights = Path(weights)
        if not weights.exists():
            raise FileNotFoundError(f"no generator weights at {weights}")
        with safe_open(str(weights), framework="pt") as f:
            config = json.loads(f.metadata()["unet_config"])
            state = {k: f.get_tensor(k) for k in f.keys()}
        return cls(trained_unet(config, state), flow_scheduler())

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Token embeddings ``(B, 16, 384)`` on the UNet's device."""
        return default_encoder().encode(prompts).to(self.unet.device)

    @torch.no_grad()
    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, prompt_embeds: torch.Tensor, guidance_scale: float = 1.0
    ) -> torch.Tensor:
        """Guided velocity ``v = eps - x0`` at states ``x`` (B, 3, H, W), levels ``t`` in [0, 1] ((B,) or scalar).

        ``guidance_scale`` 1 is the plain conditional model; g > 1 is ``v_null + g·(v_cond - v_null)``.
        """
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        if guidance_scale == 1.0:
            return self.unet(x, t * 1000.0, prompt_embeds).sample
        null = self.encode_prompt([NULL_PROMPT]).expand_as(prompt_embeds)
        v_null, v_cond = self.unet(
            torch.cat([x, x]), torch.cat([t, t]) * 1000.0, torch.cat([null, prompt_embeds])
        ).sample.chunk(2)
        return v_null + guidance_scale * (v_cond - v_null)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        *,
        prompt_embeds: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        sigmas: Sequence[float] | np.ndarray | None = None,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Sample images.

        Give ``prompt`` (str or list) or ``prompt_embeds`` ``(B, 16, 384)``; ``sigmas`` (descending levels in (0, 1],
        the scheduler appends the terminal 0) or ``num_inference_steps`` (uniform, default 20); ``latents`` is the
        starting noise ``(B, 3, 24, 24)`` (else drawn from ``generator``: one, or a list of B, one per image, as in
        Diffusers). ``output_type``: "np" (B, H, W, 3) in
        [0, 1], "pil", or "pt" (B, 3, H, W) in [0, 1].
        """
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("give exactly one of prompt and prompt_embeds")
        if prompt is not None:
            prompt_embeds = self.encode_prompt([prompt] if isinstance(prompt, str) else list(prompt))
        assert prompt_embeds is not None  # one of the two (checked above)
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != EMBED_DIM:
            raise ValueError(f"prompt_embeds must have shape (B, L, {EMBED_DIM}), got {tuple(prompt_embeds.shape)}")
        if sigmas is not None and num_inference_steps is not None:
            raise ValueError("give at most one of sigmas and num_inference_steps")
        device, batch = self.unet.device, prompt_embeds.shape[0]
        side = self.unet.config.sample_size
        if latents is None:
            latents = randn_tensor((batch, 3, side, side), generator=generator, device=device)
        elif latents.shape != (batch, 3, side, side):
            raise ValueError(f"latents must have shape {(batch, 3, side, side)}, got {tuple(latents.shape)}")
        if sigmas is not None:  # a float64 array (a copy): UniPCMultistepScheduler does arithmetic on it
            self.scheduler.set_timesteps(sigmas=np.array(sigmas, dtype=np.float64), device=device)
        else:
            self.scheduler.set_timesteps(num_inference_steps or 20, device=device)
        x = latents.to(device=device, dtype=self.unet.dtype)
        for t in self.progress_bar(self.scheduler.timesteps):
            v = self.velocity(x, t / 1000.0, prompt_embeds, guidance_scale)
            x = self.scheduler.step(v, t, x).prev_sample
        images = self.image_processor.postprocess(x.clamp(-1, 1), output_type=output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def load_pipeline(weights: str | Path | None = None) -> ShapesPipeline:
    """The shapes ``ShapesPipeline`` from a weights file (default the shipped one) or from a training run
    directory (its ``checkpoint.safetensors`` EMA weights and ``config.json``)."""
    from safetensors.torch import load_file

    path = Path(weights) if weights is not None else WEIGHTS
    if not path.is_dir():
        return ShapesPipeline.from_shipped(path)
    ckpt, config = path / "checkpoint.safetensors", path / "config.json"
    if not ckpt.exists():
        raise FileNotFoundError(f"no checkpoint.safetensors in the run directory {path}")
    ema = {k[len("ema."):]: v for k, v in load_file(str(ckpt)).items() if k.startswith("ema.")}
    return ShapesPipeline(trained_unet(json.loads(config.read_text())["unet"], ema), flow_scheduler())
