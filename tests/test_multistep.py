"""Solver-aware plans (cotj.planning.multistep): the step weights against Diffusers' own schedulers, the Gram-matrix local
errors against errors measured directly on teacher trajectories, and the pair DP against exhaustive search."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cotj
import reference as ref
from cli_helpers import ctrl_c_latency
from cotj.planning.multistep import (
    SolverCost,
    at_predicted_state,
    ddim_weights,
    dpmpp_2m_weights,
    estimate_gain,
    plan_multistep,
    plan_multistep_batch,
    plan_pairs,
    plan_pairs_batch,
    shared_solver_costs,
    solver_costs,
    unipc_weights,
)
from cotj.planning.solvers import SOLVERS

SHAPES_TEACHER = Path(cotj.__file__).parent / "models" / "weights" / "shapes_teacher_cost.json"


def _combine(w: dict[str, np.ndarray], vec: dict[str, np.ndarray]) -> np.ndarray:
    return sum(np.asarray(c) * vec[name] for name, c in w.items())


# ------------------------------------------------------------------ the weights are Diffusers' updates


def _diffusers_run(scheduler, levels, x, denoise):
    """Run ``scheduler``'s own update on flow ``levels`` with a model whose clean estimate is ``denoise(x)``: the
    state before each step and the estimate there, and the result. The levels are written into the scheduler
    after ``set_timesteps`` (this checks the update formula, not how a plan is handed over)."""
    import torch

    scheduler.set_timesteps(num_inference_steps=len(levels))
    scheduler.sigmas = torch.tensor([*levels, 0.0], dtype=torch.float64)
    scheduler.timesteps = torch.tensor(levels, dtype=torch.float64) * 1000
    states, estimates = [], []
    x = torch.as_tensor(x, dtype=torch.float64)
    for n, t in enumerate(scheduler.timesteps):
        sigma = float(scheduler.sigmas[n])
        m = denoise(x)
        states.append(x.clone())
        estimates.append(m.clone())
        v = (x - m) / sigma  # flow prediction: x0 = x - sigma·v
        x = scheduler.step(v, t, x).prev_sample
    return [s.numpy() for s in states], [m.numpy() for m in estimates], x.numpy()


def _denoise(x):
    return 0.6 * x - 0.1 * x**3  # any smooth map: the update is linear in its values, not in x


@pytest.mark.diffusers
def test_dpmpp_2m_weights_are_diffusers_update():
    import diffusers

    sched = diffusers.DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
                                                  final_sigmas_type="zero", algorithm_type="dpmsolver++", solver_order=2)
    levels = np.array([0.9, 0.55, 0.3, 0.12])
    x = np.random.default_rng(0).standard_normal((2, 5))
    states, m, out = _diffusers_run(sched, levels, x, _denoise)
    a, s = 1.0 - levels, levels
    for n in range(1, 3):  # second-order steps: from level n to n + 1 with the previous level n - 1
        w = dpmpp_2m_weights(a[n - 1], s[n - 1], a[n], s[n], a[n + 1], s[n + 1])
        np.testing.assert_allclose(_combine(w, {"x_j": states[n], "m_j": m[n], "m_k": m[n - 1]}), states[n + 1],
                                   rtol=1e-6, atol=1e-9)
    w0 = ddim_weights(a[0], s[0], a[1], s[1])  # the first step is first order
    np.testing.assert_allclose(_combine(w0, {"x_j": states[0], "m_j": m[0]}), states[1], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out, m[-1], rtol=1e-6, atol=1e-9)  # the last step, to 0, lands on the estimate


@pytest.mark.diffusers
def test_unipc_weights_are_diffusers_predictor_and_corrector():
    import diffusers

    sched = diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
                                              final_sigmas_type="zero", solver_type="bh2", solver_order=2,
                                              predict_x0=True)
    levels = np.array([0.9, 0.55, 0.3, 0.12])
    x = np.random.default_rng(1).standard_normal((2, 5))
    states, m, _ = _diffusers_run(sched, levels, x, _denoise)
    a, s = 1.0 - levels, levels
    # Diffusers applies the corrector of step j -> i when it is handed m_i: the corrected state is the x_j of the
    # next step. Our weights give that corrected state directly from x_j (corrected), m_k, m_j and m_i.
    corrected = [states[0]]
    w0 = unipc_weights(None, None, a[0], s[0], a[1], s[1])
    corrected.append(_combine(w0, {"x_j": corrected[0], "m_j": m[0], "m_i": m[1]}))
    for n in range(1, 3):
        w = unipc_weights(a[n - 1], s[n - 1], a[n], s[n], a[n + 1], s[n + 1])
        corrected.append(_combine(w, {"x_j": corrected[n], "m_k": m[n - 1], "m_j": m[n], "m_i": m[n + 1]}))
    # the predictor of step n starts from the corrected state; check it reproduces Diffusers' next state
    for n in range(1, 3):
        w = dpmpp_2m_weights(a[n - 1], s[n - 1], a[n], s[n], a[n + 1], s[n + 1])  # UniP-2 (bh2) is 2M's midpoint
        np.testing.assert_allclose(_combine(w, {"x_j": corrected[n], "m_j": m[n], "m_k": m[n - 1]}), states[n + 1],
                                   rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ Gram costs equal measured local errors


@pytest.fixture(scope="module")
def teacher():
    import torch

    from cotj.models.analytic import FlowMixtureModel, MixtureFamily
    from cotj.predict.teacher import euler_trajectories

    model = FlowMixtureModel(MixtureFamily(dim=6, seed=3))
    noise = torch.randn(12, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return euler_trajectories(model, noise, torch.arange(12) % 4, np.arange(1, 13) / 12, prediction="flow")


@pytest.mark.torch
def test_euler_gram_cost_equals_the_measured_jump_costs(teacher):
    cost = solver_costs("euler", teacher.gram(), teacher.levels)
    measured = teacher.jump_costs.mean(0)
    below = np.isfinite(measured)
    np.testing.assert_allclose(cost.first[below], measured[below], rtol=1e-7, atol=1e-12)
    assert np.all(np.isinf(cost.first[~below])) and cost.pairs is None
    np.testing.assert_allclose(cost.end[1:], measured[1:, 0], rtol=1e-7, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("solver", ["dpmpp_2m", "unipc"])
def test_multistep_gram_cost_equals_the_measured_error(teacher, solver):
    cost = solver_costs(solver, teacher.gram(), teacher.levels)
    a, s = teacher.path
    x, m0 = teacher.states, teacher.x0
    gain = estimate_gain(a, s, float((x[:, 0] ** 2).mean()))
    for k, j, i in [(12, 9, 4), (5, 4, 1), (11, 10, 9), (8, 3, 2)]:
        args = (a[k], s[k], a[j], s[j], a[i], s[i])
        w = dpmpp_2m_weights(*args)
        if solver == "unipc":  # its corrector's estimate, at the predicted state
            w = at_predicted_state(unipc_weights(*args), w, gain[i])
        landed = _combine(w, {"x_j": x[:, j], "m_k": m0[:, k], "m_j": m0[:, j], "m_i": m0[:, i], "x_i": x[:, i]})
        assert cost.pairs[k, j, i] == pytest.approx(((landed - x[:, i]) ** 2).mean(), rel=1e-7, abs=1e-13)
    assert np.isinf(cost.pairs[4, 9, 2]) and np.isinf(cost.pairs[9, 4, 0])


@pytest.mark.torch
def test_solver_costs_refuse_what_they_cannot_model(teacher):
    with pytest.raises(ValueError, match="unknown solver 'rk4'; known: euler, heun, dpmpp_2m, unipc"):
        solver_costs("rk4", teacher.gram(), teacher.levels)
    with pytest.raises(ValueError, match="gram must have shape"):
        solver_costs("euler", teacher.gram()[1:], teacher.levels)
    with pytest.raises(ValueError, match="linear flow only"):
        solver_costs("heun", teacher.gram(), teacher.levels, a=1.0 - teacher.levels, s=teacher.levels)


# ------------------------------------------------------------------ the pair DP is exhaustive search


def _brute(cost: SolverCost, budget: int, current: int, previous: int | None, scale: np.ndarray) -> float:
    best = np.inf
    for rest in itertools.combinations(range(current - 1, 0, -1), budget - 1):
        plan = (current, *rest)
        total = 0.0
        for n in range(budget - 1):
            j, i = plan[n], plan[n + 1]
            k = plan[n - 1] if n else previous
            total += (cost.first[j, i] if k is None else cost.pairs[k, j, i]) * scale[j]
        best = min(best, total + cost.end[plan[-1]] * scale[plan[-1]])
    return best


def _plan_cost(cost: SolverCost, plan: np.ndarray, previous: int | None, scale: np.ndarray) -> float:
    total = 0.0
    for n in range(len(plan) - 1):
        j, i = plan[n], plan[n + 1]
        k = plan[n - 1] if n else previous
        total += (cost.first[j, i] if k is None else cost.pairs[k, j, i]) * scale[j]
    return total + cost.end[plan[-1]] * scale[plan[-1]]


def _random_cost(m: int, seed: int, ties: bool) -> SolverCost:
    """A multistep cost on m nodes with a solver's structure (+inf where a plan may not step, and some +inf inside):
    small integers when ``ties`` (many equal plans), else uniform values."""
    rng = np.random.default_rng(seed)

    def values(shape):
        v = rng.integers(0, 2, shape).astype(np.float64) if ties else rng.random(shape)
        return np.where(rng.random(shape) < 0.1, np.inf, v)

    idx = np.arange(m)
    first = np.where(np.tril(np.ones((m, m), bool), -1), values((m, m)), np.inf)
    valid = (idx[:, None, None] > idx[None, :, None]) & (idx[None, :, None] > idx[None, None, :]) & (idx[None, None, :] >= 1)
    pairs = np.where(valid, values((m, m, m)), np.inf)
    return SolverCost("dpmpp_2m", first, pairs, np.append(np.inf, values(m - 1)))


def _nodes(cost, budget, current, previous=None, scale=None):
    """plan_multistep on the reference's nodes (node n is grid level n - 1, node 0 is t = 0)."""
    steps, _ = plan_multistep(cost, budget, current=current - 1, previous=None if previous is None else previous - 1,
                              scale=None if scale is None else np.asarray(scale)[1:])
    return steps + 1


