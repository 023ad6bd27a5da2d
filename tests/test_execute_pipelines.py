"""Plans executed by real Diffusers pipelines (tiny random weights, CPU): the denoiser is called
exactly K times, at exactly the planned levels."""

import numpy as np
import pytest

from conftest import mean_dna, needs_extra

pytestmark = [needs_extra("diffusers"), pytest.mark.usefixtures("one_torch_thread")]

import diffusers  # noqa: E402
import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.execute import (  # noqa: E402
    InexactScheduleError,
    dynamic_mu,
    planned_scheduler,
    sample,
    scheduler_args,
    timestep_grid,
)

ATOL = 1e-6  # float32 rounding of the levels


@pytest.fixture(scope="module")
def plan5():
    return cotj.plan(mean_dna("qwenimage"), budget=5)


def _flux_inputs(b=2):
    g = torch.Generator().manual_seed(0)
    return dict(prompt_embeds=torch.randn(b, 5, 16, generator=g), pooled_prompt_embeds=torch.randn(b, 8, generator=g),
                height=16, width=16, output_type="pt", guidance_scale=1.0)


def _sd_inputs(b=2):
    g = torch.Generator().manual_seed(0)
    return dict(prompt_embeds=torch.randn(b, 5, 8, generator=g), negative_prompt_embeds=torch.zeros(b, 5, 8),
                height=16, width=16, output_type="pt", guidance_scale=2.0)


def _levels(seen, scale=1.0):
    assert all(np.all(s == s[0]) for s in seen)  # one level per call for the whole batch
    return np.array([s[0] for s in seen]) / scale


FLOW_SCHEDULERS = {
    "euler": lambda: diffusers.FlowMatchEulerDiscreteScheduler(),
    "euler-shift3": lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
    "euler-dynamic-exp": lambda: diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=4,
                                                                          max_image_seq_len=64),
    "euler-dynamic-linear": lambda: diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True,
                                                                             time_shift_type="linear"),
    "euler-terminal-at-plan-end": lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=2.0, shift_terminal=0.11),
}


@pytest.mark.parametrize("name", sorted(FLOW_SCHEDULERS))
def test_flux_sigmas_argument(tiny_flux, record_timesteps, plan5, name):
    """``pipe(sigmas=scheduler_args(...))``: the pipeline's own shifting is inverted."""
    sched = FLOW_SCHEDULERS[name]()
    pipe = tiny_flux(sched)
    plan = plan5 if "terminal" not in name else cotj.plan(mean_dna("qwenimage"), budget=5, last="bottom",
                                                          grid=np.linspace(0.11, 1.0, 100))
    seen = record_timesteps(pipe.transformer)
    mu = dynamic_mu(sched, 16)  # 16 latent tokens, as FluxPipeline computes it for 16x16
    pipe(**_flux_inputs(), **scheduler_args(plan, sched, mu=mu))
    assert len(seen) == plan.budget
    np.testing.assert_allclose(_levels(seen), plan.levels, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", sorted(n for n in FLOW_SCHEDULERS if "terminal" not in n))
def test_flux_planned_scheduler(tiny_flux, record_timesteps, plan5, name):
    """``pipe.scheduler = planned_scheduler(...)``: the pipeline asks for anything, runs the plan."""
    pipe = tiny_flux(FLOW_SCHEDULERS[name]())
    pipe.scheduler = planned_scheduler(pipe.scheduler, plan5)
    seen = record_timesteps(pipe.transformer)
    pipe(**_flux_inputs(), num_inference_steps=28)
    assert len(seen) == plan5.budget
    np.testing.assert_allclose(_levels(seen), plan5.levels, rtol=0, atol=ATOL)


def test_flux_unipc_flow_sigmas_are_within_one_training_step(tiny_flux, record_timesteps, plan5):
    """UniPC (use_flow_sigmas) casts timesteps to int64 and nudges sigma = 1: exact only to 1/T.
    FluxPipeline also drops sigmas= for it, so only the planned scheduler reaches it."""
    sched = diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    with pytest.raises(InexactScheduleError, match="UniPCMultistepScheduler casts timesteps to int64"):
        planned_scheduler(sched, plan5)
    pipe = tiny_flux(planned_scheduler(sched, plan5, atol=1.5e-3))
    seen = record_timesteps(pipe.transformer)
    pipe(**_flux_inputs(), num_inference_steps=3)
    assert len(seen) == plan5.budget
    np.testing.assert_allclose(_levels(seen), plan5.levels, rtol=0, atol=1.5e-3)
    np.testing.assert_allclose(pipe.scheduler.sigmas[:-1].double().numpy(), np.minimum(plan5.levels, 1 - 1e-6), atol=ATOL)


def test_respacing_options_raise_or_are_neutralised(tiny_flux, record_timesteps, plan5):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_karras_sigmas=True)
    with pytest.raises(InexactScheduleError, match="FlowMatchEulerDiscreteScheduler with use_karras_sigmas=True"):
        scheduler_args(plan5, sched)
    with pytest.raises(InexactScheduleError, match="use_beta_sigmas"):
        planned_scheduler(diffusers.FlowMatchEulerDiscreteScheduler(use_beta_sigmas=True), plan5)
    with pytest.raises(InexactScheduleError, match="shift_terminal=0.2"):
        scheduler_args(plan5, diffusers.FlowMatchEulerDiscreteScheduler(shift_terminal=0.2))
    pipe = tiny_flux(sched)
    seen = record_timesteps(pipe.transformer)
    with pytest.raises(InexactScheduleError, match="use_karras_sigmas"):
        sample(pipe, mean_dna=mean_dna("qwenimage"), budget=5, **_flux_inputs())
    assert pipe.scheduler is sched  # restored after the failure
    result = sample(pipe, mean_dna=mean_dna("qwenimage"), budget=5, neutral=True, **_flux_inputs())
    np.testing.assert_allclose(_levels(seen), plan5.levels, rtol=0, atol=ATOL)
    assert result.plans[0].steps.tolist() == plan5.steps.tolist()


