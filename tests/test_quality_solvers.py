"""The solver study of the quality benchmark (cotj_testbed.quality_solvers): equal-NFE budgets, its findings read
off the table, and a quick Tier 1 run end to end."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from cotj_testbed import quality_report, quality_solvers  # noqa: E402
from cotj_testbed.quality_solvers import solver_findings  # noqa: E402


def _results(table: dict[str, dict[str, list[float]]], nfes: list[int], target: float) -> dict:
    return {"nfes": nfes, "uniform_50": {"psnr": target},
            "solvers": {s: {name: {str(n): {"psnr": p} for n, p in zip(nfes, row) if p is not None}
                            for name, row in by.items()} for s, by in table.items()}}  # fmt: skip


def test_findings_are_read_off_the_table():
    table = {"euler": {"uniform": [20.0, 25.0, 30.0], "teacher": [22.0, 28.0, 33.0], "solver_aware": [None] * 3},
             "unipc": {"uniform": [19.0, 27.0, 36.0], "teacher": [21.0, 29.0, 35.0], "solver_aware": [21.5, 30.0, 34.0]}}
    f = solver_findings(_results(table, [2, 4, 8], 32.0))
    assert f["best"] == {"2": {"solver": "euler", "schedule": "teacher", "psnr": 22.0},
                         "4": {"solver": "unipc", "schedule": "solver_aware", "psnr": 30.0},
                         "8": {"solver": "unipc", "schedule": "uniform", "psnr": 36.0}}
    match = f["nfe_to_match_uniform_50"]
    assert match["euler"]["uniform"] is None  # never reaches 32 dB
    assert match["euler"]["teacher"] == pytest.approx(4 + (32 - 28) / (33 - 28) * 4)
    assert match["unipc"]["solver_aware"] == pytest.approx(4 + (32 - 30) / (34 - 30) * 4)
    assert "solver_aware" not in match["euler"]  # never run: Euler's solver-aware plan is its teacher plan
    assert f["gain_over_euler"]["unipc"] == pytest.approx({"2": -0.5, "4": 2.0, "8": 3.0})


def test_quick_tier1_solver_study_runs_and_reports(tmp_path):
    from cotj_testbed.quality_tier1 import Tier1Config, run_tier1

    res = run_tier1(Tier1Config.quick(), progress=False, solvers=("euler", "heun", "unipc"), nfes=(3, 6),
                    schedules=("uniform", "teacher", "solver_aware"))
    heun = res["solvers"]["heun"]["uniform"]
    assert heun["3"]["k"] == 2 and heun["6"]["k"] == 3  # Heun: two evaluations per level, one on the last
    assert res["solvers"]["unipc"]["teacher"]["6"]["k"] == 6 and res["solvers"]["euler"]["solver_aware"] == {}
    for s in ("euler", "heun", "unipc"):
        for name in ("uniform", "teacher"):
            assert np.isfinite(res["solvers"][s][name]["6"]["psnr"])
    # a second-order solver beats Euler on the same uniform levels at equal NFE once it has a few steps
    assert res["solvers"]["unipc"]["uniform"]["6"]["psnr"] > res["solvers"]["euler"]["uniform"]["6"]["psnr"]
    paths = quality_report.write_report(res, tmp_path, "solvers")
    text = paths["md"].read_text()
    assert "## UniPC (bh2): PSNR (dB)" in text and "## Best pairing at each NFE" in text
    assert paths["png"].stat().st_size > 10_000
    with pytest.raises(ValueError, match="unknown solvers or schedules"):
        quality_solvers.evaluate_solvers(None, (2,), ("rk4",))
