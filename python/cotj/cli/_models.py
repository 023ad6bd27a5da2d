"""The models the commands run: the testbed's shapes generator (:mod:`cotj.testbed.model`) and the
analytic Gaussian-mixture flow model (:mod:`cotj.testbed.analytic`), through the testbed's quality
benchmark helpers (:mod:`cotj.testbed.quality`) and the sharded extraction
(:mod:`cotj.predict.shard`). Imports torch: import it inside a command, never at the top of a
command module.

A *prompt* is a text prompt for the testbed and a condition id (an int >= 0, one mixture of the
seeded family) for the analytic model. Each prompt's noise depends only on the prompt and
``--seed`` (:func:`cotj.testbed.quality.seeded_noise`), so it is the same in every command and
however the work is split over processes.
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

from cotj.cli._io import MAX_INT, TESTBED
from cotj.predict.shard import DNAInputs, ShardedDNA, extract_sharded
from cotj.schedules import default_grid
from cotj.predict import teacher
from cotj.testbed import quality, quality_tier1


def use_threads(n: int) -> None:
    """Run torch on ``n`` intra-op threads."""
    torch.set_num_threads(n)


def shapes_pipeline(weights: str | None) -> Any:
    """The testbed's ``ShapesPipeline`` from ``weights`` (a weights file or a training run
    directory; default the shipped file), progress bar off."""
    if weights:
        path = Path(weights)
    else:
        from cotj.testbed.model import WEIGHTS

        path = WEIGHTS
    if not path.exists():
        hint = "pass --weights FILE, or train and export the testbed generator (python -m cotj.testbed.train)"
        raise FileNotFoundError(errno.ENOENT, f"no testbed generator weights ({hint})", str(path))
    from safetensors import SafetensorError

    from cotj.testbed.quality_tier2 import load_shapes_pipeline

    try:
        pipe = load_shapes_pipeline(path)
    except (SafetensorError, RuntimeError, KeyError, TypeError) as exc:  # a file, but not the generator's weights
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{path} is not testbed generator weights ({type(exc).__name__}: {reason})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def shipped_predictor(args: Any) -> Path | None:
    """The shipped DNA predictor if it is the selected model's: the testbed with its shipped weights (no
    ``--weights``) sampled at the guidance its DNA was measured at; else None."""
    from cotj.testbed.model import PREDICTOR

    return PREDICTOR if _shipped_applies(args) and PREDICTOR.is_dir() else None


def shipped_teacher(args: Any) -> Path | None:
    """The shipped teacher cost if it is the selected model's (the same rule as :func:`shipped_predictor`)."""
    from cotj.testbed.model import TEACHER

    return TEACHER if _shipped_applies(args) and TEACHER.is_file() else None


def _shipped_applies(args: Any) -> bool:
    """The testbed with its shipped weights (no ``--weights``) at the guidance the shipped data was measured at."""
    from cotj.testbed.model import PREDICTOR_GUIDANCE

    return bool(args.model == TESTBED and not args.weights and args.guidance == PREDICTOR_GUIDANCE)


def condition_ids(prompts: Sequence[str]) -> list[int]:
    """Analytic prompts as condition ids (ints in 0..MAX_INT)."""
    bad = [p for p in prompts if not (str(p).isascii() and str(p).isdigit() and int(p) <= MAX_INT)]
    if bad:
        raise ValueError(f"prompts of the analytic model are condition ids (one int in 0..{MAX_INT} per line), "
                         f"got {str(bad[0])[:80]!r}")
    return [int(p) for p in prompts]


@functools.lru_cache(maxsize=4)
def _tier1(dim: int, family_seed: int, seed: int, levels: int, reference_steps: int) -> quality_tier1.Tier1Config:
    return quality_tier1.Tier1Config(dim=dim, family_seed=family_seed, noise_seed=seed, grid_size=levels,
                               dna_reference_steps=reference_steps)


def _analytic(args: Any, levels: int = 100) -> quality_tier1.Tier1Config:
    return _tier1(args.dim, args.family_seed, args.seed, levels, args.reference_steps or 200)


