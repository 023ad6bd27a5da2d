"""The models the commands run (:mod:`cotj.models`): the shipped shapes generator and the analytic
Gaussian-mixture flow model, chosen by a :class:`cotj.cli._io.ModelSpec`. Imports torch: import it inside a
command, never at the top of a command module.

A *prompt* is a text prompt for the shapes generator and a condition id (an int >= 0, one mixture of the
seeded family) for the analytic model. Each prompt's noise depends only on the prompt and the spec's ``seed``
(:func:`cotj.models.seeded_noise`), so it is the same in every command and however the work is split over
processes.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cotj.cli._io import MAX_INT, SHAPES, ModelSpec
from cotj.models import analytic, seeded_noise
from cotj.planning.schedules import default_grid
from cotj.predict import teacher
from cotj.predict.shard import DNAInputs, ShardedDNA, extract_sharded

ANALYTIC_REFERENCE_STEPS = 200
"""RK4 steps of the analytic model's exact endpoint, unless the spec says."""
SHAPES_REFERENCE_STEPS = 50
"""Steps of the shapes generator's own first-order reference sample, unless the spec says."""


def use_threads(n: int) -> None:
    """Run torch on ``n`` intra-op threads."""
    torch.set_num_threads(n)


def shapes_pipeline(weights: str | None) -> Any:
    """The ``ShapesPipeline`` from ``weights`` (a weights file or a training run directory; default the
    shipped file), progress bar off."""
    from cotj.models import generator

    path = Path(weights) if weights else generator.WEIGHTS
    if not path.exists():
        hint = "pass --weights FILE, or train and export the generator (python -m cotj_testbed.train)"
        raise FileNotFoundError(errno.ENOENT, f"no shapes generator weights ({hint})", str(path))
    from safetensors import SafetensorError

    try:
        pipe = generator.load_pipeline(path)
    except (SafetensorError, RuntimeError, KeyError, TypeError) as exc:  # a file, but not the generator's weights
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path} is not shapes generator weights ({type(exc).__name__}: {reason})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def shipped_predictor(spec: ModelSpec) -> Path | None:
    """The shipped DNA predictor if it is the spec's model's: the shipped generator weights (no ``weights``)
    sampled at the guidance its DNA was measured at; else None."""
    from cotj.models import generator

    return generator.PREDICTOR if _shipped_applies(spec) and generator.PREDICTOR.is_dir() else None


def shipped_teacher(spec: ModelSpec) -> Path | None:
    """The shipped teacher cost if it is the spec's model's (the same rule as :func:`shipped_predictor`)."""
    from cotj.models import generator

    return generator.TEACHER if _shipped_applies(spec) and generator.TEACHER.is_file() else None


def _shipped_applies(spec: ModelSpec) -> bool:
    from cotj.models import generator

    return spec.model == SHAPES and not spec.weights and spec.guidance == generator.PREDICTOR_GUIDANCE


def condition_ids(prompts: Sequence[str]) -> list[int]:
    """Analytic prompts as condition ids (ints in 0..MAX_INT)."""
    bad = [p for p in prompts if not (str(p).isascii() and str(p).isdigit() and int(p) <= MAX_INT)]
    if bad:
        raise ValueError(f"prompts of the analytic model are condition ids (one int in 0..{MAX_INT} per line), "
                         f"got {str(bad[0])[:80]!r}")
    return [int(p) for p in prompts]


@functools.lru_cache(maxsize=4)
def analytic_model(dim: int, family_seed: int) -> analytic.FlowMixtureModel:
    """The analytic flow model of the family ``(dim, family_seed)``."""
    return analytic.FlowMixtureModel(analytic.MixtureFamily(dim, family_seed))


def embeddings(spec: ModelSpec, prompts: Sequence[str]) -> NDArray[np.float64]:
    """Condition embeddings (B, D) the DNA predictor takes: MiniLM mean-pooled token states for
    the shapes generator, the mixture's descriptor (6,) for the analytic model."""
    if spec.model == SHAPES:
        from cotj.models.text import predictor_input

        return predictor_input(list(prompts)).numpy()
    family = analytic_model(spec.dim, spec.family_seed).family
    return np.stack([family.embedding(c) for c in condition_ids(prompts)])


