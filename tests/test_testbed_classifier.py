"""The shipped attribute classifier reads fresh procedural scenes correctly, and ``score`` counts what it should."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from cotj.models import shapes  # noqa: E402
from cotj_testbed.classifier import WEIGHTS, AttributeClassifier, load_classifier, score  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def fresh():
    rng = np.random.default_rng(12345)  # not a training seed
    scenes = shapes.sample_scenes(rng, 600, p_mention=1.0)
    return scenes, torch.from_numpy(shapes.render(scenes, rng))


def test_shipped_weights_are_small_safetensors():
    assert WEIGHTS.suffix == ".safetensors" and WEIGHTS.stat().st_size < 2_000_000


def test_accuracy_on_fresh_scenes_is_high(classifier, fresh):
    scenes, images = fresh
    acc = score(images, scenes.labels, classifier)
    for attribute in shapes.ATTRIBUTES:
        assert acc[attribute] > 0.95, (attribute, acc)
    assert acc["all"] > 0.85


def test_accuracy_survives_mild_noise(classifier, fresh):
    scenes, images = fresh
    noisy = (images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    acc = score(noisy, scenes.labels, classifier)
    assert min(acc[a] for a in shapes.ATTRIBUTES) > 0.9, acc


def test_score_checks_only_the_attributes_a_prompt_states(classifier, fresh):
    scenes, images = fresh
    wrong = scenes.labels.copy()
    wrong[:, 0] = (wrong[:, 0] + 1) % len(shapes.COLOURS)  # every colour wrong
    acc = score(images, wrong, classifier)
    assert acc["colour"] < 0.05 and acc["all"] < 0.05 and acc["shape"] > 0.95
    unasked = scenes.labels.copy()
    unasked[:, 0] = -1  # colour not asked for: no longer counted
    acc = score(images, unasked, classifier)
    assert math.isnan(acc["colour"]) and acc["all"] > 0.85
    prompts = [shapes.prompt_of(lab, np.array([1, 1, 1, 0, 1, 0], bool)) for lab in scenes.labels[:50]]
    acc = score(images[:50], prompts, classifier)
    assert math.isnan(acc["size"]) and math.isnan(acc["background"]) and acc["position"] > 0.9


def test_bad_inputs_are_rejected(classifier, fresh):
    _, images = fresh
    with pytest.raises(ValueError, match="attributes"):
        score(images[:2], np.zeros((2, 3), dtype=np.int64), classifier)
    with pytest.raises(ValueError, match="images"):
        score(images[:2], np.zeros((3, 6), dtype=np.int64), classifier)
    with pytest.raises(ValueError, match="images must be"):
        AttributeClassifier()(torch.zeros(1, 3, 16, 16))
