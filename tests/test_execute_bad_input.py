"""Bad inputs to the Execute stage's scheduler mapping give a named error; NaN never passes as exact."""

import math

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = needs_extra("diffusers")

import diffusers  # noqa: E402
import torch  # noqa: E402

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
    """The DDPM timestep 499.52997 is 6.9e-4 off the plan's 0.5: refused at atol = 1e-5, accepted at 1e-3."""
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


# ------------------------------------------------------------------ replanning, solve, teacher plans

from cotj import default_grid  # noqa: E402
from cotj.execute import sample, solve  # noqa: E402
from cotj.execute.replan import Replanner, ReplanningScheduler, replan_sample  # noqa: E402
from cotj.models.analytic import FlowMixtureModel, MixtureFamily  # noqa: E402
from cotj.planning.objectives import TeacherCost, objective  # noqa: E402
from cotj.predict.teacher import calibrate  # noqa: E402

MODEL = FlowMixtureModel(MixtureFamily(dim=6, seed=0))
NOISE = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
COND = torch.arange(3)


@pytest.fixture(scope="module")
def teacher() -> TeacherCost:
    """A 12-level teacher cost of the analytic model, with its row model and Gram matrix."""
    noise = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return calibrate(MODEL, noise, torch.arange(16) % 5, default_grid(12), batch_size=16, progress=False)


class NaNModel:
    """The analytic model, but its output at levels below ``below`` is NaN."""

    prediction = "flow"

    def __init__(self, below: float = 2.0) -> None:
        self.below = below

    def __call__(self, x, t, cond):
        out = MODEL(x, t, cond)
        return torch.where((t < self.below)[:, None], torch.nan, out)


class _Pipe:
    """A stand-in pipeline: only its scheduler is looked at before the bad argument is."""

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler()


