"""Teacher costs measured on teacher runs (cotj.predict.teacher): calibrate's edges and end costs are the local
errors of one Euler step, and fit_teacher_cost's row model recovers a per-sample difficulty."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ANALYTIC_GRID, analytic_inputs, needs_extra

pytestmark = [needs_extra("torch"), pytest.mark.usefixtures("one_torch_thread")]

import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.models.analytic import FlowMixtureModel, MixtureFamily  # noqa: E402
from cotj.predict.teacher import euler_trajectories, fit_teacher_cost  # noqa: E402

GRID = ANALYTIC_GRID


def test_teacher_cost_is_the_directly_measured_local_error(analytic_teacher):
    """Edges and end costs equal one Euler step of the model from the teacher's state, measured here directly."""
    model = FlowMixtureModel(MixtureFamily(dim=6, seed=0))
    noise, cond = analytic_inputs(24, 0)
    traj = euler_trajectories(model, noise, cond, GRID)
    x = torch.from_numpy(traj.states)
    for j, i in [(11, 3), (6, 5), (11, 10), (4, 0)]:  # grid indices; node = index + 1, node 0 = the endpoint
        t = torch.full((24,), GRID[j], dtype=torch.float64)
        landed = x[:, j + 1] + (GRID[i] - GRID[j]) * model(x[:, j + 1], t, cond)
        measured = ((landed - x[:, i + 1]) ** 2).mean(1).mean().item()
        assert analytic_teacher.edges[j, i] == pytest.approx(measured, rel=1e-9)
    last = x[:, 5] - GRID[4] * model(x[:, 5], torch.full((24,), GRID[4], dtype=torch.float64), cond)
    assert analytic_teacher.end[4] == pytest.approx(((last - x[:, 0]) ** 2).mean(1).mean().item(), rel=1e-9)
    assert np.all(np.isinf(analytic_teacher.edges[np.triu_indices(12)])) and analytic_teacher.n_samples == 24


@pytest.mark.diffusers
def test_row_model_recovers_a_planted_per_level_difficulty():
    """Samples whose first feature is high are 8 times costlier at levels above the middle: the fitted row
    model scales those rows up for such a sample, and its plan (and the replanner's next step) keeps its steps
    higher."""
    from cotj.execute.replan import Replanner

    rng = np.random.default_rng(0)
    n, c = 12, 200
    base = np.tril(np.subtract.outer(np.arange(n + 1), np.arange(n + 1)) ** 2 * 1e-3 + 1e-4, -1)
    hard = rng.random(c) < 0.5
    feats = rng.normal(scale=0.1, size=(c, n, 2))
    feats[:, :, 0] += np.where(hard, 2.0, -2.0)[:, None]
    costs = np.tile(base, (c, 1, 1)) * rng.lognormal(0, 0.05, (c, n + 1, n + 1))
    costs[np.ix_(hard, np.arange(n // 2 + 1, n + 1), np.arange(n + 1))] *= 8.0
    costs[:, np.triu_indices(n + 1)[0], np.triu_indices(n + 1)[1]] = np.inf
    tc = fit_teacher_cost(costs, feats, cotj.default_grid(n), ridge=0.0)
    assert tc.rows is not None
    scale = tc.rows.log_scale(np.array([n - 1, n - 1]), np.array([[2.0, 0.0], [-2.0, 0.0]]))
    assert scale[0, -1] - scale[1, -1] == pytest.approx(np.log(8.0), abs=0.1)
    assert abs(scale[0, 1] - scale[1, 1]) < 0.1
    hard_plan, easy_plan = (cotj.plan_batch(tc.dense(s[None]), 5, current=n - 1).steps[0] for s in scale)
    assert np.all(hard_plan >= easy_plan) and np.any(hard_plan > easy_plan)  # the hard sample's steps stay higher
    assert Replanner(tc, 5).next_scaled(np.array([n - 1]), 1, scale[:1])[0] == hard_plan[1]
