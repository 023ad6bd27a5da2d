"""Higher-order solvers on planned levels: cotj.execute.solve (batched Euler, Heun, DPM-Solver++(2M),
UniPC) and the Diffusers schedulers that run them in a pipeline (cotj.execute.flow_schedulers).

- exactness: a hook counts the model evaluations and records their levels: the planned levels (Heun: with its
  intermediate evaluations), as many as the NFE rule says, for the batched solvers and in the shapes pipeline;
- equivalence: the batched solvers equal the Diffusers schedulers on the same plan and noise; cotj's UniPC
  equals Diffusers' where Diffusers' whole-number timesteps are exact and sees the plan where they are not;
- order of convergence on the analytic model (float64) against its exact ODE solution;
- replanning and planned copies compose with the multistep schedulers;
- bad input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = [needs_extra("diffusers"), pytest.mark.usefixtures("one_torch_thread")]

import diffusers  # noqa: E402
import torch  # noqa: E402

from cotj.execute import (  # noqa: E402
    SOLVERS,
    Evaluation,
    InexactScheduleError,
    ReplanningScheduler,
    budget_for,
    evaluation_levels,
    nfe,
    planned_scheduler,
    solve,
    solver_scheduler,
)
from cotj.models.analytic import FlowMixtureModel, MixtureFamily, VPMixtureModel, integrate  # noqa: E402

NAMES = ("euler", "heun", "dpmpp_2m", "unipc")
PLAN = np.array([1.0, 0.8, 0.55, 0.3, 0.12, 0.04])
WHOLE = np.array([0.875, 0.75, 0.5, 0.25, 0.125])  # t·1000 whole numbers and exact in binary, below 1
FAMILY = MixtureFamily(dim=16, seed=0)


class Recording:
    """An analytic model that records, per condition id (one per row), the levels it was evaluated at."""

    def __init__(self, model) -> None:
        self.model = model
        self.prediction = model.prediction
        self.seen: dict[int, list[float]] = {}

    def path(self, t):
        return self.model.path(t)

    def __call__(self, x, t, cond):
        for c, level in zip(cond.tolist(), t.double().tolist(), strict=True):
            self.seen.setdefault(c, []).append(level)
        return self.model(x, t, cond)


def _noise(b: int, d: int = 16, dtype=torch.float64, seed: int = 0):
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _drive(scheduler, model, noise, cond, levels=None, at_sigmas=False):
    """The shapes pipeline's loop on an analytic model: evaluate at ``timestep/1000`` (or at the scheduler's sigma,
    for stock schedulers whose timesteps are rounded), then ``scheduler.step``. Returns (x, levels evaluated)."""
    if levels is not None:
        scheduler.set_timesteps(sigmas=levels)
    x, seen = noise.clone(), []
    for i, t in enumerate(scheduler.timesteps):
        level = float(scheduler.sigmas[i]) if at_sigmas else float(t) / 1000.0
        seen.append(level)
        v = model(x, torch.full((x.shape[0],), level, dtype=torch.float64), cond).to(x.dtype)
        x = scheduler.step(v, t, x).prev_sample
    return x, np.array(seen)


# ------------------------------------------------------------------------------------------ exactness


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["flow", "vp"])
def test_batched_solvers_evaluate_each_row_at_its_levels_and_nfe(name, kind):
    """Per-row plans of different lengths (NaN padded): row b is evaluated at evaluation_levels of its levels, in
    order, nfe(K_b) times; row blocks (batch_size) change nothing."""
    model = Recording((FlowMixtureModel if kind == "flow" else VPMixtureModel)(FAMILY))
    levels = np.array([[1.0, 0.7, 0.4, 0.2, 0.05], [0.9, 0.5, 0.1, np.nan, np.nan], [0.6, np.nan, np.nan, np.nan, np.nan],
                       [1.0, 0.99, 0.5, 0.49, 0.01]])  # fmt: skip
    cond = torch.arange(4)
    calls: list[Evaluation] = []
    out = solve(model, _noise(4), cond, levels, name, callback=calls.append)
    for b in range(4):
        row = levels[b][np.isfinite(levels[b])]
        want = evaluation_levels(name, row)
        assert len(model.seen[b]) == nfe(name, row.size) == want.size
        np.testing.assert_array_equal(model.seen[b], want)
    assert sum(len(e.rows) for e in calls) == sum(len(v) for v in model.seen.values())
    assert all(e.intermediate == (name == "heun" and i % 2 == 1) for i, e in enumerate(calls))
    model.seen.clear()
    torch.testing.assert_close(solve(model, _noise(4), cond, levels, name, batch_size=3), out, rtol=0, atol=1e-12)


def test_nfe_rules():
    assert [nfe(n, 6) for n in NAMES] == [6, 11, 6, 6]
    np.testing.assert_array_equal(nfe("heun", np.array([1, 3, 5])), [1, 5, 9])
    assert [budget_for(n, 11) for n in NAMES] == [11, 6, 11, 11] and budget_for("heun", 10) == 5
    for name, solver in SOLVERS.items():
        assert all(len(evaluation_levels(name, np.linspace(1, 0.1, k))) == solver.nfe(k) for k in range(1, 8))
    assert {n: s.order for n, s in SOLVERS.items()} == {"euler": 1, "heun": 2, "dpmpp_2m": 2, "unipc": 2}


@pytest.mark.parametrize("name", NAMES)
def test_diffusers_schedulers_run_the_plan_exactly_in_the_shapes_pipeline(tiny_shapes, record_timesteps, name):
    """``pipe.scheduler = solver_scheduler(name)``; ``pipe(sigmas=plan)``: the UNet gets t·1000 at exactly the
    planned levels (Heun: and its intermediate ones), nfe times, and the image is the batched solver's."""
    pipe = tiny_shapes
    pipe.scheduler = solver_scheduler(name)
    seen = record_timesteps(pipe.unet)
    embeds = torch.randn(2, 16, 384, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    image = pipe(prompt_embeds=embeds, sigmas=PLAN.tolist(), latents=noise, guidance_scale=1.0, output_type="pt").images
    assert len(seen) == nfe(name, PLAN.size)
    assert all(np.all(s == s[0]) for s in seen)
    np.testing.assert_allclose(np.array([s[0] for s in seen]) / 1000.0, evaluation_levels(name, PLAN), rtol=0, atol=1e-7)

    class Velocity:
        prediction = "flow"

        def __call__(self, x, t, cond):
            return pipe.velocity(x, t, cond)

    x = solve(Velocity(), noise, embeds, PLAN, name)
    torch.testing.assert_close(image, (x.clamp(-1, 1) + 1) / 2, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("name", NAMES)
def test_batched_solvers_equal_the_diffusers_schedulers(name):
    """The batched solver (float64) and the scheduler run by the pipeline loop (float32) on the same plan."""
    model, cond = FlowMixtureModel(FAMILY), torch.arange(6)
    noise = _noise(6, dtype=torch.float32)
    for plan in (PLAN, WHOLE):
        x, seen = _drive(solver_scheduler(name), model, noise, cond, plan)
        np.testing.assert_allclose(seen, evaluation_levels(name, plan), rtol=0, atol=1e-7)
        want = solve(model, noise.double(), cond, plan, name)
        torch.testing.assert_close(x.double(), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,make", [
    ("heun", lambda: diffusers.FlowMatchHeunDiscreteScheduler()),
    ("dpmpp_2m", lambda: diffusers.DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction")),
])  # fmt: skip
def test_batched_solvers_equal_unmodified_diffusers_on_its_own_schedule(name, make):
    """Stock Diffusers (its own K-step schedule, the model evaluated at the sigmas it steps through): the
    exact-sigma subclasses change only set_timesteps, and the batched solver is Diffusers' update."""
    model, cond, noise = FlowMixtureModel(FAMILY), torch.arange(6), _noise(6, dtype=torch.float32)
    sched = make()
    sched.set_timesteps(7)
    levels = np.unique(sched.sigmas[:-1].double().numpy())[::-1]  # Heun repeats its levels
    assert levels.size == 7
    x, _ = _drive(sched, model, noise, cond, at_sigmas=True)
    torch.testing.assert_close(x.double(), solve(model, noise.double(), cond, levels.copy(), name), rtol=0, atol=1e-5)


def _diffusers_unipc():
    return diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", solver_type="bh2",
                                             predict_x0=True, solver_order=2, lower_order_final=True)


def test_unipc_equals_diffusers_where_its_timesteps_are_exact_and_sees_the_plan_where_they_are_not(tiny_shapes,
                                                                                                  record_timesteps):
    """Levels whose t·1000 are whole numbers below 1: Diffusers' UniPC is exact and agrees to float32 rounding.
    Other plans: Diffusers' model sees floor(t·1000)/1000 and sigma = 1 is nudged (output off by ~1e-3); cotj's
    sees the plan exactly."""
    model, cond, noise = FlowMixtureModel(FAMILY), torch.arange(6), _noise(6, dtype=torch.float32)
    ours, _ = _drive(solver_scheduler("unipc"), model, noise, cond, WHOLE)
    theirs, seen = _drive(_diffusers_unipc(), model, noise, cond, WHOLE.copy())
    np.testing.assert_allclose(seen, WHOLE, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)

    ours, seen_ours = _drive(solver_scheduler("unipc"), model, noise, cond, PLAN)
    theirs, seen_theirs = _drive(_diffusers_unipc(), model, noise, cond, PLAN.copy())
    np.testing.assert_allclose(seen_ours, PLAN, rtol=0, atol=1e-7)
    assert 5e-4 < np.abs(seen_theirs - PLAN).max() <= 1e-3 + 1e-6  # 1 -> 0.999 (the nudge, then floor)
    assert 1e-4 < float((ours - theirs).abs().max()) < 1e-2

    embeds, latents = torch.randn(1, 16, 384), torch.randn(1, 3, 24, 24)  # the same in the shapes pipeline
    for scheduler, exact in ((solver_scheduler("unipc"), True), (_diffusers_unipc(), False)):
        tiny_shapes.scheduler = planned_scheduler(scheduler, PLAN, atol=1e-6 if exact else 1.5e-3)
        seen = record_timesteps(tiny_shapes.unet)
        tiny_shapes(prompt_embeds=embeds, num_inference_steps=PLAN.size, latents=latents, guidance_scale=1.0)
        err = np.abs(np.concatenate(seen) / 1000.0 - PLAN).max()
        assert (err < 1e-6) if exact else (err > 5e-4)


# ------------------------------------------------------------------------------------------ order


def _slope(ks, errors) -> float:
    """The fitted order p of ``error ∝ K^-p``."""
    return float(-np.polyfit(np.log(ks), np.log(errors), 1)[0])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flow", "vp"])
def test_order_of_convergence_on_the_analytic_model(kind):
    """K = 32..256 uniform levels from 1 to t_min = 0.1, then the step to 0; the error of the final clean sample
    against the exact ODE state at t_min carried to 0 the same way (its clean estimate: the final jump is the same
    for every solver). Measured fitted orders (8 conditions, D = 16): flow euler 1.02, heun 2.00, dpmpp_2m 1.85
    (approaches 2 slowly: the log-SNR steps next to t = 1 do not shrink with K; 1.97 on levels 0.9..0.1), unipc
    2.84 (its corrector adds one order); VP euler 1.09, heun 1.91, dpmpp_2m 2.45, unipc 2.70. A doubled or negated
    multistep weight drops dpmpp_2m to 1.0; a corrector always of order 1 or without its old-estimate term drops
    unipc to 2.1 or 0.9; Heun without its correction is order 1."""
    model = (FlowMixtureModel if kind == "flow" else VPMixtureModel)(FAMILY)
    cond, noise, t_min = torch.arange(8), _noise(8), 0.1
    exact = integrate(model, noise, cond, 1.0, t_min, 1000)
    ref = model.x0(exact, torch.full((8,), t_min, dtype=torch.float64), cond)
    ks = np.array([32, 64, 128, 256])
    slopes = {}
    for name in NAMES:
        err = [float((solve(model, noise, cond, np.linspace(1.0, t_min, k), name) - ref).norm(dim=1).mean()) for k in ks]
        slopes[name] = _slope(ks, err)
    assert 0.9 < slopes["euler"] < 1.2, slopes
    assert 1.8 < slopes["heun"] < 2.2, slopes
    assert 1.7 < slopes["dpmpp_2m"] < 2.7, slopes
    assert 2.4 < slopes["unipc"] < 3.3, slopes


# ------------------------------------------------------------------------------------------ pipelines


def test_replanning_composes_with_the_multistep_schedulers(tiny_shapes, record_timesteps):
    """ReplanningScheduler around dpmpp_2m / unipc: each step reads the next sigma when taken, so the run equals the
    batched solver on the levels the replanner chose, and the model sees exactly those levels."""
    from cotj.models.generator import TEACHER
    from cotj.planning.objectives import TeacherCost

    teacher = TeacherCost.load(TEACHER)
    embeds, noise = torch.randn(1, 16, 384), torch.randn(1, 3, 24, 24)

    class Velocity:
        prediction = "flow"

        def __call__(self, x, t, cond):
            return tiny_shapes.velocity(x, t, cond)

    for name in ("dpmpp_2m", "unipc"):
        tiny_shapes.scheduler = ReplanningScheduler(solver_scheduler(name), teacher)
        seen = record_timesteps(tiny_shapes.unet)
        image = tiny_shapes(prompt_embeds=embeds, num_inference_steps=5, latents=noise, guidance_scale=1.0,
                            output_type="pt").images
        levels = np.array(tiny_shapes.scheduler.levels)
        assert len(seen) == 5 and levels.size == 5
        np.testing.assert_allclose(np.concatenate(seen) / 1000.0, levels, rtol=0, atol=1e-6)
        x = solve(Velocity(), noise, embeds, levels, name)
        torch.testing.assert_close(image, (x.clamp(-1, 1) + 1) / 2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
def test_sample_runs_a_plan_through_the_multistep_schedulers(tiny_shapes, record_timesteps, name):
    """cotj.execute.sample on a pipeline whose scheduler is dpmpp_2m or unipc (planned copies): K evaluations at the
    plan's levels."""
    from cotj.execute import sample

    tiny_shapes.scheduler = solver_scheduler(name)
    seen = record_timesteps(tiny_shapes.unet)
    out = sample(tiny_shapes, budget=4, mean_dna=np.linspace(0.01, 1.0, 100), prompt_embeds=torch.randn(1, 16, 384),
                 guidance_scale=1.0)
    assert len(seen) == 4
    np.testing.assert_allclose(np.concatenate(seen) / 1000.0, out.plans[0].levels, rtol=0, atol=1e-6)


def test_planned_copies_run_heun_and_replanning_refuses_it(tiny_shapes, record_timesteps):
    """A planned copy of Heun's scheduler knows its layout (2K - 1 evaluations, t0, t1, t1, ..., the step to 0
    Euler): whatever the pipeline asks for, the model sees evaluation_levels of the plan. Replanning, which takes one
    evaluation per level, refuses Heun."""
    from cotj.models.generator import TEACHER
    from cotj.planning.objectives import TeacherCost

    tiny_shapes.scheduler = planned_scheduler(solver_scheduler("heun"), PLAN)
    seen = record_timesteps(tiny_shapes.unet)
    tiny_shapes(prompt_embeds=torch.randn(1, 16, 384), num_inference_steps=3, latents=torch.randn(1, 3, 24, 24),
                guidance_scale=1.0)
    assert len(seen) == nfe("heun", PLAN.size) == 2 * PLAN.size - 1
    np.testing.assert_allclose(np.concatenate(seen) / 1000.0, evaluation_levels("heun", PLAN), rtol=0, atol=1e-6)
    with pytest.raises(InexactScheduleError, match="evaluates the model 2 times per level"):
        ReplanningScheduler(solver_scheduler("heun"), TeacherCost.load(TEACHER))


def test_shapes_pipeline_runs_stock_unipc_on_given_sigmas(tiny_shapes, record_timesteps):
    """ShapesPipeline hands sigmas= to the scheduler as a float64 array (a copy): Diffusers' UniPCMultistepScheduler,
    which does arithmetic on them, runs (its rounded timesteps: within 1e-3), and the caller's list is unchanged;
    the flow schedulers take the same array."""
    plan = PLAN.tolist()
    embeds, latents = torch.randn(1, 16, 384), torch.randn(1, 3, 24, 24)
    schedulers = [_diffusers_unipc(), diffusers.FlowMatchEulerDiscreteScheduler(), *(solver_scheduler(n) for n in NAMES)]
    for scheduler in schedulers:
        tiny_shapes.scheduler = scheduler
        seen = record_timesteps(tiny_shapes.unet)
        image = tiny_shapes(prompt_embeds=embeds, sigmas=plan, latents=latents, guidance_scale=1.0).images
        assert np.isfinite(image).all() and plan == PLAN.tolist()
        want = evaluation_levels("heun" if getattr(scheduler, "order", 1) == 2 else "euler", PLAN)
        np.testing.assert_allclose(np.concatenate(seen) / 1000.0, want, rtol=0, atol=1e-3 + 1e-6)


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_solver_lists_the_known_ones():
    model = FlowMixtureModel(FAMILY)
    for call in (lambda: solve(model, _noise(2), torch.arange(2), PLAN, "rk4"), lambda: nfe("rk4", 3),
                 lambda: budget_for("rk4", 3), lambda: solver_scheduler("rk4")):  # fmt: skip
        with pytest.raises(ValueError, match="unknown solver 'rk4'; known: euler, heun, dpmpp_2m, unipc"):
            call()


@pytest.mark.parametrize("levels", [
    [0.5, 0.7], [1.2, 0.5], [0.5, 0.0], [0.5, -0.1], [[1.0, np.nan, 0.5], [1.0, 0.5, 0.2]], [[np.nan, 0.5]] * 2,
    [1.0, np.inf], np.ones((3, 2)), [], np.ones((2, 2, 2)), [0.5, 0.5],
])  # fmt: skip
def test_bad_levels_raise_naming_the_argument(levels):
    with pytest.raises(ValueError, match="levels"):
        solve(FlowMixtureModel(FAMILY), _noise(2), torch.arange(2), np.asarray(levels, dtype=np.float64), "heun")


def test_other_bad_arguments():
    model = FlowMixtureModel(FAMILY)
    with pytest.raises(ValueError, match="prediction is required"):
        solve(lambda x, t, c: x, _noise(2), None, PLAN, "unipc")
    with pytest.raises(ValueError, match="batch_size"):
        solve(model, _noise(2), torch.arange(2), PLAN, batch_size=0)
    bad: Any
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="nfe must be an int"):
            budget_for("heun", bad)
