"""cotj.integrations.k_diffusion against the real k-diffusion package: planned sigmas, the open-loop
sampler against k-diffusion's own Euler and DPM-Solver++(2M), and the closed loop against cotj's own replanning."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = [needs_extra("diffusers"), needs_extra("k_diffusion"), pytest.mark.usefixtures("one_torch_thread")]

import k_diffusion.sampling as sampling  # noqa: E402
import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.execute.replan import Replanner, replan_sample  # noqa: E402
from cotj.integrations.k_diffusion import (  # noqa: E402
    get_sigmas_cotj,
    levels_of,
    restrict,
    sample_cotj,
    sample_cotj_fixed,
    sigmas_of,
)
from cotj.models.analytic import FlowMixtureModel, MixtureFamily  # noqa: E402
from cotj.planning.objectives import TeacherCost  # noqa: E402
from cotj.predict.teacher import calibrate  # noqa: E402

FAMILY = MixtureFamily(dim=6, seed=0)
GRID = cotj.default_grid(20)


class Denoiser:
    """The exact posterior mean of the analytic mixtures as a k-diffusion denoiser ``model(x, sigma, cond=...)``:
    ``x = x0 + σ·eps`` ("ve") or ComfyUI's flow convention ``x = (1 - σ)·x0 + σ·eps`` ("flow"). Records the sigma
    of every call."""

    def __init__(self, space: str = "ve") -> None:
        self.space = space
        self.sigmas: list[float] = []

    def __call__(self, x: Any, sigma: Any, cond: Any = None) -> Any:
        assert sigma.shape == (x.shape[0],) and bool((sigma == sigma[0]).all())
        self.sigmas.append(float(sigma[0]))
        s = sigma.to(torch.float64)
        a = torch.ones_like(s) if self.space == "ve" else 1.0 - s
        return FAMILY.posterior(x, a, s, cond)[0].to(x.dtype)


def _noise(n: int, seed: int) -> Any:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def teacher() -> TeacherCost:
    return calibrate(FlowMixtureModel(FAMILY), _noise(24, 0), torch.arange(24) % 5, GRID, batch_size=12, progress=False)


@pytest.fixture(scope="module")
def open_teacher(teacher) -> TeacherCost:
    """The same costs without the row model: the closed loop follows the teacher plan."""
    return TeacherCost(teacher.grid, teacher.edges, teacher.end, teacher.n_samples, None, teacher.gram)


COND = torch.arange(3) % 3


# ------------------------------------------------------------------------------------------ open loop


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m"])
@pytest.mark.parametrize("source", ["karras", "dna", "teacher"])
def test_fixed_sigmas_match_k_diffusion(name, source, teacher):
    """On fixed sigmas, cotj's open-loop sampler is k-diffusion's sample_euler / sample_dpmpp_2m."""
    sig = {"karras": lambda: sampling.get_sigmas_karras(7, 0.02, 80.0),
           "dna": lambda: get_sigmas_cotj(7, 0.02, 80.0, dna="qwen-image"),
           "teacher": lambda: get_sigmas_cotj(7, 0.02, 80.0, teacher=teacher, solver=name)}[source]().double()
    x = _noise(3, 1) * sig[0]
    ref = getattr(sampling, f"sample_{name}")(Denoiser(), x.clone(), sig, extra_args={"cond": COND}, disable=True)
    mine = sample_cotj_fixed(Denoiser(), x.clone(), sig, extra_args={"cond": COND}, disable=True, solver=name)
    assert float((mine - ref).abs().max()) < 1e-5
    assert float((mine - ref).abs().max()) < 1e-12  # float64: the same update, up to rounding


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m"])
def test_fixed_sigmas_match_k_diffusion_in_float32(name):
    sig = get_sigmas_cotj(9, 0.002, 80.0, dna="z-image-turbo")
    x = (_noise(3, 2) * 80.0).float()
    ref = getattr(sampling, f"sample_{name}")(Denoiser(), x.clone(), sig, extra_args={"cond": COND}, disable=True)
    mine = sample_cotj_fixed(Denoiser(), x.clone(), sig, extra_args={"cond": COND}, disable=True, solver=name)
    assert mine.dtype == torch.float32 and float((mine - ref).abs().max()) < 1e-5


def test_fixed_unipc_is_cotj_solve_and_stops_at_a_nonzero_sigma():
    """UniPC (not in k-diffusion) is cotj.execute.solve's on the same levels; a last sigma above 0 stops there,
    as k-diffusion's samplers do."""
    from cotj.execute import solve

    levels = np.array([1.0, 0.7, 0.45, 0.25, 0.1])
    x = _noise(3, 3)
    ref = solve(FlowMixtureModel(FAMILY), x.clone(), COND, levels, "unipc")
    mine = sample_cotj_fixed(Denoiser("flow"), x.clone(), torch.tensor([*levels, 0.0], dtype=torch.float64),
                             extra_args={"cond": COND}, disable=True, solver="unipc", space="flow")
    np.testing.assert_allclose(mine.numpy(), ref.numpy(), atol=1e-10)
    sig = sampling.get_sigmas_karras(6, 0.05, 20.0).double()[:4]  # three steps, ending at a sigma above 0
    ref = sampling.sample_euler(Denoiser(), x * 20.0, sig, extra_args={"cond": COND}, disable=True)
    mine = sample_cotj_fixed(Denoiser(), x * 20.0, sig, extra_args={"cond": COND}, disable=True)
    np.testing.assert_allclose(mine.numpy(), ref.numpy(), atol=1e-12)