X2 = np.ones((2, 6))
BAD_EXECUTE = {
    # Replanner and its next step
    "Replanner(None)": (lambda tc: Replanner(None, 3), TypeError, r"teacher must be a TeacherCost"),
    "Replanner(dict)": (lambda tc: Replanner({}, 3), TypeError, r"teacher must be a TeacherCost"),
    "complex prior": (lambda tc: Replanner(tc, 3, prior=np.ones(12) * 1j), TypeError, r"prior must be real"),
    "x of 1 row for 2 levels": (lambda tc: Replanner(tc, 3).next([11, 11], 1, np.ones((1, 12)), np.ones((1, 12))),
                                ValueError, r"x must be \(B, ...\) with B = 2 rows"),
    "x0_hat (B, 1)": (lambda tc: Replanner(tc, 3).next([11, 11], 1, X2, np.ones((2, 1))), ValueError,
                      r"x and x0_hat must have one shape, got \(2, 6\) and \(2, 1\)"),
    "level 50.7": (lambda tc: Replanner(tc, 3).next([10.7], 1, X2[:1], X2[:1]), TypeError, r"level must be int grid indices"),
    "level 12 of 12": (lambda tc: Replanner(tc, 3).next([12], 1, X2[:1], X2[:1]), ValueError,
                       r"level must be grid indices in 0..11, got 12"),
    "uint64 level 2**64 - 1": (lambda tc: Replanner(tc, 3).next(np.array([2**64 - 1], dtype=np.uint64), 1, X2[:1], X2[:1]),
                               ValueError, r"got 18446744073709551615"),
    "done 2.5": (lambda tc: Replanner(tc, 3).next([11], 2.5, X2[:1], X2[:1]), TypeError, r"done must be an int"),
    "done 0": (lambda tc: Replanner(tc, 3).next([11], 0, X2[:1], X2[:1]), ValueError, r"done must be in 1..3"),
    "NaN x": (lambda tc: Replanner(tc, 3).next([11], 1, np.full((1, 6), np.nan), X2[:1]), ValueError, r"x must be finite"),
    "complex x": (lambda tc: Replanner(tc, 3).next([11], 1, X2[:1] * 1j, X2[:1]), TypeError, r"x must be real numbers"),
    "previous below level": (lambda tc: Replanner(tc, 3, solver="unipc").next([5], 1, X2[:1], X2[:1], [3]), ValueError,
                             r"previous must be -1 or a grid level in 6..11"),
    # TeacherCost.plan
    "current 5.7": (lambda tc: tc.plan("unipc", 3, current=5.7), TypeError, r"current must be an int grid index, got float"),
    "current '5'": (lambda tc: tc.plan("unipc", 3, current="5"), TypeError, r"current must be an int grid index, got str"),
    "current -1": (lambda tc: tc.plan("unipc", 3, current=-1), ValueError, r"current must be a grid index in 0..11, got -1"),
    "current 12": (lambda tc: tc.plan("unipc", 3, current=12), ValueError, r"current must be a grid index in 0..11, got 12"),
    "previous at current": (lambda tc: tc.plan("unipc", 3, current=5, previous=5), ValueError,
                            r"previous must be a grid level above current = 5"),
    "budget past current": (lambda tc: tc.plan("unipc", 7, current=5), ValueError, r"budget must be in 1..6"),
    "budget 2.0": (lambda tc: tc.plan("euler", 2.0), TypeError, r"budget must be an int"),
    "log_scale (5,)": (lambda tc: tc.plan("unipc", 3, log_scale=np.ones(5)), ValueError,
                       r"log_scale must have shape \(12,\), got \(5,\)"),
    "complex log_scale": (lambda tc: tc.plan("euler", 3, log_scale=np.ones(12) * 1j), TypeError, r"log_scale must be real"),
    "log_scale inf": (lambda tc: tc.plan("euler", 3, log_scale=np.full(12, np.inf)), ValueError, r"log_scale must be finite"),
    "unknown solver": (lambda tc: tc.plan("rk4", 3), ValueError, r"solver must be one of euler, heun, dpmpp_2m, unipc"),
    "dense log_scale (2, 5)": (lambda tc: tc.dense(np.ones((2, 5))), ValueError,
                                     r"log_scale must have shape \(N,\) or \(B, N\) with N = 12"),
    # objective
    "teacher dict": (lambda tc: objective("teacher", teacher={}), TypeError, r"teacher must be a TeacherCost"),
    "teacher str": (lambda tc: objective("teacher", teacher="t.json"), TypeError, r"teacher must be a TeacherCost"),
    "calibrated mean_dna +inf": (lambda tc: objective("calibrated", teacher=tc, dna=np.ones(12),
                                                      mean_dna=np.r_[np.inf, np.ones(11)]), ValueError,
                                 r"mean_dna must be finite and > 0"),
    "calibrated dna +inf": (lambda tc: objective("calibrated", teacher=tc, dna=np.r_[np.inf, np.ones(11)],
                                                 mean_dna=np.ones(12)), ValueError, r"dna must be finite and > 0"),
    "calibrated complex dna": (lambda tc: objective("calibrated", teacher=tc, dna=np.ones(12) + 1j, mean_dna=np.ones(12)),
                               TypeError, r"dna must be real numbers"),
    "calibrated ratio overflow": (lambda tc: objective("calibrated", teacher=tc, dna=np.full(12, 1e300),
                                                       mean_dna=np.full(12, 1e-300)), ValueError,
                                  r"dna / mean_dna must lie within"),
    # replan_sample
    "numpy noise": (lambda tc: replan_sample(MODEL, NOISE.numpy(), COND, Replanner(tc, 3)), TypeError,
                    r"noise must be a torch tensor"),
    "string replanner": (lambda tc: replan_sample(MODEL, NOISE, COND, "euler"), TypeError, r"replanner must be a Replanner"),
    "short cond": (lambda tc: replan_sample(MODEL, NOISE, COND[:2], Replanner(tc, 3)), ValueError,
                   r"cond must have one row per noise row \(3\), got 2"),
    "NaN noise": (lambda tc: replan_sample(MODEL, NOISE * np.nan, COND, Replanner(tc, 3)), ValueError, r"noise holds NaN"),
    "NaN model output": (lambda tc: replan_sample(NaNModel(0.5), NOISE, COND, Replanner(tc, 4)), ValueError,
                         r"the model's clean estimate at step \d \(t = 0\.\d+, row 0\) holds NaN or inf"),
    "prior rows": (lambda tc: replan_sample(MODEL, NOISE, COND, Replanner(tc, 3, prior=np.zeros((2, 12)))), ValueError,
                   r"prior \(B, N\) has 2 rows for 3 noise rows"),
    # solve
    "complex levels": (lambda tc: solve(MODEL, NOISE, COND, np.array([0.9, 0.5]) + 0j), TypeError, r"levels must be real"),
    "text levels": (lambda tc: solve(MODEL, NOISE, COND, ["0.9", "0.5"]), TypeError, r"levels must be real"),
    "0-d noise": (lambda tc: solve(MODEL, torch.tensor(1.0), None, [0.9, 0.5]), ValueError, r"noise must be \(B, ...\)"),
    "int noise": (lambda tc: solve(MODEL, torch.ones(3, 6, dtype=torch.int64), COND, [0.9]), TypeError,
                  r"noise must be a real floating tensor"),
    "solve short cond": (lambda tc: solve(MODEL, NOISE, COND[:1], [0.9, 0.5]), ValueError, r"cond must have one row"),
    "solve numpy noise": (lambda tc: solve(MODEL, NOISE.numpy(), COND, [0.9]), TypeError, r"noise must be a torch tensor"),
    "solve NaN output": (lambda tc: solve(NaNModel(0.6), NOISE, COND, [0.9, 0.5], "dpmpp_2m"), ValueError,
                         r"the sample of row 0 holds NaN or inf"),
    "complex mean_dna": (lambda tc: sample(_Pipe(), "a prompt", mean_dna=np.linspace(0.1, 1, 10) + 1j), TypeError,
                         r"mean_dna must be real numbers"),
    "solve denoiser None": (lambda tc: solve(None, NOISE, COND, [0.9], prediction="flow"), TypeError,
                            r"denoiser must be callable"),
}


