"""Plans onto Diffusers schedulers, exactly (docs/method.md §9: the mappings and their inverses).

A plan's levels are the noise levels the model must see: for flow-matching schedulers the sigmas (the model gets
``sigma·T`` as its timestep, ``T = num_train_timesteps``), for discrete VP schedulers the training timesteps
``t·(T - 1)`` (:func:`cotj.planning.schedules.vp`), for EDM schedulers levels on the Karras path of
:func:`cotj.planning.schedules.ve` with the scheduler's own ``sigma_min``, ``sigma_max`` and ``rho`` (plan and
extract the DNA on that path). Schedulers transform what they are given, so the mapping passes the preimage of the
plan: static and dynamic shifts are inverted, ``invert_sigmas`` is handled, ``shift_terminal`` is honoured only
when the plan ends at its value.

Whatever cannot be exact (Karras, exponential or beta re-spacing, ``final_sigmas_type="sigma_min"``, an EDM
``sigma_schedule="exponential"``) raises :class:`InexactScheduleError` naming the scheduler and the option;
:func:`neutral_scheduler` makes a copy with those options off. Every mapping is checked by running
``set_timesteps`` and comparing what the scheduler then holds with the plan.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj.paths import flow_matching, is_flow_scheduler

__all__ = [
    "InexactScheduleError",
    "dynamic_mu",
    "neutral_scheduler",
    "planned_scheduler",
    "scheduler_args",
    "seen_levels",
    "timestep_grid",
]

PlanLike = Any | ArrayLike
ScheduleArg = Any
"""A ``sigmas=`` / ``timesteps=`` value: a float64 numpy array (K,), or a float64 torch tensor for EDM schedulers."""
_RESPACING = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")
_NEUTRAL = {
    "shift": 1.0,
    "flow_shift": 1.0,
    "use_dynamic_shifting": False,
    "shift_terminal": None,
    "final_sigmas_type": "zero",
    **{k: False for k in _RESPACING},
}


class InexactScheduleError(ValueError):
    """A scheduler cannot make the model see exactly the planned levels."""


def _base(scheduler: Any) -> Any:
    """The Diffusers class (the original class of a planned copy)."""
    return getattr(type(scheduler), "_cotj_base", type(scheduler))


def _name(scheduler: Any) -> str:
    return _base(scheduler).__name__


def _levels(plan: PlanLike) -> NDArray[np.float64]:
    """(K,) float64 levels of a Plan or of an array: 1-D, strictly decreasing, in (0, 1]."""
    lv = np.asarray(getattr(plan, "levels", plan), dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or not np.all(np.isfinite(lv)):
        raise ValueError(f"plan levels must be a non-empty 1-D finite array, got shape {lv.shape}")
    if np.any(np.diff(lv) >= 0) or lv[-1] <= 0 or lv[0] > 1:
        raise ValueError("plan levels must be strictly decreasing (noisiest first) and lie in (0, 1]")
    return lv


def _tolerance(atol: float) -> float:
    """``atol`` as a float, refused unless it is a finite number >= 0 (NaN would accept anything)."""
    if isinstance(atol, bool) or not isinstance(atol, (int, float, np.integer, np.floating)):
        raise TypeError(f"atol must be a float, got {type(atol).__name__}")
    if not 0.0 <= float(atol) < math.inf:
        raise ValueError(f"atol must be a finite number >= 0, got {atol}")
    return float(atol)


def _finite_mu(mu: float | None) -> float | None:
    """``mu`` as a float (None stays None), refused unless it is a finite real number."""
    if mu is None:
        return None
    if isinstance(mu, bool) or not isinstance(mu, (int, float, np.integer, np.floating)):
        raise TypeError(f"mu must be a float, got {type(mu).__name__}")
    if not math.isfinite(mu):
        raise ValueError(f"mu must be finite, got {mu}")
    return float(mu)


def _shift_scale(scheduler: Any, mu: float) -> float:
    """The factor a dynamic shift with ``mu`` applies to the odds ``1/sigma - 1``: ``e^mu``
    (exponential ``time_shift_type``) or ``mu`` (linear); refused unless positive and finite."""
    kind = scheduler.config.get("time_shift_type", "exponential")
    try:
        scale = math.exp(mu) if kind == "exponential" else mu
    except OverflowError:
        scale = math.inf
    if not 0.0 < scale < math.inf:
        what = "e^mu" if kind == "exponential" else "mu (linear time_shift_type)"
        raise ValueError(f"mu = {mu:g} is out of range for {_name(scheduler)}: {what} = {scale:g} must be positive "
                         "and finite (pipelines pass mu of about 0.5 to 1.2; see cotj.execute.dynamic_mu)")
    return scale


def _accepts(scheduler: Any, arg: str) -> bool:
    return arg in inspect.signature(_base(scheduler).set_timesteps).parameters


def _train_steps(scheduler: Any) -> int:
    return int(scheduler.config.num_train_timesteps)


def _is_edm(scheduler: Any) -> bool:
    return "sigma_data" in scheduler.config and "sigma_schedule" in scheduler.config


def _edm_path(scheduler: Any) -> tuple[float, float, float]:
    """``(sigma_min^(1/rho), sigma_max^(1/rho), rho)`` of an EDM scheduler's Karras path."""
    c = scheduler.config
    if c.sigma_schedule != "karras":
        raise InexactScheduleError(
            f"{_name(scheduler)} with sigma_schedule={c.sigma_schedule!r}: cotj maps plans onto the Karras path "
            "(cotj.planning.schedules.ve) only; use sigma_schedule='karras'"
        )
    rho = float(c.rho)
    return float(c.sigma_min) ** (1 / rho), float(c.sigma_max) ** (1 / rho), rho


