"""The Gaussian paths ``x_t = a(t)·x0 + s(t)·eps`` that Predict and Execute both step on (docs/method.md §1).

:func:`to_x0` turns a model output into the clean estimate ``x0_hat``, for the four things a denoiser may predict:
``"flow"`` (the velocity ``dx_t/dt``; rectified flow: ``v = eps - x0``), ``"epsilon"``, ``"v"`` (``a·eps - s·x0``)
and ``"sample"``. :func:`ddim_update` is the one first-order step every sampler of the package takes (DNA
extraction, teacher runs, the solvers' first step): DDIM on any Gaussian path, Euler on the linear flow.
:func:`path_of`, :func:`clean_estimate`, :func:`ddim_step` and :func:`first_order_step` apply them to a denoiser.
Needs torch.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "PREDICTIONS",
    "Prediction",
    "clean_estimate",
    "ddim_step",
    "ddim_update",
    "first_order_step",
    "flow_matching",
    "is_flow_scheduler",
    "path_of",
    "prediction_of",
    "to_x0",
]

Prediction = Literal["flow", "epsilon", "v", "sample"]
PREDICTIONS: tuple[str, ...] = ("flow", "epsilon", "v", "sample")
Coefficient = float | torch.Tensor
ArrayT = TypeVar("ArrayT", torch.Tensor, NDArray[np.float64])

_DIFFUSERS_NAMES = {"epsilon": "epsilon", "v_prediction": "v", "sample": "sample", "flow_prediction": "flow"}


def _column(value: Coefficient, like: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar or per-sample (n,) coefficient shaped to broadcast against ``like`` (n, ...)."""
    c = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if c.ndim == 0:
        return c
    if c.ndim != 1 or c.shape[0] != like.shape[0]:
        raise ValueError(f"{name} must be a scalar or a ({like.shape[0]},) tensor, got shape {tuple(c.shape)}")
    return c.reshape(-1, *([1] * (like.ndim - 1)))


def _divide(num: torch.Tensor, den: torch.Tensor, what: str) -> torch.Tensor:
    if torch.any(den.abs() < 1e-12):
        raise ValueError(f"x0 is not recoverable from a {what} prediction where its denominator vanishes")
    return num / den


def to_x0(
    pred: torch.Tensor,
    x_t: torch.Tensor,
    a: Coefficient,
    s: Coefficient,
    prediction: str,
    da: Coefficient | None = None,
    ds: Coefficient | None = None,
) -> torch.Tensor:
    """The clean estimate ``x0_hat`` from a model output on ``x_t = a·x0 + s·eps``.

    Args:
        pred: (n, ...) the model output.
        x_t: (n, ...) the state it was given.
        a, s: the path coefficients at each sample's level: scalars or (n,) tensors.
        prediction: ``"flow"``, ``"epsilon"``, ``"v"`` or ``"sample"`` (module docstring).
        da, ds: ``da/dt`` and ``ds/dt`` at the same levels, needed for ``"flow"`` on a path
            other than the linear flow; when both are None the path must be the linear flow
            (``a + s = 1``) and ``da = -1``, ``ds = 1`` are used, giving ``x0 = x_t - t·v``.

    Returns:
        (n, ...) ``x0_hat`` in ``pred``'s dtype promoted to at least float32.

    Raises:
        ValueError: unknown ``prediction``, mismatched shapes, a flow prediction on a general
            path without ``da``/``ds``, or a level where x0 cannot be recovered (``a = 0`` for
            ``"epsilon"``).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if pred.shape != x_t.shape:
        raise ValueError(f"pred and x_t must have the same shape, got {tuple(pred.shape)} and {tuple(x_t.shape)}")
    dtype = torch.promote_types(pred.dtype, torch.float32)
    pred, x_t = pred.to(dtype), x_t.to(dtype)
    a_, s_ = _column(a, x_t, "a"), _column(s, x_t, "s")
    if prediction == "sample":
        return pred
    if prediction == "epsilon":
        return _divide(x_t - s_ * pred, a_, "epsilon")
    if prediction == "v":
        return _divide(a_ * x_t - s_ * pred, a_ * a_ + s_ * s_, "v")
    if (da is None) != (ds is None):
        raise ValueError("give both da and ds (the path's derivatives) or neither")
    if da is None or ds is None:
        if not torch.allclose(a_ + s_, torch.ones_like(a_ + s_), atol=1e-6):
            raise ValueError("a flow prediction on a path other than the linear flow (a + s = 1) needs da and ds")
        return x_t - s_ * pred
    da_, ds_ = _column(da, x_t, "da"), _column(ds, x_t, "ds")
    return _divide(s_ * pred - ds_ * x_t, s_ * da_ - ds_ * a_, "flow")


def flow_matching(scheduler: Any) -> bool:
    """Whether a Diffusers scheduler is a flow-matching one by what it can do: it has the flow's forward
    process ``scale_noise`` (``x = sigma·noise + (1 - sigma)·x0``), so its sigmas are the levels t."""
    return callable(getattr(scheduler, "scale_noise", None))


def is_flow_scheduler(scheduler: Any) -> bool:
    """Whether a Diffusers scheduler runs its model on the linear flow (sigmas are the levels t, the model
    predicts the velocity): a flow-matching scheduler (:func:`flow_matching`) or one configured with
    ``use_flow_sigmas`` (DPM-Solver, UniPC, DEIS...)."""
    return flow_matching(scheduler) or bool(scheduler.config.get("use_flow_sigmas", False))


def prediction_of(scheduler: Any) -> str:
    """The prediction type of a Diffusers scheduler's model: ``"flow"`` for schedulers on the linear flow
    (:func:`is_flow_scheduler`), else its ``config.prediction_type`` in this module's names."""
    config = scheduler.config
    if is_flow_scheduler(scheduler):
        return "flow"
    name = config.get("prediction_type")
    if name not in _DIFFUSERS_NAMES:
        raise ValueError(f"{type(scheduler).__name__} has prediction_type {name!r}, which cotj does not convert")
    return _DIFFUSERS_NAMES[name]


