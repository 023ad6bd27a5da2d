"""``cotj calibrate`` and ``cotj sample --pipeline`` on local Diffusers pipelines: tiny random-weight FluxPipeline,
StableDiffusion3Pipeline and StableDiffusionPipeline with their own tokenizers and text encoders, saved with
save_pretrained and loaded back by path (cotj_testbed.tiny_pipelines). Calibrate -> JSON -> sample: the teacher runs
are the pipeline's own first-order sampler, the model is called exactly K times at the planned levels, resumed
and sharded calibrations equal one run, and bad input is one line with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from cotj import cli  # noqa: E402
from cotj.cli import _pipeline  # noqa: E402
from cotj.planning.objectives import TeacherCost  # noqa: E402
from cotj_testbed import tiny_pipelines  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["a red cat", "a blue dog", "the big cat on the left"]
LEVELS = 8
GUIDANCE = {"flux": 3.5, "sd3": 7.0, "sd": 7.5, "sdxl": 5.0}  # the pipelines' defaults, recorded when --guidance is not given
NAMES = {"flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline", "sd": "StableDiffusionPipeline",
         "sdxl": "StableDiffusionXLPipeline"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {kind: tiny_pipelines.save(kind, root) for kind in NAMES}


@pytest.fixture(scope="module")
def teachers(folders, tmp_path_factory):
    """Each pipeline's teacher cost from the command line: 3 prompts in batches of 2, 8 levels, 16x16."""
    root = tmp_path_factory.mktemp("teachers")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    out = {}
    for kind, folder in folders.items():
        out[kind] = root / f"{kind}.json"
        code = cli.main(["calibrate", "--pipeline", str(folder), "--prompts", str(root / "prompts.txt"), "--out",
                         str(out[kind]), "--levels", str(LEVELS), "--batch-size", "2", "--height", "16", "--width",
                         "16", "-q"])  # fmt: skip
        assert code == 0
    return out


def _run(capsys, *args):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(code, err, command):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("cotj.cli: ")]  # warnings are logged
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cotj {command}: error: ")
    return lines[0]


def test_calibrate_writes_the_teacher_cost_and_its_settings(teachers, folders):
    for kind, path in teachers.items():
        cost = TeacherCost.load(path)
        assert cost.n_samples == len(PROMPTS) and cost.grid.size == LEVELS
        assert cost.gram is not None and cost.rows is not None
        s = cost.settings
        assert s["pipeline"] == NAMES[kind] and (s["height"], s["width"]) == (16, 16)
        assert s["guidance"] == GUIDANCE[kind]
        assert s["evaluations"] == len(PROMPTS) * LEVELS * (1 if kind == "flux" else 2)  # CFG: two per level
        assert not path.with_name(path.name + ".parts").exists()  # the checkpoints go once the JSON is written
    loaded = _pipeline.load_pipeline(str(folders["sd"]), progress=False)
    from cotj.execute import timestep_grid

    np.testing.assert_allclose(TeacherCost.load(teachers["sd"]).grid, timestep_grid(loaded.pipe.scheduler, LEVELS))
    np.testing.assert_allclose(TeacherCost.load(teachers["flux"]).grid, np.arange(1, LEVELS + 1) / LEVELS)


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_teacher_runs_are_the_pipelines_own_first_order_sampler(folders, kind):
    """Encoding, guidance and the denoiser adapter of the teacher runs reproduce the pipeline's own 4-step sample
    (Euler on the flow, Euler on the VP path) from the same noise: what is calibrated is the pipeline's model."""
    from cotj.execute import neutral_scheduler, planned_scheduler
    from cotj.predict.teacher import euler_trajectories

    loaded = _pipeline.load_pipeline(str(folders[kind]), progress=False)
    pipe, guidance = loaded.pipe, GUIDANCE[kind]
    grid = loaded.grid(4)
    model = _pipeline.denoiser(loaded, 16, 16, guidance)
    noise = torch.randn(2, *loaded.latent_shape(16, 16), generator=torch.Generator().manual_seed(3))
    traj = euler_trajectories(model, noise, _pipeline.encode(loaded, PROMPTS[:2], model.cfg, (16, 16)), grid)
    ours = torch.from_numpy(traj.states[:, 0]).float().reshape(noise.shape)
    if kind in ("sd", "sdxl"):
        sched = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.scheduler = planned_scheduler(sched, grid[::-1])
        sched.set_timesteps(timesteps=grid[::-1] * 999)
        latents = noise * (sched.sigmas[0] ** 2 + 1) ** 0.5 / sched.init_noise_sigma  # the UNet then sees the noise
    else:
        pipe.scheduler = planned_scheduler(neutral_scheduler(pipe.scheduler), grid[::-1])
        latents = noise
    want = pipe(PROMPTS[:2], latents=latents, guidance_scale=guidance, height=16, width=16, num_inference_steps=4,
                output_type="latent").images
    torch.testing.assert_close(ours, want.float(), atol=2e-4, rtol=1e-3)