def seen_levels(scheduler: Any) -> tuple[NDArray[np.float64], float]:
    """What a scheduler set up by ``set_timesteps`` makes the model see: the noise levels of its
    timesteps, (K,) or Heun's (2K - 1,) (flow: ``timesteps/T``, or ``1 - timesteps/T`` with ``invert_sigmas``; VP:
    ``timesteps/(T - 1)``; EDM: t of its sigmas on the Karras path) and the level its last step lands on
    (0 = clean)."""
    ts = np.asarray(scheduler.timesteps.cpu(), dtype=np.float64)
    sigmas = getattr(scheduler, "sigmas", None)
    last = 0.0 if sigmas is None else float(sigmas[-1])
    if _is_edm(scheduler) and sigmas is not None:  # the model sees sigma (its timestep is c_noise(sigma))
        lo, hi, rho = _edm_path(scheduler)  # back to t on the Karras path
        return (np.asarray(sigmas[:-1].cpu(), dtype=np.float64) ** (1 / rho) - lo) / (hi - lo), last
    if is_flow_scheduler(scheduler):
        if scheduler.config.get("invert_sigmas", False):
            return 1.0 - ts / _train_steps(scheduler), 1.0 - last
        return ts / _train_steps(scheduler), last
    return ts / (_train_steps(scheduler) - 1), last


def _check_options(scheduler: Any, levels: NDArray[np.float64], atol: float) -> None:
    config = scheduler.config
    for option in _RESPACING:
        if config.get(option, False):
            raise InexactScheduleError(
                f"{_name(scheduler)} with {option}=True re-spaces any given schedule from its two ends, so no "
                f"plan passes through it; use cotj.execute.neutral_scheduler(scheduler) (turns {option} off)"
            )
    terminal = config.get("shift_terminal")
    if terminal and not abs(levels[-1] - terminal) <= atol:
        raise InexactScheduleError(
            f"{_name(scheduler)} with shift_terminal={terminal} forces the last level to {terminal}, the plan ends at "
            f"{levels[-1]:.6g}; use cotj.execute.neutral_scheduler(scheduler) (shift_terminal=None)"
        )
    if config.get("final_sigmas_type", "zero") != "zero":
        raise InexactScheduleError(
            f"{_name(scheduler)} with final_sigmas_type={config.final_sigmas_type!r} ends sampling short of t = 0; "
            "use cotj.execute.neutral_scheduler(scheduler) (final_sigmas_type='zero')"
        )


