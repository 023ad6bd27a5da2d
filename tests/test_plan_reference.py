"""The planner on the two real mean DNAs released with the paper, against an independent
networkx implementation of the paper's formulation (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

import cotj
import reference as ref

K_MAX = 50


@pytest.fixture(scope="module", params=["qwenimage", "zimageturbo"])
def case(request):
    from conftest import mean_dna

    d = mean_dna(request.param)
    grid = cotj.default_grid(len(d))
    curve, plans = ref.networkx_curve(d, grid, K_MAX)
    return request.param, d, grid, curve, plans


def test_fixed_budgets_match_networkx(case):
    name, d, grid, curve, plans = case
    batch = cotj.plan_batch(np.tile(d, (K_MAX, 1)), np.arange(1, K_MAX + 1))
    for k in range(1, K_MAX + 1):
        p = batch[k - 1]
        assert p.cost == pytest.approx(curve[k - 1], rel=1e-12, abs=1e-15), (name, k)
        assert list(p.steps) == plans[k], (name, k)
        np.testing.assert_array_equal(p.levels, grid[plans[k]])


def test_adaptive_tau_099_matches_networkx(case):
    name, d, grid, curve, plans = case
    for k_max in (8, 20, K_MAX):
        p = cotj.plan(d, tau=0.99, max_steps=k_max)
        k = ref.adaptive_choice(curve[:k_max], 0.99)
        assert p.budget == k, (name, k_max)
        assert list(p.steps) == plans[k]
        np.testing.assert_allclose(p.curve, curve[:k_max], rtol=1e-12, atol=1e-15)


def test_distilled_model_skips_the_harmful_top_level():
    """Z-Image-Turbo's DNA drops at t = 1 (a negative gain): short plans start below the top."""
    from conftest import mean_dna

    d = mean_dna("zimageturbo")
    assert cotj.gains(d)[-1] < 0
    for k in (2, 4, 8):
        assert cotj.plan(d, k).steps[0] < 99
    assert cotj.plan(d, 4, first="top").cost > cotj.plan(d, 4).cost