# ------------------------------------------------------------------------------------------ planned sigmas


def test_sigma_level_mapping():
    t = np.array([0.0, 0.25, 0.5, 0.9])
    np.testing.assert_allclose(sigmas_of(t), [0.0, 1 / 3, 1.0, 9.0])
    np.testing.assert_allclose(levels_of(sigmas_of(t)), t)
    assert sigmas_of(1.0) == np.inf and levels_of(np.inf) == 1.0
    np.testing.assert_array_equal(sigmas_of(t, "flow"), t)
    np.testing.assert_allclose(levels_of(80.0), cotj.planning.schedules.karras(1)[0])  # the flow level EDM's sigma_max is


@pytest.mark.parametrize("name", cotj.mean_dna_names())
@pytest.mark.parametrize("n", [1, 4, 10])
def test_flow_sigmas_of_a_mean_dna_are_cotj_plan(name, n):
    sig = get_sigmas_cotj(n, 0.0, 1.0, dna=name, space="flow")
    assert sig.dtype == torch.float32 and sig.shape == (n + 1,) and float(sig[-1]) == 0.0
    np.testing.assert_array_equal(sig[:-1].numpy(), cotj.plan(cotj.mean_dna(name), n, first="top").levels.astype(np.float32))


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "unipc"])
def test_flow_sigmas_of_a_teacher_are_its_plan(solver, teacher, tmp_path):
    sig = get_sigmas_cotj(6, 0.0, 1.0, teacher=teacher, solver=solver, space="flow")
    want = (cotj.plan_batch(teacher.dense(), 6, current=19).levels[0] if solver == "euler"
            else teacher.plan(solver, 6).levels)
    np.testing.assert_array_equal(sig[:-1].numpy(), want.astype(np.float32))
    teacher.save(tmp_path / "t.json")  # a path works as well as the object
    np.testing.assert_array_equal(get_sigmas_cotj(6, 0.0, 1.0, teacher=str(tmp_path / "t.json"), solver=solver,
                                                  space="flow").numpy(), sig.numpy())


@pytest.mark.parametrize("source", ["dna", "teacher"])
@pytest.mark.parametrize(("sigma_min", "sigma_max"), [(0.002, 80.0), (0.1, 14.6146), (0.5, 3.0)])
def test_ve_sigmas_lie_in_the_range_on_grid_levels(source, sigma_min, sigma_max, teacher):
    kwargs: dict[str, Any] = {"dna": "qwen-image"} if source == "dna" else {"teacher": teacher}
    grid = cotj.default_grid(100) if source == "dna" else GRID
    sig = get_sigmas_cotj(4, sigma_min, sigma_max, **kwargs).double().numpy()
    assert sig[0] == pytest.approx(sigma_max, rel=1e-7) and sig[-1] == 0 and np.all(np.diff(sig) < 0)
    assert sig[-2] >= sigma_min * (1 - 1e-6)
    inner = levels_of(sig[1:-1])
    assert np.all(np.min(np.abs(inner[:, None] - grid[None]), axis=1) < 1e-6)  # below the top: grid levels
    # the same plan in the flow space, on the levels of the same range
    flow = get_sigmas_cotj(4, float(levels_of(sigma_min)), float(levels_of(sigma_max)), space="flow", **kwargs)
    np.testing.assert_allclose(levels_of(sig), flow.double().numpy(), atol=1e-6)


