"""Plan: the cheapest path through a grid of noise levels, for a DNA or any dense cost (numpy only).

- :mod:`cotj.planning.planner`: :func:`plan`, :func:`plan_batch`, :class:`Planner`, :func:`plan_cost`, :func:`cost_matrix`;
- :mod:`cotj.planning.dense`: :class:`DenseCost`, any cost of jumps between levels;
- :mod:`cotj.planning.objectives`: what a plan minimises (:func:`objective`, :class:`TeacherCost`);
- :mod:`cotj.planning.multistep`: plans for the solver that runs them (pair costs, :func:`plan_multistep`);
- :mod:`cotj.planning.dna`: the shipped mean DNAs, reading and aligning DNA;
- :mod:`cotj.planning.schedules`: grids, Gaussian paths and fixed baseline levels.
"""

from cotj.planning.dense import DenseCost
from cotj.planning.dna import align_dna, gains, load_dna, mean_dna, mean_dna_names
from cotj.planning.objectives import OBJECTIVES, TeacherCost, objective
from cotj.planning.planner import (
    DEFAULT_BUDGET,
    Plan,
    PlanBatch,
    PlanError,
    Planner,
    cost_matrix,
    plan,
    plan_batch,
    plan_cost,
)
from cotj.planning.schedules import Schedule, default_grid

__all__ = [
    "DEFAULT_BUDGET",
    "DenseCost",
    "OBJECTIVES",
    "Plan",
    "PlanBatch",
    "PlanError",
    "Planner",
    "Schedule",
    "TeacherCost",
    "align_dna",
    "cost_matrix",
    "default_grid",
    "gains",
    "load_dna",
    "mean_dna",
    "mean_dna_names",
    "objective",
    "plan",
    "plan_batch",
    "plan_cost",
]
