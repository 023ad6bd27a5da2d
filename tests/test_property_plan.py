"""Property tests of the Plan API at scale: arbitrary shapes (empty, wide, up to 3-D), dtypes and extreme values
(NaN, inf, 1e308, subnormals, huge ints) into ``plan_batch``, ``plan``, ``cost_matrix``, ``plan_cost`` and the
dense form (``cotj.DenseCost``). Each call either returns plans that hold the documented invariants or raises ValueError
or TypeError with a short message. The properties run in a child pytest process
(:func:`test_no_plan_input_aborts_the_interpreter`), so an abort fails the test instead of killing the run.

These properties and the proptest ones in rust/cotj-core/tests are the project's fuzzing of the planner.
"""

from __future__ import annotations

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cotj
from property_child import DTYPES, EXTREME, SETTINGS, in_child, refused_well, run_properties_in_child

WIDE = st.sampled_from([cotj.MAX_LEVELS, cotj.MAX_LEVELS + 1, 2**20, 2**40])
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12),
    st.tuples(st.just(0), WIDE),  # no rows, many levels: nothing to plan, but the width is checked first
    st.tuples(WIDE, st.just(0)),
)
INTS = st.one_of(st.integers(-3, 14), st.integers(-(2**70), 2**70), st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]))
BUDGETS = st.one_of(
    st.none(),
    INTS,
    st.floats(allow_nan=True),
    st.booleans(),
    hnp.arrays(st.sampled_from(["<i8", "<u8", "|i1", "<f8"]), st.integers(0, 4), elements=st.integers(0, 14)),
    st.just(np.array([2**64 - 1], dtype=np.uint64)),
)
WINDOWS = st.one_of(st.none(), st.sampled_from(["any", "top", "bottom", "x"]), INTS, st.just(np.array([1, 2])))
TAUS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.just("high"))
VALUES = st.lists(st.one_of(EXTREME, st.floats(0, 10)), min_size=1, max_size=8)


def _array(dtype: str, shape: tuple[int, ...], values: list[float]) -> np.ndarray:
    """An array of ``dtype`` and ``shape`` cycling through ``values`` (empty if the shape holds nothing)."""
    size = int(np.prod(shape, dtype=object))
    with np.errstate(all="ignore"):
        flat = np.resize(np.asarray(values, dtype=np.float64), size)
        return flat.astype(dtype).reshape(shape)


def _given(**kwargs: object) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


@st.composite
def requests(draw: st.DrawFn, ndim: int, dense: bool = False) -> tuple[np.ndarray, dict]:
    """``(dna or cost, keyword arguments)``: half of the time an ordinary request (valid values, lengths,
    windows and start level for its N, so that plans are made and checked), else anything."""
    if draw(st.booleans()):
        n = draw(st.integers(2, 12))
        rows = () if ndim == 1 else (draw(st.integers(1, 5)),)
        low = -5.0 if dense else 0.0
        values = draw(st.lists(st.one_of(st.floats(low, 10), st.just(np.inf) if dense else st.floats(0, 1)),
                               min_size=1, max_size=8))
        dtype = "<f8" if dense else draw(st.sampled_from(["<f8", "<f4"]))
        arr = _array(dtype, (*rows, n, n) if dense else (*rows, n), values)
        length = draw(st.one_of(st.integers(1, n).map(lambda k: {"budget": k}),
                                st.tuples(st.floats(0.01, 1), st.none() | st.integers(1, n))
                                .map(lambda t: _given(tau=t[0], max_steps=t[1]))))
        windows = st.none() | st.integers(1, n)
        extra = _given(first=draw(windows | st.just("top")), last=draw(windows | st.just("bottom")),
                       current=draw(st.none() | st.integers(0, n - 1)))
        return arr, {**length, **extra}
    shape = draw(SHAPES)
    if dense and shape:  # square rows, each side small enough that numpy can describe the (empty) array
        shape = tuple(min(d, 2**20) for d in (*shape[:-1], shape[-1], shape[-1]))
    arr = _array("<f8" if dense else draw(DTYPES), shape, draw(VALUES))
    return arr, _given(budget=draw(BUDGETS), tau=draw(TAUS), max_steps=draw(st.none() | INTS), first=draw(WINDOWS),
                       last=draw(WINDOWS), current=draw(st.none() | INTS))