@pytest.mark.parametrize(("t_lo", "t_hi"), [(0.0, 0.93), (0.22, 0.77), (0.3, 0.5)])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_windowed_teacher_plan_is_the_cheapest_by_brute_force(t_lo, t_hi, k, teacher):
    """The plan within a range starts at its top (standing for the teacher level at or above it) and is the
    cheapest k-level plan there: enumerate every one."""
    sig = get_sigmas_cotj(k, float(sigmas_of(t_lo)), float(sigmas_of(t_hi)), teacher=teacher)
    top = int(np.searchsorted(GRID, t_hi - 1e-9))
    inside = [j for j in range(top) if GRID[j] >= t_lo - 1e-9]

    def cost(path: tuple[int, ...]) -> float:
        return sum(teacher.edges[a, b] for a, b in itertools.pairwise(path)) + teacher.end[path[-1]]

    best = min((cost((top, *rest[::-1])), (top, *rest[::-1])) for rest in itertools.combinations(inside, k - 1))[1]
    want = np.append(t_hi, GRID[list(best[1:])])
    np.testing.assert_allclose(levels_of(sig[:-1].double().numpy()), want, atol=1e-6)


def test_restrict_slices_every_part(teacher):
    w = restrict(TeacherCost(teacher.grid, teacher.edges, teacher.end, teacher.n_samples, teacher.rows, teacher.gram,
                             settings={"guidance": 2.0}), 0.26, 0.83, "unipc")
    assert w.settings == {"guidance": 2.0}
    idx = np.arange(5, 17)  # levels 0.30 .. 0.85; 0.85 is relabelled 0.83
    np.testing.assert_allclose(w.grid, np.append(GRID[idx[:-1]], 0.83))
    np.testing.assert_array_equal(w.edges, teacher.edges[np.ix_(idx, idx)])
    np.testing.assert_array_equal(w.rows.beta, teacher.rows.beta[idx][:, :, idx])
    nodes = np.append(0, idx + 1)
    full, part = teacher.solver_cost("unipc"), w.solver_cost("unipc")
    np.testing.assert_array_equal(part.pairs, full.pairs[np.ix_(nodes, nodes, nodes)])
    # the sliced Gram matrix gives the sliced costs (up to the relabelled top level, which keeps its own costs)
    fresh = cotj.planning.multistep.solver_costs("unipc", w.gram, np.append(0.0, GRID[idx]))
    for mine, theirs in ((part.first, fresh.first), (part.pairs, fresh.pairs), (part.end, fresh.end)):
        np.testing.assert_allclose(mine, np.maximum(theirs, 1e-12), rtol=1e-9)


# ------------------------------------------------------------------------------------------ closed loop


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "unipc"])
@pytest.mark.parametrize("space", ["ve", "flow"])
def test_closed_loop_calls_the_model_k_times_on_teacher_levels(solver, space, teacher):
    sig = (sampling.get_sigmas_karras(6, 0.05, 40.0) if space == "ve"
           else torch.cat([torch.linspace(0.9, 0.08, 6), torch.zeros(1)]))
    model = Denoiser(space)
    seen: list[dict[str, Any]] = []
    x = _noise(3, 4) * (sig[0] if space == "ve" else 1.0)
    out = sample_cotj(model, x, sig, extra_args={"cond": COND}, callback=seen.append, disable=True, teacher=teacher,
                      solver=solver, space=space)
    k = len(sig) - 1
    assert len(model.sigmas) == k and out.shape == x.shape and bool(torch.isfinite(out).all())
    assert model.sigmas[0] == float(sig[0]) and np.all(np.diff(model.sigmas) < 0)
    assert model.sigmas[-1] >= float(sig[-2]) * (1 - 1e-6)
    inner = levels_of(np.array(model.sigmas[1:]), space)
    assert np.all(np.min(np.abs(inner[:, None] - GRID[None]), axis=1) < 1e-6)
    assert [d["i"] for d in seen] == list(range(k)) and [float(d["sigma"]) for d in seen] == model.sigmas


