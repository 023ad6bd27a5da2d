"""How many calibration prompts a teacher cost needs: plan quality against calibration size on the shapes model.

A pool of training prompts (Tier 2's, :class:`cotj_testbed.quality_tier2.Tier2Setup`) is run once through the
``grid_size``-level teacher (:func:`cotj.predict.teacher.euler_trajectories`); for each calibration size n, ``repeats``
random subsets of n pool prompts are fitted into a teacher cost (:func:`cotj.predict.teacher.fit_teacher_cost`,
exactly what :func:`cotj.predict.calibrate` fits on those n prompts; no Gram matrix: Euler plans only). Each teacher
cost plans K steps for held-out prompts, open loop (:meth:`cotj.planning.objectives.TeacherCost.dense`) and closed
loop (:func:`cotj.execute.replan_sample`), and the samples are scored by PSNR (images in [0, 1]) against each
prompt's ``grid_size``-step reference, the benchmark's (docs/howto-your-model.md reports the result).

    python -m cotj_testbed.calibration_size --sizes 16,32,64,128,256,512 --n-test 64 --ks 4,6,8 --out size.json

Cost: (pool + n_test) x grid_size guided model evaluations for the trajectories, then per size, repeat and K,
n_test x K (open loop) and n_test x K (closed loop).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from cotj.execute import Replanner, replan_sample, solve
from cotj.models import generator
from cotj.planning.objectives import TeacherCost
from cotj.planning.planner import plan_batch
from cotj.planning.schedules import default_grid
from cotj.predict.teacher import fit_teacher_cost
from cotj_testbed import outputs
from cotj_testbed.quality_tier2 import Tier2Config, Tier2Setup, _images

__all__ = ["calibration_size", "main"]

log = logging.getLogger(__name__)


def _pool(tier: Tier2Setup, prompts: list[str], batch: int, progress: bool) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-prompt jump costs (P, N + 1, N + 1) and row features (P, N, F) of the teacher runs of ``prompts``,
    ``batch`` prompts at a time (the trajectories themselves are not kept)."""
    from tqdm.auto import tqdm

    costs, feats = [], []
    for start in tqdm(range(0, len(prompts), batch), desc="teacher runs (pool)", disable=outputs.bar_disable(progress)):
        traj = tier.trajectories(prompts[start : start + batch])
        costs.append(traj.jump_costs)
        feats.append(traj.features)
    return np.concatenate(costs), np.concatenate(feats)


def _psnr(x: torch.Tensor, reference: torch.Tensor) -> NDArray[np.float64]:
    """(B,) PSNR in dB of images in [0, 1] (data range 1)."""
    mse = (_images(x) - _images(reference)).double().pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return (10.0 * torch.log10(1.0 / mse)).numpy()