def _flow_preimage(scheduler: Any, levels: NDArray[np.float64], mu: float | None) -> NDArray[np.float64]:
    """The sigmas to give a flow scheduler so that its shifting yields ``levels``."""
    config = scheduler.config
    if config.get("use_dynamic_shifting", False):
        if mu is None:
            raise ValueError(
                f"{_name(scheduler)} uses dynamic shifting: give mu, as the pipeline computes it (cotj.execute.dynamic_mu)"
            )
        return 1.0 / (1.0 + _shift_scale(scheduler, mu) * (1.0 / levels - 1.0))
    if "flow_shift" in config and not flow_matching(scheduler):
        option, shift = "flow_shift", float(config.flow_shift)
    else:
        option, shift = "shift", float(getattr(scheduler, "shift", config.get("shift", 1.0)))
    if not 0.0 < shift < math.inf:
        raise ValueError(f"{_name(scheduler)} has {option}={shift}: a shift must be positive and finite")
    return levels / (shift - (shift - 1.0) * levels)


def _raw_args(scheduler: Any, levels: NDArray[np.float64], mu: float | None, atol: float) -> dict[str, ScheduleArg]:
    """The ``set_timesteps`` arguments that map ``levels`` onto ``scheduler`` (``mu``: checked finite)."""
    _check_options(scheduler, levels, atol)
    if is_flow_scheduler(scheduler):
        if not _accepts(scheduler, "sigmas"):
            raise InexactScheduleError(
                f"{_name(scheduler)}.set_timesteps takes no sigmas (flow), so it cannot run a plan; "
                "use FlowMatchEulerDiscreteScheduler or UniPCMultistepScheduler(use_flow_sigmas=True)"
            )
        return {"sigmas": _flow_preimage(scheduler, levels, mu)}
    if _is_edm(scheduler):
        _edm_path(scheduler)  # raises unless its sigma_schedule is the Karras path
        if not _accepts(scheduler, "sigmas"):
            raise InexactScheduleError(f"{_name(scheduler)}.set_timesteps takes no sigmas, so it cannot run a plan; "
                                       "use EDMEulerScheduler")  # fmt: skip
        import torch

        return {"sigmas": torch.from_numpy(1.0 - levels)}  # its "sigmas" are the Karras ramp: 0 at sigma_max
    if not hasattr(scheduler, "alphas_cumprod"):
        raise InexactScheduleError(
            f"{_name(scheduler)} is neither a flow-matching nor a discrete VP scheduler; cotj cannot map a plan onto it"
        )
    if not _accepts(scheduler, "timesteps"):
        raise InexactScheduleError(
            f"{_name(scheduler)}.set_timesteps takes no timesteps, so it cannot run a plan; use a scheduler that does "
            "(EulerDiscreteScheduler, DDPMScheduler, DPMSolverMultistepScheduler)"
        )
    if scheduler.config.get("timestep_type", "discrete") != "discrete":
        raise InexactScheduleError(
            f"{_name(scheduler)} with timestep_type={scheduler.config.timestep_type!r} takes no custom timesteps"
        )
    steps = levels * (_train_steps(scheduler) - 1)
    whole = np.round(steps)
    return {"timesteps": whole if np.allclose(steps, whole, rtol=0.0, atol=1e-6) else steps}


def _set(scheduler: Any, args: dict[str, ScheduleArg], mu: float | None, device: Any = None) -> None:
    extra = {"mu": mu} if mu is not None and _accepts(scheduler, "mu") else {}
    _base(scheduler).set_timesteps(scheduler, device=device, **args, **extra)


def _rounding_hint(scheduler: Any) -> str:
    """Why a scheduler with integer timesteps misses a plan, and what to do."""
    if scheduler.timesteps.dtype.is_floating_point:
        return ""
    if is_flow_scheduler(scheduler):
        return (
            f" {_name(scheduler)} casts timesteps to int64 (floor of sigma·T, and sigma = 1 is nudged below 1): the "
            "model sees up to 1/T below the plan while the sigmas stepped through are exact; pass atol=1.5/T to accept."
        )
    return (
        f" {_name(scheduler)} stores integer timesteps: plan on a grid of integer timesteps "
        "(cotj.execute.timestep_grid(scheduler)), or accept the rounding with atol"
    )


