"""to_x0: every prediction type against closed forms on synthetic data with known x0."""

import math

import pytest

from conftest import needs_extra

pytestmark = needs_extra("torch")

import torch  # noqa: E402

from cotj.predict import prediction_of, to_x0  # noqa: E402


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 4, 4, generator=g)
    eps = torch.randn(5, 3, 4, 4, generator=g)
    t = torch.rand(5, generator=g) * 0.9 + 0.05
    return x0, eps, t


def _col(v):
    return v.reshape(-1, 1, 1, 1)


def _paths(t):
    """(a, s, da, ds) of the linear flow and of the cosine VP path at levels t."""
    half = math.pi / 2
    return {
        "linear": (1 - t, t, -torch.ones_like(t), torch.ones_like(t)),
        "cosine": (torch.cos(half * t), torch.sin(half * t), -half * torch.sin(half * t), half * torch.cos(half * t)),
    }


@pytest.mark.parametrize("path", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["flow", "epsilon", "v", "sample"])
def test_to_x0_recovers_x0(data, path, prediction):
    x0, eps, t = data
    a, s, da, ds = _paths(t)[path]
    x_t = _col(a) * x0 + _col(s) * eps
    pred = {
        "flow": _col(da) * x0 + _col(ds) * eps,
        "epsilon": eps,
        "v": _col(a) * eps - _col(s) * x0,
        "sample": x0,
    }[prediction]
    derivs = (da, ds) if path == "cosine" and prediction == "flow" else (None, None)
    out = to_x0(pred, x_t, a, s, prediction, *derivs)
    torch.testing.assert_close(out, x0, atol=2e-5, rtol=1e-5)


def test_linear_flow_velocity_is_x_t_minus_t_v(data):
    x0, eps, t = data
    x_t = _col(1 - t) * x0 + _col(t) * eps
    v = torch.randn_like(x0)  # any output, not just the true one
    torch.testing.assert_close(to_x0(v, x_t, 1 - t, t, "flow"), x_t - _col(t) * v)


def test_scalar_coefficients_broadcast(data):
    x0, eps, _ = data
    x_t = 0.6 * x0 + 0.8 * eps
    torch.testing.assert_close(to_x0(eps, x_t, 0.6, 0.8, "epsilon"), x0, atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise(data):
    x0, eps, t = data
    a, s, _, _ = _paths(t)["cosine"]
    with pytest.raises(ValueError, match="prediction must be one of"):
        to_x0(eps, x0, a, s, "velocity")
    with pytest.raises(ValueError, match="same shape"):
        to_x0(eps[:2], x0, a, s, "epsilon")
    with pytest.raises(ValueError, match="needs da and ds"):
        to_x0(eps, x0, a, s, "flow")
    with pytest.raises(ValueError, match="both da and ds"):
        to_x0(eps, x0, a, s, "flow", da=a)
    with pytest.raises(ValueError, match=r"\(5,\) tensor"):
        to_x0(eps, x0, a[:3], s[:3], "v")
    with pytest.raises(ValueError, match="not recoverable"):
        to_x0(eps, x0, torch.zeros(5), torch.ones(5), "epsilon")


@pytest.mark.diffusers
def test_prediction_of_diffusers_schedulers():
    import diffusers

    assert prediction_of(diffusers.FlowMatchEulerDiscreteScheduler()) == "flow"
    assert prediction_of(diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction")) == "flow"
    assert prediction_of(diffusers.EulerDiscreteScheduler(prediction_type="v_prediction")) == "v"
    assert prediction_of(diffusers.DDPMScheduler(prediction_type="sample")) == "sample"
    assert prediction_of(diffusers.DDIMScheduler()) == "epsilon"
