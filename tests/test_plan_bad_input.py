"""Every kind of bad input gets a ValueError (cotj.PlanError from the planner) or TypeError naming the
argument; none crashes."""

from __future__ import annotations

import numpy as np
import pytest

import cotj
from cotj import _core

D = np.linspace(0.01, 1.0, 20)
B = np.tile(D, (3, 1))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: cotj.plan_batch(np.where(np.arange(20) == 4, np.nan, B), 4), ValueError, r"dna\[0, 4\] = NaN: dna must be finite"),
        (lambda: cotj.plan_batch(np.where(np.arange(20) == 7, np.inf, B), 4), ValueError, r"dna\[0, 7\] = inf: dna must be finite"),
        (lambda: cotj.plan_batch(B * np.array([[1], [1], [-1]]), 4), ValueError, r"dna\[2, 0\] = -0.01: dna must be non-negative"),
        (lambda: cotj.plan_batch(D, 4), ValueError, r"dna must be 2-D \(B, N\)"),
        (lambda: cotj.plan(B, 4), ValueError, r"dna must be 1-D \(N,\)"),
        (lambda: cotj.plan_batch(B[None], 4), ValueError, r"dna must be 2-D"),
        (lambda: cotj.plan_batch(np.zeros((0, 20)), 4), ValueError, r"dna is empty"),
        (lambda: cotj.plan(np.array([0.5]), 1), ValueError, r"dna must have at least 2 levels, got 1"),
        (lambda: cotj.plan(np.array([0.5]), 1, grid=np.array([1.0])), ValueError, r"grid must have at least 2 levels, got 1"),
        (lambda: cotj.plan(D.astype(complex), 4), TypeError, r"dna must be a real numeric array.*complex"),
        (lambda: cotj.plan(np.array(["a", "b"]), 1), TypeError, r"dna must be a real numeric array"),
        (lambda: cotj.plan([0.1, None, 0.3], 1), TypeError, r"dna must be a real numeric array.*object"),
        (lambda: cotj.plan(D.astype(bool), 1), TypeError, r"dna must be a real numeric array.*bool"),
        (lambda: cotj.plan(D, 0), ValueError, r"budget must lie in 1..=20"),
        (lambda: cotj.plan(D, 21), ValueError, r"budget must lie in 1..=20"),
        (lambda: cotj.plan(D, 8.0), TypeError, r"budget must be an int"),
        (lambda: cotj.plan(D, True), TypeError, r"budget must be an int"),
        (lambda: cotj.plan(D, 1, first="top", last="bottom"), ValueError, r"budget = 1 is infeasible"),
        (lambda: cotj.plan(D, 1, first=5, last=10), ValueError, r"budget = 1 is infeasible"),
        (lambda: cotj.plan_batch(B, [3, 4]), ValueError, r"budget has 2 entries but the batch has 3 rows"),
        (lambda: cotj.plan_batch(B, [3, 0, 4]), ValueError, r"budget\[1\] must lie in 1..=20"),
        (lambda: cotj.plan_batch(B, np.array([3.0, 1.0, 4.0])), TypeError, r"budget must be an int or an int array"),
        (lambda: cotj.plan_batch(B, np.ones((3, 1), dtype=int)), ValueError, r"budget array must be 1-D"),
        (lambda: cotj.plan(D, tau=0.0), ValueError, r"tau must lie in \(0, 1\]"),
        (lambda: cotj.plan(D, tau=1.5), ValueError, r"tau must lie in \(0, 1\]"),
        (lambda: cotj.plan(D, tau=float("nan")), ValueError, r"tau must lie in \(0, 1\]"),
        (lambda: cotj.plan(D, tau="high"), TypeError, r"tau must be a float"),
        (lambda: cotj.plan(D, 4, tau=0.9), ValueError, r"either budget .* or tau"),
        (lambda: cotj.plan(D, 4, max_steps=10), ValueError, r"max_steps goes with tau"),
        (lambda: cotj.plan(D, tau=0.9, max_steps=0), ValueError, r"max_steps must lie in 1..=20"),
        (lambda: cotj.plan(D, tau=0.9, max_steps=2.5), TypeError, r"max_steps must be an int"),
        (lambda: cotj.plan(D, 4, first=0), ValueError, r"first must allow between 1 and 20 levels"),
        (lambda: cotj.plan(D, 4, last=21), ValueError, r"last must allow between 1 and 20 levels"),
        (lambda: cotj.plan(D, 4, first="bottom"), ValueError, r"first must be 'any', 'top'"),
        (lambda: cotj.plan(D, 4, grid=np.linspace(0.1, 1, 19)), ValueError, r"dna has 20 levels per row but the grid has 19"),
        (lambda: cotj.plan(D, 4, grid=np.linspace(1, 0.05, 20)), ValueError, r"grid must be strictly ascending"),
        (lambda: cotj.plan(D, 4, grid=np.linspace(0, 1, 20)), ValueError, r"grid must lie in \(0, 1\]: grid\[0\] = 0"),
        (lambda: cotj.plan(D, 4, grid=np.linspace(0.1, 1.5, 20)), ValueError, r"grid must lie in \(0, 1\]"),
        (lambda: cotj.plan(D, 4, grid=np.linspace(0.05, 1, 20).reshape(4, 5)), ValueError, r"grid must be 1-D"),
        (lambda: cotj.plan(D, 4, schedule=(D, D)), ValueError, r"schedule needs grid"),
        (lambda: cotj.plan(D, 4, grid=cotj.default_grid(20), schedule=(D[:5], D)), ValueError, r"schedule a must have one value per grid level \(20\), got 5"),
        (lambda: cotj.plan(D, 4, grid=cotj.default_grid(20), schedule=(D, D.reshape(4, 5))), ValueError, r"schedule s must be 1-D"),
        (lambda: cotj.plan(D, 4, grid=cotj.default_grid(20), schedule=(D, -D)), ValueError, r"schedule s\[0\] = -0.01: s must be finite and positive"),
        (lambda: cotj.plan(D, 4, grid=cotj.default_grid(20), schedule=D), TypeError, r"schedule must be a pair"),
        (lambda: cotj.plan_cost(D, np.array([5, 7])), ValueError, r"steps must be strictly decreasing"),
        (lambda: cotj.plan_cost(D, np.array([25, 7])), ValueError, r"steps index 25 is outside the grid"),
        (lambda: cotj.plan_cost(D, np.array([-1])), ValueError, r"steps index -1 is outside the grid"),
        (lambda: cotj.plan_cost(D, np.array([], dtype=int)), ValueError, r"steps must hold at least one"),
        (lambda: cotj.plan_cost(D, np.array([1.5, 0.5])), ValueError, r"within the grid"),
        (lambda: cotj.plan_cost(np.where(np.arange(20) == 3, np.nan, D), np.array([0.5])), ValueError, r"dna\[0, 3\] = NaN"),
        (lambda: cotj.plan_cost(np.where(np.arange(20) == 3, -1.0, D), np.array([0.9, 0.5])), ValueError, r"dna\[0, 3\] = -1.0"),
        (lambda: cotj.plan_cost(D, ["a"]), TypeError, r"steps must be a 1-D array"),
        (lambda: cotj.cost_matrix(B), ValueError, r"dna must be 1-D"),
        (lambda: cotj.align_dna(D, D[:5]), ValueError, r"pred must be \(N,\) or \(B, N\) with N = 5"),
        (lambda: cotj.align_dna(np.where(np.arange(20) == 2, np.nan, D), D), ValueError, r"pred must be finite"),
        (lambda: cotj.default_grid(1), ValueError, r"n must be an int >= 2"),
        (lambda: cotj.plan(np.full(20, 1e306), 2, grid=cotj.default_grid(20), schedule=(np.full(20, 1e8), cotj.default_grid(20))), ValueError, r"plan costs overflow float64"),
        (lambda: cotj.plan(D, 3, grid=cotj.default_grid(20), schedule=(np.ones(20), np.r_[1, 1e-320, np.ones(18)])), ValueError, r"schedule s\[1\] = 1e-320: .*lever .* stays finite"),
    ],
)
def test_bad_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()


