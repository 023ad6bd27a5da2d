"""cotj_testbed.ld3: the torch solvers equal cotj's own, the level parameters stay in range, the fit lowers the
calibration error on the analytic model, and the study's schedule is cached in its JSON file."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cotj.execute.solvers import solve  # noqa: E402
from cotj.models.analytic import FlowMixtureModel, MixtureFamily  # noqa: E402
from cotj.planning.schedules import default_grid, uniform  # noqa: E402
from cotj_testbed import ld3  # noqa: E402

SOLVERS = ("euler", "dpmpp_2m", "unipc")


def _model(dim: int = 8) -> FlowMixtureModel:
    """A fresh model: the analytic family caches its mixtures, built under inference mode by ``solve``."""
    return FlowMixtureModel(MixtureFamily(dim=dim, seed=0))


def _noise(b, dim, dtype, seed=0):
    """(b, dim) standard normal noise in ``dtype``, drawn in float64 from ``seed``."""
    return torch.randn(b, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


SHARED = _model()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("solver", SOLVERS)
def test_torch_solvers_equal_cotj_solve(solver, dtype):
    model, cond = SHARED, torch.arange(6) % 3
    noise = _noise(6, 8, dtype)
    rng = np.random.default_rng(1)
    for levels in (np.array([1.0]), np.array([1.0, 0.3]), uniform(5), np.array([0.9, 0.6, 0.35, 0.12, 0.02]),
                   np.append(1.0, np.sort(rng.uniform(0.01, 0.99, 7))[::-1])):  # fmt: skip
        want = solve(model, noise, cond, levels, solver)
        got = ld3.solve_torch(model, noise, cond, torch.from_numpy(levels), solver)
        assert got.dtype == dtype
        assert torch.allclose(got, want, rtol=0, atol=1e-5), (solver, levels, float((got - want).abs().max()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8.0, 8.0), min_size=1, max_size=40))
def test_levels_of_is_descending_from_one_and_inverts(raw):
    lv = ld3.levels_of(torch.tensor(raw, dtype=torch.float64)).numpy()
    assert lv.shape == (len(raw),) and lv[0] == 1.0
    assert np.all(np.diff(lv) < 0) and lv[-1] > 0
    assert np.allclose(ld3.levels_of(ld3.logits_of(lv)).numpy(), lv, rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_fit_lowers_the_calibration_error_and_reports_it_truly(solver):
    dim, b = 8, 6
    cond, noise = torch.arange(b) % 2, _noise(b, dim, torch.float64, seed=3)
    reference = solve(_model(dim), noise, cond, uniform(40), "unipc")  # a near-exact endpoint
    fit = ld3.ld3_fit(_model(dim), noise, cond, reference, 4, solver, steps=10, lr=0.1)
    assert fit.levels.shape == (4,) and fit.levels[0] == 1.0 and np.all(np.diff(fit.levels) < 0) and fit.levels[-1] > 0
    assert np.array_equal(fit.init, uniform(4)) and len(fit.history) == 11
    assert fit.error < 0.9 * fit.initial_error, (fit.initial_error, fit.error)
    for levels, err in ((fit.init, fit.initial_error), (fit.levels, fit.error)):  # the errors are cotj.solve's
        x = solve(_model(dim), noise, cond, levels, solver)
        assert np.isclose(float((x - reference).pow(2).mean()), err, rtol=1e-9)


def test_minibatch_fit_measures_every_pass_and_keeps_the_best():
    dim, b = 8, 6
    cond, noise = torch.arange(b) % 2, _noise(b, dim, torch.float64, seed=4)
    reference = solve(_model(dim), noise, cond, uniform(40), "unipc")
    fit = ld3.ld3_fit(_model(dim), noise, cond, reference, 4, "unipc", steps=9, lr=0.1, batch_size=2)
    assert len(fit.history) == 3 + 1  # the start of each of the 3 passes of 3 steps, and the end
    assert fit.error == min(fit.history) < 0.9 * fit.initial_error
    x = solve(_model(dim), noise, cond, fit.levels, "unipc")
    assert np.isclose(float((x - reference).pow(2).mean()), fit.error, rtol=1e-9)


def test_fit_refuses_bad_arguments():
    model, noise = _model(), _noise(2, 8, torch.float64)
    cond = torch.arange(2)
    with pytest.raises(ValueError, match="solver must be one of"):
        ld3.ld3_fit(model, noise, cond, noise, 3, "heun")
    with pytest.raises(ValueError, match="init must start at 1.0"):
        ld3.ld3_fit(model, noise, cond, noise, 3, "euler", init=[0.9, 0.5, 0.1])
    with pytest.raises(ValueError, match=r"init must have shape \(3,\)"):
        ld3.ld3_fit(model, noise, cond, noise, 3, "euler", init=[1.0, 0.5])
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        ld3.ld3_fit(model, noise, cond, noise, 0, "euler")
    with pytest.raises(ValueError, match="lr must be"):
        ld3.ld3_fit(model, noise, cond, noise, 2, "euler", lr=0.0)
    with pytest.raises(ValueError, match=r"batch_size must be an int in 1..2"):
        ld3.ld3_fit(model, noise, cond, noise, 2, "euler", batch_size=3)
    with pytest.raises(ValueError, match="same non-empty shape"):
        ld3.ld3_fit(model, noise, cond, noise[:1], 2, "euler")
    with pytest.raises(TypeError, match="reference must be a floating torch tensor"):
        ld3.ld3_fit(model, noise, cond, noise.numpy(), 2, "euler")


def test_study_schedule_is_learnt_once_and_reused_from_its_file(tmp_path, monkeypatch):
    from cotj_testbed.quality import Problem
    from cotj_testbed.quality_tier1 import ode_trajectories

    dim, grid = 8, default_grid(20)
    cal_cond = torch.arange(6) % 2
    calibration = ode_trajectories(_model(dim), _noise(6, dim, torch.float64, seed=5), cal_cond, grid, substeps=2)
    noise = _noise(4, dim, torch.float64, seed=6)
    zeros = np.zeros((4, grid.size))
    problem = Problem(_model(dim), "flow", noise, torch.arange(4) % 2, noise, calibration, calibration, grid, zeros,
                      zeros[0], zeros, lambda x: x, 1.0, calibration_cond=cal_cond, grad_denoiser=_model(dim))  # fmt: skip
    path = tmp_path / "ld3_levels.json"
    monkeypatch.setenv(ld3.CACHE_ENV, str(path))
    monkeypatch.setattr(ld3, "STEPS", 4)
    assert (ld3.steps_for(3), ld3.steps_for(1), ld3.steps_for(30)) == (6, 16, 6)  # at least MIN_STEPS
    monkeypatch.setattr(ld3, "_LEARNT", {})
    levels = ld3.ld3_schedule(problem, "unipc", 3)
    assert levels is not None and levels.shape == (4, 3) and np.all(levels == levels[0]) and levels[0, 0] == 1.0
    stored = json.loads(path.read_text())
    (key, entry), = stored.items()
    assert key.startswith("unipc/K=3/") and entry["levels"] == levels[0].tolist() and entry["steps"] == 6
    assert entry["batch_size"] == 4 and entry["calibration_samples"] == 6
    assert entry["error"] <= entry["initial_error"] and entry["init"] in ("uniform", "gits")
    monkeypatch.setattr(ld3, "_LEARNT", {})
    monkeypatch.setattr(ld3, "ld3_fit", lambda *a, **k: pytest.fail("the cached levels were not reused"))
    again = ld3.ld3_schedule(problem, "unipc", 3)
    assert again is not None and np.array_equal(again, levels)
    assert ld3.ld3_schedule(problem, "heun", 3) is None
    problem.calibration_cond = None
    with pytest.raises(ValueError, match="calibration_cond"):
        ld3.ld3_schedule(problem, "euler", 3)


def test_tier2_grad_velocity_is_the_velocity_with_gradients(tiny_shapes, one_torch_thread):
    pytest.importorskip("sentence_transformers")
    from cotj_testbed.quality_tier2 import Tier2Config, Tier2Setup

    tier = Tier2Setup(Tier2Config(), tiny_shapes, lambda prompts: torch.randn(len(prompts), 16, 384))
    x, emb = torch.randn(2, 3, 24, 24), torch.randn(2, 16, 384)
    t = torch.tensor([0.7, 0.3], requires_grad=True)
    with torch.enable_grad():
        v = tier.grad_velocity(x, t, emb)
        (grad,) = torch.autograd.grad(v.square().sum(), t)
    assert torch.allclose(v.detach(), tier.velocity(x, t.detach(), emb))
    assert torch.isfinite(grad).all() and bool((grad != 0).all())
    assert not any(p.requires_grad for p in tiny_shapes.unet.parameters())
