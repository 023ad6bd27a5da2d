"""Speed of the Python API against two baselines written by the project (tests/reference.py):
a vectorised numpy layered DP and the paper's networkx layered-graph shortest path.

Run through ``python benches/speed.py`` (it prints the table with the ratios, or with
``--save-baseline`` / ``--compare`` checks cotj's benchmarks for a regression), or directly:
``pytest benches/test_speed.py --benchmark-enable``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import cotj
import reference as ref

N, K, BATCH = 100, 8, 4096


@pytest.fixture(scope="module")
def dna() -> np.ndarray:
    """Qwen-Image's released mean DNA (N = 100), float64."""
    return cotj.mean_dna("qwen-image")


@pytest.fixture(scope="module")
def batch(dna) -> np.ndarray:
    """BATCH rows: the real mean DNA bent and scaled per row, as different prompts would."""
    rng = np.random.default_rng(0)
    t = cotj.default_grid(N)
    return np.ascontiguousarray(dna * rng.uniform(0.5, 2.0, (BATCH, 1)) * t ** rng.uniform(-0.3, 0.3, (BATCH, 1)))


@pytest.fixture(scope="module")
def lever() -> np.ndarray:
    return ref.lever(cotj.default_grid(N))


@pytest.fixture(scope="module")
def lever_matrix() -> np.ndarray:
    """The planner's own lever values (N, N): as a dense cost with scale = d, start = -d and
    end = d it reproduces the DNA form's plans exactly."""
    return cotj._core.Lever.default(N).matrix()


def test_plan_one_cotj(benchmark, dna):
    benchmark.group = "one prompt, K=8"
    p = benchmark(cotj.plan, dna, K)
    assert p.budget == K


def test_plan_one_numpy(benchmark, dna, lever):
    benchmark.group = "one prompt, K=8"
    cost, steps = benchmark(ref.numpy_plan, dna, K, lever)
    assert steps == list(cotj.plan(dna, K).steps)


def test_plan_one_networkx(benchmark, dna):
    benchmark.group = "one prompt, K=8"
    cost, steps = benchmark.pedantic(ref.networkx_plan, (dna, cotj.default_grid(N), K), rounds=5)
    assert steps == list(cotj.plan(dna, K).steps)


def test_adaptive_one_cotj(benchmark, dna):
    benchmark.group = "one prompt, adaptive tau=0.99, max_steps=50"
    p = benchmark(cotj.plan, dna, tau=0.99, max_steps=50)
    assert p.curve.shape == (50,)


def test_adaptive_one_networkx(benchmark, dna):
    benchmark.group = "one prompt, adaptive tau=0.99, max_steps=50"
    curve, plans = benchmark.pedantic(ref.networkx_curve, (dna, cotj.default_grid(N), 50), rounds=2)
    assert ref.adaptive_choice(curve, 0.99) == cotj.plan(dna, tau=0.99, max_steps=50).budget


def test_dense_one_cotj(benchmark, dna, lever_matrix):
    benchmark.group = "dense cost, one plan, K=8, shared (N, N) matrix"
    p = benchmark(cotj.plan, cotj.DenseCost(lever_matrix, start=-dna, end=dna, scale=dna), K)
    np.testing.assert_array_equal(p.steps, cotj.plan(dna, K).steps)


def test_dense_batch_cotj(benchmark, batch, lever_matrix):
    benchmark.group = f"dense cost, batch of {BATCH}, K=8, shared matrix, per-row scale"
    out = benchmark(cotj.plan_batch, cotj.DenseCost(lever_matrix, start=-batch, end=batch, scale=batch), K)
    np.testing.assert_array_equal(out.steps, cotj.plan_batch(batch, K).steps)


def test_batch_cotj(benchmark, batch):
    benchmark.group = f"batch of {BATCH}, K=8"
    out = benchmark(cotj.plan_batch, batch, K)
    assert out.steps.shape == (BATCH, K)


def _plan_in_small_calls(rows: np.ndarray) -> None:
    """Plan ``rows`` 8 at a time: batches this small run on the calling thread, not the pool."""
    for start in range(0, len(rows), 8):
        cotj.plan_batch(rows[start : start + 8], K)


def test_small_calls_one_python_thread(benchmark, batch):
    benchmark.group = f"batch of {BATCH} in calls of 8 rows, K=8"
    benchmark(_plan_in_small_calls, batch)