M = np.tril(np.ones((20, 20)), k=-1)
NAN_AT_3_1 = np.where(np.arange(400).reshape(20, 20) == 61, np.nan, M)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: cotj.plan(cotj.DenseCost(NAN_AT_3_1), 4), ValueError, r"edges\[3, 1\] = NaN: edges must be a number or \+inf \(no NaN, no -inf\)"),
        (lambda: cotj.plan(cotj.DenseCost(np.where(np.eye(20) > 0, -np.inf, 0.0)), 4), ValueError, r"edges\[0, 0\] = -inf: edges must be"),
        (lambda: cotj.plan_batch(cotj.DenseCost(np.stack([M, M, NAN_AT_3_1])), 4), ValueError, r"edges\[2, 3, 1\] = NaN"),
        (lambda: cotj.plan(cotj.DenseCost(M, start=np.r_[np.nan, np.zeros(19)]), 4), ValueError, r"start\[0\] = NaN: start must be"),
        (lambda: cotj.plan_batch(cotj.DenseCost(M, end=np.r_[np.zeros(25), -np.inf, np.zeros(14)].reshape(2, 20)), 4), ValueError, r"end\[1, 5\] = -inf: end must be"),
        (lambda: cotj.plan_batch(cotj.DenseCost(M, scale=-B), 4), ValueError, r"scale\[0, 0\] = -0.01: scale must be finite and non-negative"),
        (lambda: cotj.plan(cotj.DenseCost(M, scale=np.full(20, np.inf)), 4), ValueError, r"scale\[0\] = inf: scale must be finite"),
        (lambda: cotj.plan(cotj.DenseCost(M, scale=np.full(20, np.nan)), 4), ValueError, r"scale\[0\] = NaN"),
        (lambda: cotj.plan(cotj.DenseCost(M[:, :19]), 4), ValueError, r"edges must have N = 19 levels per axis of a row, got shape \[20, 19\]"),
        (lambda: cotj.plan(cotj.DenseCost(M, start=np.zeros(19)), 4), ValueError, r"start must have N = 20 levels"),
        (lambda: cotj.plan(cotj.DenseCost(M, scale=np.ones(21)), 4), ValueError, r"scale has 21 levels per row but the grid has 20"),
        (lambda: cotj.plan(cotj.DenseCost(M), 4, grid=cotj.default_grid(19)), ValueError, r"edges must have N = 19 levels"),
        (lambda: cotj.plan(cotj.DenseCost(np.stack([M, M])), 4), ValueError, r"edges must be \(N, N\); use cotj.plan_batch"),
        (lambda: cotj.plan(cotj.DenseCost(M, scale=B), 4), ValueError, r"scale must be \(N,\); use cotj.plan_batch"),
        (lambda: cotj.plan_batch(cotj.DenseCost(M[None, None]), 4), ValueError, r"edges must be \(N, N\) or \(B, N, N\), got shape"),
        (lambda: cotj.plan_batch(cotj.DenseCost(np.stack([M, M]), scale=B), 4), ValueError, r"edges has 2 rows but the batch has 3"),
        (lambda: cotj.plan_batch(cotj.DenseCost(M, scale=B), [4, 4]), ValueError, r"budget has 2 entries but the batch has 3 rows"),
        (lambda: cotj.plan(cotj.DenseCost(M.astype(complex)), 4), TypeError, r"edges must be a real numeric array.*complex"),
        (lambda: cotj.plan(cotj.DenseCost(M, start=np.array(["a"] * 20)), 4), TypeError, r"start must be a real numeric array"),
        (lambda: cotj.plan(cotj.DenseCost(M, scale=np.ones(20, dtype=bool)), 4), TypeError, r"scale must be a real numeric array.*bool"),
        (lambda: cotj.plan(D, 4, cost=M), ValueError, r"give either dna or cost="),
        (lambda: cotj.plan(D, 4, start=D), ValueError, r"start go with cost="),
        (lambda: cotj.plan_batch(B, 4, end=D, scale=B), ValueError, r"end, scale go with cost="),
        (lambda: cotj.plan(cotj.DenseCost(M), 4, grid=cotj.default_grid(20), schedule=(D, D)), ValueError, r"schedule .* does not apply to cost="),
        (lambda: cotj.plan(cotj.DenseCost(np.full((20, 20), np.inf)), 3), ValueError, r"budget = 3 is infeasible for row 0: every plan of 3 levels uses an infinite entry"),
        (lambda: cotj.plan_batch(cotj.DenseCost(M, end=np.r_[np.full(20, np.inf), np.zeros(20)].reshape(2, 20)), 2), ValueError, r"budget = 2 is infeasible for row 0"),
        (lambda: cotj.plan(cotj.DenseCost(M, start=np.full(20, np.inf)), tau=0.9, max_steps=3), ValueError, r"max_steps = 3 is infeasible for row 0: every plan of 1..=3 levels"),
        (lambda: cotj.plan_cost(cotj.DenseCost(M), np.array([0.5, 0.2])), TypeError, r"steps must be a 1-D array of grid indices"),
        (lambda: cotj.plan_cost(cotj.DenseCost(M), np.array([3, 5])), ValueError, r"steps must be strictly decreasing"),
        (lambda: cotj.plan_cost(cotj.DenseCost(NAN_AT_3_1), np.array([3, 1])), ValueError, r"edges\[3, 1\] = NaN"),
        (lambda: cotj.Planner(np.linspace(0.1, 1, 10)).plan_cost(cotj.DenseCost(M), np.array([3, 1])), ValueError, r"edges has 20 levels per row but the grid has 10"),
        (lambda: cotj.plan(D, 4, current=20), ValueError, r"current = 20 must be a grid index that may start a plan: 0..20 \(first = 20\)"),
        (lambda: cotj.plan(D, 4, current=-1), ValueError, r"current = -1 must be a grid index"),
        (lambda: cotj.plan(D, 4, current=14, first=5), ValueError, r"current = 14 must be a grid index that may start a plan: 15..20 \(first = 5\)"),
        (lambda: cotj.plan(cotj.DenseCost(M), 4, current=14, first="top"), ValueError, r"current = 14 .* 19..20 \(first = 1\)"),
        (lambda: cotj.plan_batch(B, 4, current=[19, 30, 19]), ValueError, r"current\[1\] = 30 must be a grid index"),
        (lambda: cotj.plan_batch(B, 4, current=[19, 19]), ValueError, r"current has 2 rows but the batch has 3"),
        (lambda: cotj.plan(D, 4, current=2.0), TypeError, r"current must be an int"),
        (lambda: cotj.plan_batch(B, 4, current=np.array([1.0, 2.0, 3.0])), TypeError, r"current must be an int or an int array"),
        (lambda: cotj.plan(D, 5, current=3), ValueError, r"budget = 5 is infeasible with current = 3: a plan that starts at grid index 3 has at most 4 levels"),
        (lambda: cotj.plan(D, 1, current=10, last=5), ValueError, r"budget = 1 is infeasible with current = 10: a one-level plan ends where it starts, and last = 5"),
        (lambda: cotj.plan_batch(B, [2, 4, 2], current=np.array([5, 2, 5])), ValueError, r"budget\[1\] = 4 is infeasible with current\[1\] = 2"),
    ],
)
def test_bad_dense_costs_and_current_levels_are_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: cotj.plan(D, 0), "budget"),
        (lambda: cotj.plan(D, 21, first="top"), "budget"),
        (lambda: cotj.plan(D, 1, first="top", last="bottom"), "budget"),
        (lambda: cotj.plan_batch(B, [3, 0, 4]), "budget[1]"),
        (lambda: cotj.plan_batch(B, [3, 4]), "budget"),
        (lambda: cotj.plan_batch(B, np.ones((3, 1), dtype=int)), "budget"),
        (lambda: cotj.plan(D, 4, tau=0.9), "budget"),
        (lambda: cotj.plan(D, tau=0.0), "tau"),
        (lambda: cotj.plan_batch(B, tau=float("nan")), "tau"),
        (lambda: cotj.plan(D, tau=0.9, max_steps=21), "max_steps"),
        (lambda: cotj.plan(D, 4, max_steps=3), "max_steps"),
        (lambda: cotj.plan(-D, 3), "dna"),
        (lambda: cotj.plan_batch(np.where(np.arange(20) == 4, np.nan, B), 4), "dna"),
        (lambda: cotj.plan_batch(D, 3), "dna"),
        (lambda: cotj.plan(B, 3), "dna"),
        (lambda: cotj.plan(np.ones(1), 1), "dna"),
        (lambda: cotj.plan(D, 4, grid=cotj.default_grid(19)), "dna"),
        (lambda: cotj.plan(cotj.DenseCost(NAN_AT_3_1), 3), "edges"),
        (lambda: cotj.plan(cotj.DenseCost(M[:, :19]), 3), "edges"),
        (lambda: cotj.plan(cotj.DenseCost(np.stack([M, M])), 3), "edges"),
        (lambda: cotj.plan(cotj.DenseCost(np.full((20, 20), np.inf)), 3), "budget"),
        (lambda: cotj.plan(D, 3, cost=M), "cost"),
        (lambda: cotj.plan(D, 3, start=D), "start"),
        (lambda: cotj.plan(cotj.DenseCost(M, scale=-D), 3), "scale"),
        (lambda: cotj.plan(D, 4, first=0), "first"),
        (lambda: cotj.plan(D, 4, last="top"), "last"),
        (lambda: cotj.plan(D, 4, current=20), "current"),
        (lambda: cotj.plan(D, 4, grid=np.linspace(1, 0.05, 20)), "grid"),
        (lambda: cotj.plan(D, 4, schedule=(D, D)), "schedule"),
        (lambda: cotj.plan_cost(D, np.array([5, 7])), "steps"),
    ],
)
def test_planning_errors_are_plan_errors_that_name_the_argument(call, name):
    """Serving code catches cotj.PlanError for every planning refusal; it is a ValueError, so code that
    catches ValueError keeps working."""
    with pytest.raises(cotj.PlanError) as refused:
        call()
    assert isinstance(refused.value, ValueError)
    assert name in str(refused.value), str(refused.value)


