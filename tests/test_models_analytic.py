"""Tier 1 analytic models match their closed forms (posterior mean, path identities, exact ODE endpoint)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cotj.models.analytic import (  # noqa: E402
    FlowMixtureModel,
    GaussianMixture,
    MixtureFamily,
    VPMixtureModel,
    exact_endpoint,
)


def _quadrature_posterior_mean(mix: GaussianMixture, x: float, a: float, s: float) -> float:
    """E[x0 | x_t = x] for a 1-D mixture by brute-force integration over x0 on a fine grid."""
    x0 = np.linspace(-8.0, 8.0, 100_001)
    w, mu, sd = (v.numpy()[:, 0] if v.ndim == 2 else v.numpy() for v in (mix.weights, mix.means, mix.stds))
    prior = sum(wk * np.exp(-0.5 * ((x0 - m) / d) ** 2) / d for wk, m, d in zip(w, mu, sd))
    like = np.exp(-0.5 * ((x - a * x0) / s) ** 2)
    return float((x0 * prior * like).sum() / (prior * like).sum())


@pytest.mark.parametrize("model_cls", [FlowMixtureModel, VPMixtureModel])
def test_posterior_mean_equals_brute_force_integral_1d(model_cls):
    family = MixtureFamily(dim=1, seed=3)
    model = model_cls(family)
    for cond in (0, 1, 2):
        mix = family.mixture(cond)
        for t in (0.05, 0.3, 0.7, 0.95):
            a, s, _, _ = (v.item() for v in model.path(torch.tensor([t], dtype=torch.float64)))
            for x in (-1.3, 0.1, 0.9):
                closed = model.x0(torch.tensor([[x]], dtype=torch.float64), torch.tensor([t]), torch.tensor([cond]))
                assert closed.item() == pytest.approx(_quadrature_posterior_mean(mix, x, a, s), abs=1e-6)


def test_posterior_mean_matches_monte_carlo_in_4d():
    family = MixtureFamily(dim=4, seed=1)
    mix = family.mixture(5)
    gen = torch.Generator().manual_seed(0)
    x0 = mix.sample(400_000, gen)
    t = 0.6
    x = torch.tensor([[0.2, -0.4, 0.5, 0.0]], dtype=torch.float64)
    # self-normalised importance weights p(x_t = x | x0) over prior draws
    logw = -0.5 * ((x - (1 - t) * x0) ** 2).sum(1) / t**2
    w = torch.softmax(logw, 0)
    mc = (w[:, None] * x0).sum(0)
    ess = 1.0 / (w**2).sum()
    closed = FlowMixtureModel(family).x0(x, torch.tensor([t]), torch.tensor([5]))[0]
    assert ess > 1000
    torch.testing.assert_close(closed, mc, atol=6.0 / ess.sqrt().item(), rtol=0)


def test_predictions_are_consistent_with_the_posterior_mean_through_the_path():
    family = MixtureFamily(dim=16, seed=0)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(12, 16, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.05, 1.0, 12, dtype=torch.float64)
    cond = torch.arange(12) % 5
    flow, vp = FlowMixtureModel(family), VPMixtureModel(family)
    # flow: v = eps_hat - x0_hat with x = (1 - t) x0_hat + t eps_hat  =>  x0_hat = x - t v
    torch.testing.assert_close(x - t[:, None] * flow(x, t, cond), flow.x0(x, t, cond), atol=1e-10, rtol=0)
    # VP: x0_hat = (x - s eps_hat) / a
    a, s, _, _ = vp.path(t)
    torch.testing.assert_close((x - s[:, None] * vp(x, t, cond)) / a[:, None], vp.x0(x, t, cond), atol=1e-8, rtol=0)


def test_schedule_is_the_path_on_the_grid():
    vp = VPMixtureModel(MixtureFamily(dim=2))
    grid = np.linspace(0.01, 1.0, 100)
    a, s = vp.schedule(grid)
    np.testing.assert_allclose(a**2 + s**2, 1.0, atol=1e-12)
    assert np.all(np.diff(a) < 0) and a[0] > 0.99 and s[-1] > 0.9999
    fa, fs = FlowMixtureModel(MixtureFamily(dim=2)).schedule(grid)
    np.testing.assert_allclose(fa, 1.0 - grid)
    np.testing.assert_allclose(fs, grid)


def test_single_gaussian_endpoint_is_the_affine_map_of_the_noise():
    family = MixtureFamily(dim=8, seed=0)
    cond = next(c for c in range(100) if family.mixture(c).weights.numel() == 1)
    mix = family.mixture(cond)
    eps = torch.randn(5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    end = exact_endpoint(FlowMixtureModel(family), eps, torch.tensor(cond), steps=80)
    torch.testing.assert_close(end, mix.means[0] + mix.stds[0] * eps, atol=1e-7, rtol=0)


def test_flow_and_vp_endpoints_agree_under_the_exact_reparametrisation():
    # Both probability-flow ODEs are the same ODE in y = x/a, sigma = s/a: the VP state at t = 1 is the
    # flow state at t* = s/(a+s) scaled by (1 - t*)/a, and both must reach the same endpoint.
    family = MixtureFamily(dim=8, seed=0)
    flow, vp = FlowMixtureModel(family), VPMixtureModel(family)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cond = torch.tensor([0, 1, 2, 3, 4, 5])
    a1, s1, _, _ = (v.item() for v in vp.path(torch.tensor([1.0])))
    t_star = s1 / (a1 + s1)
    end_vp = exact_endpoint(vp, x, cond, steps=250)
    end_flow = exact_endpoint(flow, x * (1 - t_star) / a1, cond, t_start=t_star, steps=250)
    torch.testing.assert_close(end_vp, end_flow, atol=1e-6, rtol=0)


def test_exact_endpoint_converges_and_differs_from_a_coarse_euler_solve():
    family = MixtureFamily(dim=16, seed=0)
    flow = FlowMixtureModel(family)
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cond = torch.arange(8)
    fine, finer = exact_endpoint(flow, x, cond, steps=150), exact_endpoint(flow, x, cond, steps=300)
    assert (fine - finer).abs().max() < 1e-6
    euler = x.clone()  # 4 Euler steps: visibly off, so the comparison above is not vacuous
    for t0, t1 in zip([1.0, 0.75, 0.5, 0.25], [0.75, 0.5, 0.25, 0.0]):
        euler = euler + (t1 - t0) * flow(euler, torch.tensor(t0), cond)
    assert (euler - finer).abs().max() > 1e-2


def test_conditions_select_different_seeded_mixtures():
    family = MixtureFamily(dim=64, seed=0)
    modes = {family.mixture(c).weights.numel() for c in range(40)}
    assert len(modes) >= 5
    again = MixtureFamily(dim=64, seed=0).mixture(7)
    torch.testing.assert_close(again.means, family.mixture(7).means)
    assert not torch.equal(MixtureFamily(dim=64, seed=1).mixture(7).stds[0], family.mixture(7).stds[0])
    emb = np.stack([family.embedding(c) for c in range(40)])
    assert emb.shape == (40, 6) and np.all(emb.std(0) > 0)
    np.testing.assert_array_equal(emb[:, 0], [family.mixture(c).weights.numel() for c in range(40)])


def test_bad_inputs_are_rejected():
    flow = FlowMixtureModel(MixtureFamily(dim=2))
    x = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="cond"):
        flow(x, torch.full((3,), 0.5), torch.zeros(3))
    with pytest.raises(ValueError, match="cond"):
        flow(x, torch.full((3,), 0.5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="t must"):
        flow(x, torch.full((3,), 1.5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="dim"):
        MixtureFamily(dim=0)
    with pytest.raises(ValueError, match="cond"):
        MixtureFamily(dim=2).mixture(-1)


@pytest.mark.parametrize("model_cls", [FlowMixtureModel, VPMixtureModel])
def test_the_predict_stage_accepts_the_models_and_conditions_have_different_dna(model_cls):
    from cotj.predict import extract_dna

    family = MixtureFamily(dim=64, seed=0)
    gen = torch.Generator().manual_seed(0)
    cond = torch.arange(6)
    x0 = torch.stack([family.mixture(c).sample(1, gen)[0] for c in range(6)])
    noise = torch.randn(6, 64, generator=gen, dtype=torch.float64)
    dna = np.asarray(extract_dna(model_cls(family), noise=noise, cond=cond, x_ref=x0, progress=False).dna)
    assert dna.shape == (6, 100) and np.all(dna >= 0)
    assert np.all(dna[:, 0] < 0.05 * dna.max(axis=1))  # the exact denoiser barely errs at t = 0.01
    unit = dna / np.linalg.norm(dna, axis=1, keepdims=True)
    assert (unit @ unit.T).min() < 0.9  # different mixtures, differently shaped DNA
