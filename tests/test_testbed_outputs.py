"""The harness's one output rule (:mod:`cotj_testbed.outputs`): results go to runs/ or outside the checkout, the
committed files only with --update; inputs are checked before a long run; progress bars only on a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cotj_testbed import outputs

ROOT = Path(__file__).resolve().parents[1]
TRACKED = ROOT / "benches" / "results" / "quality_tier1.json"
needs_git = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for folder in folders for p in folder.rglob("*") if p.is_file()}


def one_line_exit(capsys, call) -> str:  # noqa: ANN001 - a zero-argument callable
    """Run ``call``, which must exit with status 2 printing one error line; the line."""
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], lines
    return lines[0]


# ------------------------------------------------------------------------------------------- the rule


@needs_git
def test_committed_means_inside_the_checkout_and_not_ignored(tmp_path):
    assert outputs.committed(TRACKED) and outputs.committed(ROOT / "benches" / "results")
    assert outputs.committed(ROOT / "benches" / "results" / "new_report.json")  # a new file beside tracked ones
    assert outputs.committed(ROOT / "size.json")
    assert not outputs.committed(outputs.RUNS / "quality" / "quality_tier1.json")
    assert not outputs.committed(tmp_path / "x.json")


@needs_git
def test_output_refuses_committed_paths_unless_update(tmp_path):
    with pytest.raises(outputs.UsageError, match=r"^--out .*quality_tier1\.json: inside .*--update"):
        outputs.output(TRACKED, "--out")
    with pytest.raises(outputs.UsageError) as exc:
        outputs.output(TRACKED, "--to", can_update=False)
    assert "--update" not in str(exc.value) and str(outputs.RUNS) in str(exc.value)
    assert outputs.output(TRACKED, "--out", update=True) == TRACKED
    assert outputs.output(tmp_path / "a" / "b.json", "--out") == tmp_path / "a" / "b.json"
    assert outputs.default_output(outputs.RUNS / "q", TRACKED, False) == outputs.RUNS / "q"
    assert outputs.default_output(outputs.RUNS / "q", TRACKED, True) == TRACKED


def test_need_file_and_need_dir_name_the_option_and_path(tmp_path):
    with pytest.raises(outputs.UsageError, match=f"^--teacher {tmp_path / 'no.json'}: no such file$"):
        outputs.need_file(tmp_path / "no.json", "--teacher")
    with pytest.raises(outputs.UsageError, match="is a folder"):
        outputs.need_file(tmp_path, "--teacher")
    with pytest.raises(outputs.UsageError, match=r"^--dna .*: no such folder \(written by --extract\)$"):
        outputs.need_dir(tmp_path / "none", "--dna", made_by="--extract")
    (tmp_path / "a.npy").write_bytes(b"")
    with pytest.raises(outputs.UsageError, match=r": no b\.npy in it$"):
        outputs.need_dir(tmp_path, "--dna", ["a.npy", "b.npy"])
    assert outputs.need_dir(tmp_path, "--dna", ["a.npy"]) == tmp_path


def test_argument_types_reject_non_positive_values():
    assert outputs.int_list("4,6,10") == (4, 6, 10) and outputs.positive_int("3") == 3
    for bad in ("", "4,,6", "4,0", "x"):
        with pytest.raises(Exception, match="integers >= 1"):
            outputs.int_list(bad)
    with pytest.raises(Exception, match=r"must be an int in 1\.\."):
        outputs.positive_int("0")


# ------------------------------------------------------------------------------------------- progress bars


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_are_drawn_on_a_terminal_only():
    from tqdm import tqdm

    for file, drawn in ((Terminal(), True), (io.StringIO(), False)):
        for _ in tqdm(range(3), desc="bar", file=file, disable=outputs.bar_disable(True)):
            pass
        assert ("bar" in file.getvalue()) == drawn
    quiet = Terminal()
    for _ in tqdm(range(3), desc="bar", file=quiet, disable=outputs.bar_disable(False)):
        pass
    assert quiet.getvalue() == ""


def test_predictor_training_draws_no_epoch_bars_into_a_log(capsys):
    pytest.importorskip("torch")
    from cotj.predict.training import train_predictor

    rng = np.random.default_rng(0)
    emb, dna = rng.normal(size=(12, 4)), rng.uniform(0.5, 1.5, size=(12, 6))
    train_predictor(emb, dna, epochs=30, hidden=8, progress=True)
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "DNA predictor" not in err and "epoch" not in err


# ------------------------------------------------------------------------------------------- the commands


def test_gallery_default_run_writes_the_run_folder_not_docs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from cotj_testbed import gallery

    monkeypatch.setattr(outputs, "RUNS", tmp_path / "runs")
    monkeypatch.chdir(ROOT)
    before = snapshot(ROOT / "docs" / "gallery")
    assert gallery.main(["--no-model"]) == 0
    assert {p.name for p in (tmp_path / "runs" / "gallery").iterdir()} >= {"dna_real.png", "schedules.png"}
    assert snapshot(ROOT / "docs" / "gallery") == before
    line = one_line_exit(capsys, lambda: gallery.main(["--no-model", "--out", "docs/gallery"]))
    assert "--out docs/gallery" in line and "--update" in line
    assert snapshot(ROOT / "docs" / "gallery") == before


@needs_git
def test_classifier_and_train_refuse_the_shipped_weights_without_update(tmp_path, capsys):
    pytest.importorskip("torch")
    from cotj_testbed import classifier, train

    assert not outputs.committed(classifier.RUN_WEIGHTS) and outputs.committed(classifier.WEIGHTS)
    line = one_line_exit(capsys, lambda: classifier.main(["--to", str(classifier.WEIGHTS)]))
    assert f"--to {classifier.WEIGHTS}" in line
    line = one_line_exit(capsys, lambda: train.main(["export", "--out", str(tmp_path / "none"), "--to", str(tmp_path / "w")]))
    assert f"--out {tmp_path / 'none'}: no such folder" in line
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "run" / "config.json").write_text("{}")
    line = one_line_exit(capsys, lambda: train.main(["export", "--out", str(tmp_path / "run")]))
    assert "--to" in line and "--update" in line
    line = one_line_exit(capsys, lambda: train.main(["--out", str(ROOT / "benches" / "shapes_run"), "--steps", "1"]))
    assert "--out" in line and "shapes_run" in line
    assert not (ROOT / "benches" / "shapes_run").exists()


@needs_git
def test_studies_check_their_folders_before_running(tmp_path, capsys):
    pytest.importorskip("torch")
    from cotj_testbed import per_sample, trajectory_store

    line = one_line_exit(capsys, lambda: per_sample.main([str(tmp_path / "nothing")]))
    assert f"store {tmp_path / 'nothing'}: no such folder" in line
    line = one_line_exit(capsys, lambda: trajectory_store.main([str(ROOT / "benches" / "trajectories")]))
    assert "benches/trajectories" in line
    assert not (ROOT / "benches" / "trajectories").exists()


@needs_git
def test_bench_refuses_a_tables_file_in_the_checkout_before_the_speed_run(tmp_path):
    (tmp_path / "speed.py").write_text("raise SystemExit('the speed benchmark ran')\n")
    done = subprocess.run([sys.executable, "-m", "cotj_testbed.bench", "--benches", str(tmp_path), "--out",
                           str(ROOT / "tables.md")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TQDM_DISABLE": "1"})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "tables.md" in done.stderr
    assert "speed benchmark ran" not in done.stderr and not (ROOT / "tables.md").exists()
