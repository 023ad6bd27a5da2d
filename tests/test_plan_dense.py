"""Planning on explicit dense costs, and from a given current level, against exhaustive search
(hypothesis); the DNA form equals the dense form with cost = L, scale = d, start = -d, end = d."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import cotj
import reference as ref
from cotj import _core
from test_plan_optimality import dna_values, window

N_MAX = 10

# Costs of either sign, with missing edges / starts / ends (+inf) now and then.
entries = st.floats(-5.0, 5.0, allow_nan=False) | st.just(np.inf)
weights = st.floats(0.0, 3.0) | st.just(0.0)


@st.composite
def dense(draw, n, rows=None):
    """``(cost, start, end, scale)`` on n levels; with ``rows`` each array is shared (one row)
    or batched (``rows`` rows) at random, and scale may be absent."""
    def shape(per_row):
        if rows is None:
            return per_row
        return (rows, *per_row) if draw(st.booleans()) else per_row

    m = draw(arrays(np.float64, shape((n, n)), elements=entries))
    start = draw(arrays(np.float64, shape((n,)), elements=entries))
    end = draw(arrays(np.float64, shape((n,)), elements=entries))
    scale = draw(st.none() | arrays(np.float64, shape((n,)), elements=weights))
    return m, start, end, scale


@st.composite
def instances(draw):
    n = draw(st.integers(2, N_MAX))
    first = draw(st.sampled_from(["any", "top"]) | st.integers(1, n))
    last = draw(st.sampled_from(["any", "bottom"]) | st.integers(1, n))
    current = draw(st.none() | st.integers(n - window(first, n), n - 1))
    return n, draw(dense(n)), first, last, current


def exhaustive(n, k, m, start, end, scale, first="any", last="any", current=None):
    w = np.ones(n) if scale is None else scale
    return ref.exhaustive(n, k, lambda s: ref.dense_cost(m, start, end, w, s), window(first, n), window(last, n), current)


@settings(max_examples=200, deadline=None)
@given(instances())
def test_every_budget_matches_exhaustive_search(inst):
    n, (m, start, end, scale), first, last, current = inst
    planner = cotj.Planner(first=first, last=last)
    for k in range(1, n + 1):
        best, optimal = exhaustive(n, k, m, start, end, scale, first, last, current)
        cost = cotj.DenseCost(m, start=start, end=end, scale=scale)
        if not optimal:
            with pytest.raises(ValueError, match="infeasible"):
                planner.plan(cost, k, current=current)
            continue
        p = planner.plan(cost, k, current=current)
        assert p.cost == pytest.approx(best, rel=1e-12, abs=1e-12)
        assert list(p.steps) in optimal
        assert current is None or p.steps[0] == current
        own = cotj.plan_cost(cotj.DenseCost(m, start=start, end=end, scale=scale), p.steps)
        assert own == pytest.approx(p.cost, rel=1e-12, abs=1e-12)
        np.testing.assert_array_equal(p.levels, cotj.default_grid(n)[p.steps])


@settings(max_examples=100, deadline=None)
@given(st.integers(2, N_MAX).flatmap(lambda n: st.tuples(st.just(n), dense(n))), st.floats(0.05, 1.0), st.data())
def test_adaptive_length_follows_the_exhaustive_curve(inst, tau, data):
    n, (m, start, end, scale) = inst
    kmax = data.draw(st.integers(1, n))
    current = data.draw(st.none() | st.integers(0, n - 1))
    curve = np.array([exhaustive(n, k, m, start, end, scale, current=current)[0] for k in range(1, kmax + 1)])
    cost = cotj.DenseCost(m, start=start, end=end, scale=scale)
    kwargs = dict(tau=tau, max_steps=kmax, current=current)
    if not np.any(np.isfinite(curve)):
        with pytest.raises(ValueError, match=f"max_steps = {kmax} is infeasible"):
            cotj.plan(cost, **kwargs)
        return
    p = cotj.plan(cost, **kwargs)
    np.testing.assert_allclose(p.curve, curve, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.ratio, ref.ratio(curve), rtol=1e-9, atol=1e-12)
    assert p.budget == ref.adaptive_choice(p.curve, tau)
    assert p.cost == p.curve[p.budget - 1]
    assert current is None or p.steps[0] == current


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(2, 6), st.integers(1, 20)).flatmap(lambda nb: st.tuples(st.just(nb), dense(nb[0], nb[1]))), st.data())
def test_batched_shared_and_scaled_forms_plan_each_row_optimally(inst, data):
    (n, b), (m, start, end, scale) = inst
    rows = max([1] + [a.shape[0] for a, per_row in ((m, 3), (start, 2), (end, 2), (scale, 2)) if a is not None and a.ndim == per_row])
    budget = data.draw(arrays(np.int64, rows, elements=st.integers(1, n)))
    current = data.draw(st.none() | arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    cost = cotj.DenseCost(m, start=start, end=end, scale=scale)
    expected = []
    for r in range(rows):
        arrs = [a if a is None or a.ndim == base else a[r] for a, base in ((m, 2), (start, 1), (end, 1), (scale, 1))]
        k, c = int(budget[r]), None if current is None else int(current[r])
        if c is not None and k > c + 1:
            with pytest.raises(ValueError, match=rf"budget\[{r}\] = {k} is infeasible with current\[{r}\] = {c}"):
                cotj.plan_batch(cost, budget, current=current)
            return
        expected.append(exhaustive(n, k, *arrs, current=c))
    if any(not optimal for _, optimal in expected):
        with pytest.raises(ValueError, match="infeasible for row"):
            cotj.plan_batch(cost, budget, current=current)
        return
    batch = cotj.plan_batch(cost, budget, current=current)
    np.testing.assert_array_equal(batch.lengths, budget)
    for r, (best, optimal) in enumerate(expected):
        assert list(batch[r].steps) in optimal
        assert batch.cost[r] == pytest.approx(best, rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (7, 30), elements=dna_values), st.data())
def test_the_dna_form_is_the_dense_form_with_the_lever(dna, data):
    """Same steps and bit-identical costs, for every length rule, window and current level
    (with the planner's own lever values)."""
    n = dna.shape[1]
    lev = _core.Lever.default(n).matrix()
    first = data.draw(st.sampled_from(["any", "top", 5]))
    last = data.draw(st.sampled_from(["any", "bottom", 5]))
    lo = n - window(first, n)
    current = data.draw(st.none() | st.integers(max(lo, 10), n - 1))
    lengths = data.draw(st.sampled_from([{"budget": 6}, {"budget": np.arange(7) % 5 + 2}, {"tau": 0.9, "max_steps": 10}]))
    planner = cotj.Planner(first=first, last=last)
    as_dna = planner.plan_batch(dna, current=current, **lengths)
    as_dense = planner.plan_batch(cotj.DenseCost(lev, start=-dna, end=dna, scale=dna), current=current, **lengths)
    for field in ("steps", "levels", "lengths", "cost", "curve", "ratio"):
        np.testing.assert_array_equal(getattr(as_dense, field), getattr(as_dna, field), err_msg=field)
    one = planner.plan(cotj.DenseCost(lev, start=-dna[0], end=dna[0], scale=dna[0]), 6, current=current)
    np.testing.assert_array_equal(one.steps, planner.plan(dna[0], 6, current=current).steps)
    assert one.cost == planner.plan(dna[0], 6, current=current).cost


def test_the_dna_form_is_the_dense_form_on_real_dna_in_float32(real_dna):
    lev = _core.Lever.default(100).matrix()
    rng = np.random.default_rng(1)
    dna = (real_dna * rng.uniform(0.5, 2.0, (64, 1))).astype(np.float32)
    d64 = dna.astype(np.float64)
    as_dna = cotj.plan_batch(dna, 8)
    as_dense = cotj.plan_batch(cotj.DenseCost(lev, start=-d64, end=d64, scale=dna), 8)
    np.testing.assert_array_equal(as_dense.steps, as_dna.steps)
    np.testing.assert_array_equal(as_dense.cost, as_dna.cost)
    ties = cotj.plan_batch(cotj.DenseCost(np.zeros((50, 50)), scale=np.zeros((4, 50))), 7)
    np.testing.assert_array_equal(ties.steps, cotj.plan_batch(np.zeros((4, 50)), 7).steps)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, N_MAX).flatmap(lambda n: arrays(np.float64, n, elements=dna_values)), st.data())
