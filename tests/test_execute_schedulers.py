"""Plans onto real Diffusers schedulers: after set_timesteps (called as the pipelines call it),
the timesteps and sigmas they hold are the planned levels."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import needs_extra

pytestmark = needs_extra("diffusers")

import diffusers  # noqa: E402

from cotj.execute import (  # noqa: E402
    InexactScheduleError,
    dynamic_mu,
    neutral_scheduler,
    planned_scheduler,
    scheduler_args,
    seen_levels,
    timestep_grid,
)

LEVELS = np.array([1.0, 0.93, 0.71, 0.5, 0.33, 0.12, 0.05, 0.01])
ATOL = 1e-6


def _run(sched, levels, mu=None, atol=1e-5):
    args = scheduler_args(levels, sched, mu=mu, atol=atol)
    sched.set_timesteps(device="cpu", **({"mu": mu} if mu is not None else {}), **args)
    return seen_levels(sched)


FLOW = {
    "FlowMatchEuler shift=1": (lambda: diffusers.FlowMatchEulerDiscreteScheduler(), None),
    "FlowMatchEuler shift=3": (lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), None),
    "FlowMatchEuler shift=0.5": (lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=0.5), None),
    "FlowMatchEuler dynamic exponential": (lambda: diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), 1.15),
    "FlowMatchEuler dynamic linear": (
        lambda: diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="linear"), 2.5),
    "FlowMatchEuler invert_sigmas": (lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, invert_sigmas=True), None),
    "FlowMatchEuler stochastic": (lambda: diffusers.FlowMatchEulerDiscreteScheduler(stochastic_sampling=True), None),
    "FlowMatchLCM shift=3": (lambda: diffusers.FlowMatchLCMScheduler(shift=3.0), None),
}


@pytest.mark.parametrize("name", sorted(FLOW))
def test_flow_schedulers_are_exact(name):
    make, mu = FLOW[name]
    sched = make()
    seen, last = _run(sched, LEVELS, mu)
    np.testing.assert_allclose(seen, LEVELS, rtol=0, atol=ATOL)
    assert last == 0.0
    sigmas = sched.sigmas.double().numpy()
    states = 1 - sigmas if "invert" in name else sigmas
    np.testing.assert_allclose(states, np.append(LEVELS, 0.0), rtol=0, atol=ATOL)


def test_shift_is_inverted_in_closed_form():
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sig = scheduler_args(LEVELS, sched)["sigmas"]
    np.testing.assert_allclose(3 * sig / (1 + 2 * sig), LEVELS, rtol=1e-12)
    dyn = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    sig = scheduler_args(LEVELS, dyn, mu=0.7)["sigmas"]
    np.testing.assert_allclose(np.exp(0.7) / (np.exp(0.7) + 1 / sig - 1), LEVELS, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    shift=st.floats(0.3, 8.0),
    mu=st.floats(-1.0, 3.0),
    dynamic=st.booleans(),
    picks=st.lists(st.integers(0, 99), min_size=1, max_size=30, unique=True),
)
def test_any_plan_on_the_default_grid_is_exact(shift, mu, dynamic, picks):
    levels = np.sort((np.array(picks) + 1) / 100)[::-1]
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=dynamic)
    seen, last = _run(sched, levels, mu if dynamic else None)
    np.testing.assert_allclose(seen, levels, rtol=0, atol=ATOL)
    assert last == 0.0


def test_shift_terminal_is_exact_only_when_the_plan_ends_there():
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=2.0, shift_terminal=0.05)
    seen, _ = _run(sched, LEVELS[:-1])  # ends at 0.05
    np.testing.assert_allclose(seen, LEVELS[:-1], rtol=0, atol=ATOL)
    with pytest.raises(InexactScheduleError, match="shift_terminal=0.05 forces the last level"):
        scheduler_args(LEVELS, sched)
    seen, _ = _run(neutral_scheduler(sched), LEVELS)
    np.testing.assert_allclose(seen, LEVELS, rtol=0, atol=ATOL)


@pytest.mark.parametrize("option", ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"])
@pytest.mark.parametrize("cls", ["FlowMatchEulerDiscreteScheduler", "EulerDiscreteScheduler"])
def test_respacing_raises_and_the_neutral_copy_is_exact(cls, option):
    sched = getattr(diffusers, cls)(**{option: True})
    with pytest.raises(InexactScheduleError, match=f"{cls} with {option}=True"):
        scheduler_args(LEVELS, sched)
    neutral = neutral_scheduler(sched)
    assert type(neutral) is type(sched) and not neutral.config[option] and sched.config[option]
    seen, last = _run(neutral, LEVELS)
    np.testing.assert_allclose(seen, LEVELS, rtol=0, atol=ATOL)
    assert last == 0.0


def test_unipc_flow_is_exact_to_one_training_step():
    sched = diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    with pytest.raises(InexactScheduleError, match="casts timesteps to int64"):
        scheduler_args(LEVELS, sched)
    seen, last = _run(sched, LEVELS, atol=1.5e-3)
    assert np.all(seen <= LEVELS + ATOL) and np.all(LEVELS - seen < 1.5e-3) and last == 0.0
    np.testing.assert_allclose(sched.sigmas[:-1].double().numpy(), np.minimum(LEVELS, 1 - 1e-6), rtol=0, atol=ATOL)
    dyn = diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", use_dynamic_shifting=True)
    np.testing.assert_allclose(_run(dyn, LEVELS, mu=0.9, atol=1.5e-3)[0], LEVELS, atol=1.5e-3)


VP = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def test_euler_vp_takes_fractional_timesteps():
    sched = diffusers.EulerDiscreteScheduler(**VP)
    seen, last = _run(sched, LEVELS)
    np.testing.assert_allclose(seen, LEVELS, rtol=0, atol=ATOL)
    np.testing.assert_allclose(sched.timesteps.double().numpy(), LEVELS * 999, rtol=0, atol=1e-3)
    assert last == 0.0


@pytest.mark.parametrize("cls", ["DDPMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "LCMScheduler"])
def test_integer_timestep_schedulers_are_exact_on_the_timestep_grid(cls):
    sched = getattr(diffusers, cls)(**VP)
    grid = timestep_grid(sched, 100)
    assert grid.shape == (100,) and grid[-1] == 1.0 and np.all(np.diff(grid) > 0)
    np.testing.assert_allclose(grid * 999, np.round(grid * 999), atol=1e-9)
    levels = grid[[99, 80, 51, 20, 3]]
    seen, last = _run(sched, levels)
    np.testing.assert_allclose(seen, levels, rtol=0, atol=1e-9)
    assert last == 0.0
    with pytest.raises(InexactScheduleError, match=f"{cls} stores integer timesteps"):
        scheduler_args(LEVELS, sched)


@pytest.mark.parametrize("cls", ["DDIMScheduler", "EulerAncestralDiscreteScheduler", "PNDMScheduler", "LMSDiscreteScheduler"])
def test_schedulers_without_custom_timesteps_raise(cls):
    with pytest.raises(InexactScheduleError, match=f"{cls}.set_timesteps takes no timesteps"):
        scheduler_args(LEVELS, getattr(diffusers, cls)())


def test_second_order_and_unknown_schedulers_raise():
    with pytest.raises(InexactScheduleError, match="HeunDiscreteScheduler set 15 model evaluations for a 8-level plan"):
        scheduler_args(LEVELS, diffusers.HeunDiscreteScheduler())
    with pytest.raises(InexactScheduleError, match="ScoreSdeVeScheduler is neither"):
        scheduler_args(LEVELS, diffusers.ScoreSdeVeScheduler())


EDM = {"EDM default": {}, "SD-like range, rho 5": dict(sigma_min=0.03, sigma_max=14.6, rho=5.0)}


@pytest.mark.parametrize("name", sorted(EDM))
def test_edm_euler_runs_plans_on_the_karras_path(name):
    """EDMEulerScheduler's sigmas= is the Karras ramp: the mapping makes it hold sigma(t) of cotj.planning.schedules.ve
    with the scheduler's own range and rho, and end at 0; a planned copy ignores the requested step count."""
    from cotj.execute import planned_scheduler
    from cotj.planning.schedules import ve

    sched = diffusers.EDMEulerScheduler(**EDM[name])
    np.testing.assert_allclose(_run(sched, LEVELS)[0], LEVELS, rtol=0, atol=ATOL)
    c = sched.config
    want = ve(LEVELS, sigma_min=c.sigma_min, sigma_max=c.sigma_max, rho=c.rho).s
    np.testing.assert_allclose(sched.sigmas[:-1].double().numpy(), want, rtol=1e-6)
    assert float(sched.sigmas[-1]) == 0.0
    planned = planned_scheduler(diffusers.EDMEulerScheduler(**EDM[name]), LEVELS)
    planned.set_timesteps(30)
    np.testing.assert_allclose(planned.sigmas.numpy(), sched.sigmas.numpy(), rtol=0, atol=0)


