"""The dense-cost keywords of the previous release (``cost=``, ``start=``, ``end=``, ``scale=``, a splatted
``cotj.objective``, ``TeacherCost.plan_kwargs``) still plan the same and each warn, for one release."""

from __future__ import annotations

import numpy as np
import pytest

import cotj
from cotj.planning.objectives import TeacherCost

N = 12


def _teacher() -> TeacherCost:
    rng = np.random.default_rng(0)
    grid = cotj.default_grid(N)
    edges = np.tril(rng.uniform(0.1, 1.0, (N, N)) * np.subtract.outer(grid, grid) ** 2, -1)
    edges[np.triu_indices(N)] = np.inf
    return TeacherCost(grid, edges, rng.uniform(0.01, 0.1, N), 4)


def test_dense_keywords_warn_and_plan_as_a_dense_cost() -> None:
    rng = np.random.default_rng(1)
    m = rng.uniform(0.0, 1.0, (N, N))
    start, end, scale = rng.uniform(-1, 0, N), rng.uniform(0, 1, N), rng.uniform(0.5, 2, N)
    new = cotj.plan(cotj.DenseCost(m, start=start, end=end, scale=scale), 4)
    with pytest.warns(DeprecationWarning, match=r"cost=, start=, end= and scale= keywords.*cotj\.DenseCost"):
        old = cotj.plan(None, 4, cost=m, start=start, end=end, scale=scale)
    np.testing.assert_array_equal(old.steps, new.steps)
    assert old.cost == new.cost
    with pytest.warns(DeprecationWarning):
        assert cotj.plan_cost(None, new.steps, cost=m, start=start, end=end, scale=scale) == pytest.approx(new.cost)
    with pytest.raises(cotj.PlanError, match="start go in the DenseCost"):
        cotj.plan(cotj.DenseCost(m), 4, start=start)


def test_a_splatted_objective_and_plan_kwargs_warn_and_plan_the_same() -> None:
    tc = _teacher()
    new = cotj.plan_batch(cotj.objective("teacher", teacher=tc), 3, current=N - 1)
    with pytest.warns(DeprecationWarning, match=r"splatting an objective"):
        old = cotj.plan_batch(**cotj.objective("teacher", teacher=tc), budget=3, current=N - 1)
    np.testing.assert_array_equal(old.steps, new.steps)
    with pytest.warns(DeprecationWarning, match=r"TeacherCost.plan_kwargs.*TeacherCost.dense"):
        kwargs = tc.plan_kwargs()
    np.testing.assert_array_equal(cotj.plan_batch(None, 3, current=N - 1, **kwargs).steps, new.steps)
    np.testing.assert_array_equal(new.levels[0], tc.grid[new.steps[0]])


def test_renamed_step_keywords_warn_and_mean_the_same() -> None:
    from cotj.planning import schedules, solvers

    with pytest.warns(DeprecationWarning, match=r"uniform\(k=\.\.\.\).*uniform\(budget=\.\.\.\)"):
        np.testing.assert_array_equal(schedules.uniform(k=5), schedules.uniform(budget=5))
    with pytest.warns(DeprecationWarning, match=r"budget_for\(evaluations=\.\.\.\)"):
        assert solvers.budget_for("heun", evaluations=9) == solvers.budget_for("heun", nfe=9) == 5
    with pytest.raises(TypeError, match="got k= and budget="):
        schedules.karras(k=3, budget=3)
