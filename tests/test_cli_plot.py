"""``cotj plot`` (PNG files of the expected size, not blank), and
``cotj diagnose`` on DNA files."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import cotj  # noqa: E402
from cli_helpers import QWEN, TURBO, one_line_error, png_size  # noqa: E402
from cli_helpers import cotj as run_cotj
from cotj.analysis.diagnose import diagnose, knee  # noqa: E402


@pytest.mark.parametrize(
    ("figure", "args", "size"),
    [
        ("dna", [QWEN, TURBO, "--labels", "Qwen-Image,Z-Image-Turbo"], (640, 400)),
        ("cost", [QWEN, "--budget", "6"], (580, 500)),
        ("ratio", [TURBO, "--max-steps", "8"], (640, 480)),
        ("gains", [TURBO, "--size", "8x3", "--dpi", "80"], (640, 240)),
        ("schedules", [QWEN, "--budget", "5", "--shift", "2"], (640, 320)),
    ],
)
def test_each_figure_is_a_png_of_the_expected_size(figure, args, size, tmp_path):
    out = tmp_path / "sub" / f"{figure}.png"
    done = run_cotj("plot", figure, *args, "--out", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out}"
    assert png_size(out) == size


def test_plot_reads_rows_from_stdin_and_checks_the_row(tmp_path):
    rows = np.stack([cotj.load_dna(QWEN), cotj.load_dna(TURBO)])
    text = json.dumps(rows.tolist())
    done = run_cotj("plot", "gains", "-", "--row", "1", "--out", tmp_path / "g.png", stdin=text)
    assert done.returncode == 0, done.stderr
    png_size(tmp_path / "g.png")
    bad = run_cotj("plot", "cost", "-", "--row", "2", "--out", tmp_path / "c.png", stdin=text)
    assert "--row 2" in one_line_error(bad, "plot cost")
    wrong = run_cotj("plot", "dna", QWEN, "--out", tmp_path / "d.jpg")
    assert ".png" in one_line_error(wrong, "plot dna")
    labels = run_cotj("plot", "dna", QWEN, TURBO, "--labels", "one", "--out", tmp_path / "d.png")
    assert "labels" in one_line_error(labels, "plot dna")


def test_diagnose_json_matches_the_library_for_every_row(tmp_path):
    rows = np.stack([cotj.load_dna(QWEN), cotj.load_dna(TURBO)])
    np.save(tmp_path / "two.npy", rows)
    done = run_cotj("diagnose", tmp_path / "two.npy", "--max-steps", "20", "--format", "json")
    assert done.returncode == 0, done.stderr
    qwen, turbo = json.loads(done.stdout)
    assert qwen["negative_gains"] == []
    assert [g["level"] for g in turbo["negative_gains"]] == [0.99, 1.0]
    for rec, row in zip((qwen, turbo), rows):
        want = diagnose(row, max_steps=20)
        assert rec["k_tau"] == cotj.plan(row, tau=0.99, max_steps=20).budget == want.plan.budget
        assert rec["knee"] == knee(want.ratio)
        np.testing.assert_allclose(rec["plan_levels"], want.plan.levels)


def test_diagnose_table_names_the_steps_that_undo_work():
    done = run_cotj("diagnose", TURBO, "--max-steps", "8")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "t = 1 -> 0.99" in text and "t = 0.99 -> 0.98" in text
    assert "first at K = 8" in text
    missing = run_cotj("diagnose")
    assert "--prompt" in one_line_error(missing, "diagnose")
