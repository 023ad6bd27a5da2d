"""A tiny run of the shapes trainer lowers the loss, resumes exactly, and exports loadable weights."""

import dataclasses
import zlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

from safetensors.torch import load_file  # noqa: E402

from cotj.models import shapes  # noqa: E402
from cotj.models.generator import ShapesPipeline  # noqa: E402
from cotj.models.text import EMBED_DIM, MAX_TOKENS  # noqa: E402
from cotj_testbed.train import TrainConfig, export, load_config, train  # noqa: E402


class WordEncoder:
    """Stand-in for MiniLM in fast tests: one fixed random vector per word, zero-padded like the real encoder."""

    words: dict = {}

    def _word(self, w):
        if w not in self.words:
            self.words[w] = torch.randn(EMBED_DIM, generator=torch.Generator().manual_seed(zlib.crc32(w.encode())))
        return self.words[w]

    def encode(self, prompts):
        out = torch.zeros(len(prompts), MAX_TOKENS, EMBED_DIM)
        for i, p in enumerate(prompts):
            for j, w in enumerate(p.replace(",", "").split()):
                out[i, j] = self._word(w)
        return out

    def save(self):
        pass


TINY_UNET = dict(
    sample_size=16,
    in_channels=3,
    out_channels=3,
    block_out_channels=(16, 32),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    cross_attention_dim=EMBED_DIM,
    attention_head_dim=8,
    norm_num_groups=8,
)


def _tiny(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch=8, lr=2e-3, warmup=1, resolution=16, unet=TINY_UNET)


def test_a_tiny_run_lowers_the_loss(tmp_path):
    losses = train(tmp_path / "run", _tiny(40), encoder=WordEncoder(), log_every=10)
    assert len(losses) == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.75 * first, (first, last)
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 4


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = train(tmp_path / "a", _tiny(6), encoder=WordEncoder())
    first = train(tmp_path / "b", _tiny(3), encoder=WordEncoder())
    rest = train(tmp_path / "b", _tiny(6), encoder=WordEncoder())  # raising steps extends the run
    assert first + rest == straight
    a, b = (load_file(str(tmp_path / run / "checkpoint.safetensors")) for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_config(tmp_path / "b").steps == 6


def test_changing_the_config_of_an_existing_run_is_refused(tmp_path):
    train(tmp_path / "run", _tiny(1), encoder=WordEncoder())
    with pytest.raises(ValueError, match="only steps"):
        train(tmp_path / "run", dataclasses.replace(_tiny(2), lr=1e-4), encoder=WordEncoder())


def test_exported_weights_load_into_the_pipeline_and_sample(tmp_path):
    train(tmp_path / "run", _tiny(2), encoder=WordEncoder())
    assert export(tmp_path / "run", tmp_path / "w.safetensors") == 2
    pipe = ShapesPipeline.from_shipped(tmp_path / "w.safetensors")
    pipe.set_progress_bar_config(disable=True)
    emb = WordEncoder().encode(["a red circle", "two blue squares"])
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = pipe(prompt_embeds=emb, sigmas=[1.0, 0.6, 0.2], guidance_scale=1.0, latents=noise, output_type="latent")
    assert pipe.scheduler.sigmas.tolist() == pytest.approx([1.0, 0.6, 0.2, 0.0])
    # three Euler steps by hand with the same UNet reproduce the pipeline
    x = noise
    for t0, t1 in [(1.0, 0.6), (0.6, 0.2), (0.2, 0.0)]:
        x = x + (t1 - t0) * pipe.unet(x, torch.full((2,), t0 * 1000), emb).sample
    torch.testing.assert_close(out.images, x.clamp(-1, 1), atol=1e-5, rtol=0)
    pytest.importorskip("sentence_transformers")  # the null prompt of classifier-free guidance is MiniLM's ""
    guided = pipe(prompt_embeds=emb, sigmas=[1.0, 0.6, 0.2], guidance_scale=3.0, latents=noise, output_type="latent")
    assert not torch.allclose(guided.images, out.images)
    with pytest.raises(ValueError, match="prompt"):
        pipe(sigmas=[1.0])
    with pytest.raises(ValueError, match="latents"):
        pipe(prompt_embeds=emb, sigmas=[1.0], latents=noise[:1])


def test_shapes_vocabulary_fits_the_token_budget():
    longest = max(shapes.all_prompts(), key=lambda p: len(p.split()))
    assert len(longest.replace(",", " ,").split()) + 2 <= MAX_TOKENS  # words + [CLS] [SEP], before word pieces