@settings(max_examples=30, deadline=None)
@given(picks=st.sets(st.integers(0, 98), min_size=0, max_size=20))
def test_any_plan_on_the_default_grid_is_exact_on_edm(picks):
    levels = np.sort(np.append(1.0, (np.array(sorted(picks), dtype=np.float64) + 1) / 100))[::-1]
    np.testing.assert_allclose(_run(diffusers.EDMEulerScheduler(), levels)[0], levels, rtol=0, atol=ATOL)


def test_edm_schedulers_that_cannot_take_a_plan_raise():
    with pytest.raises(InexactScheduleError, match="sigma_schedule='exponential'"):
        scheduler_args(LEVELS, diffusers.EDMEulerScheduler(sigma_schedule="exponential"))
    with pytest.raises(InexactScheduleError, match="EDMDPMSolverMultistepScheduler.set_timesteps takes no sigmas"):
        scheduler_args(LEVELS, diffusers.EDMDPMSolverMultistepScheduler())


def test_dynamic_mu_is_the_flux_formula():
    sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    assert dynamic_mu(sched, 256) == pytest.approx(0.5)
    assert dynamic_mu(sched, 4096) == pytest.approx(1.15)


def test_bad_inputs():
    sched = diffusers.FlowMatchEulerDiscreteScheduler()
    with pytest.raises(ValueError, match="strictly decreasing"):
        scheduler_args(LEVELS[::-1], sched)
    with pytest.raises(ValueError, match=r"lie in \(0, 1\]"):
        scheduler_args([1.5, 0.5], sched)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        scheduler_args(np.zeros((2, 2)), sched)
    with pytest.raises(ValueError, match="n must be an int"):
        timestep_grid(diffusers.DDPMScheduler(), 1000)