def calibration_size(sizes: Sequence[int], *, pool: int | None = None, n_test: int = 64, ks: Sequence[int] = (4, 6, 8),
                     repeats: int = 3, cfg: Tier2Config | None = None, seed: int = 0, pipe: Any = None,
                     progress: bool = True) -> dict[str, Any]:
    """Plan quality (mean held-out PSNR, open and closed loop) of teacher costs fitted on ``sizes`` calibration prompts.

    Args:
        sizes: calibration sizes n (each at least 2 and at most ``pool``).
        pool: training prompts run through the teacher, the subsets' source; default ``max(sizes)``.
        n_test: held-out prompts (Tier 2's test split) that are sampled and scored.
        ks: budgets K (model evaluations).
        repeats: random subsets per size (a size equal to the pool has one).
        cfg: the Tier 2 settings (guidance, grid size, noise seed, prompt split); default Tier 2's.
        seed: seed of the subsets.
        pipe: a ShapesPipeline (default the shipped weights).

    Returns:
        ``{"sizes", "ks", "open_loop": {n: {K: [mean PSNR per repeat]}}, "closed_loop": ..., "uniform": {K: PSNR},
        "seconds", "config"}``.
    """
    sizes = sorted({int(n) for n in sizes})
    pool = pool or sizes[-1]
    if sizes[0] < 2 or sizes[-1] > pool:
        raise ValueError(f"sizes must lie in 2..pool ({pool}), got {sizes}")
    clock = time.perf_counter()
    cfg = Tier2Config(**{**(cfg or Tier2Config()).__dict__, "n_test": n_test})
    tier = Tier2Setup(cfg, pipe if pipe is not None else generator.load_pipeline(), None)
    if pool > len(tier.train):
        raise ValueError(f"pool must be at most {len(tier.train)} (Tier 2's training prompts)")
    grid = default_grid(cfg.grid_size)
    costs, feats = _pool(tier, tier.train[:pool], cfg.batch_size, progress)
    test_traj = tier.trajectories(tier.test)
    noise, cond = tier.noise(tier.test), tier.encode(tier.test)
    reference = torch.from_numpy(test_traj.states[:, 0].copy()).float().reshape(noise.shape)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"sizes": sizes, "ks": list(ks), "pool": pool, "n_test": n_test, "repeats": repeats,
                           "open_loop": {}, "closed_loop": {}, "uniform": {}}
    for k in ks:
        uniform_levels = np.arange(k, 0, -1) / k
        x = solve(tier.velocity, noise, cond, uniform_levels, prediction="flow", batch_size=cfg.batch_size)
        out["uniform"][str(k)] = float(_psnr(x, reference).mean())
    for n in sizes:
        opened: dict[str, list[float]] = {str(k): [] for k in ks}
        closed: dict[str, list[float]] = {str(k): [] for k in ks}
        for _ in range(1 if n == pool else repeats):
            idx = np.sort(rng.choice(pool, size=n, replace=False))
            teacher: TeacherCost = fit_teacher_cost(costs[idx], feats[idx], grid)
            for k in ks:
                levels = plan_batch(teacher.dense(), k, current=grid.size - 1)[0].levels
                x = solve(tier.velocity, noise, cond, levels, prediction="flow", batch_size=cfg.batch_size)
                opened[str(k)].append(float(_psnr(x, reference).mean()))
                x, _ = replan_sample(tier.velocity, noise, cond, Replanner(teacher, k), prediction="flow")
                closed[str(k)].append(float(_psnr(x, reference).mean()))
        out["open_loop"][str(n)], out["closed_loop"][str(n)] = opened, closed
        log.info("n = %d: open loop %s, closed loop %s", n, {k: round(float(np.mean(v)), 2) for k, v in opened.items()},
                 {k: round(float(np.mean(v)), 2) for k, v in closed.items()})
    out.update(seconds=time.perf_counter() - clock, config={"guidance": cfg.guidance, "grid_size": cfg.grid_size,
                                                            "noise_seed": cfg.noise_seed, "seed": seed})
    return out


def _table(results: dict[str, Any]) -> str:
    ks = results["ks"]
    header = ["n"] + [f"K={k} {loop}" for k in ks for loop in ("open", "closed")]
    rows = [["uniform"] + [c for k in ks for c in (f"{results['uniform'][str(k)]:.2f}", "")]]
    for n in results["sizes"]:
        cells = [str(n)]
        for k in ks:
            for loop in ("open_loop", "closed_loop"):
                v = results[loop][str(n)][str(k)]
                cells.append(f"{np.mean(v):.2f} ({min(v):.2f}..{max(v):.2f})" if len(v) > 1 else f"{v[0]:.2f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["PSNR (dB) against the reference, mean over held-out prompts (min..max over the repeats)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = outputs.Parser(prog="python -m cotj_testbed.calibration_size", description=__doc__.split("\n\n")[0],
                       epilog="--sizes 8,16,32 --pool 32 --n-test 32 --ks 4,8 --repeats 3 took 760 s on the project's 2 "
                              "shared cores (docs/howto-your-model.md); the defaults first run (512 + 64) x 100 guided evaluations "
                              "through the teacher (not timed).")
    p.add_argument("--sizes", type=outputs.int_list, default=(16, 32, 64, 128, 256, 512), help="calibration sizes, comma-separated")
    p.add_argument("--pool", type=outputs.positive_int, help="training prompts run through the teacher (default the largest size)")
    p.add_argument("--n-test", type=outputs.positive_int, default=64, help="held-out prompts scored (default 64)")
    p.add_argument("--ks", type=outputs.int_list, default=(4, 6, 8), help="budgets K, comma-separated (default 4,6,8)")
    p.add_argument("--repeats", type=outputs.positive_int, default=3, help="random subsets per size (default 3)")
    p.add_argument("--threads", type=outputs.positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", help="write the results as JSON here (not into the checkout's committed files)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (there are none when stderr is not a terminal)")
    args = p.parse_args(argv)
    try:
        out = outputs.output(args.out, "--out", can_update=False) if args.out is not None else None
    except outputs.UsageError as exc:
        outputs.fail(p, exc)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    results = calibration_size(list(args.sizes), pool=args.pool, n_test=args.n_test, ks=list(args.ks), repeats=args.repeats,
                               progress=outputs.show_progress(not args.quiet))
    print(_table(results))
    print(f"({results['seconds']:.0f} s)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
