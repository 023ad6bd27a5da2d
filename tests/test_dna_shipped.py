"""The released mean DNAs that ship inside the package: ``cotj.mean_dna(name)``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import cotj
from conftest import DATA

# shipped name -> file stem of the released copy (tests/data and the released checkpoints' folder)
RELEASED = {"qwen-image": "qwenimage", "z-image-turbo": "zimageturbo"}


def test_names_are_the_two_released_models():
    assert cotj.mean_dna_names() == ("qwen-image", "z-image-turbo")


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_shape_dtype_and_positivity(name):
    dna = cotj.mean_dna(name)
    assert dna.shape == (100,) and dna.dtype == np.float64
    assert np.all(np.isfinite(dna)) and np.all(dna > 0)
    assert dna[-1] > 10 * dna[0]  # index 0 is the least noisy level (t = 0.01): the grid ascends in t


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_equals_the_committed_copy(name):
    committed = json.loads((DATA / f"{RELEASED[name]}_mean_dna.json").read_text())
    np.testing.assert_array_equal(cotj.mean_dna(name), np.asarray(committed["dna"], dtype=np.float64))


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_equals_the_released_source(name, official):
    source = json.loads((official / f"{RELEASED[name]}_mean_dna.json").read_text())
    assert source["grid"] == "t_i=(i+1)/N, N=100, index 0 is t=0.01"
    np.testing.assert_array_equal(cotj.mean_dna(name), np.asarray(source["dna"], dtype=np.float64))


def test_each_call_returns_a_new_array():
    first = cotj.mean_dna("qwen-image")
    first[:] = 0.0
    assert np.all(cotj.mean_dna("qwen-image") > 0)


def test_plans_on_the_default_grid():
    """The README quick start's plan: the DNA's index i is level t_i = (i+1)/100."""
    p = cotj.plan(cotj.mean_dna("qwen-image"), budget=10)
    np.testing.assert_array_equal(p.levels, cotj.default_grid(100)[p.steps])
    np.testing.assert_allclose(p.levels.round(2), [1.0, 0.97, 0.92, 0.85, 0.77, 0.68, 0.57, 0.45, 0.31, 0.16])


def test_z_image_turbo_last_step_undoes_work():
    """Z-Image-Turbo's released DNA falls from t = 0.99 to t = 1 (README: a step from t = 1 raises the error)."""
    assert cotj.gains(cotj.mean_dna("z-image-turbo"))[-1] < 0
    assert cotj.gains(cotj.mean_dna("qwen-image"))[-1] > 0


@pytest.mark.parametrize("name", ["flux", "Qwen-Image", "qwenimage", "../mean_dna/qwen-image", "", None])
def test_unknown_name_lists_the_available_ones(name):
    with pytest.raises(ValueError, match="available") as info:
        cotj.mean_dna(name)
    assert all(repr(known) in str(info.value) for known in RELEASED)


def test_loads_from_any_directory(tmp_path):
    """Read through importlib.resources, not a path relative to the working directory or the checkout."""
    code = "import cotj; print(cotj.mean_dna_names(), cotj.mean_dna('z-image-turbo').shape)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "('qwen-image', 'z-image-turbo') (100,)"
