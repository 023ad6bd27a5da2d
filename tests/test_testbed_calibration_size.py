"""cotj_testbed.calibration_size on a tiny random shapes generator: one PSNR per size, repeat and budget; the
subsets are drawn from the pool, and a size equal to the pool is fitted once."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from cotj_testbed.calibration_size import _table, calibration_size  # noqa: E402
from cotj_testbed.quality_tier2 import Tier2Config  # noqa: E402


def test_calibration_size_scores_every_size_repeat_and_budget(tiny_shapes, one_torch_thread):
    cfg = Tier2Config(grid_size=10, batch_size=8)
    out = calibration_size([2, 4], pool=4, n_test=3, ks=(2, 3), repeats=2, cfg=cfg, pipe=tiny_shapes, progress=False)
    assert out["sizes"] == [2, 4] and out["ks"] == [2, 3]
    for loop in ("open_loop", "closed_loop"):
        assert [len(out[loop]["2"][k]) for k in ("2", "3")] == [2, 2]  # two random subsets of 2
        assert [len(out[loop]["4"][k]) for k in ("2", "3")] == [1, 1]  # the whole pool: once
        assert all(np.isfinite(v).all() for per_k in out[loop].values() for v in per_k.values())
    assert set(out["uniform"]) == {"2", "3"}
    assert "K=3 closed" in _table(out)
    with pytest.raises(ValueError, match="sizes must lie in 2..pool"):
        calibration_size([8], pool=4, pipe=tiny_shapes)
