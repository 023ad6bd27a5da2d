"""extract_dna against closed forms: an exact denoiser of Gaussian data on the linear flow."""

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = needs_extra("torch")

import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.predict import extract_dna  # noqa: E402

SIG = 0.7


def _x0_opt(x, t, mu):
    """E[x0 | x_t] for x0 ~ N(mu, SIG²) per coordinate, x_t = (1-t)·x0 + t·eps."""
    a = 1 - t
    return mu + a * SIG**2 / (a * a * SIG**2 + t * t) * (x - a * mu)


def gaussian_flow(x, t, cond):
    """The exact velocity model; cond (n,) is each sample's data mean."""
    t = t.reshape(-1, 1, 1, 1).double()
    mu = cond.reshape(-1, 1, 1, 1).double()
    return ((x.double() - _x0_opt(x.double(), t, mu)) / t).float()


def _closed_form(ref, noise, mu, grid, metric=lambda e: (e**2).mean(-1)):
    t = grid.reshape(1, -1, 1)
    r = ref.double().flatten(1).numpy()[:, None]
    e = noise.double().flatten(1).numpy()[:, None]
    m = mu.numpy().reshape(-1, 1, 1)
    x = (1 - t) * r + t * e
    return metric(_x0_opt(x, t, m) - r)


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    ref = (mu.reshape(-1, 1, 1, 1) + SIG * torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)).float()
    noise = torch.randn(3, 2, 4, 4, generator=g)
    return mu, ref, noise


def test_one_step_dna_matches_closed_form_per_sample(batch):
    mu, ref, noise = batch
    res = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", batch_size=64, progress=False)
    want = _closed_form(ref, noise, mu, cotj.default_grid(100))
    assert res.dna.shape == (3, 100) and res.dna.dtype == np.float64
    np.testing.assert_allclose(res.dna, want, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(res.gains, np.diff(want, axis=1), atol=2e-6)
    assert res.evaluations == 100
    assert cotj.plan_batch(res.dna, 4).steps.shape == (3, 4)


def test_batch_size_does_not_change_the_result(batch):
    mu, ref, noise = batch
    a = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", batch_size=7, progress=False).dna
    b = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", batch_size=300, progress=False).dna
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_custom_metric_and_grid(batch):
    mu, ref, noise = batch
    grid = np.array([0.05, 0.2, 0.5, 0.9, 1.0])
    l1 = lambda x0, r: (x0 - r).abs().flatten(1).mean(1)  # noqa: E731
    res = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, grid=grid, prediction="flow", metric=l1, progress=False)
    want = _closed_form(ref, noise, mu, grid, metric=lambda e: np.abs(e).mean(-1))
    np.testing.assert_allclose(res.dna, want, rtol=2e-4, atol=1e-7)


def test_guidance_uses_the_guided_prediction(batch):
    mu, ref, noise = batch
    w = 3.0
    res = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", guidance_scale=w, uncond=torch.zeros(3), progress=False)
    grid = cotj.default_grid(100)
    t = torch.tensor(grid).reshape(1, -1, 1, 1, 1)
    x = (1 - t) * ref.double()[:, None] + t * noise.double()[:, None]
    x0 = [_x0_opt(x, t, m.reshape(-1, 1, 1, 1, 1)) for m in (mu, torch.zeros(3, dtype=torch.float64))]
    guided = x0[1] + w * (x0[0] - x0[1])  # guidance is linear in x0 on the linear flow
    want = ((guided - ref.double()[:, None]) ** 2).flatten(2).mean(2).numpy()
    np.testing.assert_allclose(res.dna, want, rtol=2e-4, atol=1e-7)
    assert res.evaluations == 200


def _ode_x0(x, t, mu):
    """The probability-flow ODE of Gaussian data maps x_t to mu + SIG·(x_t - (1-t)·mu)/sqrt((1-t)²SIG² + t²)."""
    return mu + SIG * (x - (1 - t) * mu) / np.sqrt((1 - t) ** 2 * SIG**2 + t**2)


def test_reference_run_converges_to_the_ode_endpoint(batch):
    mu, _, noise = batch
    want = _ode_x0(noise.double(), 1.0, mu.reshape(-1, 1, 1, 1))
    err = [
        (extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=None, prediction="flow", reference_steps=k, progress=False).x_ref.double()
         - want).abs().max().item()
        for k in (10, 50)
    ]
    assert err[1] < 0.06 and err[1] < err[0] / 3  # first order: 5x the steps, about 5x smaller


def test_ode_completion_scores_the_completed_estimate(batch):
    mu, ref, noise = batch
    kw = dict(prediction="flow", progress=False)
    done = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, completion_steps=40, **kw)
    one = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, **kw)
    t = cotj.default_grid(100).reshape(1, -1, 1)
    r = ref.double().flatten(1).numpy()[:, None]
    x = (1 - t) * r + t * noise.double().flatten(1).numpy()[:, None]
    want = ((_ode_x0(x, t, mu.numpy().reshape(-1, 1, 1)) - r) ** 2).mean(-1)
    np.testing.assert_allclose(done.dna[:, 20:], want[:, 20:], rtol=0.1)
    assert np.abs(one.dna[:, 20:] / want[:, 20:] - 1).max() > 0.5  # the one-step estimate is far from it
    assert done.evaluations > 20 * one.evaluations


