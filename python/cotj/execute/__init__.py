"""Execute: run a plan with an ordinary Diffusers solver, exactly (docs/method.md §9). Needs the
``diffusers`` extra.

- :func:`scheduler_args`: ``sigmas=`` / ``timesteps=`` for a scheduler or pipeline call, with
  the scheduler's shifting inverted and the result checked;
- :func:`planned_scheduler`: a scheduler copy that runs the plan whatever the pipeline asks for;
- :func:`neutral_scheduler`: a copy with re-spacing and shifting options off;
- :func:`sample`: prompts in, images out, Predict -> Plan -> Execute in one call (with a teacher cost: replanned
  after every step);
- :class:`ReplanningScheduler`, :class:`Replanner`, :func:`replan_sample`: closed-loop replanning;
- :class:`LatentRecorder`, :func:`acceleration_signature`: an online difficulty probe.
"""

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

__all__ = [
    "InexactScheduleError",
    "LatentRecorder",
    "Replanner",
    "ReplanningScheduler",
    "SampleResult",
    "acceleration_signature",
    "compare_with_dna",
    "dynamic_mu",
    "neutral_scheduler",
    "planned_scheduler",
    "replan_sample",
    "sample",
    "scheduler_args",
    "seen_levels",
    "timestep_grid",
]