def test_plan_error_is_one_exception_of_the_binding():
    assert cotj.PlanError is _core.PlanError is cotj.planning.PlanError
    assert issubclass(cotj.PlanError, ValueError) and cotj.PlanError.__module__ == "cotj._core"
    with pytest.raises(ValueError, match="budget must lie in 1..=20"):
        cotj.plan(D, 0)


def test_the_binding_returns_one_shape_per_call():
    """plan_row gives one plan and plan_batch a batch, whatever the row count: no shape depends on ndim."""
    steps, levels, cost, curve, ratio = _core.plan_row(D)
    assert steps.shape == levels.shape == (_core.DEFAULT_BUDGET,) == (cotj.planning.DEFAULT_BUDGET,)
    assert steps.dtype == np.int64 and levels.dtype == np.float64 and type(cost) is float
    assert curve is None and ratio is None
    steps, levels, lengths, costs, curve, ratio = _core.plan_batch(D[None], budget=3)
    assert steps.shape == levels.shape == (1, 3) and lengths.shape == costs.shape == (1,)
    assert curve is None and ratio is None
    *_, curve, ratio = _core.plan_row(D.astype(np.float32), tau=0.9, max_steps=6)
    assert curve is not None and ratio is not None and curve.shape == ratio.shape == (6,)
    *_, curve, ratio = _core.plan_batch(B, tau=0.9)
    assert curve is not None and ratio is not None and curve.shape == ratio.shape == (3, 10)
    lever = _core.Lever.default(20)
    np.testing.assert_array_equal(_core.plan_row(D, lever, budget=4, first="top")[0], cotj.plan(D, 4, first="top").steps)


