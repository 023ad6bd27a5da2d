"""The planner against exhaustive search (hypothesis), and its internal consistency."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import cotj
import reference as ref
from cotj.planning import schedules

N_MAX = 12

dna_values = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False)


@st.composite
def instances(draw):
    n = draw(st.integers(2, N_MAX))
    d = draw(arrays(np.float64, n, elements=dna_values))
    raw = draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n, unique=True))
    grid = np.sort(np.asarray(raw))
    grid /= grid[-1]
    first = draw(st.sampled_from(["any", "top"]) | st.integers(1, n))
    last = draw(st.sampled_from(["any", "bottom"]) | st.integers(1, n))
    vp = draw(st.booleans())
    return d, grid, first, last, vp


def window(value, n):
    return {"any": n, "top": 1, "bottom": 1}.get(value, value)


@settings(max_examples=150, deadline=None)
@given(instances())
def test_every_budget_matches_exhaustive_search(inst):
    d, grid, first, last, vp = inst
    if np.any(np.diff(grid) <= 1e-6):
        return  # levels this close make the vp schedule's a/s flat, which schedules.vp refuses
    n = len(d)
    schedule = schedules.vp(grid, np.linspace(0.999, 0.01, 1000)) if vp else None
    lev = ref.lever(grid, *(schedule or (None, None)))
    planner = cotj.Planner(grid, schedule, first=first, last=last)
    for k in range(1, n + 1):
        best, optimal = ref.brute_force(d, k, lev, window(first, n), window(last, n))
        if not optimal:
            with pytest.raises(ValueError, match="infeasible"):
                planner.plan(d, k)
            continue
        p = planner.plan(d, k)
        assert p.cost == pytest.approx(best, rel=1e-12, abs=1e-12)
        assert list(p.steps) in optimal
        assert planner.plan_cost(d, p.steps) == pytest.approx(p.cost, rel=1e-12, abs=1e-12)
        np.testing.assert_array_equal(p.levels, grid[p.steps])


@settings(max_examples=100, deadline=None)
@given(st.integers(2, N_MAX).flatmap(lambda n: arrays(np.float64, n, elements=dna_values)), st.floats(0.05, 1.0))
def test_adaptive_length_is_the_smallest_reaching_tau(d, tau):
    n = len(d)
    lev = ref.lever(cotj.default_grid(n))
    p = cotj.plan(d, tau=tau, max_steps=n)
    curve = np.array([ref.brute_force(d, k, lev)[0] for k in range(1, n + 1)])
    np.testing.assert_allclose(p.curve, curve, rtol=1e-12, atol=1e-12)
    total = curve[0] - curve[-1]
    ratio = (curve[0] - curve) / total if total > 0 else np.ones(n)
    np.testing.assert_allclose(p.ratio, ratio, rtol=1e-9, atol=1e-12)
    k = p.budget
    assert p.ratio[k - 1] >= tau and np.all(p.ratio[: k - 1] < tau)
    assert p.cost == p.curve[k - 1]


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(1, 40), st.integers(2, 30)).flatmap(lambda shape: arrays(np.float64, shape, elements=dna_values)),
    st.data(),
)
def test_batch_equals_one_by_one(dna, data):
    b, n = dna.shape
    budget = data.draw(arrays(np.int64, b, elements=st.integers(1, n)))
    batch = cotj.plan_batch(dna, budget)
    np.testing.assert_array_equal(batch.lengths, budget)
    for r in range(b):
        one = cotj.plan(dna[r], int(budget[r]))
        np.testing.assert_array_equal(batch[r].steps, one.steps)
        assert batch.cost[r] == one.cost
        assert np.all(batch.steps[r, budget[r]:] == -1) and np.all(np.isnan(batch.levels[r, budget[r]:]))
    adaptive = cotj.plan_batch(dna, tau=0.9, max_steps=n)
    for r in range(b):
        one = cotj.plan(dna[r], tau=0.9, max_steps=n)
        np.testing.assert_array_equal(adaptive[r].steps, one.steps)
        np.testing.assert_array_equal(adaptive.curve[r], one.curve)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (5, 40), elements=st.floats(0.0, 1.0, width=32)), st.integers(1, 40))
def test_float32_matches_float64(dna, k):
    lo = cotj.plan_batch(dna, k)
    hi = cotj.plan_batch(dna.astype(np.float64), k)
    np.testing.assert_array_equal(lo.steps, hi.steps)  # same values once widened to f64
    np.testing.assert_allclose(lo.cost, hi.cost, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, 60, elements=st.floats(1e-4, 1.0)), st.integers(1, 30))
def test_float32_input_plans_within_tolerance_of_float64(dna, k):
    """Rounding the DNA to float32 may change the plan only among near-equal costs."""
    exact = cotj.plan(dna, k)
    rounded = cotj.plan(dna.astype(np.float32), k)
    assert cotj.plan_cost(dna, rounded.steps) == pytest.approx(exact.cost, rel=1e-5, abs=1e-6)


def test_one_step_plans_cost_nothing(real_dna):
    p = cotj.plan(real_dna, 1)
    assert p.cost == 0.0 and p.budget == 1


def test_pinned_ends_are_honoured(real_dna):
    p = cotj.plan(real_dna, 6, first="top", last="bottom")
    assert p.steps[0] == 99 and p.steps[-1] == 0
    windowed = cotj.plan(real_dna, 6, first=5, last=3)
    assert windowed.steps[0] >= 95 and windowed.steps[-1] < 3
    free = cotj.plan(real_dna, 6)
    assert free.cost <= windowed.cost <= p.cost


def test_equal_costs_break_the_same_way():
    dna = np.zeros((64, 50))  # every plan costs 0: a tie everywhere
    plans = [cotj.plan_batch(dna, 7) for _ in range(3)]
    for p in plans:
        np.testing.assert_array_equal(p.steps, plans[0].steps)
        assert np.all(p.steps == p.steps[0])


def test_level_costs_interpolate_the_dna(real_dna):
    p = cotj.plan(real_dna, 8)
    assert cotj.plan_cost(real_dna, p.levels) == pytest.approx(p.cost, rel=1e-12)
    off_grid = np.array([0.995, 0.6, 0.305])
    grid = cotj.default_grid(100)
    dense = np.interp(off_grid[::-1], grid, real_dna)[::-1]
    lev = ref.lever(off_grid[::-1])[::-1, ::-1]
    expect = ref.cost(dense, [0, 1, 2], lev)
    assert cotj.plan_cost(real_dna, off_grid) == pytest.approx(expect, rel=1e-12)


def test_cost_matrix_holds_the_edges(real_dna):
    m = cotj.cost_matrix(real_dna)
    lev = ref.lever(cotj.default_grid(100))
    below = np.tril(np.ones((100, 100), dtype=bool), k=-1)
    np.testing.assert_allclose(m[below], (real_dna[:, None] * lev)[below], rtol=1e-14)
    assert np.all(np.isinf(m[~below]))


def test_cotj_portable_takes_effect():
    """CI runs this file a second time with COTJ_PORTABLE=1, through the portable (non-FMA) DP kernel."""
    from cotj import _core

    assert _core.KERNEL == ("portable" if os.environ.get("COTJ_PORTABLE") == "1" else _core.KERNEL)
    assert _core.KERNEL in ("fused", "portable")