def _nodes_batch(cost, budget, current, previous=None, scale=None):
    """plan_multistep_batch on the reference's nodes, -1 padding kept."""
    steps, _ = plan_multistep_batch(cost, budget, current=np.asarray(current) - 1,
                                    previous=None if previous is None else np.where(np.asarray(previous) < 0, -1, np.asarray(previous) - 1),
                                    scale=None if scale is None else np.asarray(scale)[..., 1:])
    return np.where(steps >= 0, steps + 1, -1)


@settings(max_examples=300, deadline=None)
@given(m=st.integers(3, 11), seed=st.integers(0, 2**16), ties=st.booleans(), data=st.data())
def test_pair_dp_is_optimal_and_equals_the_numpy_reference(m, seed, ties, data):
    """The core's plan is the numpy reference's plan node for node (ties included: integer costs, unit scales), and
    its cost is the exhaustive search's minimum; both refuse alike when no plan has a finite cost."""
    cost = _random_cost(m, seed, ties)
    current = data.draw(st.integers(1, m - 1))
    previous = data.draw(st.one_of(st.none(), st.integers(current + 1, m - 1))) if current < m - 1 else None
    # mostly budgets that leave a choice at every step (1 and current have one plan each)
    budget = data.draw(st.integers(3, current - 1) if current > 3 and data.draw(st.booleans()) else st.integers(1, current))
    rng = np.random.default_rng(seed + 1)
    scale = data.draw(st.sampled_from([None, np.ones(m), rng.choice([0.5, 1.0, 2.0], m), rng.uniform(0.5, 2.0, m)]))
    unit = np.ones(m) if scale is None else scale
    best = _brute(cost, budget, current, previous, unit)
    try:
        want = ref.pair_plan(cost.first, cost.pairs, cost.end, budget, current, previous, scale)
    except ValueError:
        with pytest.raises(cotj.PlanError, match="has a finite cost"):
            _nodes(cost, budget, current=current, previous=previous, scale=scale)
        assert best == np.inf
        return
    plan = _nodes(cost, budget, current=current, previous=previous, scale=scale)
    np.testing.assert_array_equal(plan, want)
    assert plan.dtype == np.int64 and plan[0] == current and len(plan) == budget and np.all(np.diff(plan) < 0)
    if budget > 1:
        assert plan[-1] >= 1 and _plan_cost(cost, plan, previous, unit) == pytest.approx(best)