def test_callback_dict_has_k_diffusion_keys(teacher):
    sig = sampling.get_sigmas_karras(4, 0.05, 40.0).double()
    theirs: list[dict[str, Any]] = []
    sampling.sample_dpmpp_2m(Denoiser(), _noise(3, 5) * 40.0, sig, extra_args={"cond": COND}, callback=theirs.append,
                             disable=True)
    for run in (sample_cotj, sample_cotj_fixed):
        ours: list[dict[str, Any]] = []
        kwargs = {"teacher": teacher} if run is sample_cotj else {}
        run(Denoiser(), _noise(3, 5) * 40.0, sig, extra_args={"cond": COND}, callback=ours.append, disable=True, **kwargs)
        assert [set(d) for d in ours] == [set(d) for d in theirs] == [{"x", "i", "sigma", "sigma_hat", "denoised"}] * 4
        assert all(d["x"].shape == d["denoised"].shape == (3, 6) and d["sigma"].ndim == 0 for d in ours)


def test_progress_bar_honours_disable(teacher, capsys):
    sig = get_sigmas_cotj(5, 0.0, 1.0, teacher=teacher, space="flow")
    sample_cotj(Denoiser("flow"), _noise(2, 6), sig, extra_args={"cond": COND[:2]}, teacher=teacher, space="flow",
                disable=True)
    assert capsys.readouterr().err == ""
    sample_cotj(Denoiser("flow"), _noise(2, 6), sig, extra_args={"cond": COND[:2]}, teacher=teacher, space="flow",
                disable=False)
    assert "5/5" in capsys.readouterr().err


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "unipc"])
def test_closed_loop_is_cotj_replanning(solver, teacher):
    """In the flow space over the whole grid, one sample's closed loop is cotj's own replan_sample: the same
    levels, the same sample."""
    for seed in range(3):
        noise, cond = _noise(1, 10 + seed), torch.tensor([seed % 3])
        ref, levels = replan_sample(FlowMixtureModel(FAMILY), noise.clone(), cond, Replanner(teacher, 6, solver=solver))
        model = Denoiser("flow")
        out = sample_cotj(model, noise.clone(), torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2, 0.05, 0.0], dtype=torch.float64),
                          extra_args={"cond": cond}, disable=True, teacher=teacher, solver=solver, space="flow")
        np.testing.assert_allclose(model.sigmas, levels[0], atol=1e-7)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-9)


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_closed_loop_is_the_same_in_both_spaces(solver, teacher):
    """The VE state is the flow state over 1 - t: a VE run from there visits the same levels and ends at the same
    sample as the flow run (0.93 is no grid level: the top is relabelled in both)."""
    flow_x = _noise(2, 20) * 0.93 + 0.07 * FAMILY.mixture(1).sample(2, torch.Generator().manual_seed(0))
    cond = torch.tensor([1, 1])
    f, v = Denoiser("flow"), Denoiser("ve")
    flow_sig = torch.cat([torch.linspace(0.93, 0.12, 6, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    out_f = sample_cotj(f, flow_x.clone(), flow_sig, extra_args={"cond": cond}, disable=True, teacher=teacher,
                        solver=solver, space="flow")
    ve_sig = torch.from_numpy(sigmas_of(flow_sig.numpy()))
    out_v = sample_cotj(v, flow_x / (1 - 0.93), ve_sig, extra_args={"cond": cond}, disable=True, teacher=teacher,
                        solver=solver, space="ve")
    np.testing.assert_allclose(levels_of(np.array(v.sigmas)), f.sigmas, atol=1e-9)
    np.testing.assert_allclose(out_v.numpy(), out_f.numpy(), atol=1e-8)


def test_closed_loop_without_a_row_model_follows_the_planned_sigmas(open_teacher):
    for solver in ("euler", "dpmpp_2m", "unipc"):
        for space, hi in (("ve", 30.0), ("flow", 0.97)):
            sig = get_sigmas_cotj(5, 0.05 if space == "ve" else 0.04, hi, teacher=open_teacher, solver=solver, space=space)
            model = Denoiser(space)
            sample_cotj(model, _noise(3, 7), sig, extra_args={"cond": COND}, disable=True, teacher=open_teacher,
                        solver=solver, space=space)
            np.testing.assert_allclose(model.sigmas, sig[:-1].double().numpy(), rtol=1e-6)


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_gives_named_errors(teacher, open_teacher):
    no_gram = TeacherCost(teacher.grid, teacher.edges, teacher.end, teacher.n_samples, teacher.rows, None)
    sig = get_sigmas_cotj(4, 0.0, 1.0, teacher=teacher, space="flow")
    x = _noise(2, 8)
    run = dict(extra_args={"cond": COND[:2]}, disable=True, space="flow")
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: sample_cotj(Denoiser("flow"), x, sig[:-1], teacher=teacher, **run), ValueError, "end in 0"),
        (lambda: sample_cotj(Denoiser("flow"), x, sig.flip(0), teacher=teacher, **run), ValueError, "decreasing"),
        (lambda: sample_cotj(Denoiser("flow"), x, torch.linspace(1, 0, 30), teacher=teacher, **run), ValueError, "only 20 levels"),
        (lambda: sample_cotj(Denoiser("flow"), x, sig, teacher=no_gram, **run), ValueError, "Gram"),
        (lambda: sample_cotj(Denoiser("flow"), x, sig, teacher=teacher, solver="heun", **run), ValueError, "solver"),
        (lambda: sample_cotj(Denoiser("flow"), x, sig, teacher=42, **run), TypeError, "teacher"),
        (lambda: sample_cotj(Denoiser("flow"), x, sig * 2, teacher=teacher, **run), ValueError, "<= 1"),
        (lambda: sample_cotj(Denoiser("flow"), x.numpy(), sig, teacher=teacher, **run), TypeError, "x must"),
        (lambda: sample_cotj(lambda x, s, cond: x[:, :3], x, sig, teacher=teacher, **run), ValueError, "shape"),
        (lambda: sample_cotj(lambda x, s, cond: x * np.nan, x, sig, teacher=teacher, **run), ValueError, "not finite"),
        (lambda: sample_cotj(Denoiser(), x, sig, teacher=teacher, extra_args={"cond": COND[:2]}, space="vp"), ValueError, "space"),
        (lambda: sample_cotj_fixed(Denoiser(), x, [[1.0, 0.0]]), ValueError, "sigmas must be"),
        (lambda: get_sigmas_cotj(4, 0.0, 1.0, teacher=teacher, dna="qwen-image"), ValueError, "exactly one"),
        (lambda: get_sigmas_cotj(4, 0.0, 1.0), ValueError, "exactly one"),
        (lambda: get_sigmas_cotj(0, 0.0, 1.0, dna="qwen-image"), ValueError, "n must"),
        (lambda: get_sigmas_cotj(2.0, 0.0, 1.0, dna="qwen-image"), TypeError, "n must"),
        (lambda: get_sigmas_cotj(4, 1.0, 0.5, dna="qwen-image"), ValueError, "sigma_min < sigma_max"),
        (lambda: get_sigmas_cotj(4, 0.0, float("inf"), dna="qwen-image"), ValueError, "finite"),
        (lambda: get_sigmas_cotj(4, 0.0, 2.0, dna="qwen-image", space="flow"), ValueError, "sigma_max must be <= 1"),
        (lambda: get_sigmas_cotj(4, 0.0, 1.0, dna="sdxl"), ValueError, "no shipped mean DNA"),
        (lambda: get_sigmas_cotj(4, 0.0, 1.0, dna="qwen-image", solver="unipc"), ValueError, "needs a teacher"),
        (lambda: get_sigmas_cotj(30, 0.0, 1.0, teacher=teacher, space="flow"), ValueError, "only 20 levels"),
        (lambda: get_sigmas_cotj(4, 0.3, 0.32, dna="qwen-image", space="flow"), ValueError, "only 3 levels"),
        (lambda: get_sigmas_cotj(4, 0.0, 80.0, teacher=restrict(open_teacher, 0.0, 0.5)), ValueError, "above the top"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind, match=words):
            call()


def test_import_cotj_imports_neither_torch_nor_k_diffusion():
    code = ("import sys, cotj, cotj.integrations; "
            "assert 'torch' not in sys.modules and 'k_diffusion' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
