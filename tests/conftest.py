"""Shared fixtures: the real mean DNAs committed as test data, the released checkpoints' folder
(outside the repo; tests that need it skip where it is absent), tiny random-weight Diffusers
pipelines (CPU, 16x16 images) and a hook that records the noise levels a denoiser is called at.
Only the tests that use the Diffusers fixtures need torch/diffusers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "official"


def mean_dna(name: str) -> np.ndarray:
    """The training-set mean DNA released with the paper (N = 100, t_i = (i+1)/100)."""
    return np.asarray(json.loads((DATA / f"{name}_mean_dna.json").read_text())["dna"], dtype=np.float64)


@pytest.fixture(params=["qwenimage", "zimageturbo"])
def real_dna(request) -> np.ndarray:
    return mean_dna(request.param)


@pytest.fixture
def official() -> Path:
    if not OFFICIAL.is_dir():
        pytest.skip(f"released checkpoints not found at {OFFICIAL}")
    return OFFICIAL


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for the module: reproducible reductions, no oversubscription."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_flux():
    """``make(scheduler) -> FluxPipeline`` with a 1+1-layer transformer (16 latent channels
    packed) and a 2-block VAE (scale 2): a 16x16 image is 4x4 = 16 tokens. No text encoders:
    pass ``prompt_embeds`` (B, 5, 16) and ``pooled_prompt_embeds`` (B, 8)."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4),
    ).eval()
    vae = _tiny_vae(diffusers, shift_factor=0.0)

    def make(scheduler):
        return diffusers.FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None,
                                      text_encoder_2=None, tokenizer_2=None, transformer=transformer)

    return make


@pytest.fixture(scope="session")
def tiny_sd():
    """``make(scheduler) -> StableDiffusionPipeline`` with a 2-block UNet (cross-attention dim 8)
    and a 2-block VAE: 16x16 images, 8x8 latents. Pass ``prompt_embeds`` (B, 5, 8)."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4,
    ).eval()
    vae = _tiny_vae(diffusers)

    def make(scheduler):
        return diffusers.StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                                 safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    return make


@pytest.fixture(scope="module")
def tiny_shapes():
    """A ShapesPipeline (the testbed's generator architecture, 24x24) on a tiny random UNet (channels 8, 16), one
    per test module, progress bar off. Pass ``prompt_embeds`` (B, 16, 384) or an encoder of that shape."""
    torch = pytest.importorskip("torch")
    from cotj.models.generator import ShapesPipeline, build_unet, flow_scheduler
    from cotj.models.text import EMBED_DIM

    torch.manual_seed(0)
    unet = build_unet(dict(sample_size=24, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                           down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                           up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                           cross_attention_dim=EMBED_DIM, attention_head_dim=8, norm_num_groups=4))  # fmt: skip
    pipe = ShapesPipeline(unet.eval(), flow_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_vae(diffusers, **extra):
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=2, sample_size=16,
        scaling_factor=1.0, **extra,
    ).eval()


@pytest.fixture()
def record_timesteps():
    """``record(module) -> list``: every call of ``module`` appends the timestep it was given
    (its ``timestep`` keyword or second positional argument) as a float64 numpy array. Hooks are
    removed after the test."""
    handles = []

    def record(module):
        seen = []

        def hook(_module, args, kwargs):
            t = kwargs["timestep"] if "timestep" in kwargs else args[1]
            seen.append(t.detach().double().reshape(-1).cpu().numpy())

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        return seen

    yield record
    for h in handles:
        h.remove()