def ddim_update(x: ArrayT, x0: ArrayT, a: Any, s: Any, a_next: Any, s_next: Any) -> ArrayT:
    """The deterministic first-order step from ``x`` (n, ...) on the path at ``(a, s)`` to ``(a_next, s_next)``,
    given the clean estimate ``x0`` (n, ...): ``a_next·x0 + s_next·eps_hat`` with ``eps_hat = (x - a·x0)/s``
    (DDIM; on the linear flow ``x + (t_next - t)·v``, Euler). The coefficients broadcast against ``x`` (per-row
    columns (n, 1, ...)); ``a_next = 1, s_next = 0`` lands on ``x0``. Torch tensors or numpy arrays alike."""
    return a_next * x0 + s_next * (x - a * x0) / s


def path_of(denoiser: Any, t: torch.Tensor, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``a(t), s(t)`` (n,) float64 of ``x_t = a·x0 + s·eps``: the denoiser's own ``path`` if it has one, else the
    linear flow ``a = 1 - t, s = t``."""
    if hasattr(denoiser, "path"):
        a, s, *_ = denoiser.path(t)
        return a, s
    if prediction != "flow":
        raise ValueError(f"a {prediction!r} denoiser without a path(t) method: give a flow model or one with path()")
    return 1.0 - t, t


def clean_estimate(denoiser: Any, x: torch.Tensor, t: torch.Tensor, cond: Any, prediction: str) -> torch.Tensor:
    """The model's clean estimate ``x0_hat`` (n, ...) at states ``x`` (n, ...) and levels ``t`` (n,) float64."""
    a, s = path_of(denoiser, t, prediction)
    return to_x0(denoiser(x, t.to(x.dtype), cond), x, a.to(x.dtype), s.to(x.dtype), prediction).to(x.dtype)


def ddim_step(denoiser: Any, x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor,
              prediction: str) -> torch.Tensor:
    """The first-order step (:func:`ddim_update`) from ``x`` at levels ``t`` to ``t_next``
    (n,) float64 (0 = clean) on the denoiser's path, given the clean estimate ``x0`` there."""
    shape = (-1, *([1] * (x.ndim - 1)))
    a, s = (v.to(x.dtype).reshape(shape) for v in path_of(denoiser, t, prediction))
    a_n, s_n = (v.to(x.dtype).reshape(shape) for v in path_of(denoiser, t_next, prediction))
    return ddim_update(x, x0, a, s, a_n, s_n)


def first_order_step(denoiser: Any, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, cond: Any,
                     prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One first-order step of rows ``x`` (n, ...) from levels ``t`` to ``t_next`` (n,): (next state, x0_hat)."""
    x0 = clean_estimate(denoiser, x, t, cond, prediction)
    return ddim_step(denoiser, x, x0, t, t_next, prediction), x0