def test_schedulers_that_cannot_take_a_plan_raise(plan5):
    with pytest.raises(InexactScheduleError, match="FlowMatchHeunDiscreteScheduler.set_timesteps takes no sigmas"):
        scheduler_args(plan5, diffusers.FlowMatchHeunDiscreteScheduler())
    with pytest.raises(InexactScheduleError, match="DPMSolverMultistepScheduler.set_timesteps takes no sigmas"):
        planned_scheduler(diffusers.DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction"), plan5)
    with pytest.raises(InexactScheduleError, match="DDIMScheduler.set_timesteps takes no timesteps"):
        scheduler_args(plan5, diffusers.DDIMScheduler())
    with pytest.raises(InexactScheduleError, match="final_sigmas_type='sigma_min'"):
        scheduler_args(plan5, diffusers.EulerDiscreteScheduler(final_sigmas_type="sigma_min"))
    with pytest.raises(ValueError, match="give mu"):
        scheduler_args(plan5, diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
    with pytest.raises(ValueError, match="strictly decreasing"):
        scheduler_args([0.2, 0.5], diffusers.FlowMatchEulerDiscreteScheduler())


VP = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)


def test_sd_euler_fractional_timesteps(tiny_sd, record_timesteps, plan5):
    """EulerDiscreteScheduler keeps float timesteps: any plan maps to t·(T-1) exactly."""
    sched = diffusers.EulerDiscreteScheduler(**VP)
    pipe = tiny_sd(sched)
    seen = record_timesteps(pipe.unet)
    pipe(**_sd_inputs(), **scheduler_args(plan5, sched))
    assert len(seen) == plan5.budget  # one call per step (CFG batches cond and uncond)
    np.testing.assert_allclose(_levels(seen, 999.0), plan5.levels, rtol=0, atol=ATOL)


@pytest.mark.parametrize("cls", ["DDPMScheduler", "DPMSolverMultistepScheduler"])
def test_sd_integer_timestep_schedulers(tiny_sd, record_timesteps, cls):
    """Schedulers that store integer timesteps: exact on timestep_grid, a clear error off it."""
    sched = getattr(diffusers, cls)(**VP, **({"clip_sample": False} if cls == "DDPMScheduler" else {}))
    grid = timestep_grid(sched, 100)
    plan = cotj.plan(mean_dna("qwenimage"), budget=4, grid=grid)
    with pytest.raises(InexactScheduleError, match=f"{cls} stores integer timesteps"):
        scheduler_args(cotj.plan(mean_dna("qwenimage"), budget=4), sched)
    pipe = tiny_sd(sched)
    seen = record_timesteps(pipe.unet)
    pipe(**_sd_inputs(), **scheduler_args(plan, sched))
    assert len(seen) == plan.budget
    np.testing.assert_allclose(_levels(seen, 999.0), plan.levels, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(_levels(seen), np.round(plan.levels * 999))


def test_sample_one_call_with_a_predictor(tiny_flux, record_timesteps):
    """Predict (from mean-pooled prompt_embeds) -> Plan (budget) -> Execute; prompts that share
    a plan share a call, each gets its own rows."""
    from cotj.predict import DNAPredictor

    torch.manual_seed(3)
    predictor = DNAPredictor(16, dropout=0.0).eval()
    predictor.set_statistics(np.zeros(16), np.ones(16), mean_dna("qwenimage"))
    pipe = tiny_flux(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    inputs = _flux_inputs(b=3)
    inputs["latents"] = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))
    seen = record_timesteps(pipe.transformer)
    result = sample(pipe, predictor=predictor, budget=[3, 4, 3], **inputs)
    assert result.dna is not None
    np.testing.assert_allclose(result.dna, predictor.predict(inputs["prompt_embeds"].mean(1)))
    assert [p.budget for p in result.plans] == [3, 4, 3]
    distinct = {tuple(p.steps): p for p in result.plans}  # in order of first appearance
    assert len(seen) == sum(p.budget for p in distinct.values())
    np.testing.assert_allclose(_levels(seen), np.concatenate([p.levels for p in distinct.values()]), atol=ATOL)
    assert len(result.images) == 3 and tuple(result.images[0].shape) == (3, 16, 16)
    assert type(pipe.scheduler) is diffusers.FlowMatchEulerDiscreteScheduler  # restored
    alone = {k: v[1:2] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    pipe.scheduler = planned_scheduler(pipe.scheduler, result.plans[1])
    torch.testing.assert_close(pipe(**alone).images[0], result.images[1])


def test_sample_noise_of_a_prompt_does_not_depend_on_how_prompts_group(tiny_flux):
    """One generator for several prompts: prompt 1 runs the same 3-step plan alone in its call (budgets 4, 3, 4)
    and together with the others (budgets 3, 3, 3), and gets the same image from the same seed."""
    pipe = tiny_flux(diffusers.FlowMatchEulerDiscreteScheduler())
    inputs = _flux_inputs(b=3)
    runs = [sample(pipe, mean_dna=mean_dna("qwenimage"), budget=budgets,
                   generator=torch.Generator().manual_seed(7), **inputs) for budgets in ([4, 3, 4], [3, 3, 3])]  # fmt: skip
    torch.testing.assert_close(runs[0].images[1], runs[1].images[1])
    assert not torch.allclose(runs[1].images[0], runs[1].images[1])  # per-prompt noise, not one noise repeated
    with pytest.raises(AssertionError):
        torch.testing.assert_close(runs[0].images[0], runs[1].images[0])  # budget 4 against 3: it did change


def test_sample_needs_a_dna_source(tiny_flux):
    pipe = tiny_flux(diffusers.FlowMatchEulerDiscreteScheduler())
    with pytest.raises(ValueError, match="exactly one of predictor"):
        sample(pipe, budget=3, **_flux_inputs())
    with pytest.raises(ValueError, match="budget"):
        sample(pipe, mean_dna=mean_dna("qwenimage"), budget=101, **_flux_inputs())


@pytest.fixture(scope="module")
def tiny_sd3():
    """StableDiffusion3Pipeline: 1-layer SD3 transformer (patch 2), 2-block VAE; no text encoders."""
    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, pos_embed_max_size=16).eval()
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=2, sample_size=16,
        scaling_factor=1.0, shift_factor=0.0).eval()
    return lambda sched: diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=sched, vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None,
        tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)