def test_every_request_on_small_costs_equals_the_numpy_reference():
    """Deterministic sweep: every current node, previous node and budget on small tie-rich costs, node for node."""
    checked = 0
    for m, seed in itertools.product((4, 6, 8, 9), range(6)):
        cost = _random_cost(m, seed, ties=True)
        scale = np.random.default_rng(seed).choice([0.5, 1.0, 2.0], m)
        for current in range(1, m):
            for previous in [None, *range(current + 1, m)]:
                for budget in range(1, current + 1):
                    for w in (None, scale):
                        try:
                            want = ref.pair_plan(cost.first, cost.pairs, cost.end, budget, current, previous, w)
                        except ValueError:
                            with pytest.raises(cotj.PlanError, match="has a finite cost"):
                                _nodes(cost, budget, current=current, previous=previous, scale=w)
                            continue
                        got = _nodes(cost, budget, current=current, previous=previous, scale=w)
                        np.testing.assert_array_equal(got, want, err_msg=f"{m=} {seed=} {current=} {previous=} {budget=}")
                        checked += 1
    assert checked > 2000


@settings(max_examples=40, deadline=None)
@given(m=st.integers(4, 12), seed=st.integers(0, 2**16), ties=st.booleans(), rows=st.integers(1, 20))
def test_a_batch_plans_each_row_as_alone(m, seed, ties, rows):
    """plan_multistep_batch (rows planned in parallel) gives each row the plan plan_multistep gives it, padded with -1."""
    cost = _random_cost(m, seed, ties)
    rng = np.random.default_rng(seed)
    current = rng.integers(2, m, rows)
    previous = np.where(rng.random(rows) < 0.5, -1, rng.integers(current + 1, m + 1))
    previous = np.where(previous >= m, -1, previous)
    budget = rng.integers(1, current + 1)
    scale = rng.uniform(0.5, 2.0, (rows, m))
    want = []
    for b in range(rows):
        try:
            want.append(_nodes(cost, int(budget[b]), current=int(current[b]),
                                   previous=None if previous[b] < 0 else int(previous[b]), scale=scale[b]))
        except cotj.PlanError:
            with pytest.raises(cotj.PlanError, match=rf"\(row {b}\)"):
                _nodes_batch(cost, budget, current=current, previous=previous, scale=scale)
            return
    got = _nodes_batch(cost, budget, current=current, previous=previous, scale=scale)
    assert got.shape == (rows, budget.max())
    for b in range(rows):
        np.testing.assert_array_equal(got[b, :budget[b]], want[b])
        assert np.all(got[b, budget[b]:] == -1)


