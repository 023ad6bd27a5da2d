"""The solver study's headroom summary: best data-set pairing, paired difference, ceiling, share of the gap."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from cotj_testbed.quality_solvers import headroom, paired  # noqa: E402


def _run(samples):
    return {"psnr": float(np.mean(samples)), "psnr_samples": list(samples)}


def test_paired_difference_and_its_interval():
    a, b = np.array([30.0, 31.0, 29.0, 30.5]), np.array([29.0, 30.5, 28.0, 30.0])
    d = a - b
    out = paired(a, b)
    assert out["mean"] == pytest.approx(d.mean()) and out["n"] == 4
    assert out["half_width"] == pytest.approx(1.96 * d.std(ddof=1) / 2.0)


def test_headroom_picks_the_best_data_set_pairing_across_solvers_and_the_share_of_the_gap():
    results = {"nfes": [4], "solvers": {
        "euler": {"gits": {"4": _run([27.0, 28.0])}, "closed_loop": {"4": _run([29.0, 29.0])}},
        "unipc": {"uniform": {"4": _run([26.0, 26.0])}, "solver_aware": {"4": _run([28.0, 29.0])},
                  "closed_loop": {"4": _run([29.0, 30.0])}, "ceiling": {"4": _run([30.5, 30.5])}},
    }}
    row = headroom(results)["4"]
    assert row["best_dataset"] == {"solver": "unipc", "schedule": "solver_aware", "psnr": 28.5}  # not a closed loop
    assert row["default"] == 29.5 and row["ceiling"] == 30.5
    assert row["default_minus_best_dataset"]["mean"] == pytest.approx(1.0)
    assert row["share_of_gap"] == pytest.approx(0.5)
    results["solvers"]["unipc"]["ceiling"]["4"] = _run([28.0, 28.0])  # a "ceiling" below the data set: no share
    assert headroom(results)["4"]["share_of_gap"] is None