def test_planned_scheduler_pickles_with_its_plan():
    import pickle

    planned = planned_scheduler(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), [1.0, 0.6, 0.2])
    back = pickle.loads(pickle.dumps(planned))
    assert type(back) is type(planned) and isinstance(back, diffusers.FlowMatchEulerDiscreteScheduler)
    back.set_timesteps(num_inference_steps=50)  # the pipeline's request is ignored: the plan is set
    np.testing.assert_allclose(seen_levels(back)[0], [1.0, 0.6, 0.2], atol=1e-6)


def test_flow_schedulers_are_recognised_by_capability_not_by_name():
    from cotj.paths import is_flow_scheduler, prediction_of

    class Renamed(diffusers.FlowMatchEulerDiscreteScheduler):  # a flow scheduler whose name says nothing
        pass

    assert is_flow_scheduler(Renamed()) and prediction_of(Renamed()) == "flow"
    planned = planned_scheduler(Renamed(shift=3.0), [1.0, 0.5])  # its shift 3 is inverted, as for FlowMatch*
    planned.set_timesteps(num_inference_steps=2)
    np.testing.assert_allclose(seen_levels(planned)[0], [1.0, 0.5], atol=1e-6)
    assert not is_flow_scheduler(diffusers.DDIMScheduler())
    assert is_flow_scheduler(diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction"))