def _close(a: float, b: float, *inputs: np.ndarray | None) -> bool:
    """``a`` and ``b`` agree up to rounding (the DP may fuse a multiply and an add) relative to the inputs'
    magnitude."""
    scale = max([1.0] + [float(np.max(np.abs(v[np.isfinite(v)]), initial=0)) for v in inputs if v is not None])
    return abs(a - b) <= 1e-12 * scale * 100


def _check_batch(batch: cotj.PlanBatch, n: int) -> None:
    """The documented layout of a batch of plans over ``n`` levels."""
    rows, width = batch.steps.shape
    assert batch.levels.shape == (rows, width) and batch.lengths.shape == batch.cost.shape == (rows,)
    assert np.all((batch.lengths >= 1) & (batch.lengths <= n)) and width == batch.lengths.max()
    assert np.all(np.isfinite(batch.cost))
    for p in batch:
        assert np.all(np.diff(p.steps) < 0) and p.steps[0] < n and p.steps[-1] >= 0
        assert np.all(np.isfinite(p.levels))
        if p.curve is not None:
            assert p.cost == p.curve[len(p) - 1]


@in_child
@SETTINGS
@given(request=requests(2))
def test_property_plan_batch_on_anything(request):
    dna, kwargs = request
    try:
        batch = cotj.plan_batch(dna, **kwargs)
    except (ValueError, TypeError) as exc:
        refused_well(exc)
        event(f"refused: {type(exc).__name__}")
        return
    event("planned")
    _check_batch(batch, dna.shape[-1])
    if isinstance(kwargs.get("budget"), int):
        assert np.all(batch.lengths == kwargs["budget"])


@in_child
@SETTINGS
@given(request=requests(1), steps=hnp.arrays(st.sampled_from(["<i8", "<u8", "<f8"]), st.integers(0, 5),
                                             elements=st.integers(0, 14)))
def test_property_plan_cost_matrix_and_plan_cost_on_one_row(request, steps):
    dna, kwargs = request
    for call in (lambda: cotj.plan(dna, **kwargs), lambda: cotj.cost_matrix(dna), lambda: cotj.plan_cost(dna, steps)):
        try:
            out = call()
        except (ValueError, TypeError) as exc:
            refused_well(exc)
            event(f"refused: {type(exc).__name__}")
            continue
        event(f"returned a {type(out).__name__}")
        if isinstance(out, cotj.Plan):
            assert _close(cotj.plan_cost(dna, out.steps), out.cost, dna)
        elif isinstance(out, np.ndarray):
            n = len(dna)
            assert out.shape == (n, n) and np.all(np.isinf(out[np.triu_indices(n)]))
        else:
            assert isinstance(out, float) and not np.isnan(out)


@in_child
@SETTINGS
@given(request=requests(2, dense=True) | requests(3, dense=True),
       ends=st.lists(st.one_of(st.none(), st.floats(0, 3), EXTREME), min_size=3, max_size=3))
def test_property_dense_costs_on_anything(request, ends):
    cost, kwargs = request
    n = cost.shape[-1] if cost.ndim else 0
    start, end, scale = (None if v is None else np.full(n, v) for v in ends)
    try:
        batch = cotj.plan_batch(cotj.DenseCost(cost), **_given(start=start, end=end, scale=scale), **kwargs)
    except (ValueError, TypeError) as exc:
        refused_well(exc)
        event(f"refused: {type(exc).__name__}")
        return
    event("planned")
    _check_batch(batch, n)
    if cost.ndim == 2 and scale is None:
        for b, p in enumerate(batch):
            again = cotj.plan_cost(cotj.DenseCost(cost, start=start, end=end), p.steps)
            assert _close(again, batch.cost[b], cost, start, end)


def test_no_plan_input_aborts_the_interpreter():
    run_properties_in_child(__file__)
