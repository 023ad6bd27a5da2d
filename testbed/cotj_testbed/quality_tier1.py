"""Tier 1 of the quality benchmark: exact Gaussian-mixture flow models (:mod:`cotj.models.analytic`).

Conditions are mixture ids of a seeded family; the reference endpoint of a noise is the exact probability-flow ODE
solution (RK4), also the teacher trajectory of the GITS/OSS-style schedules. Everything else is
:mod:`cotj_testbed.quality`'s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from cotj.models import analytic, seeded_noise
from cotj.models.analytic import FlowMixtureModel, MixtureFamily, integrate
from cotj.planning.objectives import TeacherCost
from cotj.planning.schedules import default_grid
from cotj.predict import extract_dna
from cotj.predict.shard import ShardedDNA, load_sharded
from cotj.predict.teacher import Trajectories, fit_teacher_cost
from cotj_testbed.quality import KS, LONG_KS, Problem, evaluate, planning_time, predict_dna
from cotj_testbed.quality_solvers import NFES, evaluate_solvers
from cotj_testbed.quality_solvers import SCHEDULES as SOLVER_SCHEDULES

__all__ = ["Tier1Config", "ode_trajectories", "run_tier1", "tier1_extract", "tier1_model", "tier1_teacher_cost"]


def ode_trajectories(model: FlowMixtureModel, noise: torch.Tensor, cond: torch.Tensor, grid: ArrayLike,
                     substeps: int = 5) -> Trajectories:
    """The exact probability-flow trajectory of each noise (B, D) through ``grid`` (N,) ascending, top 1,
    down to 0: RK4 with ``substeps`` steps between neighbouring levels (float64), the state and the exact
    ``x0`` at each level. The Tier 1 teacher; ``states[:, 0]`` is the reference endpoint (the same
    integration as :func:`cotj.models.analytic.exact_endpoint`, stopping at every grid level)."""
    g = np.asarray(grid, dtype=np.float64)
    if g[-1] != 1.0:
        raise ValueError(f"grid must end at the top level 1 (where the noise lives), got {g[-1]}")
    levels = np.append(0.0, g)
    x = noise.to(torch.float64)
    states = [x]
    with torch.inference_mode():
        for m in range(levels.size - 1, 0, -1):
            x = integrate(model, x, cond, levels[m], levels[m - 1], substeps)
            states.append(x)
        st = torch.stack(states[::-1], dim=1)  # (B, M, D) ascending levels
        x0 = torch.stack([model.x0(st[:, m], torch.tensor(levels[m]), cond) if m else st[:, 0]
                          for m in range(levels.size)], dim=1)  # fmt: skip
    return Trajectories(levels, st.numpy(), x0.numpy())


@dataclass(frozen=True)
class Tier1Config:
    """Tier 1 settings: conditions ``0 .. n_train - 1`` train the predictor (and give the mean DNA and the
    GITS calibration), ``n_train .. n_train + n_test - 1`` are held out and benchmarked."""

    n_train: int = 2048
    n_test: int = 256
    dim: int = 64
    family_seed: int = 0
    noise_seed: int = 1
    grid_size: int = 100
    ks: tuple[int, ...] = KS + LONG_KS
    tau: float = 0.99
    substeps: int = 5
    dna_reference_steps: int = 200
    calibration: int = 64
    teacher_conditions: int = 256
    predictor_epochs: int = 300
    timing_repeats: int = 200
    seed: int = 0

    @classmethod
    def quick(cls) -> Tier1Config:
        """Seconds, for tests: 40 + 10 conditions, budgets 2, 4 and 10, coarse references, few timings."""
        return cls(n_train=40, n_test=10, ks=(2, 4, 10), substeps=1, dna_reference_steps=50, calibration=8,
                   teacher_conditions=16, predictor_epochs=30, timing_repeats=5)  # fmt: skip

    @property
    def train_items(self) -> list[int]:
        return list(range(self.n_train))

    @property
    def test_items(self) -> list[int]:
        return list(range(self.n_train, self.n_train + self.n_test))


def tier1_model(cfg: Tier1Config) -> FlowMixtureModel:
    """The exact flow model of the seeded mixture family."""
    return FlowMixtureModel(MixtureFamily(cfg.dim, cfg.family_seed))


def tier1_extract(cfg: Tier1Config, items: Sequence[int] | None = None, out: str | Path | None = None, *,
                  num_threads: int | None = None, progress: bool = True) -> ShardedDNA | None:
    """DNA of Tier 1 conditions (default: train and held-out), sharded when launched by torchrun
    (:func:`cotj.models.analytic.extract`)."""
    items = list(items) if items is not None else cfg.train_items + cfg.test_items
    return analytic.extract(tier1_model(cfg), items, default_grid(cfg.grid_size), noise_seed=cfg.noise_seed,
                            reference_steps=cfg.dna_reference_steps, out=out,
                            num_threads=num_threads, progress=progress)


def _train_dna(cfg: Tier1Config, dna_dir: str | Path | None, progress: bool) -> tuple[NDArray[np.float64], str]:
    if dna_dir is None:
        res = tier1_extract(cfg, cfg.train_items, progress=progress)
        assert res is not None  # a single process is rank 0
        return res.dna, "extracted in-process"
    stored = load_sharded(dna_dir)
    index = {int(item): row for row, item in enumerate(stored.items)}
    missing = [c for c in cfg.train_items if c not in index]
    if missing or not np.allclose(stored.grid, default_grid(cfg.grid_size)):
        raise ValueError(f"{dna_dir} lacks {len(missing)} training conditions or has another grid")
    return stored.dna[[index[c] for c in cfg.train_items]], f"{dna_dir} ({stored.world_size} processes, {stored.seconds:.0f} s)"


def tier1_teacher_cost(cfg: Tier1Config, model: FlowMixtureModel) -> TeacherCost:
    """The mixture model's teacher cost (:func:`cotj.predict.teacher.fit_teacher_cost`) from the exact ODE
    trajectories of the first ``cfg.teacher_conditions`` training conditions (the same teacher as GITS here)."""
    items = cfg.train_items[: cfg.teacher_conditions]
    traj = ode_trajectories(model, seeded_noise(items, (cfg.dim,), cfg.noise_seed), torch.tensor(items),
                            default_grid(cfg.grid_size), cfg.substeps)  # fmt: skip
    return fit_teacher_cost(traj.jump_costs, traj.features, default_grid(cfg.grid_size), gram=traj.gram())


def run_tier1(cfg: Tier1Config = Tier1Config(), *, dna_dir: str | Path | None = None, progress: bool = True,
              samples: dict[str, NDArray[np.float64]] | None = None, time_planning: bool = True,
              schedules: Sequence[str] | None = None, solvers: Sequence[str] | None = None,
              nfes: Sequence[int] | None = None) -> dict[str, Any]:
    """The Tier 1 benchmark on the exact Gaussian-mixture flow model; with ``solvers``, its solver study instead
    (:func:`cotj_testbed.quality_solvers.evaluate_solvers` at ``nfes``, its schedules ``schedules``).

    Training DNA comes from ``dna_dir`` (:func:`tier1_extract` output, e.g. a torchrun run) or is extracted
    here. The held-out conditions' true DNA is extracted against the very reference endpoints the metrics
    use (exact ODE, ``substeps`` RK4 steps per grid interval). Predictor input: the mixture's descriptor
    :meth:`MixtureFamily.embedding` (number of modes, spread, log scale, log anisotropy, log Dirichlet
    concentration, weight entropy), standardised by the predictor. ``samples``: see :func:`evaluate`
    (also receives ``reference``, ``dna`` and ``grid``).
    """
    clock = time.perf_counter()
    model, grid = tier1_model(cfg), default_grid(cfg.grid_size)
    dna_train, source = _train_dna(cfg, dna_dir, progress)
    cond = torch.tensor(cfg.test_items)
    noise = seeded_noise(cfg.test_items, (cfg.dim,), cfg.noise_seed)
    teacher = ode_trajectories(model, noise, cond, grid, cfg.substeps)
    reference = torch.from_numpy(teacher.states[:, 0].copy())
    dna_test = extract_dna(model, noise=noise, cond=cond, x_ref=reference, grid=grid, batch_size=8 * cfg.grid_size, progress=False).dna
    calib = cfg.train_items[: cfg.calibration]
    calibration = ode_trajectories(model, seeded_noise(calib, (cfg.dim,), cfg.noise_seed), torch.tensor(calib), grid, cfg.substeps)
    teacher_cost = tier1_teacher_cost(cfg, model)
    family = model.family
    predicted, predictor_info, _ = predict_dna(np.stack([family.embedding(c) for c in cfg.train_items]), dna_train,
                                           np.stack([family.embedding(c) for c in cfg.test_items]), dna_test,
                                           cfg.predictor_epochs, cfg.seed, progress)  # fmt: skip
    setup_s = time.perf_counter() - clock
    data_range = float(reference.max() - reference.min())
    problem = Problem(model, "flow", noise, cond, reference, teacher, calibration, grid, dna_test,
                      dna_train.mean(0), predicted, lambda x: x, data_range, teacher_cost=teacher_cost,
                      calibration_cond=torch.tensor(calib), grad_denoiser=tier1_model(cfg))  # fmt: skip
    if solvers is not None:
        results = evaluate_solvers(problem, nfes or NFES, solvers, schedules or tuple(SOLVER_SCHEDULES), progress=progress)
        time_planning = False
    else:
        results = evaluate(problem, cfg.ks, cfg.tau, progress=progress, samples=samples, schedules=schedules)
    if samples is not None:
        samples.update(reference=reference.numpy(), dna=dna_test, grid=grid)
    results.update(
        tier=1, config=dataclasses.asdict(cfg), ks=list(cfg.ks), dna_source=source, data_range=data_range,
        data_range_note="peak-to-peak of the held-out reference endpoints", predictor=predictor_info,
        mean_dna=problem.mean_dna.tolist(), seconds={"setup": setup_s, "total": time.perf_counter() - clock},
        model=f"FlowMixtureModel(MixtureFamily(dim={cfg.dim}, seed={cfg.family_seed})), exact posterior",
    )  # fmt: skip
    if time_planning:
        results["planning_time"] = planning_time(problem.mean_dna, repeats=cfg.timing_repeats,
                                                 step_repeats=max(2, cfg.timing_repeats // 10))  # fmt: skip
    return results
