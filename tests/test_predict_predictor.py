"""DNAPredictor: learning a known embedding -> DNA map, save/load, and the official checkpoints."""

import json

import numpy as np
import pytest

from conftest import mean_dna, needs_extra

pytestmark = [needs_extra("torch"), pytest.mark.usefixtures("one_torch_thread")]

import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.predict import DNAPredictor, cosine_scores, train_predictor  # noqa: E402


def _pairs(n, seed=0):
    """Embeddings (n, 16) and DNA (n, 100): a bump whose centre and width are functions of the
    embedding, on top of a floor."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16))
    proj = np.random.default_rng(99).normal(size=(2, 16)) / 4
    centre = 0.5 + 0.35 * np.tanh(x @ proj[0])
    width = 0.05 + 0.1 / (1 + np.exp(-x @ proj[1]))
    grid = cotj.default_grid(100)
    return x, np.exp(-((grid[None] - centre[:, None]) ** 2) / (2 * width[:, None] ** 2)) + 0.05


@pytest.fixture(scope="module")
def trained():
    x, y = _pairs(900)
    model, report = train_predictor(x, y, epochs=120, patience=20, progress=False)
    return model, report


def test_learns_a_known_map_on_held_out_pairs(trained):
    model, report = trained
    x, y = _pairs(200, seed=1)
    held_out = cosine_scores(model, x, y)
    mean_dna = _pairs(900)[1].mean(0)
    baseline = (y @ mean_dna) / np.linalg.norm(y, axis=1) / np.linalg.norm(mean_dna)
    assert held_out.mean >= 0.95 and held_out.median >= 0.95
    assert held_out.mean > baseline.mean() + 0.15  # far better than planning on the mean DNA
    assert report.validation.mean == pytest.approx(max(report.val_cosine), abs=1e-6)
    assert report.best_epoch == int(np.argmax(report.val_cosine))


def test_predict_aligns_to_the_mean_dna(trained):
    model, _ = trained
    x, _ = _pairs(5, seed=2)
    raw = model.predict(x, align=False)
    mean = model.mean_dna.double().numpy()
    np.testing.assert_allclose(model.predict(x), cotj.align_dna(raw, mean))
    assert model.predict(x[0]).shape == (100,)
    np.testing.assert_allclose(model.predict(x).min(axis=1), mean.min())


def test_save_load_round_trip(trained, tmp_path):
    model, _ = trained
    x, _ = _pairs(8, seed=3)
    model.save(tmp_path / "pred")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["dna_predictor.json", "dna_predictor.safetensors"]
    config = json.loads((tmp_path / "pred" / "dna_predictor.json").read_text())
    assert config["in_dim"] == 16 and config["n_levels"] == 100 and config["dropout"] == 0.6
    loaded = DNAPredictor.load(tmp_path / "pred", device="cpu")
    assert not loaded.training
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(loaded.mean_dna.numpy(), model.mean_dna.numpy())


def test_architecture_is_the_papers():
    model = DNAPredictor(3584)
    layers = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(3584, 256), (256, 128), (128, 100)]
    assert [m.p for m in model.net if isinstance(m, torch.nn.Dropout)] == [0.6, 0.6]
    assert sum(p.numel() for p in model.parameters()) == 3584 * 256 + 256 + 256 * 128 + 128 + 128 * 100 + 100


def test_bad_inputs_raise(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match=r"embedding must be \(B, 16\)"):
        model.predict(np.zeros((2, 15)))
    with pytest.raises(ValueError, match="same number of rows"):
        train_predictor(np.zeros((10, 4)), np.ones((9, 100)), progress=False)
    with pytest.raises(ValueError, match="must be finite"):
        model.predict(np.full((1, 16), np.nan))
    with pytest.raises(ValueError, match="dropout"):
        DNAPredictor(16, dropout=1.0)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "dna_predictor.json").write_text("{}")
    with pytest.raises(ValueError, match="not a cotj DNAPredictor config"):
        DNAPredictor.load(tmp_path / "x")


def test_from_official_rejects_a_foreign_state_dict(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "model_state.pth")
    torch.save({"X_mean": torch.zeros(2)}, tmp_path / "norm_data.pt")
    with pytest.raises(ValueError, match="must hold exactly the layers"):
        DNAPredictor.from_official(tmp_path / "model_state.pth", tmp_path / "norm_data.pt")


@pytest.mark.parametrize("name", ["qwenimage", "zimageturbo"])
def test_from_official_reproduces_the_released_mlp(name, official, tmp_path):
    """The paper's released MLP, imported, predicts what the MLP built from its state dict does (needs the
    released files: the conftest ``official`` fixture)."""
    state_path, norm_path = official / f"{name}_model_state.pth", official / f"{name}_norm_data.pt"
    model = DNAPredictor.from_official(state_path, norm_path)
    # the released SimpleMLP, built independently and fed as the reference pipeline feeds it
    state = torch.load(state_path, weights_only=True, map_location="cpu")
    norm = torch.load(norm_path, weights_only=True, map_location="cpu")
    d = state["net.0.weight"].shape[1]
    ref = torch.nn.Sequential(
        torch.nn.Linear(d, 256), torch.nn.ReLU(), torch.nn.Dropout(0.6),
        torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Dropout(0.6), torch.nn.Linear(128, 100),
    )
    ref.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    ref.eval()
    z = torch.randn(4, d, generator=torch.Generator().manual_seed(0))
    x = norm["X_mean"].reshape(1, -1) + norm["X_std"].reshape(1, -1) * z
    with torch.no_grad():
        want = ref((x - norm["X_mean"].reshape(1, -1)) / (norm["X_std"].reshape(1, -1) + 1e-9)).double().numpy()
    np.testing.assert_allclose(model.predict(x, align=False), want, rtol=1e-5, atol=1e-6)
    y_mean = norm["Y_mean"].reshape(-1).double().numpy()
    np.testing.assert_allclose(model.predict(x), cotj.align_dna(want, y_mean), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(model.mean_dna.double().numpy(), mean_dna(name), rtol=1e-6)
    loaded = DNAPredictor.load(model.save(tmp_path / name), device="cpu")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_log_mse_predictor_learns_the_scale_that_cosine_cannot_see(tmp_path):
    """Two groups of conditions whose DNA differ only by a factor 10: the cosine loss cannot tell them apart
    (alignment then gives both the same DNA), the log-MSE predictor gets each group's level (median over levels, within the fit's noise)."""
    import cotj.predict as predict

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((200, 4))
    shape = np.linspace(0.01, 1.0, 20) ** 1.5
    dna = np.where(emb[:, :1] > 0, 10.0, 1.0) * shape * rng.lognormal(0, 0.02, (200, 20))
    log_model, _ = predict.train_predictor(emb, dna, epochs=400, lr=3e-3, dropout=0.0, progress=False, loss="log_mse")
    cos_model, _ = predict.train_predictor(emb, dna, epochs=400, lr=3e-3, dropout=0.0, progress=False)
    probe = np.array([[2.0, 0, 0, 0], [-2.0, 0, 0, 0]])
    high, low = log_model.predict(probe)
    assert 6.0 < np.median(high / low) < 15.0 and 0.7 < np.median(low / shape) < 1.4
    aligned = cos_model.predict(probe)
    assert 0.8 < np.median(aligned[0] / aligned[1]) < 1.25  # the paper's predictor: one scale for both
    back = predict.DNAPredictor.load(log_model.save(tmp_path / "log"), device="cpu")
    np.testing.assert_allclose(back.predict(probe), log_model.predict(probe))
    with pytest.raises(ValueError, match="loss must be one of"):
        predict.train_predictor(emb, dna, loss="mse")