def analytic_family(args: Any) -> Any:
    """The analytic model's :class:`~cotj.testbed.analytic.MixtureFamily`."""
    from cotj.testbed.analytic import MixtureFamily

    return MixtureFamily(args.dim, args.family_seed)


def embeddings(args: Any, prompts: Sequence[str]) -> NDArray[np.float64]:
    """Condition embeddings (B, D) the DNA predictor takes: MiniLM mean-pooled token states for
    the testbed, the mixture's descriptor (6,) for the analytic model."""
    if args.model == TESTBED:
        from cotj.testbed.text import predictor_input

        return predictor_input(list(prompts)).numpy()
    family = analytic_family(args)
    return np.stack([family.embedding(c) for c in condition_ids(prompts)])


def _velocity(pipe: Any, guidance: float) -> Any:
    """The testbed's guided velocity as ``model(x_t, t, token_embeddings)``."""
    return functools.partial(pipe.velocity, guidance_scale=guidance)


def noise(args: Any, pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """The testbed noise (B, 3, H, W) float32 of ``prompts`` under ``args.seed``."""
    side = pipe.unet.config.sample_size
    return quality.seeded_noise(list(prompts), (3, side, side), args.seed).float()


def extract(args: Any, prompts: Sequence[str], levels: int = 100, pipe: Any = None) -> ShardedDNA | None:
    """True DNA of ``prompts`` on the grid ``t_i = (i + 1)/levels``, sharded under torchrun
    (:func:`cotj.predict.shard.extract_sharded`): the :class:`ShardedDNA` on rank 0, None elsewhere.

    The testbed's reference is its own ``args.reference_steps``-step sample (default 50) from the
    same noise, under guidance ``args.guidance`` (docs/method.md §2); the analytic model's reference is the
    exact ODE endpoint of the noise (``args.reference_steps`` RK4 steps, default 200).
    """
    progress = not args.quiet
    if args.model != TESTBED:
        return quality_tier1.tier1_extract(_analytic(args, levels), condition_ids(prompts), progress=progress)
    pipe = pipe if pipe is not None else shapes_pipeline(args.weights)

    def inputs(block: list[Any]) -> DNAInputs:
        return DNAInputs(pipe.encode_prompt(block), noise(args, pipe, block))

    return extract_sharded(lambda: _velocity(pipe, args.guidance), list(prompts), inputs, grid=default_grid(levels),
                           chunk_size=args.batch_size, batch_size=args.batch_size, progress=progress,
                           prediction="flow", reference_steps=args.reference_steps or 50)


def prompt_dna(args: Any, prompt: str, pipe: Any = None) -> NDArray[np.float64]:
    """The true DNA (100,) of one prompt, in this process."""
    result = extract(args, [prompt], pipe=pipe)
    assert result is not None  # one process is rank 0
    return result.dna[0]


def realised_run(args: Any, prompt: str, steps: int, pipe: Any = None) -> tuple[torch.Tensor, NDArray[np.float64]]:
    """A uniform ``steps``-step first-order run of ``prompt`` from its noise
    (:func:`cotj.predict.teacher.euler_trajectories`): the states in step order (steps + 1, 1, ...)
    float64, from the noise at t = 1 to the sample, and their levels (steps + 1,) from 1 to 0."""
    if args.model == TESTBED:
        pipe = pipe if pipe is not None else shapes_pipeline(args.weights)
        denoiser, cond = _velocity(pipe, args.guidance), pipe.encode_prompt([prompt])
        start = noise(args, pipe, [prompt])
    else:
        cfg = _analytic(args)
        items = condition_ids([prompt])
        denoiser, cond = quality_tier1.tier1_model(cfg), torch.tensor(items)
        start = quality.seeded_noise(items, (cfg.dim,), cfg.noise_seed)
    traj = teacher.euler_trajectories(denoiser, start, cond, default_grid(steps), prediction="flow")
    states = torch.from_numpy(np.ascontiguousarray(traj.states[:, ::-1])).transpose(0, 1)
    return states, traj.levels[::-1].copy()
