"""Closed-loop replanning (cotj.execute.replan and cotj.execute.sample with a teacher cost): the model is
evaluated exactly as often as the budget or solver says, at the levels the run reports; without a row model the
loop follows the open-loop plan; bad budgets, solvers and teacher costs are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import ANALYTIC_GRID, analytic_inputs, needs_extra

pytestmark = [needs_extra("diffusers"), pytest.mark.usefixtures("one_torch_thread")]

import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.execute.replan import Replanner, ReplanningScheduler, replan_sample  # noqa: E402
from cotj.models.analytic import FlowMixtureModel, MixtureFamily  # noqa: E402
from cotj.planning.objectives import TeacherCost, objective  # noqa: E402

GRID = ANALYTIC_GRID


class Counting:
    """The analytic flow model, recording the level of every row of every call."""

    prediction = "flow"

    def __init__(self) -> None:
        self.model = FlowMixtureModel(MixtureFamily(dim=6, seed=0))
        self.calls: list[np.ndarray] = []

    def __call__(self, x, t, cond):
        self.calls.append(t.double().numpy().copy())
        return self.model(x, t, cond)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_replanning_evaluates_the_model_exactly_k_times_at_the_levels_it_reports(analytic_teacher, k):
    model = Counting()
    noise, cond = analytic_inputs(7, 3)
    x, seen = replan_sample(model, noise, cond, Replanner(analytic_teacher, k))
    assert len(model.calls) == k and seen.shape == (7, k)
    np.testing.assert_array_equal(np.stack(model.calls, 1), seen)
    assert np.all(seen[:, 0] == GRID[-1]) and np.all(np.diff(seen, axis=1) < 0)
    assert x.shape == noise.shape and torch.isfinite(x).all()


def test_replanning_without_a_row_model_follows_the_teacher_plan(analytic_teacher):
    open_loop = TeacherCost(analytic_teacher.grid, analytic_teacher.edges, analytic_teacher.end, 24)
    noise, cond = analytic_inputs(5, 4)
    _, seen = replan_sample(Counting(), noise, cond, Replanner(open_loop, 5))
    plan = cotj.plan_batch(objective("teacher", teacher=open_loop), 5, current=11)
    np.testing.assert_array_equal(seen, np.tile(plan.levels[0], (5, 1)))


def test_replanning_scheduler_runs_an_unchanged_pipeline_at_the_levels_it_reports(tiny_flux, record_timesteps, analytic_teacher):
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = ReplanningScheduler(FlowMatchEulerDiscreteScheduler(shift=3.0), analytic_teacher)
    pipe = tiny_flux(scheduler)
    seen = record_timesteps(pipe.transformer)
    pipe(prompt_embeds=torch.randn(1, 5, 16), pooled_prompt_embeds=torch.randn(1, 8), height=16, width=16,
         num_inference_steps=4, output_type="latent", generator=torch.Generator().manual_seed(0))
    assert len(seen) == 4 and len(scheduler.levels) == 4
    np.testing.assert_allclose(np.concatenate(seen), scheduler.levels, atol=1e-6)
    assert set(np.round(scheduler.levels, 6)) <= set(np.round(GRID, 6)) and scheduler.levels[0] == 1.0


def test_replanner_rejects_bad_budgets(analytic_teacher):
    bad: Any
    for bad in (0, 13, 2.0, True):
        with pytest.raises(ValueError, match="budget must be an int in 1..12"):
            Replanner(analytic_teacher, bad)


def test_sample_replans_each_prompt_with_exactly_budget_evaluations(tiny_shapes, record_timesteps, analytic_teacher):
    from cotj.execute import sample

    seen = record_timesteps(tiny_shapes.unet)
    embeds = torch.randn(3, 16, 384, generator=torch.Generator().manual_seed(0))
    out = sample(tiny_shapes, teacher=analytic_teacher, budget=5, prompt_embeds=embeds, guidance_scale=1.0,
                 generator=torch.Generator().manual_seed(1), output_type="np")
    assert len(seen) == 15 and len(out.images) == 3 and out.dna is None
    for b, plan in enumerate(out.plans):  # the UNet gets t·1000 at the levels each plan reports
        np.testing.assert_allclose(np.concatenate(seen[5 * b : 5 * b + 5]) / 1000.0, plan.levels, atol=1e-5)
        np.testing.assert_allclose(plan.levels, GRID[plan.steps])
    assert tiny_shapes.scheduler.__class__.__name__ == "FlowMatchEulerDiscreteScheduler"  # restored


def test_sample_open_loop_teacher_objective_runs_the_teacher_plan(tiny_shapes, record_timesteps, analytic_teacher):
    from cotj.execute import sample

    seen = record_timesteps(tiny_shapes.unet)
    out = sample(tiny_shapes, teacher=analytic_teacher, replan=False, budget=4, guidance_scale=1.0,
                 prompt_embeds=torch.randn(2, 16, 384), output_type="np")
    plan = cotj.plan_batch(objective("teacher", teacher=analytic_teacher), 4, current=11)[0]
    assert len(seen) == 4  # both prompts share the plan: one call
    np.testing.assert_allclose(out.plans[0].levels, plan.levels)
    np.testing.assert_allclose(seen[0] / 1000.0, plan.levels[:1].repeat(2), atol=1e-5)


def test_sample_rejects_replanning_without_a_teacher_cost_or_with_tau(tiny_shapes, analytic_teacher):
    from cotj.execute import sample

    with pytest.raises(ValueError, match="need teacher"):
        sample(tiny_shapes, replan=True, budget=4, mean_dna=np.ones(12), prompt_embeds=torch.randn(1, 16, 384))
    with pytest.raises(ValueError, match="one int budget"):
        sample(tiny_shapes, teacher=analytic_teacher, tau=0.9, prompt_embeds=torch.randn(1, 16, 384))


def test_replanning_with_a_dna_prior_and_no_row_model_follows_the_calibrated_plan(analytic_teacher):
    open_loop = TeacherCost(analytic_teacher.grid, analytic_teacher.edges, analytic_teacher.end, 24)
    rng = np.random.default_rng(3)
    mean = rng.uniform(0.1, 1.0, 12)
    dna = mean * rng.uniform(0.2, 5.0, (4, 12))
    noise, cond = analytic_inputs(4, 5)
    _, seen = replan_sample(Counting(), noise, cond, Replanner(open_loop, 5, np.log(dna / mean)))
    plans = cotj.plan_batch(objective("calibrated", dna=dna, mean_dna=mean, teacher=open_loop), 5, current=11)
    np.testing.assert_array_equal(seen, plans.levels)
    with pytest.raises(ValueError, match="prior must be finite"):
        Replanner(open_loop, 5, np.zeros(11))


def test_sample_replans_with_the_default_budget_when_none_is_given(tiny_shapes, analytic_teacher):
    from cotj.execute import sample
    from cotj.planning.planner import DEFAULT_BUDGET

    out = sample(tiny_shapes, teacher=analytic_teacher, guidance_scale=1.0, prompt_embeds=torch.randn(1, 16, 384),
                 output_type="np")
    assert out.plans[0].budget == DEFAULT_BUDGET


@pytest.mark.parametrize("solver", ["dpmpp_2m", "unipc"])
def test_multistep_replanning_takes_the_solvers_steps_at_the_levels_it_reports(analytic_teacher, solver):
    """Without a row model the loop follows the open-loop plan made for the solver, and its sample is what the
    solver itself (cotj.execute.solvers.solve) makes on those levels: one set of weights, two samplers."""
    from dataclasses import replace

    from cotj.execute.solvers import solve

    open_loop = replace(analytic_teacher, rows=None)
    model = Counting()
    noise, cond = analytic_inputs(5, 6)
    x, seen = replan_sample(model, noise, cond, Replanner(open_loop, 5, solver=solver))
    np.testing.assert_array_equal(seen, np.tile(open_loop.plan(solver, 5).levels, (5, 1)))
    np.testing.assert_array_equal(np.stack(model.calls, 1), seen)
    want = solve(FlowMixtureModel(MixtureFamily(dim=6, seed=0)), noise, cond, seen, solver, prediction="flow")
    torch.testing.assert_close(x, want, rtol=1e-9, atol=1e-10)
    closed, seen_closed = replan_sample(Counting(), noise, cond, Replanner(analytic_teacher, 5, solver=solver))
    assert seen_closed.shape == (5, 5) and np.all(np.diff(seen_closed, axis=1) < 0) and torch.isfinite(closed).all()


def test_replanner_refuses_solvers_it_cannot_replan(analytic_teacher):
    from dataclasses import replace

    with pytest.raises(ValueError, match="heun evaluates twice per level"):
        Replanner(analytic_teacher, 4, solver="heun")
    with pytest.raises(ValueError, match="no Gram matrix"):
        Replanner(replace(analytic_teacher, gram=None), 4, solver="unipc")


class _Velocity:
    """The shapes pipeline's guided velocity as a flow denoiser, for cotj.execute.solve."""

    prediction = "flow"

    def __init__(self, pipe) -> None:
        self.pipe = pipe

    def __call__(self, x, t, cond):
        return self.pipe.velocity(x, t, cond)


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m", "unipc"])
def test_sample_with_a_solver_evaluates_the_model_nfe_times_at_the_levels_it_reports(tiny_shapes, record_timesteps,
                                                                                       analytic_teacher, solver):
    """sample(solver=) on the teacher objective: euler, dpmpp_2m and unipc replan each prompt (closed loop, one call
    each), heun runs open loop on the plan made for its steps (the prompts share it: one call). The model is
    evaluated nfe(solver, K) times per plan, at evaluation_levels of the levels reported, and each image is the
    batched solver's on those levels; the pipeline's scheduler is restored."""
    from cotj.execute import evaluation_levels, nfe, sample, solve

    k = 4
    seen = record_timesteps(tiny_shapes.unet)
    embeds = torch.randn(2, 16, 384, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    out = sample(tiny_shapes, teacher=analytic_teacher, budget=k, solver=solver, prompt_embeds=embeds, latents=noise,
                 guidance_scale=1.0, output_type="pt")
    if solver == "heun":
        assert len(seen) == nfe("heun", k) == 7 and all(s.size == 2 for s in seen)
        per_prompt = [np.array([s[b] for s in seen]) for b in range(2)]
        np.testing.assert_allclose(out.plans[0].levels, analytic_teacher.plan("heun", k).levels)
    else:
        assert len(seen) == 2 * nfe(solver, k) == 2 * k and all(s.size == 1 for s in seen)
        per_prompt = [np.concatenate(seen[b * k:(b + 1) * k]) for b in range(2)]
    for b, plan in enumerate(out.plans):
        assert plan.budget == k
        np.testing.assert_allclose(plan.levels, GRID[plan.steps])
        np.testing.assert_allclose(per_prompt[b] / 1000.0, evaluation_levels(solver, plan.levels), rtol=0, atol=1e-6)
        x = solve(_Velocity(tiny_shapes), noise[b:b + 1], embeds[b:b + 1], plan.levels, solver)
        torch.testing.assert_close(out.images[b], ((x.clamp(-1, 1) + 1) / 2)[0], rtol=0, atol=1e-5)
    assert type(tiny_shapes.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"


@pytest.mark.parametrize("solver", ["dpmpp_2m", "unipc"])
def test_sample_replans_for_the_multistep_solvers_steps(tiny_shapes, analytic_teacher, solver):
    """Closed loop without a row model follows the open-loop plan made for the solver (from the (previous,
    current) pairs), which open loop (replan=False) runs too. At K = 4 replanning from the current level alone
    (no previous) would end elsewhere for both solvers."""
    from dataclasses import replace

    from cotj.execute import sample

    open_loop = replace(analytic_teacher, rows=None)
    kw = dict(budget=4, solver=solver, prompt_embeds=torch.randn(1, 16, 384), guidance_scale=1.0)
    closed = sample(tiny_shapes, teacher=open_loop, **kw).plans[0]
    opened = sample(tiny_shapes, teacher=open_loop, replan=False, **kw).plans[0]
    np.testing.assert_allclose(closed.levels, open_loop.plan(solver, 4).levels)
    np.testing.assert_allclose(opened.levels, open_loop.plan(solver, 4).levels)


def test_sample_solver_errors_and_the_first_order_fallback(tiny_shapes, analytic_teacher, caplog):
    """Closed-loop dpmpp_2m / unipc without a Gram matrix raise (no silent first-order plan); heun refuses
    replan=True; open loop without a Gram matrix runs the first-order teacher plan and says so; unknown solvers
    are named."""
    from dataclasses import replace

    from cotj.execute import sample

    no_gram = replace(analytic_teacher, gram=None)
    kw = dict(budget=4, prompt_embeds=torch.randn(1, 16, 384), guidance_scale=1.0)
    for solver in ("dpmpp_2m", "unipc"):
        with pytest.raises(ValueError, match="Gram matrix"):
            sample(tiny_shapes, teacher=no_gram, solver=solver, **kw)
        with pytest.raises(ValueError, match="no Gram matrix"):
            ReplanningScheduler(tiny_shapes.scheduler, no_gram, solver=solver)
    with pytest.raises(ValueError, match="runs open loop"):
        sample(tiny_shapes, teacher=analytic_teacher, solver="heun", replan=True, **kw)
    with pytest.raises(ValueError, match="unknown solver 'rk4'"):
        sample(tiny_shapes, teacher=analytic_teacher, solver="rk4", **kw)
    first = cotj.plan_batch(analytic_teacher.dense(), 4, current=11)[0]
    with caplog.at_level("WARNING", logger="cotj.execute.pipeline"):
        out = sample(tiny_shapes, teacher=no_gram, solver="heun", **kw)
    np.testing.assert_array_equal(out.plans[0].steps, first.steps)
    assert "no Gram matrix" in caplog.text and "heun" in caplog.text
