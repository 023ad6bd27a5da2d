"""Closed-loop replanning on a discrete VP scheduler (Stable Diffusion-style UNets, epsilon or v prediction).

:class:`VPReplanningScheduler` is :class:`cotj.execute.ReplanningScheduler` for Diffusers'
``EulerDiscreteScheduler`` on a VP model: levels are training timesteps ``t·(T - 1)`` (:func:`cotj.planning.schedules.vp`),
the scheduler steps in its sigma space (``x = x_vp·sqrt(1 + σ²)``, ``σ = sqrt((1 - ᾱ)/ᾱ)``), and the replanner
sees the VP state ``x_vp`` and the clean estimate, as the teacher runs of :func:`cotj.predict.calibrate` on a
:class:`cotj.predict.UNetDenoiser` record them. Euler in that sigma space is DDIM on the VP path, the first-order
step the teacher cost measures. Plans are first order ("euler").
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cotj.execute.replan import ReplanningScheduler
from cotj.execute.schedulers import InexactScheduleError
from cotj.planning.objectives import TeacherCost

__all__ = ["VPReplanningScheduler", "replanning_scheduler"]

log = logging.getLogger(__name__)


def replanning_scheduler(scheduler: Any, teacher: TeacherCost, solver: str = "euler") -> ReplanningScheduler:
    """The replanning scheduler for a pipeline's ``scheduler``: :class:`ReplanningScheduler` around a flow-matching
    one (plans for ``solver``'s steps), :class:`VPReplanningScheduler` around a discrete VP one (an
    ``EulerDiscreteScheduler`` of its configuration, same betas and prediction type, if it is another class: Euler in
    its sigma space is DDIM on the VP path; ``solver`` must be "euler", the first-order steps the teacher cost
    measures)."""
    from diffusers import EulerDiscreteScheduler

    from cotj.paths import is_flow_scheduler

    if is_flow_scheduler(scheduler):
        return ReplanningScheduler(scheduler, teacher, solver)
    if not isinstance(scheduler, EulerDiscreteScheduler):
        if not hasattr(scheduler, "alphas_cumprod"):
            raise InexactScheduleError(f"{type(scheduler).__name__} is neither a flow-matching nor a discrete VP "
                                       "scheduler (no alphas_cumprod): replanning cannot run it")
        log.info("replanning %s as EulerDiscreteScheduler of its configuration (same betas, DDIM steps)",
                 type(scheduler).__name__)
        scheduler = EulerDiscreteScheduler.from_config(scheduler.config)
    return VPReplanningScheduler(scheduler, teacher, solver)


class VPReplanningScheduler(ReplanningScheduler):
    """A Diffusers ``EulerDiscreteScheduler`` (VP) that replans after every step; pipelines use it unchanged::

        pipe.scheduler = VPReplanningScheduler(EulerDiscreteScheduler.from_config(pipe.scheduler.config), teacher)
        pipe(prompt, num_inference_steps=6)      # 6 evaluations, levels chosen as the sample goes

    The teacher cost must be calibrated on the same model and scheduler betas, on a grid of integer timesteps
    (:func:`cotj.execute.timestep_grid`) so that every level is a timestep the scheduler holds exactly. ``levels``
    holds the levels (``timestep/(T - 1)``) the model was evaluated at.

    Args:
        scheduler: an ``EulerDiscreteScheduler`` (its ``neutral_scheduler`` copy is run: no Karras or other
            re-spacing, final sigma 0); its ``prediction_type`` is "epsilon" or "v_prediction".
        teacher: the model's teacher cost.

    Raises:
        InexactScheduleError: another scheduler class.
        ValueError: another prediction type.
    """

    def __init__(self, scheduler: Any, teacher: TeacherCost, solver: str = "euler") -> None:
        from diffusers import EulerDiscreteScheduler

        if not isinstance(scheduler, EulerDiscreteScheduler):
            raise InexactScheduleError(f"{type(scheduler).__name__}: VP replanning steps EulerDiscreteScheduler (use "
                                       "EulerDiscreteScheduler.from_config(scheduler.config))")
        if solver != "euler":
            raise ValueError(f"VP replanning plans first-order steps (solver 'euler'), got {solver!r}")
        kind = scheduler.config.prediction_type
        if kind not in ("epsilon", "v_prediction"):
            raise ValueError(f"VP replanning takes epsilon or v_prediction models, got prediction_type {kind!r}")
        super().__init__(scheduler, teacher, solver)
        table = np.asarray(scheduler.alphas_cumprod, dtype=np.float64)
        self._sigma_table = np.sqrt((1.0 - table) / table)
        self._steps = table.size

    def _check_scheduler(self, scheduler: Any) -> None:
        """InexactScheduleError for a scheduler configured for the linear flow (use :class:`ReplanningScheduler`)."""
        from cotj.paths import is_flow_scheduler

        if is_flow_scheduler(scheduler):
            raise InexactScheduleError(f"{type(scheduler).__name__} runs the linear flow (use_flow_sigmas): use "
                                       "cotj.execute.ReplanningScheduler")

    def step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        """Replan from the current level (on the VP state and clean estimate), write the next level's timestep and
        sigma in place, then take the Euler step."""
        if self._plan is None:
            raise RuntimeError("call set_timesteps before step")
        inner = self.scheduler
        i = len(self.levels)
        sigma = float(inner.sigmas[i])
        self.levels.append(float(inner.timesteps[i]) / (self._steps - 1))
        x = sample.detach().double().flatten(1).cpu()
        out = model_output.detach().double().flatten(1).cpu()
        c = 1.0 / np.sqrt(1.0 + sigma**2)
        if inner.config.prediction_type == "epsilon":
            x0_hat = x - sigma * out
        else:  # v_prediction, as EulerDiscreteScheduler converts it
            x0_hat = out * (-sigma * c) + x * c**2
        level = np.full(1, self._level)
        scale = self.teacher.row_scale(np.full(x.shape[0], self._level), (x * c).numpy(), x0_hat.numpy()).mean(0, keepdims=True)
        nxt = int(self._plan.next_scaled(level, i + 1, scale, np.full(1, self._previous))[0])
        if nxt >= 0:
            timestep_next = float(self.teacher.grid[nxt]) * (self._steps - 1)
            inner.timesteps[i + 1] = timestep_next
            inner.sigmas[i + 1] = float(np.interp(timestep_next, np.arange(self._steps, dtype=np.float64), self._sigma_table))
            self._previous, self._level = self._level, nxt
        return inner.step(model_output, timestep, sample, *args, **kwargs)
