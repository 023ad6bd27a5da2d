"""Shared fixtures and markers.

Markers (registered in pyproject.toml): ``torch``, ``diffusers``, ``plot``, ``k_diffusion`` and ``lint`` mark
tests that need that optional extra (see ``[project.optional-dependencies]``); a marked test is skipped, with
the ``pip install`` that brings the extra, where the extra is not installed. A module that imports an extra's
packages at module level calls :func:`needs_extra` first, which skips the whole module there. ``slow`` marks
tests that take more than about 5 s (deselect them with ``-m "not slow"``).

Fixtures: the real mean DNAs committed as test data, the paper's released checkpoints (outside the repository:
see :func:`official`), tiny random-weight Diffusers pipelines (CPU, 16x16 images) and a hook that records the
noise levels a denoiser is called at."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"

# marker -> (extra of pyproject.toml, the import names of its packages)
_TORCH = ("torch", "safetensors", "tqdm")
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("torch", _TORCH),
    "diffusers": ("diffusers", (*_TORCH, "diffusers", "transformers", "accelerate")),
    "plot": ("plot", ("matplotlib",)),
    "k_diffusion": ("k-diffusion", (*_TORCH, "k_diffusion")),
    "lint": ("lint", ("mypy",)),
}


def _missing_reason(marker: str) -> str | None:
    """Why tests marked ``marker`` cannot run here (the extra's missing packages and how to install them), or
    None where the extra is installed."""
    extra, modules = EXTRAS[marker]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"needs the '{extra}' extra ({', '.join(missing)} not installed): pip install -e '.[{extra}]'"


def needs_extra(marker: str) -> pytest.MarkDecorator:
    """``pytest.mark.<marker>`` for a module's ``pytestmark``; where that extra is not installed, skips the
    calling module at once (call it before the module imports the extra's packages)."""
    if marker not in EXTRAS:
        raise ValueError(f"marker must be one of {', '.join(EXTRAS)}, got {marker!r}")
    reason = _missing_reason(marker)
    if reason is not None:
        pytest.skip(reason, allow_module_level=True)
    return getattr(pytest.mark, marker)


def _skip_unless(marker: str) -> None:
    reason = _missing_reason(marker)
    if reason is not None:
        pytest.skip(reason)


# fixture -> the marker of the extra it needs: a test that uses the fixture gets the marker
FIXTURE_EXTRAS = {"one_torch_thread": "torch", "analytic_teacher": "torch", "tiny_flux": "diffusers",
                  "tiny_sd": "diffusers", "tiny_shapes": "diffusers"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the tests that use a fixture of :data:`FIXTURE_EXTRAS` with its extra (for ``-m``)."""
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name in FIXTURE_EXTRAS:
                item.add_marker(FIXTURE_EXTRAS[name])


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skips a test marked with an extra that is not installed."""
    for marker in EXTRAS:
        if item.get_closest_marker(marker) is not None:
            _skip_unless(marker)


OFFICIAL_ENV = "COTJ_OFFICIAL"
OFFICIAL_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "official"


def mean_dna(name: str) -> np.ndarray:
    """The training-set mean DNA released with the paper (N = 100, t_i = (i+1)/100)."""
    return np.asarray(json.loads((DATA / f"{name}_mean_dna.json").read_text())["dna"], dtype=np.float64)


@pytest.fixture(params=["qwenimage", "zimageturbo"])
def real_dna(request) -> np.ndarray:
    return mean_dna(request.param)


@pytest.fixture
def official() -> Path:
    """The folder of the paper's released files for Qwen-Image and Z-Image-Turbo: ``<name>_model_state.pth``,
    ``<name>_norm_data.pt`` (the DNA predictor MLP) and ``<name>_mean_dna.json`` for ``<name>`` in qwenimage,
    zimageturbo. They are not redistributable, so the repository does not hold them: the folder is
    ``$COTJ_OFFICIAL``, else ``shared/data/official`` next to the clone. Tests that use it skip where neither is
    there; a ``$COTJ_OFFICIAL`` that is not a folder is an error."""
    given = os.environ.get(OFFICIAL_ENV)
    if given:
        folder = Path(given).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{OFFICIAL_ENV}={given} is not a folder")
        return folder
    if not OFFICIAL_DEFAULT.is_dir():
        pytest.skip(f"needs the paper's released DNA predictors and mean DNAs (not redistributable, so not in the "
                    f"repository): set {OFFICIAL_ENV} to the folder holding <name>_model_state.pth, "
                    "<name>_norm_data.pt and <name>_mean_dna.json for <name> in qwenimage, zimageturbo")
    return OFFICIAL_DEFAULT


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for the module: reproducible reductions, no oversubscription."""
    _skip_unless("torch")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ANALYTIC_GRID = np.arange(1, 13) / 12
"""The 12 levels of :func:`analytic_teacher` (``cotj.default_grid(12)``)."""


def analytic_inputs(n: int, seed: int) -> tuple[Any, Any]:
    """Noise (n, 6) float64 from ``seed`` and conditions (n,) in 0..4 for the analytic flow model of
    :func:`analytic_teacher` (``FlowMixtureModel(MixtureFamily(dim=6, seed=0))``)."""
    import torch

    noise = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return noise, torch.arange(n) % 5


@pytest.fixture(scope="module")
def analytic_teacher(one_torch_thread):
    """A teacher cost calibrated on 24 runs of the analytic flow model (dim 6) on :data:`ANALYTIC_GRID`, with its
    row model and Gram matrix."""
    from cotj.models.analytic import FlowMixtureModel, MixtureFamily
    from cotj.predict.teacher import calibrate

    noise, cond = analytic_inputs(24, 0)
    return calibrate(FlowMixtureModel(MixtureFamily(dim=6, seed=0)), noise, cond, ANALYTIC_GRID, batch_size=10,
                     progress=False)


@pytest.fixture(scope="session")
def tiny_flux():
    """``make(scheduler) -> FluxPipeline`` with a 1+1-layer transformer (16 latent channels
    packed) and a 2-block VAE (scale 2): a 16x16 image is 4x4 = 16 tokens. No text encoders:
    pass ``prompt_embeds`` (B, 5, 16) and ``pooled_prompt_embeds`` (B, 8)."""
    _skip_unless("diffusers")
    import diffusers
    import torch

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
    _skip_unless("diffusers")
    import diffusers
    import torch

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
    _skip_unless("diffusers")
    import torch

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
