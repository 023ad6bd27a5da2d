"""Sharded DNA extraction: blocks, files, and a 2-process torchrun (gloo) run equal to one process."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = [needs_extra("torch"), pytest.mark.usefixtures("one_torch_thread")]

import torch  # noqa: E402

from cotj.models.analytic import FlowMixtureModel, MixtureFamily  # noqa: E402
from cotj.predict import extract_dna  # noqa: E402
from cotj.predict.shard import DNAInputs, extract_sharded, load_sharded, shard_bounds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = FlowMixtureModel(MixtureFamily(dim=8, seed=0))


def _inputs(items):
    """Noise from the item alone; the data mean of the mixture as a (crude) reference."""
    noise = torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(100 + i), dtype=torch.float64) for i in items])
    x_ref = torch.stack([MODEL.family.mixture(i).means[0] for i in items])
    return DNAInputs(torch.tensor(items), noise, x_ref)


@pytest.mark.parametrize(("n", "world"), [(10, 3), (2, 4), (7, 1), (0, 2)])
def test_shard_bounds_cover_the_items_once_in_order(n, world):
    blocks = [shard_bounds(n, world, r) for r in range(world)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks[:-1], blocks[1:]))
    sizes = [hi - lo for lo, hi in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_one_process_equals_extract_dna_and_round_trips(tmp_path):
    items = [4, 1, 7, 3, 9]
    res = extract_sharded(lambda: MODEL, items, _inputs, tmp_path / "dna", chunk_size=2, batch_size=64, progress=False)
    direct = _inputs(items)
    want = extract_dna(MODEL, noise=direct.noise, cond=direct.cond, x_ref=direct.x_ref, batch_size=500, progress=False).dna
    np.testing.assert_allclose(res.dna, want, rtol=1e-6, atol=0)
    assert res.items == items and res.world_size == 1 and res.grid.shape == (100,)
    back = load_sharded(tmp_path / "dna")
    np.testing.assert_array_equal(back.dna, res.dna)
    assert back.items == items and json.loads((tmp_path / "dna" / "items.json").read_text())["evaluations"] == 100


def test_bad_items_and_chunks_are_rejected():
    with pytest.raises(TypeError, match="items must be str"):
        extract_sharded(lambda: MODEL, [1.5], _inputs, progress=False)
    with pytest.raises(ValueError, match="items must not be empty"):
        extract_sharded(lambda: MODEL, [], _inputs, progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        extract_sharded(lambda: MODEL, [1], _inputs, chunk_size=0, progress=False)
    with pytest.raises(ValueError, match="make_inputs returned 2 samples for 1 items"):
        extract_sharded(lambda: MODEL, [1], lambda block: _inputs([1, 2]), progress=False)


@pytest.mark.slow
def test_two_torchrun_processes_give_the_dna_of_one(tmp_path):
    """The documented command (benches/quality.py --extract) under torchrun with 2 gloo processes, against
    the same extraction in one process."""
    from cotj_testbed import quality_tier1

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "benches" / "quality.py"), "--tier", "1", "--quick", "--extract", str(tmp_path / "two"), "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=120)
    two = load_sharded(tmp_path / "two")
    cfg = quality_tier1.Tier1Config.quick()
    one = quality_tier1.tier1_extract(cfg, progress=False)
    assert two.world_size == 2 and two.items == cfg.train_items + cfg.test_items
    np.testing.assert_allclose(two.dna, one.dna, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(two.grid, one.grid)
