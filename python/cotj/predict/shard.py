"""DNA of many conditions, sharded across processes with ``torch.distributed`` (gloo on CPU).

Launch the calling script with ``torchrun --nproc_per_node P script.py ...``: each rank takes a
contiguous block of the items, builds its inputs, runs :func:`cotj.predict.extract_dna` on them,
and rank 0 gathers the rows back in the original item order and writes them. Without torchrun (no
``WORLD_SIZE`` in the environment, no process group) the same call runs everything in one process.
For rank-independent results, ``make_inputs`` must make an item's inputs (its noise above all)
from the item alone, never from its position in a block.

Files in the output directory: ``dna.npy`` (B, N) float64, ``grid.npy`` (N,) float64 and
``items.json`` (``{"items": [...], "evaluations": ..., "world_size": ..., "seconds": ...}``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from numpy.typing import ArrayLike, NDArray
from tqdm.auto import tqdm

from cotj.predict.extract import Denoiser, extract_dna

__all__ = ["DNAInputs", "ShardedDNA", "extract_sharded", "load_sharded", "shard_bounds"]

log = logging.getLogger(__name__)

Item = str | int


@dataclass(frozen=True)
class DNAInputs:
    """What :func:`~cotj.predict.extract_dna` needs for a block of B items: ``cond`` (per-item rows
    first, as ``extract_dna`` takes it), ``noise`` (B, ...), and ``x_ref`` (B, ...) or None (then
    the model's own ``reference_steps``-step sample is the reference)."""

    cond: Any
    noise: torch.Tensor
    x_ref: torch.Tensor | None = None


@dataclass(frozen=True)
class ShardedDNA:
    """The gathered result: ``dna`` (B, N) float64 in item order, ``grid`` (N,), the ``items``,
    model ``evaluations`` per item, the ``world_size`` that made it and the wall ``seconds``."""

    dna: NDArray[np.float64]
    grid: NDArray[np.float64]
    items: list[Item]
    evaluations: int
    world_size: int
    seconds: float

    def save(self, out: str | Path) -> Path:
        """Write ``dna.npy``, ``grid.npy`` and ``items.json`` into directory ``out``; returns it."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "dna.npy", self.dna)
        np.save(out / "grid.npy", self.grid)
        meta = {"items": self.items, "evaluations": self.evaluations, "world_size": self.world_size, "seconds": self.seconds}
        (out / "items.json").write_text(json.dumps(meta))
        return out


def load_sharded(out: str | Path) -> ShardedDNA:
    """Read a directory written by :meth:`ShardedDNA.save`."""
    out = Path(out)
    meta = json.loads((out / "items.json").read_text())
    dna = np.load(out / "dna.npy")
    if dna.shape[0] != len(meta["items"]):
        raise ValueError(f"{out}: dna.npy has {dna.shape[0]} rows for {len(meta['items'])} items")
    return ShardedDNA(dna, np.load(out / "grid.npy"), meta["items"], meta["evaluations"], meta["world_size"], meta["seconds"])


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous block of ``n`` items (sizes differ by at most 1)."""
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"need n >= 0, world_size >= 1 and 0 <= rank < world_size, got {n}, {world_size}, {rank}")
    return rank * n // world_size, (rank + 1) * n // world_size


def _process_group() -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the group): the existing group, a new gloo
    group when launched by torchrun (``WORLD_SIZE`` > 1), else a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _check_items(items: Sequence[Item]) -> list[Item]:
    items = list(items)
    if not items:
        raise ValueError("items must not be empty")
    bad = [i for i in items if isinstance(i, bool) or not isinstance(i, (str, int))]
    if bad:
        raise TypeError(f"items must be str (prompts) or int (condition ids), got {type(bad[0]).__name__}")
    return items


def extract_sharded(
    denoiser_factory: Callable[[], Denoiser],
    items: Sequence[Item],
    make_inputs: Callable[[list[Any]], DNAInputs],
    out: str | Path | None = None,
    *,
    grid: ArrayLike | None = None,
    chunk_size: int = 64,
    batch_size: int = 256,
    num_threads: int | None = None,
    progress: bool = True,
    **extract_kwargs: Any,
) -> ShardedDNA | None:
    """DNA of every item, each process of a torchrun launch doing one block.

    Args:
        denoiser_factory: builds the denoiser ``model(x_t, t, cond)`` on each rank (called once).
        items: B prompts (str) or condition ids (int), JSON-serialisable; every rank passes the same list.
        make_inputs: ``make_inputs(block) -> DNAInputs`` for a list of items; called on chunks of at
            most ``chunk_size`` items. Must depend on the items only (seed the noise from the item).
        out: directory to write (rank 0), or None.
        grid: (N,) ascending levels; default ``t_i = (i + 1)/100``.
        chunk_size: items per ``extract_dna`` call (bounds memory; the progress bar advances per chunk).
        batch_size: model rows per forward pass inside ``extract_dna``.
        num_threads: if given, ``torch.set_num_threads`` on this rank first (1 under torchrun on a
            shared CPU).
        progress: a tqdm bar of items on rank 0.
        extract_kwargs: passed on to :func:`~cotj.predict.extract_dna` (``guidance_scale``, ``uncond``,
            ``reference_steps``, ``metric``...).

    Returns:
        On rank 0 the :class:`ShardedDNA` of all items in their order; None on other ranks.
    """
    items = _check_items(items)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    start_time = time.perf_counter()
    rank, world, owned = _process_group()
    try:
        lo, hi = shard_bounds(len(items), world, rank)
        denoiser = denoiser_factory()
        rows: list[NDArray[np.float64]] = []
        evaluations, levels = 0, None
        with tqdm(total=hi - lo, unit="item", desc=f"DNA rank {rank}/{world}", disable=not progress or rank != 0) as bar:
            for begin in range(lo, hi, chunk_size):
                block = items[begin : min(begin + chunk_size, hi)]
                inputs = make_inputs(block)
                res = extract_dna(denoiser, noise=inputs.noise, cond=inputs.cond, x_ref=inputs.x_ref, grid=grid, batch_size=batch_size, progress=False, **extract_kwargs)  # fmt: skip
                if res.dna.shape[0] != len(block):
                    raise ValueError(f"make_inputs returned {res.dna.shape[0]} samples for {len(block)} items")
                rows.append(res.dna)
                evaluations, levels = res.evaluations, res.grid
                bar.update(len(block))
        local = (np.concatenate(rows) if rows else None, evaluations, levels)
        log.info("rank %d: items %d..%d done in %.1f s", rank, lo, hi, time.perf_counter() - start_time)
        parts: list[Any] = [local]
        if world > 1:
            parts = [None] * world if rank == 0 else []
            dist.gather_object(local, parts if rank == 0 else None, dst=0)
        if rank != 0:
            return None
        dna = np.concatenate([p[0] for p in parts if p[0] is not None])
        evaluations = max(p[1] for p in parts)
        grid_used = next(p[2] for p in parts if p[2] is not None)
        result = ShardedDNA(dna, grid_used, items, evaluations, world, time.perf_counter() - start_time)
        if out is not None:
            result.save(out)
            log.info("wrote the DNA of %d items to %s", len(items), out)
        return result
    finally:
        if owned:
            dist.destroy_process_group()
