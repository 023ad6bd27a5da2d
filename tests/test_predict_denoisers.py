"""Adapters of Diffusers denoisers: extract_dna's reference run through an adapter reproduces the
pipeline's own deterministic sample from the same noise (same levels, same guidance)."""

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = [needs_extra("diffusers"), pytest.mark.usefixtures("one_torch_thread")]

import diffusers  # noqa: E402
import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.execute import scheduler_args, timestep_grid  # noqa: E402
from cotj.predict import FluxDenoiser, UNetDenoiser, extract_dna  # noqa: E402


def test_flux_adapter_reference_equals_the_pipeline(tiny_flux):
    pipe = tiny_flux(diffusers.FlowMatchEulerDiscreteScheduler())
    g = torch.Generator().manual_seed(0)
    cond = {"prompt_embeds": torch.randn(2, 5, 16, generator=g), "pooled_prompt_embeds": torch.randn(2, 8, generator=g)}
    noise = torch.randn(2, 16, 16, generator=g)  # packed latents: 16 tokens of 16 channels
    den = FluxDenoiser.from_pipeline(pipe, 16, 16)
    res = extract_dna(den, noise=noise, cond=cond, x_ref=None, batch_size=64, reference_steps=10, progress=False)
    # FluxPipeline's default schedule for 10 steps is sigmas linspace(1, 0.1, 10): the same descent
    want = pipe(**cond, latents=noise, num_inference_steps=10, height=16, width=16, output_type="latent").images
    torch.testing.assert_close(res.x_ref, want, atol=1e-5, rtol=1e-4)
    assert res.dna.shape == (2, 100) and np.all(np.isfinite(res.dna))
    assert res.dna[:, -1].mean() > res.dna[:, 0].mean()  # clean-side levels are easy even for random weights
    with pytest.raises(ValueError, match="packed latents"):
        den(torch.zeros(1, 4, 4, 4), torch.ones(1), cond)


def test_unet_adapter_reference_equals_the_pipeline_with_guidance(tiny_sd):
    sched = diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    pipe = tiny_sd(sched)
    g = torch.Generator().manual_seed(1)
    text, neg = torch.randn(2, 5, 8, generator=g), torch.zeros(2, 5, 8)
    noise = torch.randn(2, 4, 8, 8, generator=g)
    grid = timestep_grid(sched, 100)
    den = UNetDenoiser(pipe.unet, sched)
    assert den.prediction == "epsilon"
    res = extract_dna(den, noise=noise, cond=text, x_ref=None, grid=grid, guidance_scale=2.0, uncond=neg, reference_steps=8, progress=False)
    targets = (8 - np.arange(8)) / 8  # the reference descent: 8 even steps from 1, snapped to the grid
    levels = grid[np.abs(grid[None] - targets[:, None]).argmin(axis=1)]
    args = scheduler_args(levels, sched)
    sched.set_timesteps(**args)
    # the pipeline starts from latents·init_noise_sigma and feeds x/sqrt(sigma²+1): make that the noise
    latents = noise * (sched.sigmas[0] ** 2 + 1) ** 0.5 / sched.init_noise_sigma
    want = pipe(prompt_embeds=text, negative_prompt_embeds=neg, latents=latents, guidance_scale=2.0, height=16,
                width=16, output_type="latent", **args).images
    torch.testing.assert_close(res.x_ref, want, atol=1e-4, rtol=1e-4)
    assert res.evaluations == 2 * (100 + 8)


def test_unet_adapter_schedule_is_the_schedulers_vp_path(tiny_sd):
    sched = diffusers.DDPMScheduler(prediction_type="v_prediction", steps_offset=1, clip_sample=False)
    den = UNetDenoiser(tiny_sd(sched).unet, sched)
    grid = cotj.default_grid(10)
    a, s = den.schedule(grid)
    ab = sched.alphas_cumprod.double().numpy()
    np.testing.assert_allclose(a**2, np.interp(grid * 999, np.arange(1000), ab))
    np.testing.assert_allclose(a**2 + s**2, 1.0)
    assert den.prediction == "v"
    with pytest.raises(TypeError, match="discrete VP scheduler"):
        UNetDenoiser(den.unet, diffusers.FlowMatchEulerDiscreteScheduler())
