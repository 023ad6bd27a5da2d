"""The per-sample study's pieces (cotj_testbed.per_sample) against brute force, on small analytic teacher runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cotj  # noqa: E402
from cotj.models.analytic import FlowMixtureModel, MixtureFamily  # noqa: E402
from cotj.predict.teacher import euler_trajectories  # noqa: E402
from cotj_testbed.per_sample import (  # noqa: E402
    closed_loop_plan,
    cost_set,
    log_row_scales,
    per_sample_grams,
    plan_cost,
    plan_nodes,
    regret_db,
)

N = 9


@pytest.fixture(scope="module")
def runs():
    noise = torch.randn(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    traj = euler_trajectories(FlowMixtureModel(MixtureFamily(dim=5, seed=2)), noise, torch.arange(6) % 3,
                              cotj.default_grid(N), prediction="flow")  # fmt: skip
    return traj, per_sample_grams(traj.states, traj.x0)


def test_per_sample_grams_average_to_the_trajectories_gram(runs):
    traj, grams = runs
    np.testing.assert_allclose(grams.mean(0), traj.gram(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_plans_are_the_cheapest_by_exhaustive_search_and_regret_is_zero_there(runs, solver):
    _, grams = runs
    own = cost_set(solver, grams, cotj.default_grid(N))
    for budget in (2, 3, 4):
        plans = []
        for b in range(own.end.shape[0]):
            c = own.one(b)
            best = min(plan_cost(c, (N, *rest)) for rest in itertools.combinations(range(N - 1, 0, -1), budget - 1))
            nodes = plan_nodes(c, budget, N)
            assert nodes[0] == N and len(nodes) == budget
            assert plan_cost(c, nodes) == pytest.approx(best, rel=1e-12)
            plans.append(list(nodes))
        np.testing.assert_allclose(regret_db(own, plans, budget), 0.0, atol=1e-9)
        worse = [[N, *range(budget - 1, 0, -1)] for _ in plans]  # the lowest levels: never better
        assert np.all(regret_db(own, worse, budget) >= -1e-9)


def test_mixing_one_sample_gives_its_costs_and_its_own_cost_gives_its_ceiling(runs):
    _, grams = runs
    own = cost_set("unipc", grams, cotj.default_grid(N))
    w = np.zeros(own.end.shape[0])
    w[3] = 1.0
    mixed = own.mix(w)
    np.testing.assert_allclose(mixed.first, own.first[3])
    np.testing.assert_allclose(mixed.pairs, own.pairs[3].astype(np.float64))
    plans = [closed_loop_plan(lambda b, j, nodes: (own.one(b), None), b, 4, top=N) for b in range(own.end.shape[0])]
    np.testing.assert_allclose(regret_db(own, plans, 4), 0.0, atol=1e-6)  # float32 pairs: planning on them is exact


def test_log_row_scales_are_zero_for_the_mean_and_shift_with_a_scaled_sample(runs):
    _, grams = runs
    own = cost_set("euler", grams, cotj.default_grid(N))
    w = np.full(own.end.shape[0], 1.0 / own.end.shape[0])
    mean = own.mix(w)
    rows = log_row_scales(own, mean)
    assert rows.shape == own.end.shape and np.all(rows[:, 0] == 0)
    np.testing.assert_allclose(np.log(np.exp(rows[:, 1:]).mean(0)), 0.0, atol=1e-9)  # the mean ratio of the mean is 1
