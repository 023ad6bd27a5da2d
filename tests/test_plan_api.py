"""The numpy-side API: threads, result objects, DNA helpers, schedules, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cotj
import reference as ref
from cotj.planning import schedules


def test_many_threads_get_the_sequential_answers(real_dna):
    rng = np.random.default_rng(0)
    batches = [real_dna * rng.uniform(0.5, 2.0, (64, 100)) ** rng.uniform(0.5, 2, (64, 1)) for _ in range(16)]
    sequential = [cotj.plan_batch(b, 8) for b in batches] + [cotj.plan_batch(b, tau=0.99) for b in batches]
    jobs = [(b, {"budget": 8}) for b in batches] + [(b, {"tau": 0.99}) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda job: cotj.plan_batch(job[0], **job[1]), jobs * 3))
    for i, got in enumerate(threaded):
        want = sequential[i % len(sequential)]
        np.testing.assert_array_equal(got.steps, want.steps)
        np.testing.assert_array_equal(got.cost, want.cost)


def test_plan_batch_result_rows(real_dna):
    batch = cotj.plan_batch(np.stack([real_dna, real_dna * 2]), tau=0.99, max_steps=30)
    assert len(batch) == 2 and batch.curve.shape == (2, 30) and batch.ratio.shape == (2, 30)
    rows = list(batch)
    # Scaling the DNA scales every cost: the same plan.
    np.testing.assert_array_equal(rows[0].steps, rows[1].steps)
    assert rows[1].cost == pytest.approx(2 * rows[0].cost)
    assert batch.steps.shape[1] == batch.lengths.max()
    p = rows[0]
    assert p.sigmas()[-1] == 0.0 and len(p.sigmas()) == p.budget + 1 and len(p) == p.budget


def test_planner_reuses_a_custom_grid(real_dna):
    grid = np.linspace(0.02, 1.0, 50)
    planner = cotj.Planner(grid, first="top")
    dna = np.interp(grid, cotj.default_grid(100), real_dna)
    p = planner.plan(dna, 6)
    assert p.steps[0] == 49
    np.testing.assert_array_equal(p.levels, grid[p.steps])
    assert planner.plan(dna, 6).cost == cotj.plan(dna, 6, grid=grid, first="top").cost
    np.testing.assert_array_equal(planner.grid, grid)


def test_vp_schedule_lever_matches_its_definition():
    grid = cotj.default_grid(40)
    table = np.cumprod(1 - np.linspace(0.00085, 0.012, 1000))  # SD-style scaled-linear-ish betas
    a, s = schedules.vp(grid, table)
    np.testing.assert_allclose(a**2 + s**2, 1.0)
    d = np.linspace(0.01, 0.5, 40) ** 2
    p = cotj.plan(d, 5, grid=grid, schedule=(a, s))
    assert p.cost == pytest.approx(ref.cost(d, p.steps, ref.lever(grid, a, s)), rel=1e-12)
    linear = cotj.plan(d, 5, grid=grid, schedule=schedules.linear_flow(grid))
    assert linear.cost == pytest.approx(cotj.plan(d, 5).cost, rel=1e-12)


def test_ve_schedule_is_edm_spacing():
    a, s = schedules.ve(np.array([0.0, 1.0]), sigma_min=0.002, sigma_max=80.0)
    np.testing.assert_allclose(s, [0.002, 80.0])
    np.testing.assert_array_equal(a, 1.0)


def test_align_dna_restores_scale_and_floor(real_dna):
    pred = real_dna * 37.0 + 5.0
    np.testing.assert_allclose(cotj.align_dna(pred, real_dna), real_dna, rtol=1e-10, atol=1e-12)
    batch = cotj.align_dna(np.stack([pred, np.full(100, 3.0)]), real_dna)
    np.testing.assert_allclose(batch[0], real_dna, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(batch[1], real_dna.mean())


def test_gains_mark_negative_levels(real_dna):
    g = cotj.gains(real_dna)
    assert g.shape == (99,)
    np.testing.assert_allclose(g, real_dna[1:] - real_dna[:-1])


@pytest.mark.parametrize("suffix", [".npy", ".json", ".csv"])
def test_load_dna_reads_every_format(tmp_path, real_dna, suffix):
    rows = np.stack([real_dna, real_dna / 2])
    path = tmp_path / f"dna{suffix}"
    if suffix == ".npy":
        np.save(path, rows)
    elif suffix == ".json":
        path.write_text(json.dumps({"dna": rows.tolist()}))
    else:
        np.savetxt(path, rows, delimiter=",")
    np.testing.assert_allclose(cotj.load_dna(path), rows, rtol=1e-15)


def test_import_cotj_needs_numpy_only():
    code = "import sys, cotj, numpy; cotj.plan(numpy.ones(10), 3); print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_batch_memory_is_linear_in_the_batch():
    """No (B, N, N) temporaries: planning 200,000 rows of N = 100 stays far below B·N²·8 bytes (16 GB)."""
    code = """
import resource, numpy as np, cotj
dna = np.random.default_rng(0).uniform(0.0, 1.0, (200_000, 100))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = cotj.plan_batch(dna, 8)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, out.steps.shape[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown_mb, rows = map(int, out.stdout.split())
    assert rows == 200_000
    assert grown_mb < 400, f"peak memory grew by {grown_mb} MB"


@pytest.mark.slow
@pytest.mark.lint
def test_the_stub_states_the_binding_exactly(tmp_path):
    """python/cotj/_core.pyi is the binding's typed contract: mypy's stubtest finds nothing it misses or
    gets wrong (names, signatures, defaults, classes)."""
    done = subprocess.run([sys.executable, "-m", "mypy.stubtest", "cotj._core"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
