"""Closed-loop replanning (docs/method.md §7): after every model evaluation, re-cost the rest of the trajectory from
what the sample shows, and replan the remaining steps with the same DP.

The clean estimate ``x0_hat`` of each evaluation feeds the teacher cost's row model
(:class:`cotj.planning.objectives.RowModel`): how much harder than the calibration mean this sample's jumps are;
the cheapest plan of the remaining evaluations from the current level gives the next level. The budget K is fixed.
With DPM-Solver++(2M) or UniPC the plan is made for that solver's steps from the (previous, current) pair of levels
(docs/method.md §11) and the sampler takes them (:mod:`cotj.execute.solvers`); Heun is not replanned (run it
open loop).

- :class:`Replanner`: the policy, numpy only: current levels and what the model said -> next levels.
- :func:`replan_sample`: a sampler for any denoiser ``model(x_t, t, cond)``, one plan per row.
- :class:`ReplanningScheduler`: wraps a Diffusers flow-matching scheduler, so an unchanged pipeline replans
  (:class:`cotj.execute.vp_replan.VPReplanningScheduler`: the same for a discrete VP scheduler).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj.planning.multistep import plan_multistep_batch
from cotj.planning.objectives import TeacherCost, _log_scale, grid_levels
from cotj.planning.planner import plan_batch
from cotj.planning.solvers import SOLVERS

__all__ = ["Replanner", "ReplanningScheduler", "replan_sample"]


@dataclass(frozen=True)
class Replanner:
    """Chooses each next level of a batch of samples from what the model said at the current one.

    Attributes:
        teacher: the model's :class:`~cotj.planning.objectives.TeacherCost` (its row model makes the loop closed; without
            one every row follows the teacher plan, open loop).
        budget: model evaluations per sample, K >= 1 (NFE).
        prior: (N,) or (B, N) log row scale known before sampling, added to the row model's: ``log(d / dbar)`` of
            a prompt's DNA makes the loop closed on the "calibrated" objective. None: 0 (the teacher objective).
        solver: the solver whose steps are planned and taken: "euler" (first order), "dpmpp_2m" or "unipc" (their
            costs need the teacher cost's Gram matrix).
    """

    teacher: TeacherCost
    budget: int
    prior: NDArray[np.float64] | None = None
    solver: str = "euler"

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, TeacherCost):
            raise TypeError(f"teacher must be a TeacherCost (TeacherCost.load reads its file), got "
                            f"{type(self.teacher).__name__}")
        n = self.teacher.grid.size
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, np.integer)) or not 1 <= self.budget <= n:
            raise ValueError(f"budget must be an int in 1..{n} (the teacher grid's levels), got {self.budget!r}")
        if self.prior is not None:
            prior = np.asarray(self.prior)
            if prior.dtype.kind not in "iuf":
                raise TypeError(f"prior must be real numbers, got dtype {prior.dtype}")
            if prior.ndim not in (1, 2) or prior.shape[-1] != n or prior.size == 0 or not np.all(np.isfinite(prior)):
                raise ValueError(f"prior must be finite, (N,) or (B, N) with N = {n}, got shape {prior.shape}")
        replanned = [name for name, s in SOLVERS.items() if s.replans]
        if not isinstance(self.solver, str) or self.solver not in replanned:
            raise ValueError(f"solver must be one of {', '.join(replanned)} (heun evaluates twice per level), "
                             f"got {self.solver!r}")
        if self.solver != "euler":
            self.teacher.solver_cost(self.solver)  # needs the Gram matrix: fail now, not mid-sampling

    @property
    def top(self) -> int:
        """The grid index every sample starts at (the grid's top level)."""
        return self.teacher.grid.size - 1

    def next(self, level: ArrayLike, done: int, x: ArrayLike, x0_hat: ArrayLike,
             previous: ArrayLike | None = None) -> NDArray[np.int64]:
        """(B,) the next grid index of each sample, -1 for the final step to t = 0.

        Args:
            level: (B,) grid indices the samples were just evaluated at.
            done: evaluations made so far, including this one (1..K).
            x: (B, ...) the states at ``level``; x0_hat: (B, ...) the model's clean estimates there.
            previous: (B,) grid indices of the evaluations before, -1 for none (multistep solvers).
        """
        lv = grid_levels(level, self.teacher.grid.size)
        scale = self.teacher.row_scale(lv, x, x0_hat)
        if self.prior is not None and np.ndim(self.prior) == 2 and np.shape(self.prior)[0] not in (1, lv.size):
            raise ValueError(f"prior (B, N) has {np.shape(self.prior)[0]} rows for {lv.size} levels")
        left = self._left(done)
        if self.prior is not None:  # the row model's scale is in range; with the prior added, check again
            scale = _log_scale(scale + self.prior, None, self.teacher.grid.size)
        return self._decide(lv, left, scale, previous)

    def next_scaled(self, level: NDArray[np.int64], done: int, log_scale: NDArray[np.float64],
                    previous: ArrayLike | None = None) -> NDArray[np.int64]:
        """:meth:`next` from the row scales (B, N) (:meth:`TeacherCost.row_scale`) instead of the states."""
        n = self.teacher.grid.size
        level = grid_levels(level, n)
        left = self._left(done)
        log_scale = np.asarray(log_scale)
        if log_scale.dtype.kind not in "iuf":
            raise TypeError(f"log_scale must be real numbers, got dtype {log_scale.dtype}")
        if log_scale.ndim not in (1, 2) or log_scale.shape[-1] != n or (log_scale.ndim == 2 and log_scale.shape[0] not in (1, level.size)):
            raise ValueError(f"log_scale must be (N,) or (B, N) with N = {n} and B = {level.size}, got shape {log_scale.shape}")
        return self._decide(level, left, _log_scale(np.broadcast_to(log_scale, (level.size, n)), None, n), previous)

    def _left(self, done: object) -> int:
        """Evaluations still to make after ``done`` (1..K) of them."""
        if isinstance(done, bool) or not isinstance(done, (int, np.integer)):
            raise TypeError(f"done must be an int in 1..{self.budget}, got {type(done).__name__}")
        if not 1 <= done <= self.budget:
            raise ValueError(f"done must be in 1..{self.budget}, got {done}")
        return self.budget - int(done)

    def _decide(self, level: NDArray[np.int64], left: int, log_scale: NDArray[np.float64],
                previous: ArrayLike | None) -> NDArray[np.int64]:
        """The next level of each row: ``level`` (B,) checked grid indices, ``log_scale`` (B, N) checked."""
        n = self.teacher.grid.size
        prev = None if previous is None else _previous(previous, level, n)
        if left == 0:
            return np.full(level.size, -1, dtype=np.int64)
        if level.min() < left:
            raise ValueError(f"level {level.min()} leaves no room for {left} more evaluations (grid levels below it)")
        if self.solver == "euler":
            plans = plan_batch(self.teacher.dense(log_scale), left + 1, current=level)
            return plans.steps[:, 1].astype(np.int64)
        # One call plans every row (in parallel, in the core) as TeacherCost.plan plans one.
        steps, _ = plan_multistep_batch(self.teacher.solver_cost(self.solver), left + 1, current=level, previous=prev,
                                        scale=np.exp(log_scale))
        return steps[:, 1]


def _previous(previous: ArrayLike, level: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """``previous`` (B,) as int64 grid indices above ``level``, or -1 for none."""
    prev = np.asarray(previous)
    if prev.dtype.kind not in "iu":
        raise TypeError(f"previous must be int grid indices (-1 for none), got dtype {prev.dtype}")
    prev = prev.reshape(-1)
    if prev.size == 1 and level.size > 1:
        prev = np.repeat(prev, level.size)
    if prev.size != level.size:
        raise ValueError(f"previous must hold one grid index per level ({level.size}), got {prev.size}")
    bad = (prev != -1) & ((prev <= level) | (prev >= n)) if prev.dtype.kind == "i" else prev >= n
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"previous must be -1 or a grid level in {int(level[i]) + 1}..{n - 1} (above the current "
                         f"level {int(level[i])}), got {prev[i]}")
    return prev.astype(np.int64)


def replan_sample(denoiser: Any, noise: Any, cond: Any, replanner: Replanner, *, prediction: str | None = None,
                  ) -> tuple[Any, NDArray[np.float64]]:
    """Sample every row from its noise with the replanner's solver, replanning after each evaluation.

    Args:
        denoiser: ``model(x_t (n, ...), t (n,), cond (n, ...)) -> prediction`` (linear flow unless it has ``path``).
        noise: (B, ...) torch tensor, the state at the grid's top level. cond: (B, ...) per-row conditions.
        replanner: the policy, the budget K and the solver, whose steps are those of :func:`cotj.execute.solve`
            (:func:`cotj.paths.ddim_step` for euler, :func:`~cotj.execute.solvers.multistep_predict` and
            :func:`~cotj.execute.solvers.unic_correct` for the multistep solvers: the first step and the last, to
            t = 0, are first order; UniPC corrects each state with the evaluation made there), so a row's sample is
            the solver's on the levels it reports.
        prediction: what the denoiser predicts; default its ``prediction`` attribute.

    Returns:
        (the clean samples (B, ...), the levels each row was evaluated at (B, K) float64, noisiest first).
    """
    import torch

    from cotj.execute.checks import check_finite, check_inputs
    from cotj.execute.solvers import multistep_predict, unic_correct
    from cotj.paths import clean_estimate, ddim_step

    if not isinstance(replanner, Replanner):
        raise TypeError(f"replanner must be a Replanner, got {type(replanner).__name__}")
    prediction = check_inputs(denoiser, noise, cond, prediction)
    grid, solver = replanner.teacher.grid, replanner.solver
    b, k = noise.shape[0], replanner.budget
    if replanner.prior is not None and np.ndim(replanner.prior) == 2 and np.shape(replanner.prior)[0] not in (1, b):
        raise ValueError(f"the replanner's prior (B, N) has {np.shape(replanner.prior)[0]} rows for {b} noise rows")
    nodes = np.append(0.0, grid)  # node n + 1 = grid index n, node 0 = t = 0

    def at(idx: NDArray[np.int64]) -> Any:
        """The levels (B,) float64 of grid indices ``idx`` (-1: t = 0)."""
        return torch.from_numpy(nodes[idx + 1]).to(noise.device)

    level = np.full(b, replanner.top, dtype=np.int64)
    prev, prev2 = np.full(b, -1), np.full(b, -1)
    seen = np.empty((b, k))
    x = noise.clone()
    x_last: Any = None
    m_prev: Any = None
    m_prev2: Any = None
    with torch.inference_mode():
        for n in range(k):
            seen[:, n] = grid[level]
            t = at(level)
            m = clean_estimate(denoiser, x, t, cond, prediction)
            check_finite(m, "the model's clean estimate", n, seen[:, n])
            if solver == "unipc" and n > 0:  # UniC: re-take the last step with the evaluation just made
                x = unic_correct(denoiser, x_last, m_prev2, m_prev, m, at(prev2) if n > 1 else None, at(prev), t,
                                 prediction)
            nxt = replanner.next(level, n + 1, x.reshape(b, -1).double().cpu().numpy(), m.reshape(b, -1).double().cpu().numpy(),
                                   prev)
            if solver == "euler":
                x_new = ddim_step(denoiser, x, m, t, at(nxt), prediction)
            else:
                x_new = multistep_predict(denoiser, x, m, m if m_prev is None else m_prev, None if n == 0 else at(prev),
                                          t, at(nxt), prediction)
            x_last, m_prev2, m_prev = x, m_prev, m
            prev2, prev, level, x = prev, level, nxt, x_new
            check_finite(x, "the sample", n + 1, nodes[level + 1])
    return x, seen


class ReplanningScheduler:
    """A Diffusers flow-matching scheduler that replans after every step; pipelines use it unchanged::

        pipe.scheduler = ReplanningScheduler(pipe.scheduler, teacher)   # or solver_scheduler("unipc"), solver="unipc"
        pipe(prompt, num_inference_steps=6)          # 6 evaluations, levels chosen as the sample goes

    ``set_timesteps(K)`` loads the teacher plan of K steps from the grid's top; each ``step`` computes
    ``x0_hat = x - sigma·v``, asks the :class:`Replanner` for the next level and writes it into the scheduler's
    ``sigmas`` and ``timesteps`` in place, so the pipeline evaluates the model there next (docs/method.md §7). One
    plan serves a whole call (the mean of its rows' scales): call the pipeline once per prompt for per-prompt loops.
    ``levels``: where the model was evaluated; other attributes are the wrapped scheduler's.

    Args:
        scheduler: a flow-matching scheduler that takes ``sigmas=`` and evaluates the model once per level (not
            Heun), run as a :func:`~cotj.execute.schedulers.neutral_scheduler` copy; others raise
            :class:`~cotj.execute.InexactScheduleError` (:func:`~cotj.execute.replanning_scheduler` picks the VP one).
        teacher: the model's teacher cost.
        solver: what the plans are made for: "euler" (default: first-order steps, whatever the wrapped scheduler
            does) or its own "dpmpp_2m" / "unipc", whose plans need the teacher cost's Gram matrix (else ValueError).
    """

    def __init__(self, scheduler: Any, teacher: TeacherCost, solver: str = "euler") -> None:
        from cotj.execute.schedulers import InexactScheduleError, neutral_scheduler

        self._check_scheduler(scheduler)
        if not hasattr(scheduler, "sigmas") or "sigmas" not in _parameters(scheduler.set_timesteps):
            raise InexactScheduleError(f"{type(scheduler).__name__} takes no sigmas: replanning needs a flow-matching scheduler")
        if getattr(scheduler, "order", 1) != 1:
            raise InexactScheduleError(f"{type(scheduler).__name__} evaluates the model {scheduler.order} times per "
                                       "level: replanning takes one evaluation per level; run it open loop")
        Replanner(teacher, 1, solver=solver)  # checks the solver, and the Gram matrix a multistep one needs
        self.scheduler = neutral_scheduler(scheduler)
        self.teacher = teacher
        self.solver = solver
        self.levels: list[float] = []
        self._plan: Replanner | None = None
        self._level = 0
        self._previous = -1

    def _check_scheduler(self, scheduler: Any) -> None:
        """InexactScheduleError unless ``scheduler`` runs the linear flow (its sigmas are the levels t and the model
        predicts the velocity, which :meth:`step` reads): a VP scheduler's sigmas and outputs mean something else."""
        from cotj.execute.schedulers import InexactScheduleError
        from cotj.paths import is_flow_scheduler

        if not is_flow_scheduler(scheduler) or scheduler.config.get("invert_sigmas", False):
            raise InexactScheduleError(
                f"{type(scheduler).__name__} is not a flow-matching scheduler: ReplanningScheduler reads sigmas as "
                "levels t and the model output as a velocity; for a discrete VP scheduler (Stable Diffusion-style, "
                "epsilon or v prediction) use cotj.execute.VPReplanningScheduler, or cotj.execute.replanning_scheduler "
                "to pick the right one")

    def __getattr__(self, name: str) -> Any:
        if name == "scheduler":
            raise AttributeError(name)
        return getattr(self.scheduler, name)

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, sigmas: Any = None,
                      mu: float | None = None, timesteps: Any = None, **_: Any) -> None:
        """Start a run of K evaluations: ``num_inference_steps``, else the length of the ``sigmas`` or ``timesteps``
        a pipeline passes (their values and ``mu`` are ignored: the levels come from the teacher cost)."""
        from cotj.execute.schedulers import scheduler_args

        given = sigmas if sigmas is not None else timesteps
        k = num_inference_steps if num_inference_steps is not None else (len(given) if given is not None else 0)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"num_inference_steps must be an int, got {type(k).__name__}")
        self._plan = Replanner(self.teacher, int(k), solver=self.solver)
        if self.solver == "euler":
            first = plan_batch(self.teacher.dense(), self._plan.budget, current=self._plan.top)[0].levels
        else:
            first = self.teacher.plan(self.solver, self._plan.budget).levels
        self.scheduler.set_timesteps(**scheduler_args(first, self.scheduler), device=device)
        self._level, self._previous, self.levels = self._plan.top, -1, []

    def step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        """Replan from the current level, set the next level in place, then take the wrapped scheduler's step."""
        if self._plan is None:
            raise RuntimeError("call set_timesteps before step")
        import torch

        from cotj.execute.checks import check_finite

        inner = self.scheduler
        i = len(self.levels)
        if i >= self._plan.budget:
            raise ValueError(f"step called more than the {self._plan.budget} times set_timesteps asked for")
        for name, value in (("model_output", model_output), ("sample", sample)):
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise TypeError(f"{name} must be a real floating torch tensor, got "
                                f"{value.dtype if isinstance(value, torch.Tensor) else type(value).__name__}")
        if sample.ndim < 1 or sample.shape[0] < 1 or sample.numel() == 0 or model_output.shape != sample.shape:
            raise ValueError(f"model_output must have the sample's shape {tuple(sample.shape)} (B >= 1 rows), got "
                             f"{tuple(model_output.shape)}")
        sigma = float(inner.sigmas[i])
        check_finite(sample, "the sample", i, sigma)
        check_finite(model_output, "the model output", i, sigma)
        self.levels.append(sigma)
        x = sample.detach().double().reshape(sample.shape[0], -1).cpu()
        x0_hat = x - sigma * model_output.detach().double().reshape(sample.shape[0], -1).cpu()
        level = np.full(1, self._level)
        scale = self.teacher.row_scale(np.full(x.shape[0], self._level), x.numpy(), x0_hat.numpy()).mean(0, keepdims=True)
        nxt = int(self._plan.next_scaled(level, i + 1, scale, np.full(1, self._previous))[0])
        if nxt >= 0:
            new = float(self.teacher.grid[nxt])
            inner.sigmas[i + 1] = new
            inner.timesteps[i + 1] = new * inner.config.num_train_timesteps
            self._previous, self._level = self._level, nxt
        return inner.step(model_output, timestep, sample, *args, **kwargs)


def _parameters(fn: Any) -> set[str]:
    return set(inspect.signature(fn).parameters)
