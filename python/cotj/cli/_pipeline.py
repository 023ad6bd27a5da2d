"""A local Diffusers pipeline for the commands: ``cotj calibrate`` (teacher runs -> a teacher cost) and
``cotj sample --pipeline`` (the closed loop on it).

Pipelines are loaded from a local folder (``DiffusionPipeline.from_pretrained``, offline). Three families are
known, by the denoiser they hold:

- ``flux``: a ``FluxTransformer2DModel`` (FluxPipeline): packed latents, the linear flow, distilled guidance in
  the model (one evaluation per level; :class:`cotj.predict.FluxDenoiser`);
- ``sd3``: an ``SD3Transformer2DModel`` (StableDiffusion3Pipeline): the linear flow, classifier-free guidance
  (two evaluations per level above guidance 1; :class:`cotj.predict.SD3Denoiser`);
- ``unet``: a ``UNet2DConditionModel`` with a discrete VP scheduler (StableDiffusionPipeline, and
  StableDiffusionXLPipeline's UNet with its added text and time conditions): epsilon or v prediction, classifier-free guidance (:class:`cotj.predict.UNetDenoiser`). Teacher runs step on its VP path, on
  integer training timesteps (:func:`cotj.execute.timestep_grid`); the closed loop runs an ``EulerDiscreteScheduler``
  of the pipeline's scheduler configuration (:class:`cotj.execute.vp_replan.VPReplanningScheduler`).

Everything that loads torch or Diffusers is imported inside the functions.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cotj.cli import _io
from cotj.planning.solvers import SOLVERS

__all__ = [
    "KINDS",
    "TESTED",
    "CondRows",
    "Loaded",
    "add_pipeline_flags",
    "calibrate_pipeline",
    "load_pipeline",
    "sample_command",
]

log = logging.getLogger("cotj.cli")

KINDS = {"FluxTransformer2DModel": "flux", "SD3Transformer2DModel": "sd3", "UNet2DConditionModel": "unet"}
"""The denoiser classes cotj runs, and the family each makes a pipeline."""
TESTED = ("FluxPipeline", "StableDiffusion3Pipeline", "StableDiffusionPipeline", "StableDiffusionXLPipeline")
"""The pipeline classes the tests run end to end (tiny random weights, saved and loaded back)."""
DEFAULT_GUIDANCE = {"flux": 3.5, "sd3": 7.0, "unet": 7.5, "xl": 5.0}
"""Each family's guidance when neither the flag nor the teacher cost says (the pipelines' own defaults)."""
DTYPES = ("auto", "float32", "float16", "bfloat16")
SETTINGS = ("guidance", "height", "width")
"""The run settings ``cotj sample`` compares with the teacher cost's."""