def _evaluated(scheduler: Any, levels: NDArray[np.float64]) -> NDArray[np.float64]:
    """The levels a scheduler evaluates the model at for a plan's ``levels`` (K,): the levels, or for a
    flow-matching Heun scheduler (order 2) its layout ``t0, t1, t1, ..., t_{K-1}, t_{K-1}`` (2K - 1: a second
    evaluation at each next level, the step to 0 Euler; :func:`cotj.execute.evaluation_levels`)."""
    if flow_matching(scheduler) and getattr(scheduler, "order", 1) == 2:
        return np.repeat(levels, 2)[1:]
    return levels


def _verify(scheduler: Any, levels: NDArray[np.float64], atol: float) -> None:
    """Raise unless the scheduler (after ``set_timesteps``) makes the model see ``levels`` (Heun: with its
    second evaluations, :func:`_evaluated`) and ends at t = 0."""
    seen, last = seen_levels(scheduler)
    want = _evaluated(scheduler, levels)
    if seen.shape != want.shape:
        raise InexactScheduleError(
            f"{_name(scheduler)} set {seen.size} model evaluations for a {levels.size}-level plan (a plan is one "
            "evaluation per level; multi-evaluation solvers such as Heun add levels of their own)"
        )
    err = float(np.max(np.abs(seen - want)))
    if not err <= atol:  # NaN fails
        raise InexactScheduleError(
            f"{_name(scheduler)} makes the model see levels up to {err:.3g} off the plan (atol {atol:g})."
            + _rounding_hint(scheduler)
        )
    if not abs(last) <= atol:
        raise InexactScheduleError(f"{_name(scheduler)} ends sampling at level {last:.6g}, not at 0")
    sigmas = getattr(scheduler, "sigmas", None)
    if is_flow_scheduler(scheduler) and sigmas is not None:
        states = np.asarray(sigmas[:-1], dtype=np.float64)
        states = 1.0 - states if scheduler.config.get("invert_sigmas", False) else states
        if not np.max(np.abs(states - want)) <= atol:
            raise InexactScheduleError(f"{_name(scheduler)} steps through sigmas that differ from the plan")


def scheduler_args(
    plan: PlanLike, scheduler: Any, *, mu: float | None = None, atol: float = 1e-5
) -> dict[str, ScheduleArg]:
    """What to pass to ``scheduler.set_timesteps`` or to a pipeline call so that the model sees
    exactly the planned levels: ``{"sigmas": (K,)}`` (flow) or ``{"timesteps": (K,)}`` (VP), float64
    arrays (VP timesteps ``t·(T - 1)``, rounded where they are whole numbers within 1e-6; EDM: the
    ramp ``1 - t`` as a float64 torch tensor, which ``EDMEulerScheduler`` turns into the sigmas of the levels on
    its Karras path).

    Args:
        plan: a :class:`cotj.Plan` or its levels (K,), noisiest first.
        scheduler: a Diffusers scheduler, as configured (it is not changed).
        mu: the dynamic-shift parameter the pipeline will pass (flow schedulers with
            ``use_dynamic_shifting``; see :func:`dynamic_mu`).
        atol: largest allowed difference between a seen and a planned level.

    Raises:
        InexactScheduleError: the scheduler cannot honour the plan (its message names the
            option or the rounding in the way).
        ValueError: bad plan levels; ``mu`` missing under dynamic shifting, not finite or out of range;
            a shift that is not positive and finite; ``atol`` not a finite number >= 0.
        TypeError: ``mu`` or ``atol`` is not a number.
    """
    levels, mu, atol = _levels(plan), _finite_mu(mu), _tolerance(atol)
    args = _raw_args(scheduler, levels, mu, atol)
    trial = copy.deepcopy(scheduler)
    _set(trial, args, mu)
    _verify(trial, levels, atol)
    return args


def neutral_scheduler(scheduler: Any) -> Any:
    """A copy of ``scheduler`` (same class and config) with every option that transforms given
    sigmas or timesteps off: ``shift``/``flow_shift`` = 1, ``use_dynamic_shifting``,
    ``shift_terminal``, Karras / exponential / beta / Lu spacing off, ``final_sigmas_type="zero"``.
    The planned levels then pass through unchanged. ``invert_sigmas`` (a model convention) stays."""
    overrides = {k: v for k, v in _NEUTRAL.items() if k in scheduler.config}
    return type(scheduler).from_config({**scheduler.config, **overrides})


