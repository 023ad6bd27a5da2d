"""The online difficulty probe: latents recorded along a run, their third differences."""

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = needs_extra("diffusers")

import diffusers  # noqa: E402
import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.execute import LatentRecorder, acceleration_signature, compare_with_dna  # noqa: E402


def _trajectory(levels, coeffs):
    """x(t) = sum_k c_k t^k per sample: (S, B, 3) with B = len(coeffs)."""
    t = torch.as_tensor(levels, dtype=torch.float64)
    rows = [sum(c * t**k for k, c in enumerate(cs)) for cs in coeffs]
    return torch.stack(rows, dim=1)[..., None].expand(-1, -1, 3)


def test_third_differences_of_polynomials():
    uniform = np.linspace(1.0, 0.0, 9)
    x = _trajectory(uniform, [(1.0, 2.0, -3.0), (0.0, 0.0, 0.0, 2.0)])  # a quadratic, a cubic
    plain = acceleration_signature(x)
    assert plain.shape == (2, 6)
    np.testing.assert_allclose(plain[0], 0.0, atol=1e-20)
    h = uniform[1] - uniform[0]
    np.testing.assert_allclose(plain[1], (6 * 2.0 * h**3) ** 2)  # Δ³(2t³) = 12h³
    uneven = np.array([1.0, 0.9, 0.7, 0.65, 0.4, 0.2, 0.1, 0.0])
    per_level = acceleration_signature(_trajectory(uneven, [(0.0, 0.0, 0.0, 2.0)]), uneven)
    np.testing.assert_allclose(per_level, (6 * 2.0) ** 2)  # d³x/dt³ = 12 wherever the steps fall
    assert np.ptp(acceleration_signature(_trajectory(uneven, [(0.0, 0.0, 0.0, 2.0)]))) > 1e-6


def test_signature_bad_input():
    with pytest.raises(ValueError, match="S >= 4"):
        acceleration_signature(torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match="distinct noise levels"):
        acceleration_signature(torch.zeros(5, 2, 5), [1.0, 0.5, 0.5, 0.2, 0.0])


def test_compare_with_dna_is_a_rank_correlation():
    grid = cotj.default_grid(100)
    dna = grid**2
    levels = np.array([0.9, 0.7, 0.5, 0.3, 0.1])
    assert compare_with_dna(levels, np.exp(levels)[None], dna) == pytest.approx([1.0])
    np.testing.assert_allclose(compare_with_dna(levels, np.stack([-levels, levels]), np.stack([dna, dna])), [-1.0, 1.0])
    with pytest.raises(ValueError, match="signature must be"):
        compare_with_dna(levels, np.zeros((1, 4)), dna)


def test_recorder_follows_a_planned_run(tiny_flux):
    from cotj.execute import planned_scheduler

    dna = np.asarray(cotj.load_dna(__import__("pathlib").Path(__file__).parent / "data" / "qwenimage_mean_dna.json"))
    plan = cotj.plan(dna, budget=6)
    pipe = tiny_flux(planned_scheduler(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), plan))
    g = torch.Generator().manual_seed(0)
    start = torch.randn(1, 16, 16, generator=g)
    rec = LatentRecorder(start=start, start_level=float(plan.levels[0]))
    out = pipe(prompt_embeds=torch.randn(1, 5, 16, generator=g), pooled_prompt_embeds=torch.randn(1, 8, generator=g),
               latents=start, height=16, width=16, output_type="latent", callback_on_step_end=rec).images
    np.testing.assert_allclose(rec.levels, plan.sigmas(), atol=1e-6)
    torch.testing.assert_close(rec.latents[-1], out.float())
    levels, values = rec.signature()
    assert values.shape == (1, plan.budget + 1 - 3) and levels.shape == (plan.budget + 1 - 3,)
    np.testing.assert_allclose(values, acceleration_signature(torch.stack(rec.latents)))
    assert np.all(np.diff(levels) < 0)
    assert compare_with_dna(levels, values, dna).shape == (1,)