def test_awkward_but_valid_layouts_are_read_correctly():
    """Fortran order, strides, byte order, lists and integer or half dtypes are converted, never misread."""
    expect = cotj.plan_batch(B, 5)
    same_values = (np.asfortranarray(B), np.repeat(B, 2, axis=1)[:, ::2], B.astype(">f8"), B.tolist())
    for arr in same_values:
        np.testing.assert_array_equal(cotj.plan_batch(arr, 5).steps, expect.steps)
        np.testing.assert_array_equal(cotj.plan_batch(arr, 5).cost, expect.cost)
    ints = (B * 1000).astype(np.int32)
    np.testing.assert_array_equal(cotj.plan_batch(ints, 5).steps, cotj.plan_batch(ints.astype(float), 5).steps)
    half = B.astype(np.float16)
    np.testing.assert_array_equal(cotj.plan_batch(half, 5).steps, cotj.plan_batch(half.astype(np.float32), 5).steps)


def test_the_raw_binding_refuses_what_it_cannot_read():
    lever = _core.Lever.default(20)
    with pytest.raises(_core.PlanError, match="C-contiguous"):
        _core.plan_batch(np.asfortranarray(B), lever, budget=3)
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.plan_batch(B.astype(np.int64), lever, budget=3)
    with pytest.raises(TypeError, match="numpy array"):
        _core.plan_row([1.0, 2.0], budget=1)
    with pytest.raises(_core.PlanError, match=r"dna must be 2-D \(B, N\); use cotj.plan for one \(N,\) row, got shape \(20,\)"):
        _core.plan_batch(D, lever)
    with pytest.raises(_core.PlanError, match=r"dna must be 1-D \(N,\); use cotj.plan_batch .* got shape \(3, 20\)"):
        _core.plan_row(B, lever)
    with pytest.raises(_core.PlanError, match=r"either budget \(fixed length\) or tau \(adaptive length\), not both"):
        _core.plan_batch(B, lever, budget=3, tau=0.5)
    with pytest.raises(_core.PlanError, match="max_steps goes with tau"):
        _core.plan_row(D, max_steps=3)
    with pytest.raises(_core.PlanError, match="first must allow between 1 and 20 levels, got -3"):
        _core.plan_batch(B, lever, budget=3, first=-3)
    with pytest.raises(_core.PlanError, match="last must be 'any', 'bottom' or an int number of levels, got 'top'"):
        _core.plan_row(D, last="top")
    with pytest.raises(TypeError, match="got bool"):
        _core.plan_batch(B, lever, budget=True)
    with pytest.raises(TypeError, match="budget must be an int for one row, got ndarray"):
        _core.plan_row(D, budget=np.array([3]))
    with pytest.raises(_core.PlanError, match="at least 2 levels"):
        _core.Lever.default(1)
    with pytest.raises(_core.PlanError, match="needs both a and s"):
        _core.Lever(cotj.default_grid(20), cotj.default_grid(20))
    m, zeros = np.zeros((20, 20)), np.zeros(20)
    with pytest.raises(TypeError, match="edges must have dtype float64, got float32"):
        _core.plan_dense(m.astype(np.float32), zeros, zeros, lever, budget=3)
    with pytest.raises(_core.PlanError, match="start must be C-contiguous"):
        _core.plan_dense(m, np.zeros(40)[::2], zeros, lever, budget=3)
    with pytest.raises(TypeError, match="scale must have dtype float32 or float64"):
        _core.plan_dense(m, zeros, zeros, lever, scale=np.ones(20, dtype=np.int64), budget=3)
    with pytest.raises(TypeError, match="current must be an int or an int64 array, got bool"):
        _core.plan_dense(m, zeros, zeros, lever, budget=3, current=True)