def _velocity(pipe: Any, guidance: float) -> Any:
    """The generator's guided velocity as ``model(x_t, t, token_embeddings)``."""
    return functools.partial(pipe.velocity, guidance_scale=guidance)


def noise(spec: ModelSpec, pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """The generator's noise (B, 3, H, W) float32 of ``prompts`` under ``spec.seed``."""
    side = pipe.unet.config.sample_size
    return seeded_noise(list(prompts), (3, side, side), spec.seed).float()


def extract(spec: ModelSpec, prompts: Sequence[str], levels: int = 100, pipe: Any = None) -> ShardedDNA | None:
    """True DNA of ``prompts`` on the grid ``t_i = (i + 1)/levels``, sharded under torchrun
    (:func:`cotj.predict.shard.extract_sharded`): the :class:`ShardedDNA` on rank 0, None elsewhere.

    The generator's reference is its own ``spec.reference_steps``-step sample (default 50) from the
    same noise, under guidance ``spec.guidance`` (docs/method.md §2); the analytic model's reference is the
    exact ODE endpoint of the noise (``spec.reference_steps`` RK4 steps, default 200).
    """
    if spec.model != SHAPES:
        return analytic.extract(analytic_model(spec.dim, spec.family_seed), condition_ids(prompts),
                                default_grid(levels), noise_seed=spec.seed,
                                reference_steps=spec.reference_steps or ANALYTIC_REFERENCE_STEPS,
                                progress=spec.progress)  # fmt: skip
    pipe = pipe if pipe is not None else shapes_pipeline(spec.weights)

    def inputs(block: list[Any]) -> DNAInputs:
        return DNAInputs(pipe.encode_prompt(block), noise(spec, pipe, block))

    out = extract_sharded(lambda: _velocity(pipe, spec.guidance), list(prompts), inputs, grid=default_grid(levels),
                          chunk_size=spec.batch_size, batch_size=spec.batch_size, progress=spec.progress,
                          prediction="flow", reference_steps=spec.reference_steps or SHAPES_REFERENCE_STEPS)
    if out is not None and not np.all(np.isfinite(out.dna)):
        row = int(np.flatnonzero(~np.isfinite(out.dna).all(1))[0])
        raise ValueError(f"the true DNA of prompt {row} ({str(out.items[row])[:80]!r}) holds NaN or inf: the model's "
                         f"output overflowed (too large a --guidance, {spec.guidance}?)")
    return out


def prompt_dna(spec: ModelSpec, prompt: str, pipe: Any = None) -> NDArray[np.float64]:
    """The true DNA (100,) of one prompt, in this process."""
    result = extract(spec, [prompt], pipe=pipe)
    assert result is not None  # one process is rank 0
    return result.dna[0]


def realised_run(spec: ModelSpec, prompt: str, steps: int, pipe: Any = None) -> tuple[torch.Tensor, NDArray[np.float64]]:
    """A uniform ``steps``-step first-order run of ``prompt`` from its noise
    (:func:`cotj.predict.teacher.euler_trajectories`): the states in step order (steps + 1, 1, ...)
    float64, from the noise at t = 1 to the sample, and their levels (steps + 1,) from 1 to 0."""
    if spec.model == SHAPES:
        pipe = pipe if pipe is not None else shapes_pipeline(spec.weights)
        denoiser, cond = _velocity(pipe, spec.guidance), pipe.encode_prompt([prompt])
        start = noise(spec, pipe, [prompt])
    else:
        items = condition_ids([prompt])
        denoiser, cond = analytic_model(spec.dim, spec.family_seed), torch.tensor(items)
        start = seeded_noise(items, (spec.dim,), spec.seed)
    traj = teacher.euler_trajectories(denoiser, start, cond, default_grid(steps), prediction="flow")
    states = torch.from_numpy(np.ascontiguousarray(traj.states[:, ::-1])).transpose(0, 1)
    return states, traj.levels[::-1].copy()
