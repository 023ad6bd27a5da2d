"""The Tier 1 quality benchmark: baseline schedules, the GITS/OSS dynamic programme, the samplers, and a quick
run of ``benches/quality.py`` whose saved samples must reproduce its reported figures."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import cotj  # noqa: E402
from cotj.execute.solvers import solve  # noqa: E402
from cotj.models import seeded_noise  # noqa: E402
from cotj.models.analytic import FlowMixtureModel, MixtureFamily, VPMixtureModel, exact_endpoint  # noqa: E402
from cotj.planning import schedules  # noqa: E402
from cotj.predict.teacher import Trajectories  # noqa: E402
from cotj_testbed import baselines, quality, quality_tier1  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("k", [1, 2, 3, 7, 25])
@pytest.mark.parametrize("make", [schedules.uniform, schedules.shifted, schedules.karras])
def test_fixed_baselines_are_k_descending_levels_in_the_unit_interval(make, k):
    lv = make(k)
    assert lv.shape == (k,) and lv.dtype == np.float64
    assert np.all(np.diff(lv) < 0) and lv[-1] > 0 and lv[0] <= 1


def test_fixed_baselines_follow_their_formulas():
    np.testing.assert_allclose(schedules.uniform(4), [1.0, 0.75, 0.5, 0.25])
    # SD3 shift 3 of t = 0.5 is 1.5 / 2 = 0.75; t = 1 stays 1
    np.testing.assert_allclose(schedules.shifted(2), [1.0, 0.75])
    lv = schedules.karras(10)
    assert lv[0] == pytest.approx(80 / 81) and lv[-1] == pytest.approx(0.002 / 1.002)
    sigma = lv / (1 - lv)  # back to EDM sigmas: rho-th roots are evenly spaced
    np.testing.assert_allclose(np.diff(sigma ** (1 / 7)), np.diff(sigma ** (1 / 7))[0])


@pytest.mark.parametrize("bad", [0, -2])
def test_baselines_reject_bad_budgets(bad):
    with pytest.raises(ValueError, match="budget must be in 1.."):
        schedules.uniform(bad)
    with pytest.raises(TypeError, match="budget must be an int"):
        schedules.karras(2.0)
    with pytest.raises(ValueError, match="shift"):
        schedules.shifted(3, shift=0.0)


def _brute_force(cost, k):
    m = cost.shape[0]
    best, arg = np.inf, None
    for inner in itertools.combinations(range(m - 2, 0, -1), k - 1):
        nodes = (m - 1, *inner, 0)
        c = sum(cost[j, i] for j, i in zip(nodes[:-1], nodes[1:]))
        if c < best:
            best, arg = c, nodes
    return best, arg


@pytest.mark.parametrize("seed", range(6))
def test_cheapest_path_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    m = 8
    cost = np.where(np.tri(m, k=-1, dtype=bool), rng.exponential(size=(m, m)), np.inf)  # [j, i] finite for i < j
    for k in range(1, m):
        nodes = baselines.cheapest_path(cost, k)
        best, _ = _brute_force(cost, k)
        assert nodes[0] == m - 1 and nodes[-1] == 0 and len(nodes) == k + 1 and np.all(np.diff(nodes) < 0)
        assert sum(cost[j, i] for j, i in zip(nodes[:-1], nodes[1:])) == pytest.approx(best, rel=1e-12)
    with pytest.raises(ValueError, match="k must be <="):
        baselines.cheapest_path(cost, m)


def _straight(b=3, d=5, grid=None, delta=None):
    """Straight-line teacher trajectories (x_t = (1-t)·x0 + t·eps), x0 estimates x0 + delta."""
    grid = np.linspace(0.0, 1.0, 9) if grid is None else grid
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((b, 1, d)), rng.standard_normal((b, 1, d))
    t = grid[None, :, None]
    err = np.zeros((b, grid.size, d)) if delta is None else delta
    return Trajectories(grid, (1 - t) * x0 + t * eps, np.broadcast_to(x0, err.shape) + err), err


def test_jump_costs_are_zero_on_straight_paths_and_the_lever_for_a_wrong_x0():
    traj, _ = _straight()
    finite = np.isfinite(traj.jump_costs)
    assert np.all(finite == np.tri(9, k=-1, dtype=bool)[None])  # edges only from higher to lower levels
    np.testing.assert_allclose(traj.jump_costs[finite], 0.0, atol=1e-24)
    delta = np.random.default_rng(1).standard_normal((3, 9, 5))
    traj, delta = _straight(delta=delta)
    t = traj.levels
    for j, i in [(8, 0), (8, 5), (4, 1), (2, 1)]:
        lever = ((t[j] - t[i]) / t[j]) ** 2  # docs/method.md §3: an x0 error at t_j displaces the step's landing point by it
        np.testing.assert_allclose(traj.jump_costs[:, j, i], lever * (delta[:, j] ** 2).mean(-1), rtol=1e-10)


def test_gits_and_oss_are_the_brute_force_optima_of_their_costs():
    delta = np.random.default_rng(3).standard_normal((3, 9, 5)) * np.linspace(0.0, 2.0, 9)[None, :, None]
    traj, _ = _straight(delta=delta)
    levels = traj.levels
    for k in (1, 2, 3, 5):
        _, nodes = _brute_force(traj.jump_costs.mean(0), k)
        np.testing.assert_array_equal(baselines.gits(traj, k), levels[list(nodes[:-1])])
        per_sample = baselines.oss(traj, k)
        assert per_sample.shape == (3, k)
        for b in range(3):
            _, nodes = _brute_force(traj.jump_costs[b], k)
            np.testing.assert_array_equal(per_sample[b], levels[list(nodes[:-1])])


# ------------------------------------------------------------------------------------------- samplers


def test_the_benchmark_sampler_runs_ragged_rows_like_separate_runs():
    model = VPMixtureModel(MixtureFamily(dim=4, seed=2))  # a DDIM step on the VP path
    noise = torch.randn(2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cond = torch.tensor([5, 6])
    rows = np.array([[1.0, 0.6, 0.2], [0.9, 0.4, np.nan]])
    both = solve(model, noise, cond, rows)
    for b, row in enumerate(rows):
        alone = solve(model, noise[b : b + 1], cond[b : b + 1], row[np.isfinite(row)])
        torch.testing.assert_close(both[b : b + 1], alone, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="strictly decreasing"):
        solve(model, noise, cond, [0.5, 0.7])
    with pytest.raises(ValueError, match="NaN padding"):
        solve(model, noise, cond, np.array([[1.0, np.nan, 0.2], [1.0, 0.5, 0.2]]))


def test_ode_trajectories_end_at_the_exact_endpoint():
    model = FlowMixtureModel(MixtureFamily(dim=8, seed=0))
    noise = seeded_noise([3, 4], (8,), seed=1)
    cond = torch.tensor([3, 4])
    traj = quality_tier1.ode_trajectories(model, noise, cond, cotj.default_grid(50), substeps=2)
    assert traj.states.shape == (2, 51, 8) and traj.levels[0] == 0 and traj.levels[-1] == 1
    np.testing.assert_array_equal(traj.states[:, -1], noise.numpy())
    # the same 100 RK4 steps as exact_endpoint's linspace(1, 0, 101): equal up to rounding of the levels
    np.testing.assert_allclose(traj.states[:, 0], exact_endpoint(model, noise, cond, steps=100).numpy(), atol=1e-10)
    np.testing.assert_allclose(traj.x0[:, 10], model.x0(torch.from_numpy(traj.states[:, 10]), torch.tensor(0.2), cond).numpy())


def test_seeded_noise_depends_on_the_item_alone():
    a = seeded_noise([7, "a red circle", 9], (3,), seed=1)
    b = seeded_noise(["a red circle", 9], (3,), seed=1)
    torch.testing.assert_close(a[1:], b)
    assert not torch.equal(a, seeded_noise([7, "a red circle", 9], (3,), seed=2))


# ------------------------------------------------------------------------------------------- a quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    cmd = [sys.executable, str(ROOT / "benches" / "quality.py"), "--tier", "1", "--quick", "--out", str(out),
           "--save-samples", str(out / "samples.npz"), "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=300)
    results = json.loads((out / "quality_tier1_quick.json").read_text())
    return out, results, dict(np.load(out / "samples.npz"))


def test_quick_run_writes_the_report(quick_run):
    out, results, _ = quick_run
    assert (out / "quality_tier1_quick_psnr.png").stat().st_size > 10_000
    md = (out / "quality_tier1_quick.md").read_text()
    for name in quality.SCHEDULES.values():
        assert name in md
    assert set(results["schedules"]) == set(quality.SCHEDULES)
    assert all(set(v) == {str(k) for k in results["ks"]} for v in results["schedules"].values())
    assert 0 < results["planning_time"]["percent_of_step"] and results["predictor"]["n_heldout"] == 10


def test_reported_mse_and_psnr_are_recomputed_from_the_saved_samples(quick_run):
    _, results, samples = quick_run
    ref, r = samples["reference"], results["data_range"]
    assert r == pytest.approx(ref.max() - ref.min())
    runs = [(n, str(k), results["schedules"][n][str(k)]) for n in quality.SCHEDULES for k in results["ks"]]
    runs += [("cotj_adaptive", "tau", results["adaptive"]), ("uniform_50", "50", results["uniform_50"])]
    for name, k, reported in runs:
        mse = ((samples[f"{name}/K{k}/x"] - ref) ** 2).mean(axis=1)
        assert reported["mse"] == pytest.approx(mse.mean(), rel=1e-12)
        assert reported["psnr"] == pytest.approx(np.mean(10 * np.log10(r**2 / mse)), rel=1e-12)
    lengths = np.isfinite(samples["cotj_adaptive/Ktau/levels"]).sum(1)
    assert results["adaptive"]["nfe_mean"] == pytest.approx(lengths.mean())


def test_oracle_cost_is_never_above_a_baseline_of_equal_budget(quick_run):
    """CoTj-oracle is the optimum of its own cost on the true DNA: every other schedule of the same K, put on
    the nearest grid levels, costs at least as much (where the snapped levels stay distinct)."""
    _, results, samples = quick_run
    dna, grid = samples["dna"], samples["grid"]
    compared = 0
    for k in results["ks"]:
        oracle = samples[f"cotj_oracle/K{k}/levels"]
        for b in range(len(dna)):
            best = cotj.plan_cost(dna[b], np.abs(grid[None] - oracle[b][:, None]).argmin(1), grid=grid)
            assert best == pytest.approx(cotj.plan(dna[b], k, grid=grid).cost, abs=1e-12)
            for name in quality.SCHEDULES:
                steps = np.abs(grid[None] - samples[f"{name}/K{k}/levels"][b][:, None]).argmin(1)
                if len(steps) == k and np.all(np.diff(steps) < 0):
                    assert best <= cotj.plan_cost(dna[b], steps, grid=grid) + 1e-12
                    compared += 1
    assert compared >= len(results["ks"]) * len(dna) * (len(quality.SCHEDULES) - 1)
