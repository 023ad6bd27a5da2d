"""Execute: run a plan with an ordinary Diffusers solver, exactly (docs/method.md §9). Needs the
``diffusers`` extra.

- :func:`scheduler_args`: ``sigmas=`` / ``timesteps=`` for a scheduler or pipeline call, with
  the scheduler's shifting inverted and the result checked;
- :func:`planned_scheduler`: a scheduler copy that runs the plan whatever the pipeline asks for;
- :func:`neutral_scheduler`: a copy with re-spacing and shifting options off;
- :func:`sample`: prompts in, images out, Predict -> Plan -> Execute in one call (with a teacher cost: replanned
  after every step);
- :class:`ReplanningScheduler`, :class:`Replanner`, :func:`replan_sample`: closed-loop replanning;
  :class:`VPReplanningScheduler` for discrete VP schedulers, :func:`replanning_scheduler` to pick one;
- :class:`LatentRecorder`, :func:`acceleration_signature`: an online difficulty probe;
- :func:`solve`: Euler, Heun, DPM-Solver++(2M) and UniPC on given levels, batched; :data:`SOLVERS`, :func:`nfe`:
  the solver registry and NFE rules (:mod:`cotj.planning.solvers`); :func:`solver_scheduler`: the Diffusers
  scheduler that runs each one exactly in a pipeline (:mod:`cotj.execute.flow_schedulers`).
"""

from cotj.execute.flow_schedulers import solver_scheduler
from cotj.execute.pipeline import SampleResult, sample
from cotj.execute.probe import LatentRecorder, acceleration_signature, compare_with_dna
from cotj.execute.replan import Replanner, ReplanningScheduler, replan_sample
from cotj.execute.schedulers import (
    InexactScheduleError,
    dynamic_mu,
    neutral_scheduler,
    planned_scheduler,
    scheduler_args,
    seen_levels,
    timestep_grid,
)
from cotj.execute.solvers import Evaluation, solve
from cotj.execute.vp_replan import VPReplanningScheduler, replanning_scheduler
from cotj.planning.solvers import SOLVERS, Solver, budget_for, evaluation_levels, nfe

__all__ = [
    "SOLVERS",
    "Evaluation",
    "InexactScheduleError",
    "LatentRecorder",
    "Replanner",
    "ReplanningScheduler",
    "SampleResult",
    "Solver",
    "VPReplanningScheduler",
    "acceleration_signature",
    "budget_for",
    "compare_with_dna",
    "dynamic_mu",
    "evaluation_levels",
    "neutral_scheduler",
    "nfe",
    "planned_scheduler",
    "replan_sample",
    "replanning_scheduler",
    "sample",
    "scheduler_args",
    "seen_levels",
    "solve",
    "solver_scheduler",
    "timestep_grid",
]