_PLANNED: dict[type, type] = {}


def _planned_class(cls: type) -> type:
    """A subclass of ``cls`` whose ``set_timesteps`` always sets the stored plan (made once per class)."""
    if cls not in _PLANNED:

        def set_timesteps(self: Any, num_inference_steps: int | None = None, device: Any = None,
                          sigmas: Any = None, mu: float | None = None, timesteps: Any = None, **kwargs: Any) -> None:
            """Ignores the requested schedule and sets the plan (``cotj_levels``), passing the
            pipeline's ``mu`` through (ValueError unless finite); raises InexactScheduleError if the result
            is off the plan."""
            mu = _finite_mu(mu)
            args = _raw_args(self, self.cotj_levels, mu, self.cotj_atol)
            _set(self, args, mu, device)
            _verify(self, self.cotj_levels, self.cotj_atol)

        def __reduce__(self: Any) -> tuple[Any, ...]:  # pickles name the Diffusers class, not this generated one
            return _restore_planned, (cls, self.__dict__)

        _PLANNED[cls] = type(f"Planned{cls.__name__}", (cls,),
                             {"set_timesteps": set_timesteps, "__reduce__": __reduce__, "_cotj_base": cls})
    return _PLANNED[cls]


def _restore_planned(cls: type, state: dict[str, Any]) -> Any:
    """Unpickle a planned scheduler: an instance of the planned subclass of ``cls`` with ``state``."""
    planned: Any = object.__new__(_planned_class(cls))
    planned.__dict__.update(state)
    return planned


def planned_scheduler(scheduler: Any, plan: PlanLike, *, atol: float = 1e-5) -> Any:
    """A copy of ``scheduler`` that runs ``plan`` whatever the pipeline asks for: its
    ``set_timesteps`` ignores the requested steps, sigmas or timesteps, keeps the pipeline's
    ``mu``, sets the plan and checks it. For pipelines that take neither ``sigmas=`` nor
    ``timesteps=``, and for those that compute ``mu`` themselves::

        pipe.scheduler = planned_scheduler(pipe.scheduler, plan)
        pipe(..., num_inference_steps=plan.budget)

    The copy is an instance of a subclass (``isinstance`` checks still pass). Raises
    :class:`InexactScheduleError` at once for options that can never be exact.
    """
    levels, atol = _levels(plan), _tolerance(atol)
    if is_flow_scheduler(scheduler) and not scheduler.config.get("use_dynamic_shifting", False):
        scheduler_args(levels, scheduler, atol=atol)
    else:
        _check_options(scheduler, levels, atol)
    planned = copy.deepcopy(scheduler)
    planned.__class__ = _planned_class(type(scheduler))
    planned.cotj_levels, planned.cotj_atol = levels, atol
    return planned


def dynamic_mu(scheduler: Any, image_seq_len: int) -> float:
    """The ``mu`` Flux-style pipelines (Flux, SD3 with dynamic shifting, Qwen-Image) pass to a
    dynamically shifting scheduler, by Diffusers' own ``calculate_shift`` from the scheduler's
    config. ``image_seq_len`` is the number of latent tokens (Flux: ``(H/16)·(W/16)``)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    c = scheduler.config
    return float(calculate_shift(image_seq_len, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                                 c.get("base_shift", 0.5), c.get("max_shift", 1.15)))


def timestep_grid(scheduler: Any, n: int = 100) -> NDArray[np.float64]:
    """An ascending grid of ``n`` levels at integer training timesteps of a discrete scheduler,
    ``k/(T - 1)`` for k evenly spread over 1..T-1 (top level 1). Plans on it map exactly onto
    schedulers that store integer timesteps (DDPM, DPM-Solver); extract the DNA on it too."""
    steps = _train_steps(scheduler)
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= steps - 1:
        raise ValueError(f"n must be an int in 2..{steps - 1}, got {n!r}")
    k = np.unique(np.round(np.linspace(0, steps - 1, n + 1))[1:])
    return k / (steps - 1)
