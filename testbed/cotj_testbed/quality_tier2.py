"""Tier 2 of the quality benchmark: the shapes text-to-image model (:mod:`cotj.models.generator`).

Prompts of the shapes grammar are split into training and held-out prompts; the model samples with
classifier-free guidance, the reference of a noise is its 100-step uniform Euler sample (also the teacher
trajectory of the GITS/OSS-style schedules), images are compared in [0, 1] (PSNR data range 1), and the
attribute classifier (:mod:`cotj_testbed.classifier`) scores prompt following. Everything else is
:mod:`cotj_testbed.quality`'s.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cotj.models import generator, seeded_noise
from cotj.planning.objectives import TeacherCost
from cotj.planning.schedules import default_grid
from cotj.predict import DNAPredictor, calibrate, extract_dna
from cotj.predict.shard import DNAInputs, ShardedDNA, extract_sharded, load_sharded
from cotj.predict.teacher import Trajectories, euler_trajectories
from cotj_testbed.quality import KS, LONG_KS, Problem, evaluate, planning_time, predict_dna, predictor_report
from cotj_testbed.quality_solvers import NFES, evaluate_solvers
from cotj_testbed.quality_solvers import SCHEDULES as SOLVER_SCHEDULES

__all__ = ["Tier2Config", "Tier2Setup", "run_tier2", "tier2_calibrate", "tier2_extract"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tier2Config:
    """Tier 2 settings: the shapes grammar's prompts, shuffled by ``seed``; the first ``n_train`` train the
    predictor, the next ``n_test`` are benchmarked. The reference (and the teacher of GITS/OSS) is the
    ``grid_size``-step uniform Euler sample, whose levels are the DNA grid ``t_i = (i + 1)/grid_size``. The GITS-style
    baseline calibrates on the first ``calibration`` training prompts, the teacher cost (:func:`cotj.predict.calibrate`)
    on the first ``teacher_prompts``. ``validation`` benchmarks the ``n_test`` training prompts right after those
    instead of the held-out ones: the split on which methods and hyperparameters are chosen."""

    n_train: int = 2048
    n_test: int = 64
    guidance: float = 2.0
    noise_seed: int = 1
    grid_size: int = 100
    ks: tuple[int, ...] = KS + LONG_KS
    tau: float = 0.99
    calibration: int = 16
    teacher_prompts: int = 256
    validation: bool = False
    predictor_epochs: int = 300
    batch_size: int = 64
    seed: int = 0


def _images(x: torch.Tensor) -> torch.Tensor:
    """Pixel states in [-1, 1] -> images in [0, 1] (clamped), as the pipeline post-processes them."""
    return (x.clamp(-1.0, 1.0) + 1.0) / 2.0


class Tier2Setup:
    """The shapes model as the benchmark and the extraction use it.

    Attributes: ``train`` / ``test`` prompt lists (the grammar shuffled by ``cfg.seed``), ``pipe``, ``encode``
    (prompts -> token embeddings (B, 16, 384); default the pipeline's MiniLM encoder), ``side`` (image size).
    """

    def __init__(self, cfg: Tier2Config, pipe: Any, encode: Callable[[list[str]], torch.Tensor] | None) -> None:
        from cotj.models import shapes

        self.cfg, self.pipe = cfg, pipe
        self.encode = encode or pipe.encode_prompt
        everything = shapes.all_prompts()
        order = np.random.default_rng(cfg.seed).permutation(len(everything))
        prompts = [everything[i] for i in order]
        if cfg.n_train + cfg.n_test > len(prompts):
            raise ValueError(f"n_train + n_test must be <= {len(prompts)} (the grammar's prompts)")
        self.train, self.test = prompts[: cfg.n_train], prompts[cfg.n_train : cfg.n_train + cfg.n_test]
        if cfg.validation:
            if cfg.teacher_prompts + cfg.n_test > cfg.n_train:
                raise ValueError("validation needs teacher_prompts + n_test <= n_train")
            self.test = self.train[cfg.teacher_prompts : cfg.teacher_prompts + cfg.n_test]
        self.side = pipe.unet.config.sample_size

    def velocity(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The guided velocity (n, 3, H, W) at states x, levels t (n,), token embeddings (n, 16, 384)."""
        return self.pipe.velocity(x, t, emb, self.cfg.guidance)

    def grad_velocity(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """:meth:`velocity` differentiable in ``x`` and ``t`` (the pipeline's ``velocity`` without its
        ``no_grad``; the UNet's weights frozen): the LD3-style schedule back-propagates through it."""
        self.pipe.unet.requires_grad_(False)
        return inspect.unwrap(type(self.pipe).velocity)(self.pipe, x, t, emb, self.cfg.guidance)

    def noise(self, prompts: list[str]) -> torch.Tensor:
        return seeded_noise(prompts, (3, self.side, self.side), self.cfg.noise_seed).float()

    def inputs(self, prompts: list[str]) -> DNAInputs:
        """Embeddings and noise; no x_ref: the model's own ``grid_size``-step reference (the benchmark's)."""
        return DNAInputs(self.encode(prompts), self.noise(prompts))

    def trajectories(self, prompts: list[str]) -> Trajectories:
        return euler_trajectories(self.velocity, self.noise(prompts), self.encode(prompts), default_grid(self.cfg.grid_size),
                                  prediction="flow", batch_size=self.cfg.batch_size)  # fmt: skip


def tier2_extract(cfg: Tier2Config, weights: str | Path | None = None, out: str | Path | None = None, *,
                  pipe: Any = None, encode: Callable[[list[str]], torch.Tensor] | None = None,
                  num_threads: int | None = None, progress: bool = True) -> ShardedDNA | None:
    """DNA of the Tier 2 training prompts (guided, the model's own ``grid_size``-step Euler reference),
    sharded when launched by torchrun; each rank loads the pipeline (``pipe`` or ``weights``)."""
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    tier = Tier2Setup(cfg, pipe if pipe is not None else generator.load_pipeline(weights), encode)
    return extract_sharded(lambda: tier.velocity, tier.train, tier.inputs, out, grid=default_grid(cfg.grid_size),
                           chunk_size=cfg.batch_size, batch_size=cfg.batch_size, progress=progress,
                           prediction="flow", reference_steps=cfg.grid_size)  # fmt: skip


def tier2_calibrate(cfg: Tier2Config, pipe: Any = None, encode: Callable[[list[str]], torch.Tensor] | None = None, *,
                    progress: bool = True) -> TeacherCost:
    """The shapes model's teacher cost: :func:`cotj.predict.calibrate` on the first ``cfg.teacher_prompts``
    training prompts (their seeded noise, guidance ``cfg.guidance``, the ``grid_size`` grid)."""
    tier = Tier2Setup(cfg, pipe if pipe is not None else generator.load_pipeline(), encode)
    prompts = tier.train[: cfg.teacher_prompts]
    return calibrate(tier.velocity, tier.noise(prompts), tier.encode(prompts), default_grid(cfg.grid_size),
                     prediction="flow", batch_size=cfg.batch_size, progress=progress)  # fmt: skip


def _training_dna(cfg: Tier2Config, tier: Tier2Setup, dna_dir: str | Path | None, progress: bool) -> tuple[NDArray[np.float64], str]:
    """The training prompts' DNA (B, N): from ``dna_dir`` (written by :func:`tier2_extract`) or extracted here."""
    if dna_dir is None:
        res = tier2_extract(cfg, pipe=tier.pipe, encode=tier.encode, progress=progress)
        assert res is not None  # a single process is rank 0
        return res.dna, "extracted in-process"
    stored = load_sharded(dna_dir)
    index = {item: row for row, item in enumerate(stored.items)}
    missing = [p for p in tier.train if p not in index]
    if missing or stored.grid.shape != (cfg.grid_size,):
        raise ValueError(f"{dna_dir} lacks {len(missing)} training prompts (e.g. {missing[:1]}) or has another grid")
    return stored.dna[[index[p] for p in tier.train]], f"{dna_dir} ({stored.world_size} processes)"


def run_tier2(cfg: Tier2Config = Tier2Config(), *, pipe: Any = None, encode: Callable[[list[str]], torch.Tensor] | None = None,
              classifier: Any = None, dna_dir: str | Path | None = None, progress: bool = True,
              samples: dict[str, NDArray[np.float64]] | None = None, time_planning: bool = True,
              predictor_out: str | Path | None = None, predictor: str | Path | None = None,
              teacher: str | Path | TeacherCost | None = None, schedules: Sequence[str] | None = None,
              solvers: Sequence[str] | None = None, nfes: Sequence[int] | None = None) -> dict[str, Any]:
    """The Tier 2 benchmark on the shapes text-to-image model (flow, guidance ``cfg.guidance``); with ``solvers``,
    its solver study instead (:func:`cotj_testbed.quality_solvers.evaluate_solvers` at ``nfes``).

    Args:
        pipe: a ShapesPipeline (default :func:`cotj.models.generator.load_pipeline` of the shipped weights).
        encode: prompts -> token embeddings (B, 16, 384); default the pipeline's MiniLM encoder. The
            predictor takes their mean over real tokens (:func:`cotj.models.text.pool`).
        classifier: an AttributeClassifier for the attribute accuracy; default the shipped one, and no
            accuracy (logged) if there is none.
        dna_dir: training DNA written by :func:`tier2_extract`; else extracted here.
        samples: see :func:`evaluate` (also receives ``reference``, ``dna``, ``predicted`` and ``grid``).
        predictor_out: if given, the DNA predictor trained here is saved into this directory
            (:meth:`~cotj.predict.DNAPredictor.save`; the shipped one is :data:`cotj.models.generator.PREDICTOR`).
        predictor: a saved DNA predictor to use instead of training one (then no training DNA is needed; the mean
            DNA is the predictor's alignment reference).
        teacher: the model's teacher cost (a :class:`~cotj.planning.objectives.TeacherCost` or its JSON file) for the
            teacher, calibrated and closed-loop schedules; default :func:`tier2_calibrate` here.
    """
    from cotj.models.text import pool
    from cotj_testbed import classifier as attributes

    clock = time.perf_counter()
    tier = Tier2Setup(cfg, pipe if pipe is not None else generator.load_pipeline(), encode)
    grid, cond, noise = default_grid(cfg.grid_size), tier.encode(tier.test), tier.noise(tier.test)
    teacher_traj = tier.trajectories(tier.test)
    reference = torch.from_numpy(teacher_traj.states[:, 0].copy()).float().reshape(noise.shape)
    dna_test = extract_dna(tier.velocity, noise=noise, cond=cond, x_ref=reference, grid=grid, prediction="flow", batch_size=cfg.batch_size, progress=False).dna  # fmt: skip
    if predictor is not None:
        model = DNAPredictor.load(predictor, device="cpu")
        predicted, mean_dna, source = model.predict(pool(cond).double().numpy()), model.mean_dna.double().numpy(), f"predictor {predictor}"
        predictor_info = predictor_report(model, pool(cond).double().numpy(), dna_test)
    else:
        dna_train, source = _training_dna(cfg, tier, dna_dir, progress)
        predicted, predictor_info, model = predict_dna(pool(tier.encode(tier.train)).double().numpy(), dna_train,
                                                       pool(cond).double().numpy(), dna_test, cfg.predictor_epochs, cfg.seed, progress)  # fmt: skip
        mean_dna = dna_train.mean(0)
        if predictor_out is not None:
            model.save(predictor_out)
            predictor_info["saved_to"] = str(predictor_out)
    if teacher is None:
        teacher = tier2_calibrate(cfg, tier.pipe, tier.encode, progress=progress)
    elif not isinstance(teacher, TeacherCost):
        teacher = TeacherCost.load(teacher)
    accuracy = None
    try:
        clf = classifier if classifier is not None else attributes.load_classifier()
        accuracy = lambda images: attributes.score(images.float() * 2.0 - 1.0, tier.test, clf)  # noqa: E731
    except FileNotFoundError as exc:
        log.warning("no attribute accuracy: %s", exc)
    problem = Problem(tier.velocity, "flow", noise, cond, reference, teacher_traj, tier.trajectories(tier.train[: cfg.calibration]),
                      grid, dna_test, mean_dna, predicted, _images, 1.0, accuracy, cfg.batch_size, teacher,
                      tier.encode(tier.train[: cfg.calibration]), tier.grad_velocity)  # fmt: skip
    setup_s = time.perf_counter() - clock
    if solvers is not None:
        results = evaluate_solvers(problem, nfes or NFES, solvers, schedules or tuple(SOLVER_SCHEDULES), progress=progress)
        time_planning = False
    else:
        results = evaluate(problem, cfg.ks, cfg.tau, progress=progress, samples=samples, schedules=schedules)
    if samples is not None:
        samples.update(reference=_images(reference).double().numpy(), dna=dna_test, predicted=predicted, grid=grid)
    results.update(
        tier=2, config=dataclasses.asdict(cfg), ks=list(cfg.ks), dna_source=source, data_range=1.0,
        data_range_note="images in [0, 1] (pixel states clamped to [-1, 1] and rescaled)", predictor=predictor_info,
        mean_dna=problem.mean_dna.tolist(), teacher_cost={"n_samples": teacher.n_samples, "row_model": teacher.rows is not None},
        seconds={"setup": setup_s, "total": time.perf_counter() - clock},
        model=f"ShapesPipeline (pixel UNet, MiniLM prompts), guidance {cfg.guidance}", heldout_prompts=tier.test,
    )  # fmt: skip
    if time_planning:
        results["planning_time"] = planning_time(problem.mean_dna, pipe=tier.pipe)
    return results