def _record(monkeypatch):
    """Hooks the denoiser of every pipeline the commands load and the result of cotj.execute.sample: returns
    (levels the denoiser saw per call, sample results)."""
    import cotj.execute

    seen, results = [], []
    load, sample = _pipeline.load_pipeline, cotj.execute.sample

    def loading(*args, **kwargs):
        loaded = load(*args, **kwargs)
        model = loaded.pipe.unet if loaded.kind == "unet" else loaded.pipe.transformer
        scale = {"flux": 1.0, "sd3": 1000.0, "unet": 999.0}[loaded.kind]

        def hook(_module, args, kw):
            t = kw["timestep"] if "timestep" in kw else args[1]
            seen.append(t.detach().double().reshape(-1).cpu().numpy() / scale)

        model.register_forward_pre_hook(hook, with_kwargs=True)
        return loaded

    def sampling(*args, **kwargs):
        results.append(sample(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(_pipeline, "load_pipeline", loading)
    monkeypatch.setattr(cotj.execute, "sample", sampling)
    return seen, results


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_sample_closed_loop_calls_the_model_k_times_at_the_planned_levels(folders, teachers, kind, tmp_path, capsys,
                                                                          monkeypatch, caplog):
    seen, results = _record(monkeypatch)
    out = tmp_path / "x.png"
    code, stdout, err = _run(capsys, "sample", "--pipeline", folders[kind], "--teacher", teachers[kind], "a red cat",
                             "--budget", 3, "--out", out, "-q")
    assert code == 0, err
    assert "replanned after each step" in stdout and "NFE 3 for 3 levels" in stdout
    plan = results[0].plans[0]
    grid = TeacherCost.load(teachers[kind]).grid
    assert len(seen) == 3 and all(np.all(s == s[0]) for s in seen)  # SD3: cond and uncond rows in one call
    levels = np.array([s[0] for s in seen])
    np.testing.assert_allclose(levels, plan.levels, rtol=0, atol=1e-6)
    assert levels[0] == 1.0 and np.all(np.diff(levels) < 0)
    assert np.min(np.abs(levels[:, None] - grid[None]), axis=1).max() < 1e-6  # every level on the teacher grid
    from PIL import Image

    with Image.open(out) as img:
        assert img.size == (16, 16)
    assert "calibrated at" not in caplog.text  # the run's own settings: no warning


def test_sample_warns_when_guidance_or_size_differ_from_the_calibration(folders, teachers, tmp_path, capsys, caplog):
    code, _, err = _run(capsys, "sample", "--pipeline", folders["sd3"], "--teacher", teachers["sd3"], "a red cat",
                        "--budget", 2, "--guidance", 5, "--height", 32, "--out", tmp_path / "x.png", "-q")
    assert code == 0, err
    assert "guidance 5 (calibrated at 7)" in caplog.text and "height 32 (calibrated at 16)" in caplog.text
    assert not err  # -q: no progress bars, the pipeline's loading bar included


def test_sd_pipeline_closed_and_open_loop_call_the_unet_k_times_at_the_planned_levels(folders, teachers, tmp_path,
                                                                                      capsys, monkeypatch, caplog):
    """The VP pipeline (DDIM in its folder: run by an EulerDiscreteScheduler of its configuration): closed loop by
    default (cotj.execute.vp_replan), --open-loop the teacher plan; K UNet calls at the plan's levels either way."""
    seen, results = _record(monkeypatch)
    args = ["sample", "--pipeline", folders["sd"], "--teacher", teachers["sd"], "a red cat", "--budget", 3, "--out",
            tmp_path / "x.png", "-q"]
    grid = TeacherCost.load(teachers["sd"]).grid
    code, stdout, err = _run(capsys, *args)
    assert code == 0, err
    assert "replanned after each step" in stdout and not results  # not through cotj.execute.sample
    closed = np.array([s[0] for s in seen])
    assert closed.size == 3 and closed[0] == 1.0 and np.all(np.diff(closed) < 0)
    assert np.min(np.abs(closed[:, None] - grid[None]), axis=1).max() < 1e-6
    printed = np.array([float(v) for v in stdout.split("plan: 3 steps at t = ")[1].split(" (")[0].split()])
    np.testing.assert_allclose(printed, closed, rtol=2e-3)
    seen.clear()
    code, stdout, err = _run(capsys, *args, "--open-loop")
    assert code == 0, err
    assert "DDIMScheduler takes no custom timesteps" in caplog.text
    plan = results[0].plans[0]
    assert len(seen) == 3  # CFG: one batched call per level (StableDiffusionPipeline passes one timestep)
    np.testing.assert_allclose([s[0] for s in seen], plan.levels, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(plan.levels, grid[plan.steps])
    assert "open loop" in stdout


def test_sdxl_pipeline_closed_loop_passes_its_added_conditions(folders, teachers, tmp_path, capsys, monkeypatch):
    seen, results = _record(monkeypatch)
    code, stdout, err = _run(capsys, "sample", "--pipeline", folders["sdxl"], "--teacher", teachers["sdxl"], "a red cat",
                             "--budget", 4, "--out", tmp_path / "x.png", "-q")
    assert code == 0, err
    assert "replanned after each step" in stdout and "guidance 5," in stdout
    levels = np.array([s[0] for s in seen])
    grid = TeacherCost.load(teachers["sdxl"]).grid
    assert levels.size == 4 and levels[0] == 1.0 and np.all(np.diff(levels) < 0)
    assert np.min(np.abs(levels[:, None] - grid[None]), axis=1).max() < 1e-6


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_vp_replanning_scheduler_in_the_pipeline_equals_replan_sample(folders, teachers, prediction):
    """VPReplanningScheduler inside StableDiffusionPipeline takes the steps and makes the choices of
    cotj.execute.replan_sample (DDIM on the VP path) on the teacher runs' denoiser, from the same noise."""
    from cotj.execute import Replanner, replan_sample
    from cotj.execute.vp_replan import VPReplanningScheduler
    from cotj.predict.teacher import fit_teacher_cost

    loaded = _pipeline.load_pipeline(str(folders["sd"]), progress=False)
    pipe = loaded.pipe
    config = {**pipe.scheduler.config, "prediction_type": prediction}
    pipe.scheduler = diffusers.DDIMScheduler.from_config(config)
    loaded = _pipeline.Loaded(pipe, "unet", loaded.folder, loaded.device, loaded.dtype)
    model = _pipeline.denoiser(loaded, 16, 16, 7.5)
    assert model.prediction == ("v" if prediction == "v_prediction" else "epsilon")
    grid = loaded.grid(LEVELS)
    from cotj.predict.teacher import euler_trajectories

    cond = _pipeline.encode(loaded, PROMPTS, True)
    noise = torch.randn(3, *loaded.latent_shape(16, 16), generator=torch.Generator().manual_seed(5))
    traj = euler_trajectories(model, noise, cond, grid)
    teacher = fit_teacher_cost(traj.jump_costs, traj.features, grid)
    scales: dict[str, list] = {"ours": [], "pipe": []}
    row_scale = teacher.row_scale

    def recording(key):  # what the replanner saw: the row scales from the state and the clean estimate
        return lambda *args: scales[key].append(row_scale(*args)) or scales[key][-1]

    object.__setattr__(teacher, "row_scale", recording("ours"))
    x, levels = replan_sample(model, noise[:1], cond[:1], Replanner(teacher, 4))
    object.__setattr__(teacher, "row_scale", recording("pipe"))
    sched = diffusers.EulerDiscreteScheduler.from_config(config)
    pipe.scheduler = VPReplanningScheduler(sched, teacher)
    want = pipe(PROMPTS[:1], latents=noise[:1], guidance_scale=7.5, height=16, width=16, num_inference_steps=4,
                output_type="latent")
    np.testing.assert_allclose(pipe.scheduler.levels, levels[0], rtol=0, atol=1e-6)
    assert len(scales["ours"]) == len(scales["pipe"]) == 4
    np.testing.assert_allclose(np.concatenate(scales["pipe"]), np.concatenate(scales["ours"]), rtol=1e-4, atol=1e-6)
    top = float(pipe.scheduler.sigmas[0])
    assert abs(pipe.scheduler.init_noise_sigma - (top**2 + 1) ** 0.5) < 1e-4  # the UNet sees the noise itself
    torch.testing.assert_close(want.images.float(), x.float(), atol=2e-4, rtol=1e-3)


def test_bad_paths_and_mismatched_teacher_files_are_one_line(folders, teachers, tmp_path, capsys):
    png = tmp_path / "x.png"
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"format": "something else"}')
    flux, sd3 = folders["flux"], folders["sd3"]
    cases = {
        ("sample", "--pipeline", tmp_path / "nowhere", "--teacher", teachers["flux"], "a cat", "--out", png):
            "no such pipeline folder",
        ("sample", "--pipeline", empty, "--teacher", teachers["flux"], "a cat", "--out", png): "no model_index.json",
        ("sample", "--pipeline", sd3, "--teacher", teachers["flux"], "a cat", "--out", png):
            "calibrated on FluxPipeline, not on StableDiffusion3Pipeline",
        ("sample", "--pipeline", flux, "--teacher", garbage, "a cat", "--out", png): "not a valid teacher cost file",
        ("sample", "--pipeline", flux, "--teacher", tmp_path / "none.json", "a cat", "--out", png): "none.json",
        ("sample", "--pipeline", flux, "a cat", "--out", png): "needs --teacher FILE",
        ("sample", "--pipeline", flux, "--teacher", teachers["flux"], "a cat", "--out", tmp_path / "x.jpg"): ".png",
        ("sample", "--pipeline", flux, "--teacher", teachers["flux"], "a cat", "--height", 18, "--out", png):
            "multiples of 4",
        ("sample", "--height", 32, "two red circles", "--out", png): "go with --pipeline",
        ("sample", "--pipeline", flux, "--teacher", teachers["flux"], "a cat", "--device", "cuda:99", "--out", png):
            "no such CUDA device",
        ("sample", "--pipeline", flux, "--teacher", teachers["flux"], "a cat", "--device", "toaster", "--out", png):
            "not a torch device",
        ("calibrate", "--pipeline", flux, "--prompts", prompts, "--out", tmp_path / "t.json"): "at least 2 prompts",
        ("calibrate", "--pipeline", flux, "--prompts", tmp_path / "none.txt", "--out", tmp_path / "t.json"): "none.txt",
        ("calibrate", "--pipeline", flux, "--prompts", prompts, "--out", tmp_path / "t.txt"): ".json",
        ("calibrate", "--pipeline", tmp_path / "nowhere", "--prompts", prompts, "--out", tmp_path / "t.json"):
            "no such pipeline folder",
    }
    for args, want in cases.items():
        code, _, err = _run(capsys, *args, "-q")
        assert want in _one_line(code, err, args[0]), (args, err)


def test_calibration_resumes_from_its_checkpoints_and_equals_one_run(folders, tmp_path, monkeypatch):
    """Interrupted after its first batch, the same call resumes: it runs only the batches that are missing and
    writes the same teacher cost as an uninterrupted run. Other settings on the same checkpoints are refused."""
    loaded = _pipeline.load_pipeline(str(folders["flux"]), progress=False)
    prompts = [*PROMPTS, "a small dog"]
    kw = dict(levels=6, guidance=3.5, height=16, width=16, seed=1, batch_size=2, progress=False, echo=lambda *_: None)
    whole = _pipeline.calibrate_pipeline(loaded, prompts, tmp_path / "whole.json", **kw)
    calls = []
    encode = _pipeline.encode

    def interrupted(*args):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return encode(*args)

    monkeypatch.setattr(_pipeline, "encode", interrupted)
    out = tmp_path / "resumed.json"
    with pytest.raises(KeyboardInterrupt):
        _pipeline.calibrate_pipeline(loaded, prompts, out, **kw)
    parts = tmp_path / "resumed.json.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["batch-00000.npz", "run.json"] and not out.exists()
    with pytest.raises(ValueError, match=r"partial run with other settings \(levels\)"):
        _pipeline.calibrate_pipeline(loaded, prompts, out, **{**kw, "levels": 5})
    monkeypatch.setattr(_pipeline, "encode", encode)
    again = []
    monkeypatch.setattr(_pipeline, "encode", lambda *args: again.append(args[1]) or encode(*args))
    resumed = _pipeline.calibrate_pipeline(loaded, prompts, out, **kw)
    assert again == [prompts[2:]]  # only the missing batch ran
    for name in ("edges", "end", "gram"):
        np.testing.assert_allclose(getattr(resumed, name), getattr(whole, name), rtol=1e-12)
    assert not parts.exists()


def test_sharded_calibration_equals_one_process(folders, tmp_path, monkeypatch):
    """Two ranks (as torchrun launches them, here one after the other): each runs its block of batches, rank 1
    returns None, rank 0 gathers every checkpoint and fits the teacher cost of one process."""
    import torch.distributed as dist

    import cotj.predict.shard as shard

    loaded = _pipeline.load_pipeline(str(folders["flux"]), progress=False)
    prompts = [*PROMPTS, "a small dog", "a big dog"]
    kw = dict(levels=5, guidance=3.5, height=16, width=16, seed=0, batch_size=2, progress=False, echo=lambda *_: None)
    one = _pipeline.calibrate_pipeline(loaded, prompts, tmp_path / "one.json", **kw)
    monkeypatch.setattr(dist, "barrier", lambda: None)
    ran = []
    encode = _pipeline.encode
    monkeypatch.setattr(_pipeline, "encode", lambda *args: ran.append(args[1]) or encode(*args))
    results = []
    for rank in (1, 0):
        monkeypatch.setattr(shard, "_process_group", lambda rank=rank: (rank, 2, False))
        results.append(_pipeline.calibrate_pipeline(loaded, prompts, tmp_path / "two.json", **kw))
    assert results[0] is None and ran == [prompts[2:4], prompts[4:], prompts[:2]]  # 3 batches: rank 1 runs 1 and 2
    two = TeacherCost.load(tmp_path / "two.json")
    np.testing.assert_allclose(two.edges, one.edges, rtol=1e-6)  # through the file: 7 digits
    assert json.loads((tmp_path / "two.json").read_text())["settings"]["processes"] == 2


def test_the_readme_try_it_command_calibrates_and_samples_a_tiny_flux_pipeline(tmp_path):
    """The README's one command, as a shell runs it from an empty directory: tiny Flux pipeline -> calibrate ->
    closed-loop sample."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    command = next(line for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) for line in block.splitlines()
                   if line.startswith("python -m cotj_testbed.tiny_pipelines"))
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1",
           "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command.replace("python -m", f"{sys.executable} -m", 1), shell=True, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "replanned after each step" in done.stdout and "NFE 4 for 4 levels" in done.stdout
    assert TeacherCost.load(tmp_path / "tiny.json").settings["pipeline"] == "FluxPipeline"
    assert (tmp_path / "cat.png").is_file()


def test_teacher_cost_settings_round_trip_and_malformed_settings_are_refused(teachers, tmp_path):
    cost = TeacherCost.load(teachers["flux"])
    cost.save(tmp_path / "again.json")
    assert TeacherCost.load(tmp_path / "again.json").settings == cost.settings
    doc = json.loads((tmp_path / "again.json").read_text())
    for bad in ([1, 2], {"guidance": [3.5]}, {"guidance": {"x": 1}}, {str(i): i for i in range(65)}, {"note": "x" * 5000}):
        (tmp_path / "bad.json").write_text(json.dumps({**doc, "settings": bad}))
        with pytest.raises(ValueError, match="bad.json: not a valid teacher cost file: settings"):
            TeacherCost.load(tmp_path / "bad.json")
    del doc["settings"]  # files written before settings existed load as before
    (tmp_path / "old.json").write_text(json.dumps(doc))
    assert TeacherCost.load(tmp_path / "old.json").settings is None


def test_two_torchrun_processes_write_the_teacher_cost_of_one(folders, teachers, tmp_path):
    """The documented torchrun launch (2 gloo processes, 3 batches) writes the teacher cost one process wrote."""
    import os
    import subprocess
    import sys

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "cotj", "calibrate",
           "--pipeline", str(folders["flux"]), "--prompts", str(prompts), "--out", str(tmp_path / "two.json"),
           "--levels", str(LEVELS), "--batch-size", "1", "--height", "16", "--width", "16", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "on 2 processes" in done.stdout and done.stdout.count("wrote ") == 1  # rank 0 writes
    two, one = TeacherCost.load(tmp_path / "two.json"), TeacherCost.load(teachers["flux"])
    assert two.settings["processes"] == 2 and two.n_samples == one.n_samples
    for name in ("edges", "end", "gram"):  # batches of 1 against the fixture's 2: the same samples, summed alike
        np.testing.assert_allclose(getattr(two, name), getattr(one, name), rtol=1e-6, atol=1e-12)
