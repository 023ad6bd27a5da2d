"""Plans executed by real Diffusers pipelines (tiny random weights, CPU): the denoiser is called
exactly K times, at exactly the planned levels."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import cotj  # noqa: E402
from cotj.execute import (  # noqa: E402
    InexactScheduleError,
    dynamic_mu,
    neutral_scheduler,
    planned_scheduler,
    sample,
    scheduler_args,
    timestep_grid,
)
from conftest import mean_dna  # noqa: E402

ATOL = 1e-6  # float32 rounding of the levels


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    "euler-dynamic-linear": lambda: diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="linear"),
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
    sched = getattr(diffusers, cls)(**VP)
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


def test_sample_needs_a_dna_source(tiny_flux):
    pipe = tiny_flux(diffusers.FlowMatchEulerDiscreteScheduler())
    with pytest.raises(ValueError, match="exactly one of predictor"):
        sample(pipe, budget=3, **_flux_inputs())
    with pytest.raises(ValueError, match="budget"):
        sample(pipe, mean_dna=mean_dna("qwenimage"), budget=101, **_flux_inputs())
