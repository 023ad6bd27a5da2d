"""The solvers cotj plans for and runs, by name: one registry for the planner, the executor, the CLI and the tests.

Each entry holds a solver's order, its NFE rule and the Diffusers scheduler that runs it in a pipeline; the steps
themselves are in :mod:`cotj.execute.solvers`, their costs in :mod:`cotj.planning.multistep` (docs/method.md §11).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cotj._deprecation import renamed

__all__ = ["MULTISTEP", "SOLVERS", "Solver", "budget_for", "evaluation_levels", "get_solver", "nfe"]


@dataclass(frozen=True)
class Solver:
    """A solver of :data:`SOLVERS`.

    Attributes:
        name: its key.
        order: its nominal order (Diffusers' ``solver_order``): 1 for euler, 2 for the others.
        evaluations: model evaluations per level, not counting the final step to 0.
        final: model evaluations of the final step (from the last level to t = 0).
        multistep: whether its step reuses the previous level's clean estimate (its plans are made over pairs).
        scheduler: the Diffusers scheduler that runs it inside a pipeline (:func:`cotj.execute.solver_scheduler`).
    """

    name: str
    order: int
    evaluations: int
    final: int
    multistep: bool
    scheduler: str

    @property
    def replans(self) -> bool:
        """Whether closed-loop replanning can run it: one model evaluation per level."""
        return self.evaluations == 1

    def nfe(self, budget: int) -> int:
        """Model evaluations of a run on ``budget`` >= 1 levels: ``evaluations·(budget - 1) + final``."""
        return self.evaluations * (int(budget) - 1) + self.final

    def evaluation_levels(self, levels: ArrayLike) -> NDArray[np.float64]:
        """(NFE,) the levels the model is evaluated at, in order, for one row's levels (K,) (Heun:
        ``t0, t1, t1, t2, t2, ..., t_{K-1}, t_{K-1}``)."""
        lv = np.asarray(levels, dtype=np.float64)
        return lv if self.evaluations == 1 else np.repeat(lv, self.evaluations)[self.evaluations - self.final:]


SOLVERS: dict[str, Solver] = {
    "euler": Solver("euler", 1, 1, 1, False, "FlowMatchEulerDiscreteScheduler"),
    "heun": Solver("heun", 2, 2, 1, False, "FlowMatchHeunDiscreteScheduler (sigmas=: FlowMatchHeunExactScheduler)"),
    "dpmpp_2m": Solver("dpmpp_2m", 2, 1, 1, True, "DPMSolverMultistepScheduler (sigmas=: DPMSolverExactScheduler)"),
    "unipc": Solver("unipc", 2, 1, 1, True, "FlowMatchUniPCScheduler (cotj's own; Diffusers' rounds timesteps)"),
}
"""The solvers by name."""

MULTISTEP: tuple[str, ...] = tuple(name for name, s in SOLVERS.items() if s.multistep)
"""The solvers whose step reuses the previous level's estimate: ``("dpmpp_2m", "unipc")``."""


def get_solver(name: object) -> Solver:
    """The :class:`Solver` called ``name``; ValueError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {', '.join(SOLVERS)}")
    return SOLVERS[name]


@renamed(k="budget")
def nfe(solver: str, budget: int | ArrayLike) -> Any:
    """Model evaluations of ``solver`` on ``budget`` levels (an int, or an array of per-row lengths -> int array):
    the budget for euler, dpmpp_2m and unipc, 2·budget - 1 for heun."""
    s = get_solver(solver)
    if np.ndim(budget) == 0:
        return s.nfe(int(np.asarray(budget)))
    return s.evaluations * (np.asarray(budget, dtype=np.int64) - 1) + s.final


@renamed(evaluations="nfe")
def budget_for(solver: str, nfe: int) -> int:
    """The most levels whose run costs at most ``nfe`` model evaluations (>= 1): equal-NFE budgets
    (heun: ``(NFE + 1) // 2``)."""
    s = get_solver(solver)
    if isinstance(nfe, bool) or not isinstance(nfe, (int, np.integer)) or nfe < s.final:
        raise ValueError(f"nfe must be an int >= {s.final}, got {nfe!r}")
    return (int(nfe) - s.final) // s.evaluations + 1


def evaluation_levels(solver: str, levels: ArrayLike) -> NDArray[np.float64]:
    """(NFE,) the levels ``solver`` evaluates the model at on one row's levels (K,), in order."""
    return get_solver(solver).evaluation_levels(levels)