def test_sd3_sigmas_with_its_static_shift_and_guidance(tiny_sd3, record_timesteps, plan5):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)  # SD3's scheduler config
    pipe = tiny_sd3(sched)
    seen = record_timesteps(pipe.transformer)
    g = torch.Generator().manual_seed(0)
    pipe(prompt_embeds=torch.randn(2, 5, 16, generator=g), pooled_prompt_embeds=torch.randn(2, 8, generator=g),
         negative_prompt_embeds=torch.zeros(2, 5, 16), negative_pooled_prompt_embeds=torch.zeros(2, 8), guidance_scale=2.0,
         height=16, width=16, output_type="pt", **scheduler_args(plan5, sched))
    assert len(seen) == plan5.budget and all(s.size == 4 for s in seen)  # CFG: cond and uncond in one call
    np.testing.assert_allclose(_levels(seen, 1000.0), plan5.levels, rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def tiny_qwen():
    """QwenImagePipeline: 1-layer QwenImage transformer, 2-level Qwen VAE; no text encoder."""
    torch.manual_seed(0)
    transformer = diffusers.QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, axes_dims_rope=(2, 2, 4)).eval()
    vae = diffusers.AutoencoderKLQwenImage(base_dim=4, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
                                           latents_mean=[0.0] * 4, latents_std=[1.0] * 4).eval()
    return lambda sched: diffusers.QwenImagePipeline(scheduler=sched, vae=vae, text_encoder=None, tokenizer=None,
                                                     transformer=transformer)


