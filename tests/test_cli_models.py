"""The commands that run the analytic Gaussian-mixture model: ``cotj dna`` (one process and two
under torchrun), ``cotj train-predictor`` / ``cotj predict`` (and the official import), and
``cotj diagnose --prompt``. Each checks the output against the Python API on the same input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cotj  # noqa: E402
from cli_helpers import ROOT, one_line_error  # noqa: E402
from cli_helpers import cotj as run_cotj  # noqa: E402

CONDS = [0, 3, 5, 8, 11, 2]


@pytest.fixture(scope="module")
def analytic_dna(tmp_path_factory):
    """``cotj dna --model analytic`` of six conditions on a 40-level grid, in one process."""
    out = tmp_path_factory.mktemp("dna") / "one"
    prompts = "\n".join(map(str, CONDS)) + "\n"
    done = run_cotj("dna", "-", "--model", "analytic", "--levels", "40", "--reference-steps", "50", "--out", out,
                    stdin=prompts)
    assert done.returncode == 0, done.stderr
    return out


def test_dna_matches_the_library_extraction(analytic_dna):
    from cotj_testbed import quality_tier1

    dna = np.load(analytic_dna / "dna.npy")
    assert dna.shape == (len(CONDS), 40)
    cfg = quality_tier1.Tier1Config(noise_seed=0, grid_size=40, dna_reference_steps=50)
    want = quality_tier1.tier1_extract(cfg, CONDS, progress=False)
    np.testing.assert_allclose(dna, want.dna, rtol=1e-10)
    assert json.loads((analytic_dna / "items.json").read_text())["items"] == CONDS
    np.testing.assert_allclose(np.load(analytic_dna / "grid.npy"), cotj.default_grid(40))
    family = quality_tier1.tier1_model(cfg).family
    np.testing.assert_array_equal(np.load(analytic_dna / "embeddings.npy"), np.stack([family.embedding(c) for c in CONDS]))
    settings = json.loads((analytic_dna / "settings.json").read_text())
    assert settings["model"] == "analytic" and settings["reference_rk4_steps"] == 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dna_under_torchrun_equals_one_process(analytic_dna, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this interpreter")
    prompts = tmp_path / "conds.txt"
    prompts.write_text("\n".join(map(str, CONDS)) + "\n")
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "cotj", "dna", prompts,
           "--model", "analytic", "--levels", "40", "--reference-steps", "50", "--out", tmp_path / "two", "-q"]
    done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=ROOT, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "2 processes" in done.stdout
    np.testing.assert_allclose(np.load(tmp_path / "two" / "dna.npy"), np.load(analytic_dna / "dna.npy"), rtol=1e-12)
    assert json.loads((tmp_path / "two" / "settings.json").read_text())["processes"] == 2


def test_train_then_predict_round_trip(analytic_dna, tmp_path):
    from cotj.predict import DNAPredictor, cosine_scores

    pred_dir = tmp_path / "predictor"
    done = run_cotj("train-predictor", "--embeddings", analytic_dna / "embeddings.npy", "--dna", analytic_dna / "dna.npy",
                    "--out", pred_dir, "--epochs", "5", "--hidden", "16", "--val-fraction", "0.34", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    model = DNAPredictor.load(pred_dir, device="cpu")
    assert report["parameters"] == sum(p.numel() for p in model.net.parameters())
    assert report["pairs"] == 2 and -1 <= report["cosine_mean"] <= 1
    # predict from prompts (embedded by the model) and from the embeddings file: both equal the API
    emb = np.load(analytic_dna / "embeddings.npy")
    by_prompt = run_cotj("predict", "--predictor", pred_dir, "--model", "analytic", "--prompts", "-",
                         stdin="\n".join(map(str, CONDS)))
    assert by_prompt.returncode == 0, by_prompt.stderr
    np.testing.assert_allclose(np.array(json.loads(by_prompt.stdout)), model.predict(emb), rtol=1e-6)
    scored = run_cotj("predict", "--predictor", pred_dir, "--embeddings", analytic_dna / "embeddings.npy",
                      "--dna", analytic_dna / "dna.npy", "--out", tmp_path / "pred.npy")
    assert scored.returncode == 0, scored.stderr
    np.testing.assert_allclose(np.load(tmp_path / "pred.npy"), model.predict(emb), rtol=1e-6)
    want = cosine_scores(model, emb, np.load(analytic_dna / "dna.npy"))
    assert f"mean {want.mean:.4f}" in scored.stderr
    # the predicted DNA pipes into the planner
    planned = run_cotj("plan", "-", "--budget", "4", "--format", "json", stdin=by_prompt.stdout)
    assert [r["budget"] for r in json.loads(planned.stdout)] == [4] * len(CONDS)
    words = run_cotj("predict", "--predictor", pred_dir, "--model", "analytic", "--prompts", "-", stdin="a red circle")
    assert "condition ids" in one_line_error(words, "predict")


def test_predictor_bad_input(analytic_dna, tmp_path):
    missing = run_cotj("predict", "--predictor", tmp_path / "none", "--embeddings", analytic_dna / "embeddings.npy")
    assert "dna_predictor.json" in one_line_error(missing, "predict")
    half = run_cotj("train-predictor", "--dna", analytic_dna / "dna.npy", "--out", tmp_path / "p")
    assert "--embeddings" in one_line_error(half, "train-predictor")


def test_from_official_import_matches_the_library(official, tmp_path):
    from cotj.predict import DNAPredictor

    state, norm = official / "zimageturbo_model_state.pth", official / "zimageturbo_norm_data.pt"
    done = run_cotj("train-predictor", "--from-official", state, norm, "--out", tmp_path / "zit")
    assert done.returncode == 0, done.stderr
    want = DNAPredictor.from_official(state, norm)
    emb = np.random.default_rng(0).normal(size=(3, want.config["in_dim"]))
    np.save(tmp_path / "emb.npy", emb)
    pred = run_cotj("predict", "--from-official", state, norm, "--embeddings", tmp_path / "emb.npy")
    assert pred.returncode == 0, pred.stderr
    np.testing.assert_allclose(np.array(json.loads(pred.stdout)), want.predict(emb), rtol=1e-6)
    np.testing.assert_allclose(DNAPredictor.load(tmp_path / "zit", device="cpu").predict(emb), want.predict(emb), rtol=1e-6)


def test_diagnose_an_analytic_prompt_sets_its_run_against_its_dna(tmp_path):
    from cotj.analysis.diagnose import diagnose

    done = run_cotj("diagnose", "--model", "analytic", "--prompt", "5", "--run-steps", "12", "--reference-steps", "50",
                    "--format", "json", "--plot", tmp_path / "sig.png")
    assert done.returncode == 0, done.stderr
    (summary,) = json.loads(done.stdout)
    run = summary["run"]
    assert len(run["levels"]) == len(run["signature"]) == 12 - 2  # windows of 4 of the 13 states
    assert -1 <= run["correlation"] <= 1 and (tmp_path / "sig.png").stat().st_size > 0
    from cotj_testbed import quality_tier1

    dna = quality_tier1.tier1_extract(quality_tier1.Tier1Config(noise_seed=0, dna_reference_steps=50), [5], progress=False).dna[0]
    assert summary["k_tau"] == diagnose(dna).plan.budget
    np.testing.assert_allclose(run["dna_at_levels"], np.interp(run["levels"], cotj.default_grid(100), dna))
    few = run_cotj("diagnose", "--model", "analytic", "--prompt", "5", "--run-steps", "3")
    assert "--run-steps" in one_line_error(few, "diagnose")
