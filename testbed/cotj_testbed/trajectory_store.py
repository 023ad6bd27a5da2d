"""Teacher trajectories of Tier 2 prompts, stored once and reused by every per-sample study.

A 100-step Euler teacher run of a prompt (its seeded noise, guidance 2) records the state and the clean estimate at
every grid level (:func:`cotj.predict.teacher.euler_trajectories`). Each per-sample study needs them: per-sample
jump costs and Gram matrices (the OSS-style ceiling of every solver), the features a closed-loop sampler sees, and
the targets a per-sample cost predictor is trained on. They take about 2.7 minutes per 64 prompts on two cores, so
they are written in chunks of 64 prompts (``{split}_{index}.npz``) and a rerun resumes from the chunks on disk.

Splits (the Tier 2 split of :class:`cotj_testbed.quality_tier2.Tier2Setup`): ``calibration`` (training prompts
0..255, those of the shipped teacher cost), ``validation`` (256..319, where methods are chosen), ``extra``
(320..575, more training trajectories) and ``test`` (the 64 held-out prompts, reported on, never tuned on)::

    python -m cotj_testbed.trajectory_store runs/trajectories --splits calibration,validation,test
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from cotj_testbed import outputs

__all__ = ["SPLITS", "StoredTrajectories", "collect", "load"]

log = logging.getLogger(__name__)

SPLITS: dict[str, tuple[str, int, int]] = {
    "calibration": ("train", 0, 256),
    "validation": ("train", 256, 320),
    "extra": ("train", 320, 576),
    "test": ("test", 0, 64),
}
"""Split name -> (prompt list of Tier2Setup, first, end)."""
CHUNK = 64


@dataclass(frozen=True)
class StoredTrajectories:
    """Teacher runs of B prompts on the 100-level grid plus the clean end (M = 101 nodes, node 0 = t = 0).

    Attributes:
        prompts: the B prompts.
        states: (B, M, D) float32, the teacher's state at each node (node 0: the 100-step sample).
        x0: (B, M, D) float32, the clean estimate at each node (node 0: the sample itself).
        cond: (B, 16, 384) float32 token embeddings of the prompts.
    """

    prompts: list[str]
    states: NDArray[np.float32]
    x0: NDArray[np.float32]
    cond: NDArray[np.float32]

    def grams(self) -> NDArray[np.float64]:
        """(B, 2M, 2M) float64 per-sample Gram (:func:`cotj_testbed.per_sample.per_sample_grams`)."""
        from cotj_testbed.per_sample import per_sample_grams

        return per_sample_grams(self.states, self.x0)


def collect(out: str | Path, splits: list[str], *, threads: int = 2) -> None:
    """Write the teacher runs of ``splits`` into ``out`` (resuming from chunks already there)."""
    from cotj.models import generator
    from cotj_testbed.quality_tier2 import Tier2Config, Tier2Setup

    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tier = Tier2Setup(Tier2Config(), generator.load_pipeline(), None)
    for split in splits:
        which, first, end = SPLITS[split]
        prompts = (tier.train if which == "train" else tier.test)[first:end]
        for index, start in enumerate(range(0, len(prompts), CHUNK)):
            path = out / f"{split}_{index}.npz"
            if path.exists():
                continue
            chunk = prompts[start : start + CHUNK]
            traj = tier.trajectories(chunk)
            cond = tier.encode(chunk).float().numpy()
            np.savez(path.with_suffix(".tmp.npz"), prompts=np.array(chunk), states=traj.states.astype(np.float32),
                     x0=traj.x0.astype(np.float32), cond=cond)  # fmt: skip
            path.with_suffix(".tmp.npz").rename(path)
            log.info("wrote %s (%d prompts)", path, len(chunk))


def load(out: str | Path, split: str) -> StoredTrajectories:
    """The stored teacher runs of ``split`` (all its chunks, in prompt order)."""
    paths = sorted(Path(out).glob(f"{split}_[0-9]*.npz"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not paths:
        raise FileNotFoundError(f"no {split}_*.npz in {out}: run python -m cotj_testbed.trajectory_store {out}")
    parts = [np.load(p) for p in paths]
    return StoredTrajectories([str(p) for part in parts for p in part["prompts"]],
                              np.concatenate([p["states"] for p in parts]), np.concatenate([p["x0"] for p in parts]),
                              np.concatenate([p["cond"] for p in parts]))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = outputs.Parser(prog="python -m cotj_testbed.trajectory_store", description=__doc__.split("\n\n")[0],
                            epilog="About 2.7 min per 64 prompts on two cores; the default splits (384 prompts) took about "
                                   "20 min (docs/results.md).")
    parser.add_argument("out", type=Path, help="directory of the chunks (under runs/ or outside the checkout)")
    parser.add_argument("--splits", default="calibration,validation,test", help=f"comma-separated, of {', '.join(SPLITS)}")
    parser.add_argument("--threads", type=outputs.positive_int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    splits = args.splits.split(",")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        parser.error(f"unknown splits {sorted(unknown)}; known: {', '.join(SPLITS)}")
    try:
        outputs.output(args.out, "out", can_update=False)
    except outputs.UsageError as exc:
        outputs.fail(parser, exc)
    collect(args.out, splits, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