def test_general_path_epsilon_model():
    """An exact epsilon model on the cosine VP path: the DNA is the closed-form error."""
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(2, 8, generator=g)
    noise = torch.randn(2, 8, generator=g)
    grid = np.linspace(0.05, 0.95, 19)  # a(1) = 0 on this path: x0 is not recoverable from eps there
    a, s = np.cos(np.pi / 2 * grid), np.sin(np.pi / 2 * grid)
    tab = {float(t): (float(ai), float(si)) for t, ai, si in zip(np.float32(grid), a, s, strict=False)}

    def oracle(x, t, cond):  # returns the true noise scaled by 1.1: a known, imperfect model
        coef = torch.tensor([tab[float(v)] for v in t.float()])
        return 1.1 * (x - coef[:, :1] * cond) / coef[:, 1:]

    res = extract_dna(oracle, noise=noise, cond=ref, x_ref=ref, grid=grid, prediction="epsilon", schedule=(a, s), progress=False)
    want = (0.1 * s / a)[None] ** 2 * (noise.double() ** 2).mean(1, keepdim=True).numpy()
    np.testing.assert_allclose(res.dna, want, rtol=1e-4)


def test_bad_inputs_raise(batch):
    mu, ref, noise = batch
    with pytest.raises(ValueError, match="prediction must be one of"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="velocity", progress=False)
    with pytest.raises(ValueError, match="prediction must be one of"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, progress=False)
    with pytest.raises(ValueError, match="x_ref must be a tensor of noise's shape"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref[:2], prediction="flow", progress=False)
    with pytest.raises(ValueError, match="cond must have the batch size"):
        extract_dna(gaussian_flow, noise=noise, cond=mu[:2], x_ref=ref, prediction="flow", progress=False)
    with pytest.raises(ValueError, match="grid must be"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, grid=[0.5, 0.2], prediction="flow", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", batch_size=0, progress=False)
    with pytest.raises(ValueError, match="needs uncond"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", guidance_scale=2.0, progress=False)
    with pytest.raises(ValueError, match="needs schedule"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", schedule=cotj.planning.schedules.ve(cotj.default_grid(100)), progress=False)
    with pytest.raises(ValueError, match="one score per sample"):
        extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", metric=lambda x, r: (x - r).mean(), progress=False)


def test_runs_in_the_models_dtype(batch):
    mu, ref, noise = batch
    dtypes = []

    class Float64Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, x, t, cond):
            dtypes.append((x.dtype, t.dtype))
            return gaussian_flow(x, t, cond).double() * self.scale

    res = extract_dna(Float64Model(), noise=noise, cond=mu, x_ref=ref, prediction="flow", progress=False)
    assert set(dtypes) == {(torch.float64, torch.float64)}
    np.testing.assert_allclose(res.dna, _closed_form(ref, noise, mu, cotj.default_grid(100)), rtol=2e-4, atol=1e-7)


def test_guidance_combination_is_pluggable(batch):
    """Qwen-Image renormalises the guided prediction; a custom combine sees (cond, uncond, scale)."""
    from cotj.predict import cfg, cfg_renorm

    g = torch.Generator().manual_seed(4)
    c, u = torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    out = cfg_renorm(c, u, 4.0)
    torch.testing.assert_close(out.norm(dim=-1), c.norm(dim=-1))
    torch.testing.assert_close(out / out.norm(dim=-1, keepdim=True), cfg(c, u, 4.0) / cfg(c, u, 4.0).norm(dim=-1, keepdim=True))
    mu, ref, noise = batch
    calls = []

    def only_cond(cond_pred, uncond_pred, scale):
        calls.append(scale)
        return cond_pred

    guided = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", guidance_scale=5.0, uncond=torch.zeros(3), combine=only_cond, progress=False)
    plain = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", progress=False)
    np.testing.assert_allclose(guided.dna, plain.dna)
    assert calls and set(calls) == {5.0}


def test_positional_cond_noise_still_work_for_one_release_and_warn(batch):
    """The previous order extract_dna(denoiser, cond, noise, x_ref) gives the same DNA as the keywords, warning."""
    mu, ref, noise = batch
    want = extract_dna(gaussian_flow, noise=noise, cond=mu, x_ref=ref, prediction="flow", progress=False).dna
    with pytest.warns(DeprecationWarning, match=r"extract_dna\(denoiser, noise=noise, cond=cond"):
        got = extract_dna(gaussian_flow, mu, noise, ref, prediction="flow", progress=False).dna
    np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="needs noise="):
        extract_dna(gaussian_flow, cond=mu, prediction="flow", progress=False)
