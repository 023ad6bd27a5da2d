"""Diffusers schedulers that run planned levels exactly with the solvers of :mod:`cotj.execute.solvers`, inside an
unchanged pipeline (``pipe.scheduler = solver_scheduler("heun")``; ``pipe(..., sigmas=levels)``).

Each takes ``set_timesteps(sigmas=levels)`` (levels in (0, 1], noisiest first; the step to 0 is appended) and stores
float timesteps ``sigma·T`` (T = ``num_train_timesteps``), so the model sees exactly the planned levels
(docs/method.md §9 and §11; why each one, in docs/guide.md "Solvers"):

- euler: Diffusers' ``FlowMatchEulerDiscreteScheduler`` as it is;
- heun: :class:`FlowMatchHeunExactScheduler`, Diffusers' Heun (which takes only a step count) with ``sigmas=``;
- dpmpp_2m: :class:`DPMSolverExactScheduler`, Diffusers' DPM-Solver++ (which with flow sigmas ignores given
  timesteps) with ``sigmas=``;
- unipc: :class:`FlowMatchUniPCScheduler`, cotj's own (Diffusers' rounds timesteps to whole numbers).

They run planned copies (:func:`cotj.execute.planned_scheduler`) and, all but Heun (two evaluations per level),
closed-loop replanning (:class:`cotj.execute.ReplanningScheduler`): :func:`cotj.execute.sample` uses them for both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from cotj.execute.solvers import level_rows, multistep_predict, unic_correct
from cotj.paths import to_x0
from cotj.planning.schedules import uniform
from cotj.planning.solvers import get_solver

__all__ = ["DPMSolverExactScheduler", "FlowMatchHeunExactScheduler", "FlowMatchUniPCScheduler", "solver_scheduler"]

_FLOW = None
"""The "denoiser" handed to the solver steps: it has no ``path``, so the path is the linear flow
(:func:`cotj.paths.path_of`)."""


def _sigmas(sigmas: Any, shift: float) -> torch.Tensor:
    """Given levels (K,) -> the shifted sigmas ``shift·σ/(1 + (shift - 1)·σ)`` (as Diffusers' flow schedulers
    shift what they are given; :func:`cotj.execute.scheduler_args` inverts it) as float32 (K,)."""
    lv = level_rows(np.asarray(sigmas, dtype=np.float64).reshape(-1), 1)[0]
    return torch.from_numpy(shift * lv / (1.0 + (shift - 1.0) * lv)).to(torch.float32)


class FlowMatchHeunExactScheduler(FlowMatchHeunDiscreteScheduler):
    """Diffusers' ``FlowMatchHeunDiscreteScheduler`` with ``set_timesteps(sigmas=...)``: Heun on given levels
    (``shift`` applied as Diffusers applies it), timesteps ``sigma·T`` as floats. The step is Diffusers'."""

    @property
    def shift(self) -> float:
        """The static shift (``config.shift``)."""
        return float(self.config.shift)

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, sigmas: Any = None,
                      mu: float | None = None, timesteps: Any = None) -> None:
        """Given ``sigmas`` (K,): the layout of Diffusers' own schedule, timesteps ``t0, t1, t1, ..., t_{K-1},
        t_{K-1}`` (2K - 1 model evaluations) and sigmas ``s0, s1, s1, ..., s_{K-1}, s_{K-1}, 0``. Else Diffusers'
        ``set_timesteps(num_inference_steps)``."""
        if sigmas is None:
            super().set_timesteps(int(num_inference_steps or 0), device=device)
            return
        sig = _sigmas(sigmas, float(self.config.shift))
        self.num_inference_steps = int(sig.numel())
        ts = sig * self.config.num_train_timesteps
        self.timesteps = torch.cat([ts[:1], ts[1:].repeat_interleave(2)]).to(device=device)
        sig = torch.cat([sig, torch.zeros(1)])
        self.sigmas = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
        self.prev_derivative, self.dt = None, None
        self._step_index, self._begin_index = None, None


