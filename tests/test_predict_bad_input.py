"""DNAPredictor.load and from_official on hostile files: a ValueError naming the file and the key or tensor,
before anything the file does not describe is allocated; no pickled code runs."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from conftest import needs_extra

pytestmark = needs_extra("torch")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from cotj.predict import DNAPredictor  # noqa: E402
from cotj.predict.predictor import MAX_PARAMETERS  # noqa: E402

CONFIG = {"format": "cotj.DNAPredictor/1", "in_dim": 8, "n_levels": 10, "hidden": 16, "dropout": 0.5}


@pytest.fixture
def saved(tmp_path):
    """A small predictor saved in tmp_path/p, with statistics."""
    torch.manual_seed(0)
    model = DNAPredictor(8, 10, 16, 0.5)
    model.set_statistics(np.zeros(8), np.ones(8), np.linspace(0.1, 1, 10))
    return model.save(tmp_path / "p")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("[1, 2]", r"dna_predictor.json is not a cotj DNAPredictor config"),
        ("{", r"dna_predictor.json is not valid JSON"),
        ({**CONFIG, "dropout": "x"}, r"dna_predictor.json: dropout must be a number in \[0, 1\), got 'x'"),
        ({**CONFIG, "dropout": float("nan")}, r"dropout must be a number in \[0, 1\), got nan"),
        ({**CONFIG, "hidden": 2.5}, r"dna_predictor.json: hidden must be an int >= 2, got 2.5"),
        ({**CONFIG, "in_dim": True}, r"in_dim must be an int >= 2, got True"),
        ({**CONFIG, "hidden": 20000}, r"hidden=20000 make 200,290,036 parameters, more than MAX_PARAMETERS"),
        ({**CONFIG, "hidden": 10**9}, r"hidden=1000000000 make .* parameters, more than MAX_PARAMETERS"),
        ({k: v for k, v in CONFIG.items() if k != "n_levels"}, r"dna_predictor.json lacks the key 'n_levels'"),
        ({**CONFIG, "extra": 1}, r"dna_predictor.json has an unknown key 'extra'"),
        ({**CONFIG, "extra": "x" * 70_000}, r"dna_predictor.json holds 70,1\d\d bytes, more than a predictor config's"),
        ({**CONFIG, "hidden": 32}, r"dna_predictor.safetensors: net.0.weight has shape \(16, 8\), the sizes need \(32, 8\)"),
        ({**CONFIG, "n_levels": 12}, r"net.6.weight has shape \(10, 8\), the sizes need \(12, 8\)"),
    ],
)
def test_a_config_that_is_not_valid_or_disagrees_with_the_weights_is_refused(saved, config, match):
    (saved / "dna_predictor.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(ValueError, match=match):
        DNAPredictor.load(saved)


def test_corrupt_or_foreign_weights_are_refused(saved):
    weights = saved / "dna_predictor.safetensors"
    weights.write_bytes(b"junk" * 10)
    with pytest.raises(ValueError, match=r"dna_predictor.safetensors is not a valid safetensors file"):
        DNAPredictor.load(saved)
    state = DNAPredictor(8, 10, 16).state_dict()
    save_file({**state, "net.0.bias": torch.full((16,), float("nan"))}, str(weights))
    with pytest.raises(ValueError, match=r"net.0.bias holds NaN or inf"):
        DNAPredictor.load(saved)
    save_file({k: v.to(torch.int32) for k, v in state.items()}, str(weights))
    with pytest.raises(ValueError, match=r"has dtype I32, not a float"):
        DNAPredictor.load(saved)
    save_file({k: v for k, v in state.items() if k != "x_std"}, str(weights))
    with pytest.raises(ValueError, match=r"lacks the tensor 'x_std'"):
        DNAPredictor.load(saved)
    save_file({**state, "spare": torch.zeros(1)}, str(weights))
    with pytest.raises(ValueError, match=r"holds an unexpected tensor 'spare'"):
        DNAPredictor.load(saved)


def test_a_valid_predictor_still_loads_exactly(saved):
    model = DNAPredictor.load(saved, device="cpu")
    again = DNAPredictor.load(model.save(saved.parent / "again"), device="cpu")
    x = np.linspace(-1, 1, 8)
    np.testing.assert_array_equal(model.predict(x), again.predict(x))
    assert model.config == {k: v for k, v in CONFIG.items() if k != "format"}


def test_the_constructor_refuses_absurd_sizes():
    with pytest.raises(ValueError, match="more than MAX_PARAMETERS"):
        DNAPredictor(MAX_PARAMETERS, 10, 16)


def test_from_official_accepts_its_own_format(tmp_path):
    model = DNAPredictor(8, 10, 16)
    torch.save({f"net.{k}": v for k, v in model.net.state_dict().items()}, tmp_path / "model_state.pth")
    torch.save({"X_mean": torch.zeros(1, 8), "X_std": torch.ones(1, 8), "Y_mean": torch.ones(1, 10)},
               tmp_path / "norm_data.pt")
    imported = DNAPredictor.from_official(tmp_path / "model_state.pth", tmp_path / "norm_data.pt")
    x = np.linspace(-1, 1, 8)
    np.testing.assert_allclose(imported.predict(x, align=False), model.eval().predict(x, align=False), rtol=1e-6)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize(
    ("state", "norm", "match"),
    [
        (pickle.dumps(_Boom()), None, r"model_state.pth is not a weights-only torch file \(UnpicklingError"),
        (b"", None, r"model_state.pth is not a weights-only torch file \(EOFError"),
        (b"not a torch file", None, r"model_state.pth is not a weights-only torch file"),
        ({f"net.{i}.{p}": [1.0] for i in (0, 3, 6) for p in ("weight", "bias")}, None,
         r"model_state.pth: net.0.bias must be a float tensor, got list"),
        ({f"net.{i}.{p}": torch.zeros(2, 2, dtype=torch.int64) for i in (0, 3, 6) for p in ("weight", "bias")}, None,
         r"net.0.bias must be a float tensor, got Tensor"),
        ({"net.0.weight": torch.zeros(16, 8), "net.0.bias": torch.zeros(16), "net.3.weight": torch.zeros(8, 16),
          "net.3.bias": torch.zeros(8), "net.6.weight": torch.zeros(10, 8), "net.6.bias": torch.zeros(9)}, None,
         r"model_state.pth: net.6.bias has shape \(9,\), the sizes need \(10,\)"),
        ({"net.0.weight": torch.zeros(16), "net.0.bias": torch.zeros(16), "net.3.weight": torch.zeros(8, 16),
          "net.3.bias": torch.zeros(8), "net.6.weight": torch.zeros(10, 8), "net.6.bias": torch.zeros(10)}, None,
         r"net.0.weight and net.6.weight must be matrices"),
        (None, {"X_mean": "a", "X_std": torch.ones(8), "Y_mean": torch.ones(10)},
         r"norm_data.pt: X_mean must be a float tensor, got str"),
    ],
)
def test_from_official_refuses_foreign_files_by_name(tmp_path, state, norm, match):
    good_state = {f"net.{k}": v for k, v in DNAPredictor(8, 10, 16).net.state_dict().items()}
    good_norm = {"X_mean": torch.zeros(1, 8), "X_std": torch.ones(1, 8), "Y_mean": torch.ones(1, 10)}
    for name, value, default in (("model_state.pth", state, good_state), ("norm_data.pt", norm, good_norm)):
        if isinstance(value, bytes):
            (tmp_path / name).write_bytes(value)
        else:
            torch.save(default if value is None else value, tmp_path / name)
    with pytest.raises(ValueError, match=match):
        DNAPredictor.from_official(tmp_path / "model_state.pth", tmp_path / "norm_data.pt")
