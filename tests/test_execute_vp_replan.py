"""Closed-loop replanning of a discrete VP pipeline through the library (cotj.execute.sample with a teacher cost):
the tiny random-weight StableDiffusionPipeline (cotj_testbed.tiny_pipelines) runs VPReplanningScheduler, so the
model is called exactly K times and the sample is that of cotj.execute.replan_sample (DDIM on the VP path) and of
the command line's path (cotj.cli._pipeline.vp_closed_loop), from the same noise. The flow ReplanningScheduler
refuses a VP scheduler instead of reading its sigmas as levels t."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = [needs_extra("diffusers"), pytest.mark.usefixtures("one_torch_thread")]

import diffusers  # noqa: E402
import torch  # noqa: E402

from cotj.execute import (  # noqa: E402
    InexactScheduleError,
    Replanner,
    ReplanningScheduler,
    VPReplanningScheduler,
    replan_sample,
    replanning_scheduler,
    sample,
)
from cotj_testbed import tiny_pipelines  # noqa: E402

PROMPTS = ["a red cat", "a blue dog", "the big cat on the left"]
LEVELS, K, GUIDANCE = 8, 4, 7.5


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """The tiny SD pipeline (DDIMScheduler, epsilon), its denoiser, and a teacher cost fitted on its own runs."""
    from cotj.cli import _pipeline
    from cotj.predict.teacher import euler_trajectories, fit_teacher_cost

    torch.set_num_threads(1)
    folder = tiny_pipelines.save("sd", tmp_path_factory.mktemp("pipelines"))
    loaded = _pipeline.load_pipeline(str(folder), progress=False)
    model = _pipeline.denoiser(loaded, 16, 16, GUIDANCE)
    grid = loaded.grid(LEVELS)
    cond = _pipeline.encode(loaded, PROMPTS, True)
    noise = torch.randn(3, *loaded.latent_shape(16, 16), generator=torch.Generator().manual_seed(5))
    traj = euler_trajectories(model, noise, cond, grid)
    teacher = fit_teacher_cost(traj.jump_costs, traj.features, grid)
    return loaded, model, cond, noise, teacher


def _counting(pipe):
    """Wraps the UNet's forward; returns the list its calls are appended to."""
    calls: list[int] = []
    forward = pipe.unet.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    pipe.unet.forward = counted
    return calls


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_sample_replans_a_vp_pipeline_with_k_calls_as_replan_sample_and_the_cli(sd, scheduler):
    from cotj.cli import _pipeline

    loaded, model, cond, noise, teacher = sd
    pipe = loaded.pipe
    original = pipe.scheduler
    if scheduler == "euler":
        pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(original.config)
    call = dict(latents=noise[:1], guidance_scale=GUIDANCE, height=16, width=16, output_type="latent")
    calls = _counting(pipe)
    try:
        got = sample(pipe, PROMPTS[0], teacher=teacher, budget=K, **call)
        assert len(calls) == K  # one UNet call per level (the guided pair in one batch)
        assert pipe.scheduler is original or scheduler == "euler"  # restored
        image, plan = _pipeline.vp_closed_loop(loaded, PROMPTS[0], teacher, K, dict(call))
    finally:
        del pipe.unet.forward
        pipe.scheduler = original
    x, levels = replan_sample(model, noise[:1], cond[:1], Replanner(teacher, K))
    (run,) = got.plans
    assert run.budget == K and got.dna is None
    np.testing.assert_allclose(run.levels, levels[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(run.steps, plan.steps)
    assert np.all(np.diff(run.levels) < 0) and run.levels[0] == teacher.grid[-1]
    torch.testing.assert_close(got.images[0], image)  # the command line's path, bit for bit
    torch.testing.assert_close(got.images[0][None].float(), x.float(), atol=2e-4, rtol=1e-3)


def test_the_flow_replanning_scheduler_refuses_a_vp_scheduler_and_the_factory_picks(sd):
    teacher = sd[4]
    vp = diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    for sched in (vp, diffusers.DDIMScheduler(), diffusers.DPMSolverMultistepScheduler()):
        with pytest.raises(InexactScheduleError, match=rf"^{type(sched).__name__} is not a flow-matching scheduler: .*"
                                                       r"use cotj.execute.VPReplanningScheduler"):
            ReplanningScheduler(sched, teacher)
    assert type(replanning_scheduler(vp, teacher)) is VPReplanningScheduler
    picked = replanning_scheduler(diffusers.DDIMScheduler.from_config(vp.config), teacher)
    assert type(picked) is VPReplanningScheduler and isinstance(picked.scheduler, diffusers.EulerDiscreteScheduler)
    np.testing.assert_array_equal(picked.scheduler.alphas_cumprod, vp.alphas_cumprod)  # same betas
    assert type(replanning_scheduler(diffusers.FlowMatchEulerDiscreteScheduler(), teacher)) is ReplanningScheduler
    with pytest.raises(ValueError, match="VP replanning plans first-order steps"):
        replanning_scheduler(vp, teacher, "unipc")
    flow_euler = diffusers.EulerDiscreteScheduler()
    flow_euler.register_to_config(use_flow_sigmas=True)  # configured for the linear flow (newer Diffusers)
    with pytest.raises(InexactScheduleError, match="runs the linear flow"):
        VPReplanningScheduler(flow_euler, teacher)