class DPMSolverExactScheduler(DPMSolverMultistepScheduler):
    """Diffusers' ``DPMSolverMultistepScheduler`` with ``set_timesteps(sigmas=...)`` (needs ``use_flow_sigmas``):
    the given levels (``flow_shift``, or ``e^mu`` under dynamic shifting, applied as Diffusers applies it) as
    sigmas, timesteps ``sigma·T`` as floats, the state reset by Diffusers' own ``set_timesteps``. The step is
    Diffusers'; configure it with :func:`solver_scheduler` ("dpmpp_2m")."""

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, mu: float | None = None,
                      timesteps: Any = None, sigmas: Any = None) -> None:
        """Given ``sigmas`` (K,): those levels exactly (K model evaluations, then the step to 0). Else Diffusers'."""
        if sigmas is None:
            super().set_timesteps(num_inference_steps, device=device, mu=mu, timesteps=timesteps)
            return
        if not self.config.use_flow_sigmas:
            raise ValueError("sigmas= needs use_flow_sigmas=True (the linear flow)")
        shift = float(np.exp(mu)) if self.config.use_dynamic_shifting and mu is not None else float(self.config.flow_shift)
        sig = _sigmas(sigmas, shift)
        super().set_timesteps(int(sig.numel()), device=device)  # resets the multistep state
        self.sigmas = torch.cat([sig, torch.zeros(1)])
        self.timesteps = (sig * self.config.num_train_timesteps).to(device=device)
        self.num_inference_steps = int(sig.numel())