@pytest.mark.parametrize(("call", "error", "match"), BAD_EXECUTE.values(), ids=BAD_EXECUTE.keys())
def test_bad_execute_input_is_a_named_error(teacher, call, error, match):
    with pytest.raises(error, match=match):
        call(teacher)


def _scheduler(teacher: TeacherCost, k: int = 4) -> ReplanningScheduler:
    sched = ReplanningScheduler(diffusers.FlowMatchEulerDiscreteScheduler(), teacher)
    sched.set_timesteps(k)
    return sched


def test_replanning_scheduler_refuses_bad_steps(teacher):
    x = torch.randn(3, 6)
    with pytest.raises(ValueError, match=r"model_output must have the sample.s shape \(3, 6\) .*, got \(1, 6\)"):
        _scheduler(teacher).step(torch.randn(1, 6), 0, x)
    with pytest.raises(ValueError, match=r"the sample at step 0 \(t = 1, row 1\) holds NaN or inf"):
        _scheduler(teacher).step(torch.randn(3, 6), 0, torch.where(torch.arange(3)[:, None] == 1, torch.nan, x))
    with pytest.raises(ValueError, match=r"the model output at step 0 \(t = 1, row 0\) holds NaN or inf"):
        _scheduler(teacher).step(torch.full((3, 6), torch.inf), 0, x)
    with pytest.raises(TypeError, match=r"model_output must be a real floating torch tensor"):
        _scheduler(teacher).step(np.ones((3, 6)), 0, x)
    with pytest.raises(TypeError, match=r"num_inference_steps must be an int, got float"):
        _scheduler(teacher).set_timesteps(2.5)
    sched = _scheduler(teacher, 2)
    for i in range(2):
        x = sched.step(torch.zeros(3, 6), sched.timesteps[i], x).prev_sample
    with pytest.raises(ValueError, match=r"step called more than the 2 times"):
        sched.step(torch.zeros(3, 6), sched.timesteps[1], x)


def test_replanner_takes_good_input_unchanged(teacher):
    """The checks refuse nothing valid: numpy ints and a (B, ...) state of more dimensions plan as before."""
    r = Replanner(teacher, 3)
    x = np.random.default_rng(0).standard_normal((2, 2, 3))
    a = r.next(np.array([11, 11], dtype=np.int32), np.int64(1), x, 0.5 * x)
    b = r.next([11, 11], 1, x.reshape(2, 6), 0.5 * x.reshape(2, 6))
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 1) & (a < 11))
    assert teacher.plan("unipc", 3, current=np.int64(9), previous=11).levels.shape == (3,)