def add_pipeline_flags(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``--pipeline``, ``--height``, ``--width``, ``--dtype`` and ``--device`` (calibrate and sample)."""
    p.add_argument("--pipeline", metavar="DIR", required=required,
                   help="a local Diffusers pipeline folder (model_index.json and its parts; loaded offline)"
                        + ("" if required else "; without it the shipped shapes generator runs"))
    default = "the pipeline's" if required else "the teacher cost's, else the pipeline's"
    p.add_argument("--height", type=_io.int_in(8, 16384), metavar="PX", help=f"image height in pixels (default: {default})")
    p.add_argument("--width", type=_io.int_in(8, 16384), metavar="PX", help=f"image width in pixels (default: {default})")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="weights' dtype (default auto: bfloat16 on a GPU, float32 on the CPU)")
    p.add_argument("--device", default="auto", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available)")


@dataclass(frozen=True)
class Loaded:
    """A loaded pipeline: the Diffusers object, its family (:data:`KINDS`), folder, device and dtype."""

    pipe: Any
    kind: str
    folder: Path
    device: Any
    dtype: Any

    @property
    def name(self) -> str:
        """The pipeline's class name."""
        return type(self.pipe).__name__

    @property
    def xl(self) -> bool:
        """Whether the UNet takes SDXL's added text and time conditions."""
        return self.kind == "unet" and self.pipe.unet.config.get("addition_embed_type") == "text_time"

    def default_guidance(self) -> float:
        """The pipeline's own default guidance scale."""
        return DEFAULT_GUIDANCE["xl" if self.xl else self.kind]

    def default_size(self) -> tuple[int, int]:
        """(height, width) in pixels the pipeline makes by default."""
        pipe = self.pipe
        if self.kind == "unet":
            side = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        else:
            side = int(pipe.default_sample_size) * int(pipe.vae_scale_factor)
        return side, side

    def multiple(self) -> int:
        """What the height and width must be a multiple of (the VAE's scale, times the transformer's patch)."""
        scale = int(self.pipe.vae_scale_factor)
        if self.kind == "flux":
            return scale * 2
        if self.kind == "sd3":
            return scale * int(self.pipe.transformer.config.patch_size)
        return scale

    def check_size(self, height: int, width: int) -> None:
        """Refuse a size the pipeline cannot make."""
        m = self.multiple()
        if height % m or width % m:
            raise ValueError(f"--height and --width must be multiples of {m} for {self.name}, got {height}x{width}")

    def latent_shape(self, height: int, width: int) -> tuple[int, ...]:
        """The shape of one sample's noise: packed (tokens, channels) for Flux, (C, h, w) otherwise."""
        scale = int(self.pipe.vae_scale_factor)
        if self.kind == "flux":
            channels = int(self.pipe.transformer.config.in_channels)
            return (height // (scale * 2)) * (width // (scale * 2)), channels
        model = self.pipe.transformer if self.kind == "sd3" else self.pipe.unet
        return int(model.config.in_channels), height // scale, width // scale

    def uses_cfg(self, guidance: float) -> bool:
        """Whether the pipeline runs classifier-free guidance (two evaluations per level) at ``guidance``."""
        if self.kind == "flux":
            return False
        if self.kind == "unet" and self.pipe.unet.config.get("time_cond_proj_dim") is not None:
            return False
        return guidance > 1.0

    def grid(self, levels: int) -> NDArray[np.float64]:
        """The teacher grid of ``levels`` levels: ``t_i = (i + 1)/N`` on the flow, integer training timesteps on a
        VP scheduler (:func:`cotj.execute.timestep_grid`), so that every scheduler that takes timesteps runs its
        plans exactly."""
        from cotj.planning.schedules import default_grid

        if self.kind != "unet":
            return default_grid(levels)
        from cotj.execute import timestep_grid

        steps = int(self.pipe.scheduler.config.num_train_timesteps)
        if levels > steps - 1:
            raise ValueError(f"--levels must be at most {steps - 1} for {self.name} (its scheduler has {steps} "
                             f"training timesteps), got {levels}")
        return timestep_grid(self.pipe.scheduler, levels)


class CondRows(dict):
    """A dict of per-sample tensors (B, ...) that a row index slices: ``cond[2:4]`` is the rows 2..3 of every
    entry, ``cond["prompt_embeds"]`` one entry (what :func:`cotj.predict.calibrate` and the adapters take)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return CondRows({k: v[key] for k, v in self.items()})

    def __len__(self) -> int:
        return int(next(iter(self.values())).shape[0]) if dict.__len__(self) else 0


class Guided:
    """``model(x_t, t, cond)`` of a pipeline's denoiser at its device and dtype, with classifier-free guidance
    ``u + g·(c - u)`` when ``cfg`` (one batched call of the unconditional and conditional rows, as the pipelines
    make it). ``x_t`` and the result are float32 on the device; ``t`` (n,) may be on the CPU. ``path(t)`` is the
    denoiser's Gaussian path on the device (the linear flow for flow models)."""

    def __init__(self, inner: Any, guidance: float, cfg: bool, device: Any, dtype: Any) -> None:
        self.inner, self.guidance, self.cfg = inner, float(guidance), bool(cfg)
        self.device, self.dtype = device, dtype
        self.prediction = str(inner.prediction)

    def path(self, t: Any) -> tuple[Any, Any]:
        """``a(t), s(t)`` (n,) float64 on the device."""
        import torch

        t = t.to(self.device, torch.float64)
        if hasattr(self.inner, "path"):
            a, s = self.inner.path(t)
            return a.to(self.device, torch.float64), s.to(self.device, torch.float64)
        return 1.0 - t, t

    def __call__(self, x: Any, t: Any, cond: Any) -> Any:
        import torch

        from cotj.predict.extract import cfg

        x = x.to(self.device, self.dtype)
        t = t.to(self.device)
        keys = [k for k in cond if not k.startswith("negative_")]
        if not self.cfg:
            return self.inner(x, t, {k: cond[k] for k in keys}).float()
        both = {k: torch.cat([cond[f"negative_{k}"], cond[k]]) for k in keys}
        out = self.inner(torch.cat([x, x]), torch.cat([t, t]), both).float()
        uncond, conditional = out.chunk(2)
        return cfg(conditional, uncond, self.guidance)


def _device(name: str) -> Any:
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"--device {name!r} is not a torch device ({exc})") from None
        if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
            raise ValueError(f"--device {name}: no such CUDA device here ({torch.cuda.device_count()} available)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def _dtype(name: str, device: Any) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def load_pipeline(folder: str, *, dtype: str = "auto", device: str = "auto", progress: bool = True) -> Loaded:
    """The pipeline in a local folder (offline), on ``device`` in ``dtype``; bad folders and unknown pipelines
    raise FileNotFoundError or ValueError in one line."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such pipeline folder", str(folder))
    if not (path / "model_index.json").is_file():
        raise ValueError(f"{folder} is not a Diffusers pipeline folder (no model_index.json; save one with "
                         "pipe.save_pretrained(DIR))")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import DiffusionPipeline

    dev = _device(device)
    dt = _dtype(dtype, dev)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    bars = [m for m in (diffusers_logging, transformers_logging) if m.is_progress_bar_enabled()]
    if not progress:  # their loading bars
        for module in bars:
            module.disable_progress_bar()
    try:
        with warnings.catch_warnings():  # newer Diffusers call it dtype; torch_dtype works in every version
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = DiffusionPipeline.from_pretrained(str(path), torch_dtype=dt, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, json.JSONDecodeError) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"{folder}: cannot load the pipeline ({type(exc).__name__}: {reason})") from None
    finally:
        for module in bars:
            module.enable_progress_bar()
    model = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    kind = KINDS.get(type(model).__name__) if model is not None else None
    if kind is None:
        known = ", ".join(f"{m} ({TESTED[i]})" for i, m in enumerate(KINDS))
        raise ValueError(f"{type(pipe).__name__} runs {type(model).__name__ if model is not None else 'no denoiser'}; "
                         f"cotj runs pipelines of {known}")
    added = pipe.unet.config.get("addition_embed_type") if kind == "unet" else None
    if added not in (None, "text_time") or (added == "text_time" and not hasattr(pipe, "_get_add_time_ids")):
        raise ValueError(f"{type(pipe).__name__}: its UNet takes added conditions ({added}) that cotj does not pass; "
                         "StableDiffusionPipeline and StableDiffusionXLPipeline UNets run")
    if kind == "unet" and not hasattr(pipe.scheduler, "alphas_cumprod"):
        raise ValueError(f"{type(pipe).__name__}'s scheduler {type(pipe.scheduler).__name__} is not a discrete VP one")
    pipe.to(dev)
    pipe.set_progress_bar_config(disable=not progress)
    return Loaded(pipe, kind, path, dev, dt)


def encode(loaded: Loaded, prompts: list[str], cfg: bool, size: tuple[int, int] | None = None) -> CondRows:
    """The pipeline's own text encoding of ``prompts`` (``pipe.encode_prompt``) as :class:`CondRows`:
    ``prompt_embeds`` (and ``pooled_prompt_embeds`` for the transformers; ``text_embeds`` and ``time_ids`` for an
    SDXL UNet, whose time ids need the image ``size`` (height, width)), with ``negative_*`` rows (the empty
    prompt, as the pipeline makes it) when ``cfg``."""
    import torch

    pipe, dev = loaded.pipe, loaded.device
    with torch.inference_mode():
        if loaded.kind == "flux":
            pe, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, device=dev)
            return CondRows(prompt_embeds=pe, pooled_prompt_embeds=pooled)
        if loaded.kind == "sd3":
            pe, npe, pooled, npooled = pipe.encode_prompt(prompt=prompts, prompt_2=None, prompt_3=None, device=dev,
                                                          do_classifier_free_guidance=cfg)
            rows = CondRows(prompt_embeds=pe, pooled_prompt_embeds=pooled)
            if cfg:
                rows.update(negative_prompt_embeds=npe, negative_pooled_prompt_embeds=npooled)
            return rows
        if loaded.xl:
            if size is None:
                raise ValueError("an SDXL UNet's conditions need the image size")
            pe, npe, pooled, npooled = pipe.encode_prompt(prompt=prompts, prompt_2=None, device=dev,
                                                          do_classifier_free_guidance=cfg)
            projection = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else pooled.shape[-1]
            ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=pe.dtype, text_encoder_projection_dim=int(projection))
            ids = ids.to(dev).repeat(len(prompts), 1)
            rows = CondRows(prompt_embeds=pe, text_embeds=pooled, time_ids=ids)
            if cfg:
                rows.update(negative_prompt_embeds=npe, negative_text_embeds=npooled, negative_time_ids=ids)
            return rows
        pe, npe = pipe.encode_prompt(prompts, dev, 1, cfg)
        rows = CondRows(prompt_embeds=pe)
        if cfg:
            rows.update(negative_prompt_embeds=npe)
        return rows


def denoiser(loaded: Loaded, height: int, width: int, guidance: float) -> Guided:
    """The pipeline's denoiser as ``model(x_t, t, cond)`` (:class:`Guided`) at an image size and guidance."""
    from cotj.predict.denoisers import FluxDenoiser, SD3Denoiser, UNetDenoiser

    pipe = loaded.pipe
    inner: Any
    if loaded.kind == "flux":
        inner = FluxDenoiser.from_pipeline(pipe, height, width, guidance).to(loaded.device)
    elif loaded.kind == "sd3":
        inner = SD3Denoiser.from_pipeline(pipe)
    else:
        inner = UNetDenoiser(pipe.unet, pipe.scheduler)
    return Guided(inner, guidance, loaded.uses_cfg(guidance), loaded.device, loaded.dtype)


def _digest(prompts: list[str]) -> str:
    return hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16]


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{seconds:.1f} s")


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_batch(path: Path, costs: Any, features: Any, gram_sum: Any) -> None:
    with path.open("wb") as f:
        np.savez(f, costs=costs, features=features, gram_sum=gram_sum)


def calibrate_pipeline(loaded: Loaded, prompts: list[str], out: str | Path, *, levels: int, guidance: float,
                       height: int, width: int, seed: int, batch_size: int, progress: bool = True,
                       echo: Any = print) -> Any:
    """Teacher runs of ``prompts`` (:func:`cotj.predict.teacher.euler_trajectories` per batch, their jump costs,
    features and Gram matrix kept in ``<out>.parts/``), then the fit of :func:`cotj.predict.teacher.fit_teacher_cost`
    written to ``out``. A rerun with the same settings resumes from the batches already in ``<out>.parts/``; under
    torchrun each process runs its block of batches (:func:`cotj.predict.shard.shard_bounds`) and rank 0 fits and
    writes. Returns the :class:`~cotj.planning.objectives.TeacherCost` on rank 0, None on the others."""
    import torch.distributed as dist
    from tqdm.auto import tqdm

    from cotj.models import seeded_noise
    from cotj.planning.objectives import TeacherCost
    from cotj.predict.shard import _process_group, shard_bounds
    from cotj.predict.teacher import euler_trajectories, fit_teacher_cost

    if len(prompts) < 2:
        raise ValueError(f"calibration needs at least 2 prompts, got {len(prompts)}")
    loaded.check_size(height, width)
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    grid = loaded.grid(levels)
    model = denoiser(loaded, height, width, guidance)
    per_level = 2 if model.cfg else 1
    settings = {"pipeline": loaded.name, "folder": str(loaded.folder.resolve()), "guidance": guidance,
                "height": height, "width": width, "levels": int(grid.size), "seed": seed, "prompts": len(prompts),
                "prompts_sha256": _digest(prompts), "batch_size": batch_size, "dtype": str(loaded.dtype).replace("torch.", "")}
    rank, world, owned = _process_group()
    try:
        parts.mkdir(parents=True, exist_ok=True)
        run_file = parts / "run.json"
        if run_file.is_file():
            before = json.loads(run_file.read_text())
            diff = [k for k in settings if before.get(k) != settings[k] and k != "folder"]
            if diff:
                raise ValueError(f"{parts} holds a partial run with other settings ({', '.join(diff)}): delete it to "
                                 "start again, or give another --out")
        elif rank == 0:
            _write_atomic(run_file, lambda p: p.write_text(json.dumps(settings) + "\n"))
        n_batches = -(-len(prompts) // batch_size)
        lo, hi = shard_bounds(n_batches, world, rank)
        files = {i: parts / f"batch-{i:05d}.npz" for i in range(n_batches)}
        todo = [i for i in range(lo, hi) if not files[i].is_file()]
        mine = sum(min(batch_size, len(prompts) - i * batch_size) for i in todo)
        evaluations = len(prompts) * grid.size * per_level
        if rank == 0:
            done = sum(1 for f in files.values() if f.is_file())
            echo(f"calibration: {len(prompts)} prompts x {grid.size} levels{' x 2 (guidance)' if per_level == 2 else ''}"
                 f" = {evaluations:,} model evaluations, in {n_batches} batches of {batch_size} on {world} "
                 f"process{'es' if world > 1 else ''} ({loaded.device}, {str(loaded.dtype).replace('torch.', '')})"
                 + (f"; resuming: {done} batches already in {parts}" if done else ""))
        shape = loaded.latent_shape(height, width)
        clock = time.perf_counter()
        with tqdm(total=mine, unit="prompt", desc="teacher runs", disable=not progress or rank != 0,
                  file=sys.stderr) as bar:
            for n, i in enumerate(todo):
                block = prompts[i * batch_size : (i + 1) * batch_size]
                cond = encode(loaded, block, model.cfg, (height, width))
                noise = seeded_noise(block, shape, seed).float().to(loaded.device)
                traj = euler_trajectories(model, noise, cond, grid, prediction=model.prediction)
                costs, feats = traj.jump_costs, traj.features
                gram = traj.gram() * len(block)
                _write_atomic(files[i], lambda p, c=costs, f=feats, g=gram: _save_batch(p, c, f, g))
                bar.update(len(block))
                if n == 0 and rank == 0 and len(todo) > 1:
                    took = time.perf_counter() - clock
                    left = (mine - len(block)) * took / len(block)
                    bar.write(f"first batch: {len(block)} prompts in {took:.1f} s ({took / (len(block) * grid.size * per_level):.3g} s "
                              f"per model evaluation); estimated {_duration(left)} for the remaining {mine - len(block)} "
                              f"prompts of this process", file=sys.stderr)
        if world > 1:
            dist.barrier()
        if rank != 0:
            return None
        costs_all, feats_all, gram_sum = [], [], None
        for i in range(n_batches):
            with np.load(files[i]) as z:
                costs_all.append(z["costs"])
                feats_all.append(z["features"])
                gram_sum = z["gram_sum"] if gram_sum is None else gram_sum + z["gram_sum"]
        assert gram_sum is not None  # at least one batch
        fitted = fit_teacher_cost(np.concatenate(costs_all), np.concatenate(feats_all), grid, gram=gram_sum / len(prompts))
        seconds = time.perf_counter() - clock
        meta = {k: settings[k] for k in ("pipeline", "folder", "guidance", "height", "width", "seed", "dtype")}
        meta.update(evaluations=evaluations, processes=world, seconds=round(seconds, 3))
        cost = TeacherCost(fitted.grid, fitted.edges, fitted.end, fitted.n_samples, fitted.rows, fitted.gram,
                           settings=meta)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out, cost.save)
        for f in files.values():
            f.unlink(missing_ok=True)
        run_file.unlink(missing_ok=True)
        try:
            parts.rmdir()
        except OSError:
            pass
        return cost
    finally:
        if owned:
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ cotj sample


def _check_sample_args(args: argparse.Namespace) -> None:
    if args.model != _io.SHAPES:
        raise ValueError("--pipeline runs that pipeline: drop --model")
    for attr, flag in (("predictor", "--predictor"), ("true_dna", "--true-dna"), ("weights", "--weights")):
        if getattr(args, attr, None):
            raise ValueError(f"{flag} belongs to the shapes generator; with --pipeline give --teacher FILE "
                             "(cotj calibrate) or --mean-dna FILE")
    if args.objective == "calibrated":
        raise ValueError("--objective calibrated needs a DNA predictor, which --pipeline does not have: use the "
                         "teacher objective (--teacher FILE) or paper (--mean-dna FILE)")
    if not args.prompt.strip():
        raise ValueError("the prompt is empty")
    if args.uniform and args.budget is None:
        raise ValueError("--uniform needs --budget K")
    if args.max_steps is not None and args.tau is None:
        raise ValueError("--max-steps goes with --tau")


def _teacher_settings(loaded: Loaded, cost: Any, teacher: str, args: argparse.Namespace) -> dict[str, Any]:
    """guidance, height and width of the run: the flags, else the teacher cost's, else the pipeline's. A teacher
    cost of another pipeline class is refused; other settings than its own are a warning."""
    recorded = dict(cost.settings or {}) if cost is not None else {}
    if recorded.get("pipeline") not in (None, loaded.name):
        raise ValueError(f"{teacher} was calibrated on {recorded['pipeline']}, not on {loaded.name}: calibrate this "
                         "pipeline (cotj calibrate --pipeline DIR ...)")
    if cost is not None:
        want = "integer-timestep VP" if loaded.kind == "unet" else "flow"
        if not np.allclose(cost.grid, loaded.grid(cost.grid.size)):
            raise ValueError(f"{teacher} has a grid of {cost.grid.size} levels that is not the {want} grid of "
                             f"{loaded.name}: calibrate this pipeline (cotj calibrate --pipeline DIR ...)")
    h, w = loaded.default_size()
    given = {"guidance": args.guidance, "height": args.height, "width": args.width}
    default = {"guidance": loaded.default_guidance(), "height": h, "width": w}
    run = {k: given[k] if given[k] is not None else recorded.get(k, default[k]) for k in SETTINGS}
    differ = [f"{k} {run[k]:g} (calibrated at {recorded[k]:g})" for k in SETTINGS
              if k in recorded and given[k] is not None and float(given[k]) != float(recorded[k])]
    if differ:
        log.warning("%s: sampling at %s; the plans are made for the calibration's settings: calibrate at these",
                    teacher, ", ".join(differ))
    return run


def _vp_scheduler(loaded: Loaded) -> None:
    """A VP pipeline whose scheduler takes no custom timesteps (DDIM, PNDM) runs an EulerDiscreteScheduler of the
    same configuration (same betas and prediction type), which runs plans exactly."""
    import inspect

    from diffusers import EulerDiscreteScheduler

    sched = loaded.pipe.scheduler
    if "timesteps" not in inspect.signature(sched.set_timesteps).parameters:
        log.warning("%s takes no custom timesteps: sampling with EulerDiscreteScheduler of its configuration",
                    type(sched).__name__)
        loaded.pipe.scheduler = EulerDiscreteScheduler.from_config(sched.config)


def vp_closed_loop(loaded: Loaded, prompt: str, teacher: Any, budget: int | None, call: dict[str, Any]) -> tuple[Any, Any]:
    """One prompt through a VP pipeline under a :class:`cotj.execute.vp_replan.VPReplanningScheduler` (an
    ``EulerDiscreteScheduler`` of the pipeline's scheduler configuration, replanned after every step): the image
    and the :class:`cotj.Plan` of the levels run (its cost: the open-loop teacher cost of those levels)."""
    from diffusers import EulerDiscreteScheduler

    from cotj import Plan, plan_cost
    from cotj.execute.vp_replan import VPReplanningScheduler
    from cotj.planning.planner import DEFAULT_BUDGET

    original = loaded.pipe.scheduler
    base = original if isinstance(original, EulerDiscreteScheduler) else EulerDiscreteScheduler.from_config(original.config)
    k = DEFAULT_BUDGET if budget is None else int(budget)
    try:
        loaded.pipe.scheduler = VPReplanningScheduler(base, teacher)
        image = loaded.pipe(prompt, num_inference_steps=k, **call).images[0]
        levels = np.asarray(loaded.pipe.scheduler.levels, dtype=np.float64)
    finally:
        loaded.pipe.scheduler = original
    steps = np.abs(teacher.grid[None, :] - levels[:, None]).argmin(1).astype(np.int64)
    return image, Plan(steps, teacher.grid[steps], plan_cost(teacher.dense(), steps))


def sample_command(args: argparse.Namespace) -> int:
    """``cotj sample --pipeline DIR``: one prompt through the pipeline, planned on its teacher cost (closed loop by
    default), uniform levels, or one DNA row; writes the image at its own size."""
    _check_sample_args(args)
    path = _io.png_path(args.out)
    if not (args.teacher or args.uniform or args.mean_dna):
        raise ValueError("--pipeline needs --teacher FILE (made by cotj calibrate --pipeline DIR), or --uniform / "
                         "--mean-dna FILE")
    from cotj.planning.objectives import TeacherCost

    cost = TeacherCost.load(args.teacher) if args.teacher and not args.uniform else None
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    loaded = load_pipeline(args.pipeline, dtype=args.dtype, device=args.device, progress=not args.quiet)
    print(f"model: {loaded.name} ({loaded.kind}) loaded in {time.perf_counter() - clock:.2f} s")
    run = _teacher_settings(loaded, cost, args.teacher, args)
    loaded.check_size(run["height"], run["width"])
    flow = loaded.kind != "unet"
    args.solver = _io.resolve_solver(args, loaded.pipe.scheduler, None if args.mean_dna else cost)
    if not flow and args.solver != "euler":
        raise ValueError(f"--solver {args.solver} runs on flow-matching pipelines (Flux, SD3); {loaded.name} "
                         "runs its own VP scheduler: use --solver euler")
    if not flow:
        _vp_scheduler(loaded)
    generator = torch.Generator("cpu").manual_seed(args.seed)
    call = dict(guidance_scale=run["guidance"], height=run["height"], width=run["width"], generator=generator,
                output_type="pil")
    solver = args.solver if flow else None
    from cotj.execute import nfe, sample

    clock = time.perf_counter()
    if args.uniform:
        from cotj.execute import neutral_scheduler, planned_scheduler
        from cotj.planning.schedules import uniform

        levels = uniform(args.budget)
        original = loaded.pipe.scheduler
        base = neutral_scheduler(original) if flow else original
        if solver not in (None, "euler"):
            from cotj.execute import solver_scheduler

            base = solver_scheduler(solver, int(original.config.num_train_timesteps))
        try:
            loaded.pipe.scheduler = planned_scheduler(base, levels)
            image = loaded.pipe(args.prompt, num_inference_steps=args.budget, **call).images[0]
        finally:
            loaded.pipe.scheduler = original
        print(f"uniform: {args.budget} steps at t = {_io.levels_text(levels)}")
        k = args.budget
    else:
        replan = cost is not None and not args.open_loop and args.tau is None and (args.solver is None or SOLVERS[args.solver].replans) and not args.mean_dna
        kwargs: dict[str, Any] = dict(budget=args.budget, tau=args.tau, max_steps=args.max_steps, solver=solver)
        if args.mean_dna:
            kwargs.update(mean_dna=_io.read_array(args.mean_dna), objective="paper", replan=False)
            what = f"one DNA row from {args.mean_dna}"
        else:
            kwargs.update(teacher=cost, objective="teacher", replan=replan)
            what = f"teacher cost {args.teacher}" + (", closed loop" if replan else ", open loop")
        print(f"plan from: {what}; guidance {run['guidance']:g}, {run['height']}x{run['width']}")
        if replan and not flow:
            image, plan = vp_closed_loop(loaded, args.prompt, cost, args.budget, call)
        else:
            result = sample(loaded.pipe, args.prompt, **kwargs, **call)
            image, plan = result.images[0], result.plans[0]
        how = "replanned after each step, " if replan else ""
        print(f"plan: {plan.budget} steps at t = {_io.levels_text(plan.levels)} ({how}cost {plan.cost:.4g})")
        k = plan.budget
    print(f"solver: {args.solver}, NFE {nfe(args.solver, k)} for {k} levels")
    print(f"sampling: {time.perf_counter() - clock:.2f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    print(f"wrote {path} ({image.width}x{image.height})")
    return 0