class FlowMatchUniPCScheduler(SchedulerMixin, ConfigMixin):
    """UniPC (bh2, data prediction, order 2) on the linear flow, for Diffusers pipelines: exact on any levels.

    Why cotj has its own: Diffusers' ``UniPCMultistepScheduler(use_flow_sigmas=True)`` steps through the given
    sigmas but stores its timesteps as int64 (``floor(sigma·T)``), so the model sees levels up to 1/T below the
    plan (about 1e-3 for T = 1000), and it nudges sigma = 1 to 1 - 1e-6 because its update takes ``log(alpha)``.
    This one stores float timesteps ``sigma·T``, and its updates are those of :func:`cotj.execute.solve`
    (:func:`~cotj.execute.solvers.unic_correct`, :func:`~cotj.execute.solvers.multistep_predict`: the weights of
    :mod:`cotj.planning.multistep`, which take their limit at sigma = 1). Where Diffusers' rounding does not bite (levels whose ``t·T`` are
    whole numbers, below 1) the two agree to float32 rounding.

    Each ``step`` (model output at ``timesteps[i]``, the velocity ``eps - x0``): the clean estimate
    ``m_i = x - sigma_i·v``; for i > 0, the UniC correction of the state at ``sigma_i`` with ``m_i`` (no extra
    evaluation); then the UniP (= DPM-Solver++(2M)) step to ``sigma_{i+1}``, first order at i = 0 and for the
    final step to 0. Sigmas are read when each step is taken, so replanning may rewrite the next one in place.

    Args:
        num_train_timesteps: T; the model's timestep is ``sigma·T``.
        shift: static shift applied to given sigmas, ``shift·σ/(1 + (shift - 1)·σ)``, as Diffusers' flow
            schedulers do (1: none).
    """

    _compatibles: list[Any] = []
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0) -> None:
        self.set_timesteps(num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, sigmas: Any = None,
                      mu: float | None = None) -> None:
        """``sigmas`` (K,) levels noisiest first (shifted by ``shift``), else ``num_inference_steps`` uniform levels
        ``1, 1 - 1/K, ..., 1/K``; the step to 0 is appended. Resets the multistep state."""
        if sigmas is None:
            if num_inference_steps is None:
                raise ValueError("give num_inference_steps or sigmas")
            sigmas = uniform(int(num_inference_steps))
        sig = _sigmas(sigmas, float(self.config.shift))
        self.num_inference_steps = int(sig.numel())
        self.sigmas = torch.cat([sig, torch.zeros(1)])
        self.timesteps = (sig * self.config.num_train_timesteps).to(device=device)
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._outputs: list[torch.Tensor] = []  # clean estimates m_{i-1}, m_i (the last two)
        self._last_sample: torch.Tensor | None = None

    @property
    def shift(self) -> float:
        """The static shift (``config.shift``)."""
        return float(self.config.shift)

    @property
    def step_index(self) -> int | None:
        """Index of the next step (None before the first)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """First step index, if a pipeline set one (:meth:`set_begin_index`)."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]`` (image-to-image pipelines)."""
        self._begin_index = begin_index

    def scale_noise(self, sample: torch.Tensor, timestep: Any, noise: torch.Tensor) -> torch.Tensor:
        """The flow's forward process at the level of ``timestep``: ``sigma·noise + (1 - sigma)·sample``."""
        i = self._begin_index if self._begin_index is not None else self._index(timestep)
        sigma = self.sigmas[i].to(sample.dtype)
        return sigma * noise + (1.0 - sigma) * sample

    def _index(self, timestep: Any) -> int:
        hits = (self.timesteps.cpu() == torch.as_tensor(timestep).cpu().to(self.timesteps.dtype)).nonzero()
        if len(hits) == 0:
            raise ValueError(f"timestep {float(timestep)} is not one of the scheduler's timesteps")
        return int(hits[0])

    def _level(self, i: int, device: Any) -> torch.Tensor:
        """Level i as a (1,) float64 tensor on ``device`` (read now: replanning may have rewritten it)."""
        return self.sigmas[i].reshape(1).to(device=device, dtype=torch.float64)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor,
             return_dict: bool = True) -> SchedulerOutput | tuple[torch.Tensor]:
        """One UniC correction (i > 0) and one UniP step, from ``sample`` at ``timesteps[i]`` to the next level."""
        if self._step_index is None:
            self._step_index = self._begin_index if self._begin_index is not None else self._index(timestep)
        i = self._step_index
        dtype = sample.dtype
        x = sample.to(torch.float32) if dtype in (torch.float16, torch.bfloat16) else sample
        t, t_next = self._level(i, x.device), self._level(i + 1, x.device)
        m = to_x0(model_output.to(x.dtype), x, 1.0 - float(t), float(t), "flow")  # x - sigma·v
        t_prev = self._level(i - 1, x.device) if i > 0 and self._last_sample is not None else None
        if t_prev is not None and self._last_sample is not None:
            t_prev2 = self._level(i - 2, x.device) if i > 1 and len(self._outputs) > 1 else None
            m_prev2 = self._outputs[-2] if t_prev2 is not None else self._outputs[-1]
            x = unic_correct(_FLOW, self._last_sample, m_prev2, self._outputs[-1], m, t_prev2, t_prev, t, "flow")
        m_prev = self._outputs[-1] if t_prev is not None else m
        prev = multistep_predict(_FLOW, x, m, m_prev, t_prev, t, t_next, "flow")
        self._outputs = [*self._outputs[-1:], m]
        self._last_sample = x
        self._step_index = i + 1
        prev = prev.to(dtype)
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)


def solver_scheduler(solver: str, num_train_timesteps: int = 1000) -> Any:
    """A fresh Diffusers scheduler (linear flow, no shift) that runs ``solver`` (a name of
    :data:`cotj.planning.solvers.SOLVERS`) exactly on ``set_timesteps(sigmas=...)``: the list in the module
    docstring."""
    solver = get_solver(solver).name
    if solver == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=1.0, use_dynamic_shifting=False)
    if solver == "heun":
        return FlowMatchHeunExactScheduler(num_train_timesteps=num_train_timesteps, shift=1.0)
    if solver == "dpmpp_2m":
        return DPMSolverExactScheduler(num_train_timesteps=num_train_timesteps, use_flow_sigmas=True, flow_shift=1.0,
                                       prediction_type="flow_prediction", algorithm_type="dpmsolver++", solver_order=2,
                                       solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero")
    if solver == "unipc":
        return FlowMatchUniPCScheduler(num_train_timesteps=num_train_timesteps)
    raise AssertionError(f"no scheduler for the registered solver {solver!r}")