def test_plans_on_the_shipped_teacher_cost_equal_the_numpy_reference():
    """Real costs (the shapes model's UniPC and DPM-Solver++(2M) costs, N = 100): every budget from the top, and
    replanning from lower levels after a previous one with row scales, node for node as the numpy reference."""
    from cotj.planning.objectives import TeacherCost

    teacher = TeacherCost.load(SHAPES_TEACHER)
    n = teacher.grid.size
    rng = np.random.default_rng(5)
    for solver in ("dpmpp_2m", "unipc"):
        cost = teacher.solver_cost(solver)
        for budget in (2, 3, 4, 6, 10, 15):
            np.testing.assert_array_equal(_nodes(cost, budget, current=n),
                                          ref.pair_plan(cost.first, cost.pairs, cost.end, budget, n))
        for _ in range(6):
            current = int(rng.integers(20, n))
            previous = int(rng.integers(current + 1, n + 1))
            budget = int(rng.integers(2, 10))
            scale = np.exp(rng.normal(0.0, 0.5, n + 1))
            np.testing.assert_array_equal(
                _nodes(cost, budget, current=current, previous=previous, scale=scale),
                ref.pair_plan(cost.first, cost.pairs, cost.end, budget, current, previous, scale))


@pytest.mark.filterwarnings("ignore:plan_pairs:DeprecationWarning")
def test_deprecated_plan_pairs_bad_input():
    """Each bad argument is refused with cotj.PlanError (a ValueError) naming it; wrong types with TypeError."""
    cost = SolverCost("euler", np.zeros((4, 4)), None, np.zeros(4))
    with pytest.raises(ValueError, match="single-step solver"):
        plan_pairs(cost, 2, current=3)
    ok = _random_cost(4, 0, False)
    pairs = SolverCost("unipc", np.zeros((4, 4)), np.zeros((4, 4, 4)), np.zeros(4))
    with pytest.raises(cotj.PlanError, match=r"budget = 0 must lie in 1\.\.=3"):
        plan_pairs(pairs, 0, current=3)
    with pytest.raises(cotj.PlanError, match=r"budget = 4 must lie in 1\.\.=3"):
        plan_pairs(pairs, 4, current=3)
    with pytest.raises(cotj.PlanError, match=r"previous = 2 must be a node index in 4\.\.4"):
        plan_pairs(pairs, 2, current=3, previous=2)
    with pytest.raises(cotj.PlanError, match=r"current = 4 must be a node index in 1\.\.4"):
        plan_pairs(pairs, 2, current=4)
    with pytest.raises(cotj.PlanError, match=r"current = 0 must be a node index"):
        plan_pairs(pairs, 1, current=0)
    with pytest.raises(TypeError, match="budget must be an int"):
        plan_pairs(pairs, 2.0, current=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget must be an int"):
        plan_pairs(pairs, True, current=3)
    for value in (np.nan, -np.inf):
        bad = ok.pairs.copy()
        bad[3, 2, 1] = value
        with pytest.raises(cotj.PlanError, match=r"pairs\[3, 2, 1\] = .*no NaN, no -inf"):
            plan_pairs(SolverCost("unipc", ok.first, bad, ok.end), 3, current=3)
        bad_first = ok.first.copy()
        bad_first[3, 1] = value
        with pytest.raises(cotj.PlanError, match=r"first\[3, 1\]"):
            plan_pairs(SolverCost("unipc", bad_first, ok.pairs, ok.end), 2, current=3)
        bad_end = ok.end.copy()
        bad_end[2] = value
        with pytest.raises(cotj.PlanError, match=r"end\[2\]"):
            plan_pairs(SolverCost("unipc", ok.first, ok.pairs, bad_end), 2, current=3)
    # Entries no plan reads are ignored: NaN above the diagonal, at i = 0, or at k <= j.
    ignored = ok.pairs.copy()
    ignored[1, 2, 1] = ignored[3, 2, 0] = ignored[3, 1, 2] = np.nan
    np.testing.assert_array_equal(plan_pairs(SolverCost("unipc", ok.first, ignored, ok.end), 3, current=3),
                                  plan_pairs(ok, 3, current=3))
    for scale, match in ((np.ones(3), r"scale must have M = 4"), (np.array([1.0, 0.0, 1.0, 1.0]), r"scale\[1\] = 0.0"),
                         (np.array([1.0, 1.0, np.inf, 1.0]), r"scale\[2\] = inf.*finite and > 0")):
        with pytest.raises(cotj.PlanError, match=match):
            plan_pairs(ok, 2, current=3, scale=scale)
    with pytest.raises(cotj.PlanError, match=r"pairs must have M = 4 entries"):
        plan_pairs(SolverCost("unipc", ok.first, ok.pairs[:, :, :3].copy(), ok.end), 2, current=3)
    with pytest.raises(cotj.PlanError, match=r"current has 2 rows but the batch has 3"):
        plan_pairs_batch(ok, 2, current=np.array([3, 3]), scale=np.ones((3, 4)))
    assert set(SOLVERS) == {"euler", "heun", "dpmpp_2m", "unipc"}


def test_plan_multistep_takes_grid_indices_and_names_bad_ones():
    """plan_multistep's current, previous and scale are per grid level, as every planning call's: its plan is the
    deprecated node-indexed plan_pairs' shifted by one (which warns), its cost the plan's cost, and a bad index or
    scale is refused in grid terms."""
    ok = _random_cost(6, 3, False)
    scale = np.random.default_rng(3).uniform(0.5, 2.0, 5)
    steps, total = plan_multistep(ok, 3, current=4, previous=None, scale=scale)
    with pytest.warns(DeprecationWarning, match="plan_pairs .*use plan_multistep"):
        nodes = plan_pairs(ok, 3, current=5, scale=np.append(1.0, scale))
    np.testing.assert_array_equal(steps + 1, nodes)
    assert total == pytest.approx(_plan_cost(ok, nodes, None, np.append(1.0, scale)))
    for kwargs, match in (({"current": 5}, r"current must be a grid index in 0\.\.4, got 5"),
                          ({"current": -1}, r"current must be a grid index in 0\.\.4, got -1"),
                          ({"current": 2, "previous": 7}, r"previous must be a grid index in 0\.\.4 \(or -1 for none\), got 7"),
                          ({"current": 4, "scale": np.ones(6)}, r"scale must be \(5,\) or \(B, 5\)"),
                          ({"current": 4, "scale": np.array([1.0, 0.0, 1.0, 1.0, 1.0])}, r"scale\[1\] = 0"),
                          ({"current": 4, "scale": np.array([1.0, 1.0, np.nan, 1.0, 1.0])}, r"scale\[2\] = nan")):
        with pytest.raises(cotj.PlanError, match=match):
            plan_multistep(ok, 2, **kwargs)
    with pytest.raises(TypeError, match="current must be a grid index"):
        plan_multistep(ok, 2, current=2.0)  # type: ignore[arg-type]


def test_pair_costs_are_bounded_before_anything_is_allocated():
    """Pair costs of more than MAX_PAIR_NODES nodes are refused by solver_costs before it allocates them (8·M³
    bytes), and by the planner; single-step costs are not bounded by it."""
    from cotj._core import MAX_PAIR_NODES
    from cotj._core import plan_pairs as core

    m = MAX_PAIR_NODES + 1
    levels = np.linspace(0.0, 1.0, m)
    with pytest.raises(ValueError, match=rf"levels has {m} nodes.*1\.0 GiB.*MAX_PAIR_NODES = {MAX_PAIR_NODES}"):
        solver_costs("unipc", np.eye(2 * m), levels)
    assert solver_costs("euler", np.eye(2 * m), levels).pairs is None
    big = np.zeros((m, m))  # the planner checks M before it looks at the other arrays
    with pytest.raises(cotj.PlanError, match=rf"2\.\.={MAX_PAIR_NODES} nodes.*got M = {m}"):
        core(big, np.zeros((1, 1, 1)), np.zeros(m), 2, 3)


def test_solver_costs_are_computed_once_per_content(monkeypatch):
    """A teacher cost read again from its file (as cotj.execute.sample(teacher=path) does on every call) gets the
    pair costs already computed: the same read-only arrays, not a new computation."""
    import cotj.planning.multistep as ms
    from cotj.planning.objectives import TeacherCost

    calls = []
    monkeypatch.setattr(ms, "_CACHE", ms.OrderedDict())
    monkeypatch.setattr(ms, "solver_costs", lambda *a, **k: calls.append(a[0]) or solver_costs(*a, **k))
    for _ in range(3):
        TeacherCost.load(SHAPES_TEACHER).plan("unipc", 4)
    assert calls == ["unipc"]
    a, b = TeacherCost.load(SHAPES_TEACHER), TeacherCost.load(SHAPES_TEACHER)
    assert a is not b
    ca, cb = shared_solver_costs("unipc", a.gram, np.append(0.0, a.grid)), shared_solver_costs("unipc", b.gram, np.append(0.0, b.grid))
    assert ca is cb and ca.pairs is not None and not ca.pairs.flags.writeable
    np.testing.assert_array_equal(a.solver_cost("unipc").pairs, b.solver_cost("unipc").pairs)
    other = shared_solver_costs("unipc", a.gram * 2.0, np.append(0.0, a.grid))
    assert other is not ca


# ------------------------------------------------------------------ through TeacherCost


@pytest.fixture(scope="module")
def calibrated():
    import torch

    from cotj.models.analytic import FlowMixtureModel, MixtureFamily
    from cotj.predict import calibrate

    model = FlowMixtureModel(MixtureFamily(dim=6, seed=3))
    noise = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return calibrate(model, noise, torch.arange(16) % 4, np.arange(1, 21) / 20, batch_size=5, progress=False)


@pytest.mark.torch
def test_teacher_cost_keeps_its_gram_through_a_file(calibrated, tmp_path):
    from cotj.planning.objectives import TeacherCost

    assert calibrated.gram is not None and calibrated.gram.shape == (42, 42)
    np.testing.assert_allclose(calibrated.solver_cost("euler").first[1:, 1:][np.isfinite(calibrated.edges)],
                               calibrated.edges[np.isfinite(calibrated.edges)], rtol=1e-6)
    calibrated.save(tmp_path / "tc.json")
    back = TeacherCost.load(tmp_path / "tc.json")
    np.testing.assert_array_equal(back.gram, calibrated.gram)  # full precision, symmetric
    for solver in SOLVERS:
        np.testing.assert_array_equal(back.plan(solver, 5).levels, calibrated.plan(solver, 5).levels)


@pytest.mark.torch
def test_teacher_cost_plans_each_solver_optimally(calibrated):
    import cotj
    from cotj.planning.objectives import objective

    n = calibrated.grid.size
    euler = cotj.plan_batch(objective("teacher", teacher=calibrated), 5, current=n - 1)[0]
    made = calibrated.plan("euler", 5)
    np.testing.assert_array_equal(made.levels, euler.levels)
    assert made.cost == pytest.approx(euler.cost) and np.all(made.levels == calibrated.grid[made.steps])
    for solver in ("dpmpp_2m", "unipc"):
        cost = calibrated.solver_cost(solver)
        made = calibrated.plan(solver, 4, current=n - 3, previous=n - 1)
        nodes = np.searchsorted(np.append(0.0, calibrated.grid), made.levels)
        best = _brute(cost, 4, n - 2, n, np.ones(n + 1))
        assert _plan_cost(cost, nodes, n, np.ones(n + 1)) == pytest.approx(best) and made.cost == pytest.approx(best)
    with pytest.raises(ValueError, match="no Gram matrix"):
        from dataclasses import replace

        replace(calibrated, gram=None).plan("unipc", 4)


def test_estimate_gain_is_the_gaussian_posterior_slope():
    """For Gaussian data N(0, σ²) the posterior mean is a·σ²/(a²σ² + s²)·x: the gain is exact there."""
    a, s, var = np.array([0.0, 0.3, 0.9, 1.0]), np.array([1.0, 0.7, 0.1, 0.0]), 0.5
    np.testing.assert_allclose(estimate_gain(a, s, var), a * var / (a * a * var + s * s))
    assert estimate_gain(1.0, 0.0, var) == pytest.approx(1.0) and estimate_gain(0.0, 1.0, var) == 0.0
    w = at_predicted_state({"m_i": np.array(2.0), "x_j": np.array(1.0)}, {"x_j": np.array(0.5), "m_j": np.array(0.5)}, 0.25)
    assert w == pytest.approx({"m_i": 2.0, "x_j": 1.25, "m_j": 0.25, "x_i": -0.5})


@pytest.mark.diffusers
def test_replanning_a_batch_gives_each_row_its_own_plan():
    """Replanner.next_scaled plans all rows of a multistep batch in one core call: each row's next level is the
    second level of TeacherCost.plan for that row alone (its current and previous level, its row scales)."""
    from cotj.execute.replan import Replanner
    from cotj.planning.objectives import TeacherCost

    teacher = TeacherCost.load(SHAPES_TEACHER)
    n = teacher.grid.size
    rng = np.random.default_rng(11)
    for solver in ("dpmpp_2m", "unipc"):
        replanner = Replanner(teacher, 10, solver=solver)
        for done in (1, 2, 5):
            level = rng.integers(40, n - 1, 6) if done > 1 else np.full(6, n - 1)
            previous = np.minimum(level + rng.integers(1, 20, 6), n - 1) if done > 1 else None
            log_scale = rng.normal(0.0, 0.4, (6, n))
            got = replanner.next_scaled(level, done, log_scale, previous)
            for b in range(6):
                plan = teacher.plan(solver, 10 - done + 1, current=int(level[b]),
                                    previous=None if previous is None else int(previous[b]), log_scale=log_scale[b])
                assert got[b] == plan.steps[1]


def test_ctrl_c_stops_a_long_pair_plan():
    """SIGINT 0.3 s into seconds of pair planning (4096 rows on the thread pool, N = 199) raises
    KeyboardInterrupt within ~100 ms: the core polls between rows of every layer, the binding runs Python's
    signal handlers while the GIL is released."""
    setup = ("from cotj._core import plan_pairs\nm = 200\n"
             "first, pairs, end = np.ones((m, m)), np.ones((m, m, m)), np.ones(m)\nplan_pairs(first, pairs, end, 3, m - 1)")
    # about 8 s uninterrupted on an idle machine
    latency = ctrl_c_latency(setup, "plan_pairs(first, pairs, end, 150, np.full(4096, m - 1))", 0.3)
    assert latency < 0.5, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"