def test_a_schedule_whose_snr_rises_is_refused_by_the_planner():
    grid = cotj.default_grid(10)
    with pytest.raises(ValueError, match="signal-to-noise ratio a/s must fall"):
        cotj.plan(np.ones(10), 3, grid=grid, schedule=(grid, 1.1 - grid))  # a and s swapped: a/s rises
    with pytest.raises(ValueError, match="signal-to-noise ratio a/s must fall"):
        cotj.Planner(grid, (grid, 1.1 - grid))


HUGE = np.tril(np.full((20, 20), -1e308), k=-1)  # any plan of 3 or more levels sums past -max float64


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: cotj.plan_cost(cotj.DenseCost(HUGE), np.array([9, 5, 1])), cotj.PlanError, r"^the plan cost overflows float64: .*divide edges, start and end by a common factor"),
        (lambda: cotj.plan_cost(cotj.DenseCost(-HUGE), np.array([9, 5, 1])), cotj.PlanError, r"^the plan cost overflows float64"),
        (lambda: cotj.plan(cotj.DenseCost(HUGE), 3), cotj.PlanError, r"^the plan cost of row 0 overflows float64: the values of edges, start and end"),
        (lambda: cotj.plan_batch(cotj.DenseCost(np.stack([M, HUGE])), 3), cotj.PlanError, r"^the plan cost of row 1 overflows float64"),
        (lambda: cotj.plan(cotj.DenseCost(M, start=np.full(20, -1e308), end=np.full(20, -1e308)), 3), cotj.PlanError, r"^the plan cost of row 0 overflows"),
        (lambda: cotj.plan(cotj.DenseCost(np.tril(np.full((20, 20), -1e200), k=-1), scale=np.full(20, 1e200)), 3), cotj.PlanError, r"^the plan cost of row 0 overflows"),
        (lambda: cotj.plan(cotj.DenseCost(HUGE), tau=0.9), cotj.PlanError, r"^the plan cost of row 0 overflows"),  # C*_3.. = -inf: no silent curve
        (lambda: cotj.plan_cost(D, np.array([2**64 - 1], dtype=np.uint64)), cotj.PlanError, r"^steps index 18446744073709551615 is outside the grid \(0..20\)$"),
        (lambda: cotj.plan_cost(cotj.DenseCost(M), np.array([5, 2**64 - 1], dtype=np.uint64)), cotj.PlanError, r"^steps index 18446744073709551615 is outside the grid \(0..20\)$"),
        (lambda: cotj.plan_cost(D, [2**64 - 1]), cotj.PlanError, r"^steps index 18446744073709551615 is outside"),
        (lambda: cotj.plan(cotj.DenseCost([[0.0, 1.0], [1.0]]), 3), cotj.PlanError, r"^edges must be a rectangular array \(every row of the same length\)"),
        (lambda: cotj.plan_batch(cotj.DenseCost([[[0.0, 1.0], [1.0, 0.0]], [[0.0], [1.0, 0.0]]]), 1), cotj.PlanError, r"^edges must be a rectangular array"),
        (lambda: cotj.plan_cost(cotj.DenseCost([[0.0, 1.0], [1.0]]), [1, 0]), cotj.PlanError, r"^edges must be a rectangular array"),
        (lambda: cotj.plan(cotj.DenseCost(M, start=[[0.0] * 20, [0.0]]), 3), cotj.PlanError, r"^start must be a rectangular array"),
        (lambda: cotj.plan([[0.1, 0.2], [0.3]], 1), cotj.PlanError, r"^dna must be a rectangular array"),
        (lambda: cotj.plan_batch(B, [[1, 2], [3]]), cotj.PlanError, r"^budget must be a rectangular array"),
        (lambda: cotj.plan_cost(D, [[3, 2], [1]]), cotj.PlanError, r"^steps must be a rectangular array"),
        (lambda: cotj.plan(D, 3, grid=[[0.5, 1.0], [1.0]]), cotj.PlanError, r"^grid must be a rectangular array"),
        (lambda: cotj.plan(None), TypeError, r"^dna is None and cost= was not given"),
        (lambda: cotj.plan_batch(None, 3), TypeError, r"^dna is None and cost= was not given"),
        (lambda: cotj.plan_cost(None, [3, 1]), TypeError, r"^dna is None and cost= was not given"),
        (lambda: cotj.Planner(cotj.default_grid(20)).plan(None, 3), TypeError, r"^dna is None and cost= was not given"),
        (lambda: cotj.cost_matrix(None), TypeError, r"^dna must be a DNA row \(N,\), got None$"),
    ],
)
def test_overflow_huge_indices_ragged_lists_and_none_are_named(call, error, match):
    """A dense cost that overflows names the dense cost (not the dna); a uint64 index its own value; a ragged
    list its argument; a missing dna and cost both."""
    with pytest.raises(error, match=match):
        call()


def test_the_dna_form_still_names_the_dna_on_overflow_and_missing_edges_still_cost_inf():
    with pytest.raises(cotj.PlanError, match="dna values are too large"):
        cotj.plan_cost(np.full(20, 1e306), np.array([19, 0]), grid=cotj.default_grid(20),
                       schedule=(np.full(20, 1e8), cotj.default_grid(20)))
    missing = np.where(np.arange(400).reshape(20, 20) == 9 * 20 + 5, np.inf, HUGE)
    assert cotj.plan_cost(cotj.DenseCost(missing), np.array([9, 5, 1])) == np.inf  # a missing edge, not an overflow
    assert cotj.plan_cost(cotj.DenseCost(HUGE), np.array([9, 5])) == -1e308
    assert cotj.plan(cotj.DenseCost(HUGE), 2).cost == -1e308