def _qwen_scheduler():
    """Qwen-Image's scheduler config: exponential dynamic shift and shift_terminal = 0.02."""
    return diffusers.FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, time_shift_type="exponential", base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
        max_image_seq_len=8192, shift_terminal=0.02)


def test_qwen_image_config_runs_plans_exactly(tiny_qwen, record_timesteps, plan5):
    g = torch.Generator().manual_seed(0)
    inputs = dict(prompt_embeds=torch.randn(2, 5, 16, generator=g), prompt_embeds_mask=torch.ones(2, 5, dtype=torch.long),
                  height=16, width=16, output_type="pt")
    pipe = tiny_qwen(_qwen_scheduler())
    seen = record_timesteps(pipe.transformer)
    with pytest.raises(InexactScheduleError, match="shift_terminal=0.02 forces the last level to 0.02"):
        sample(pipe, mean_dna=mean_dna("qwenimage"), budget=5, **inputs)
    # a plan that ends at 0.02 runs on the configuration as it is (dynamic mu from the pipeline)
    ends = cotj.plan(mean_dna("qwenimage")[1:], budget=5, grid=cotj.default_grid(100)[1:], last="bottom")
    pipe.scheduler = planned_scheduler(pipe.scheduler, ends)
    pipe(**inputs, num_inference_steps=50)
    np.testing.assert_allclose(_levels(seen), ends.levels, rtol=0, atol=ATOL)
    # any plan runs on the neutral copy
    seen.clear()
    pipe.scheduler = _qwen_scheduler()
    result = sample(pipe, mean_dna=mean_dna("qwenimage"), budget=5, neutral=True, **inputs)
    assert len(seen) == 5
    np.testing.assert_allclose(_levels(seen), plan5.levels, rtol=0, atol=ATOL)
    assert result.plans[0].levels[-1] != 0.02


def test_sample_adaptive_length(tiny_flux, record_timesteps):
    pipe = tiny_flux(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    seen = record_timesteps(pipe.transformer)
    result = sample(pipe, mean_dna=mean_dna("zimageturbo"), tau=0.99, max_steps=12, **_flux_inputs(b=2))
    want = cotj.plan(mean_dna("zimageturbo"), tau=0.99, max_steps=12)
    assert [p.steps.tolist() for p in result.plans] == [want.steps.tolist()] * 2
    assert len(seen) == want.budget and all(s.size == 2 for s in seen)  # one shared plan: one call for both
    np.testing.assert_allclose(_levels(seen), want.levels, rtol=0, atol=ATOL)


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m", "unipc"])
def test_sample_solver_runs_the_plan_through_flux_with_dynamic_shifting(tiny_flux, record_timesteps, plan5, solver):
    """sample(solver=) swaps in the solver's exact scheduler (cotj.execute.solver_scheduler) for FluxPipeline's
    dynamically shifting one: the model is evaluated nfe times at the plan's evaluation levels (mu ignored), and
    the pipeline's scheduler is restored. A scheduler off the linear flow is refused."""
    from cotj.execute import evaluation_levels, nfe

    sched = FLOW_SCHEDULERS["euler-dynamic-exp"]()
    pipe = tiny_flux(sched)
    seen = record_timesteps(pipe.transformer)
    result = sample(pipe, mean_dna=mean_dna("qwenimage"), budget=5, solver=solver, **_flux_inputs())
    assert result.plans[0].steps.tolist() == plan5.steps.tolist()
    assert len(seen) == nfe(solver, 5)
    np.testing.assert_allclose(_levels(seen), evaluation_levels(solver, plan5.levels), rtol=0, atol=ATOL)
    assert pipe.scheduler is sched


def test_sample_solver_needs_a_flow_matching_pipeline(tiny_sd):
    pipe = tiny_sd(diffusers.EulerDiscreteScheduler(**VP))
    with pytest.raises(ValueError, match="EulerDiscreteScheduler is not a flow-matching one"):
        sample(pipe, mean_dna=mean_dna("qwenimage"), budget=3, solver="unipc", **_sd_inputs())
