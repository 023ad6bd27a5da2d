"""Shared fixtures: the real mean DNAs committed as test data, and the released checkpoints'
folder (outside the repo; tests that need it skip where it is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "official"


def mean_dna(name: str) -> np.ndarray:
    """The training-set mean DNA released with the paper (N = 100, t_i = (i+1)/100)."""
    return np.asarray(json.loads((DATA / f"{name}_mean_dna.json").read_text())["dna"], dtype=np.float64)


@pytest.fixture(params=["qwenimage", "zimageturbo"])
def real_dna(request) -> np.ndarray:
    return mean_dna(request.param)


@pytest.fixture
def official() -> Path:
    if not OFFICIAL.is_dir():
        pytest.skip(f"released checkpoints not found at {OFFICIAL}")
    return OFFICIAL
