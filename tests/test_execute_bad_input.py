"""Bad inputs to the Execute stage's scheduler mapping give a named error; NaN never passes as exact."""

import math

import numpy as np
import pytest

pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from cotj.execute import InexactScheduleError, planned_scheduler, scheduler_args  # noqa: E402
from cotj.execute.schedulers import _verify  # noqa: E402

PLAN = np.array([1.0, 0.7, 0.4, 0.1])
NAN, INF = float("nan"), float("inf")


def _dynamic(kind: str = "exponential"):
    return diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type=kind)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: scheduler_args(PLAN, _dynamic(), mu=NAN), ValueError, r"mu must be finite, got nan"),
        (lambda: scheduler_args(PLAN, _dynamic(), mu=-INF), ValueError, r"mu must be finite, got -inf"),
        (lambda: scheduler_args(PLAN, _dynamic(), mu="1"), TypeError, r"mu must be a float, got str"),
        (lambda: scheduler_args(PLAN, _dynamic(), mu=1000.0), ValueError, r"mu = 1000 is out of range .*e\^mu = inf"),
        (lambda: scheduler_args(PLAN, _dynamic(), mu=-1000.0), ValueError, r"mu = -1000 is out of range .*e\^mu = 0"),
        (lambda: scheduler_args(PLAN, _dynamic("linear"), mu=0.0), ValueError, r"mu = 0 is out of range .*linear"),
        (lambda: planned_scheduler(_dynamic(), PLAN).set_timesteps(6, mu=INF), ValueError, r"mu must be finite, got inf"),
        (lambda: scheduler_args(PLAN, diffusers.FlowMatchEulerDiscreteScheduler(shift=NAN)), ValueError,
         r"FlowMatchEulerDiscreteScheduler has shift=nan: a shift must be positive and finite"),
        (lambda: scheduler_args(PLAN, diffusers.FlowMatchEulerDiscreteScheduler(shift=-2.0)), ValueError,
         r"shift=-2.0: a shift must be positive"),
        (lambda: scheduler_args(PLAN, diffusers.DDPMScheduler(), atol=NAN), ValueError, r"atol must be a finite number >= 0, got nan"),
        (lambda: scheduler_args(PLAN, diffusers.DDPMScheduler(), atol=-1e-3), ValueError, r"atol must be a finite number >= 0"),
        (lambda: scheduler_args(PLAN, diffusers.DDPMScheduler(), atol=None), TypeError, r"atol must be a float, got NoneType"),
        (lambda: planned_scheduler(diffusers.DDPMScheduler(), PLAN, atol=INF), ValueError, r"atol must be a finite number"),
        (lambda: scheduler_args(np.array([1.0, NAN, 0.1]), diffusers.DDPMScheduler()), ValueError, r"finite"),
    ],
)
def test_bad_schedule_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_levels_off_the_plan_are_refused_at_any_finite_atol():
    """The DDPM timestep 499.52997 is 6.9e-4 off the plan's 0.5: NaN tolerance used to accept it."""
    levels = np.array([0.9, 0.50003, 0.1])
    with pytest.raises(InexactScheduleError, match="off the plan"):
        scheduler_args(levels, diffusers.DDPMScheduler(), atol=1e-5)
    assert scheduler_args(levels, diffusers.DDPMScheduler(), atol=1e-3)["timesteps"][1] == pytest.approx(499.53, abs=1e-3)


def test_nan_levels_held_by_a_scheduler_fail_the_exactness_check():
    sched = diffusers.FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(sigmas=PLAN.tolist())
    _verify(sched, PLAN, 1e-5)  # the plan itself passes
    sched.timesteps[1] = math.nan
    with pytest.raises(InexactScheduleError, match="nan off the plan"):
        _verify(sched, PLAN, 1e-5)