def test_small_calls_two_python_threads(benchmark, batch):
    """Two Python threads, half the calls each: faster than one thread only if the GIL is
    released while planning."""
    benchmark.group = f"batch of {BATCH} in calls of 8 rows, K=8"
    halves = np.array_split(batch, 2)

    def run() -> None:
        threads = [threading.Thread(target=_plan_in_small_calls, args=(h,)) for h in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    benchmark(run)


def test_batch_numpy(benchmark, batch, lever):
    benchmark.group = f"batch of {BATCH}, K=8"
    costs, steps = benchmark.pedantic(ref.numpy_plan_batch, (batch, K, lever), rounds=3)
    np.testing.assert_array_equal(steps, cotj.plan_batch(batch, K).steps)


def test_replan_one_step(benchmark):
    """One closed-loop decision with the shipped shapes teacher cost: the row scale from the state (3·24·24
    values) and the plan of the 9 evaluations left from the top level (cotj.execute.replan.Replanner.next)."""
    pytest.importorskip("torch")
    from cotj.execute.replan import Replanner
    from cotj.models.generator import TEACHER
    from cotj.planning.objectives import TeacherCost

    benchmark.group = "closed-loop replanning, one step (K=10, N=100, shipped teacher cost)"
    replanner = Replanner(TeacherCost.load(TEACHER), 10)
    rng = np.random.default_rng(0)
    x, x0 = rng.standard_normal((1, 1728)), 0.3 * rng.standard_normal((1, 1728))
    nxt = benchmark(replanner.next, np.array([99]), 1, x, x0)
    assert 0 <= nxt[0] < 99


# ------------------------------------------------------------------ multistep solvers: the pair DP (issue 17)

KM = 10
"""Evaluations per sample of the multistep benchmarks (NFE)."""


@pytest.fixture(scope="module")
def shapes_teacher():
    """The shipped shapes teacher cost (N = 100, with its Gram matrix), its solver costs computed beforehand (once
    per content: cotj.planning.multistep.shared_solver_costs)."""
    from cotj.models.generator import TEACHER
    from cotj.planning.objectives import TeacherCost

    teacher = TeacherCost.load(TEACHER)
    for solver in ("dpmpp_2m", "unipc"):
        teacher.solver_cost(solver)
    return teacher


@pytest.mark.parametrize("solver", ["unipc", "dpmpp_2m"])
def test_pairs_plan_cotj(benchmark, shapes_teacher, solver):
    """One open-loop plan for a multistep solver, K = 10 from the top (TeacherCost.plan: the Rust pair DP)."""
    benchmark.group = f"multistep plan, {solver}, K=10, N=100"
    p = benchmark(shapes_teacher.plan, solver, KM)
    assert p.levels.shape == (KM,)


def test_pairs_plan_numpy(benchmark, shapes_teacher):
    """The same UniPC plan with the numpy pair DP cotj ran before (tests/reference.py)."""
    benchmark.group = "multistep plan, unipc, K=10, N=100"
    cost = shapes_teacher.solver_cost("unipc")
    n = shapes_teacher.grid.size
    nodes = benchmark.pedantic(ref.pair_plan, (cost.first, cost.pairs, cost.end, KM, n), rounds=5)
    np.testing.assert_array_equal(nodes - 1, shapes_teacher.plan("unipc", KM).steps)


def _states(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A state and clean estimate of one shapes sample (3·24·24 values)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 1728)), 0.3 * rng.standard_normal((1, 1728))


@pytest.mark.parametrize("solver", ["unipc", "dpmpp_2m"])
def test_replan_first_step_cotj(benchmark, shapes_teacher, solver):
    """The costliest closed-loop decision: after the first evaluation, at the top, the row scales from the state and
    the plan of the K = 10 evaluations from there (Replanner.next)."""
    from cotj.execute.replan import Replanner

    benchmark.group = f"closed-loop replanning, first step, {solver}, K=10, N=100"
    replanner = Replanner(shapes_teacher, KM, solver=solver)
    x, x0 = _states()
    nxt = benchmark(replanner.next, np.array([99]), 1, x, x0)
    assert 0 <= nxt[0] < 99


def test_replan_first_step_numpy(benchmark, shapes_teacher):
    """The same first UniPC step with the numpy pair DP (row scales as Replanner.next computes them)."""
    from cotj.execute.replan import Replanner

    benchmark.group = "closed-loop replanning, first step, unipc, K=10, N=100"
    replanner = Replanner(shapes_teacher, KM, solver="unipc")
    cost = shapes_teacher.solver_cost("unipc")
    x, x0 = _states()

    def step() -> int:
        w = np.exp(shapes_teacher.row_scale(np.array([99]), x, x0)[0])
        return int(ref.pair_plan(cost.first, cost.pairs, cost.end, KM, 100, None, np.append(1.0, w))[1]) - 1

    nxt = benchmark.pedantic(step, rounds=5)
    assert nxt == replanner.next(np.array([99]), 1, x, x0)[0]


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "unipc"])
def test_closed_loop_planning_cotj(benchmark, shapes_teacher, solver):
    """All the planning of one closed-loop sample of K = 10 evaluations, as ReplanningScheduler does it: the
    open-loop plan at set_timesteps, then one Replanner.next after every evaluation (states of a sample)."""
    from cotj.execute.replan import Replanner
    from cotj.planning.planner import plan_batch

    benchmark.group = "closed-loop planning of one sample, K=10, N=100"
    replanner = Replanner(shapes_teacher, KM, solver=solver)
    states = [_states(seed) for seed in range(KM)]

    def sample() -> list[int]:
        if solver == "euler":
            plan_batch(shapes_teacher.dense(), KM, current=99)
        else:
            shapes_teacher.plan(solver, KM)
        level, previous, seen = np.array([99]), np.array([-1]), []
        for done in range(1, KM + 1):
            seen.append(int(level[0]))
            nxt = replanner.next(level, done, *states[done - 1], previous)
            previous, level = level, nxt
        return seen

    seen = benchmark(sample)
    assert len(seen) == KM and all(a > b for a, b in zip(seen, seen[1:]))


def test_model_call_shapes(benchmark):
    """One model call of the shapes generator: the guided velocity of one sample (guidance 2: one UNet call on a
    batch of 2), on the CPU with torch's default threads."""
    torch = pytest.importorskip("torch")
    from cotj.models.generator import load_pipeline

    benchmark.group = "shapes generator, one model call (batch 1, guidance 2)"
    pipe = load_pipeline()
    embeds = pipe.encode_prompt(["two red circles on the left"])
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    v = benchmark(pipe.velocity, x, torch.tensor(0.7), embeds, 2.0)
    assert v.shape == x.shape