def test_current_plans_the_rest_of_the_trajectory(d, data):
    """DNA form: with current = j and budget k the plan is the best k-level plan that starts at j."""
    n = len(d)
    lev = ref.lever(cotj.default_grid(n))
    last = data.draw(st.sampled_from(["any", "bottom"]) | st.integers(1, n))
    j = data.draw(st.integers(0, n - 1))
    for k in range(1, n + 1):
        best, optimal = ref.brute_force(d, k, lev, last=window(last, n), current=j)
        if not optimal:
            with pytest.raises(ValueError, match=f"budget = {k} is infeasible with current = {j}"):
                cotj.plan(d, k, current=j, last=last)
            continue
        p = cotj.plan(d, k, current=j, last=last)
        assert p.steps[0] == j and list(p.steps) in optimal
        assert p.cost == pytest.approx(best, rel=1e-12, abs=1e-12)


def test_replanning_from_the_current_level_keeps_an_optimal_tail(real_dna):
    """The tail of an optimal plan is an optimal plan from its own first level (Bellman): a
    sampler replanning after each step with the budget it has left keeps the same plan."""
    full = cotj.plan(real_dna, 8)
    for m in range(1, 8):
        rest = cotj.plan(real_dna, 8 - m, current=int(full.steps[m]))
        np.testing.assert_array_equal(rest.steps, full.steps[m:])
