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
    p = benchmark(cotj.plan, None, K, cost=lever_matrix, scale=dna, start=-dna, end=dna)
    np.testing.assert_array_equal(p.steps, cotj.plan(dna, K).steps)


def test_dense_batch_cotj(benchmark, batch, lever_matrix):
    benchmark.group = f"dense cost, batch of {BATCH}, K=8, shared matrix, per-row scale"
    out = benchmark(cotj.plan_batch, None, K, cost=lever_matrix, scale=batch, start=-batch, end=batch)
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
    from cotj.objectives import TeacherCost

    benchmark.group = "closed-loop replanning, one step (K=10, N=100, shipped teacher cost)"
    replanner = Replanner(TeacherCost.load(TEACHER), 10)
    rng = np.random.default_rng(0)
    x, x0 = rng.standard_normal((1, 1728)), 0.3 * rng.standard_normal((1, 1728))
    nxt = benchmark(replanner.next, np.array([99]), 1, x, x0)
    assert 0 <= nxt[0] < 99
