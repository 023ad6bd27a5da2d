"""Diagnostics (cotj.analysis.diagnose): negative gains, the knee of R(K), the adaptive choice, and a run's
acceleration signature against the DNA."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cotj
from conftest import mean_dna
from cotj.analysis.diagnose import diagnose, knee, negative_gains, run_signature


def test_negative_gains_of_z_image_turbo_are_its_top_two_levels():
    d = mean_dna("zimageturbo")
    idx = negative_gains(d)
    assert idx.tolist() == [98, 99]  # t = 0.99 and t = 1: their step down raises d
    assert np.all(d[idx] < d[idx - 1])
    assert negative_gains(mean_dna("qwenimage")).size == 0


def test_negative_gains_of_a_constructed_dna():
    d = np.array([0.1, 0.2, 0.15, 0.4, 0.3, 0.5])
    assert negative_gains(d).tolist() == [2, 4]


def test_knee_of_a_piecewise_linear_curve_is_its_corner():
    k = np.arange(1, 31)
    ratio = np.where(k <= 6, (k - 1) / 5 * 0.9, 0.9 + (k - 6) / 24 * 0.1)
    assert knee(ratio) == 6


def test_knee_skips_missing_lengths_and_moves_with_the_corner():
    k = np.arange(1, 21)
    early = np.minimum(k / 3, 1.0) - 1e-3 * (20 - k)
    late = np.minimum(k / 9, 1.0) - 1e-3 * (20 - k)
    assert knee(early) == 3 and knee(late) == 9
    gappy = early.copy()
    gappy[[0, 1]] = np.inf  # no plans of length 1 and 2 (e.g. pinned ends)
    assert knee(gappy) == 3


@pytest.mark.parametrize(
    ("ratio", "match"),
    [(np.array([0.0, 1.0]), "at least 3"), (np.ones(5), "rise"), (np.zeros((2, 3)), "1-D")],
)
def test_knee_rejects_curves_without_one(ratio, match):
    with pytest.raises(ValueError, match=match):
        knee(ratio)


def test_diagnose_matches_the_planner(real_dna):
    d = diagnose(real_dna, tau=0.99, max_steps=30)
    adaptive = cotj.plan(real_dna, tau=0.99, max_steps=30)
    assert d.plan.budget == adaptive.budget
    np.testing.assert_array_equal(d.plan.steps, adaptive.steps)
    np.testing.assert_array_equal(d.ratio, adaptive.ratio)
    assert d.knee == knee(adaptive.ratio)
    assert d.knee <= d.plan.budget  # past the knee steps explain little: tau = 0.99 needs at least as many
    summary = d.to_dict()
    json.dumps(summary, allow_nan=False)
    assert summary["k_tau"] == adaptive.budget
    assert [g["level"] for g in summary["negative_gains"]] == d.grid[negative_gains(real_dna)].tolist()


def test_diagnose_rejects_bad_dna():
    with pytest.raises(ValueError, match="finite"):
        diagnose(np.array([0.1, np.nan, 0.3, 0.4]))
    with pytest.raises(ValueError, match="one row"):
        diagnose(np.ones((2, 10)))
    with pytest.raises(ValueError, match="grid"):
        diagnose(np.linspace(0.01, 1, 10), grid=np.linspace(0.1, 1, 9))


@pytest.mark.torch
def test_run_signature_correlates_with_a_dna_of_the_same_shape():
    import torch

    levels = np.linspace(1.0, 0.0, 21)
    direction = torch.linspace(-1, 1, 8, dtype=torch.float64)
    # x(t) = exp(3t)·v: the third derivative 27·exp(3t)·v grows with t, so the run bends hardest at high noise
    latents = torch.stack([np.exp(3 * t) * direction[None] for t in levels])  # (S, 1, 8)
    grid = cotj.default_grid(100)
    rising, falling = grid**2, 1.0 - grid
    up = run_signature(latents, levels, rising)
    down = run_signature(latents, levels, falling)
    assert up.correlation[0] == pytest.approx(1.0)
    assert down.correlation[0] == pytest.approx(-1.0)
    np.testing.assert_allclose(up.levels, 0.5 * (levels[1:-2] + levels[2:-1]))
    np.testing.assert_allclose(up.dna_at[0], np.interp(up.levels, grid, rising))
    # 6 x third divided difference of exp(3t)·v is close to 27·exp(3t)·v: its mean square follows
    expected = (27 * np.exp(3 * up.levels)) ** 2 * float((direction**2).mean())
    np.testing.assert_allclose(up.signature[0], expected, rtol=0.05)
