"""The Tier 2 code path of the quality benchmark on a tiny randomly initialised shapes UNet (the trained
weights come later): it runs end to end, its reference is what ShapesPipeline itself samples, and its
figures are recomputed from the saved images."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from cotj.models.generator import flow_scheduler  # noqa: E402
from cotj.models.text import EMBED_DIM, MAX_TOKENS  # noqa: E402
from cotj.planning import schedules  # noqa: E402
from cotj_testbed import quality  # noqa: E402
from cotj_testbed.classifier import AttributeClassifier  # noqa: E402
from cotj_testbed.quality_report import markdown  # noqa: E402
from cotj_testbed.quality_tier2 import Tier2Config, Tier2Setup, run_tier2, tier2_extract  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CFG = Tier2Config(n_train=8, n_test=3, grid_size=10, ks=(2, 3), calibration=2, predictor_epochs=3, batch_size=16)


def _encode(prompts):
    """A stand-in for MiniLM (loading it takes seconds): seeded token states per prompt, zero after its words."""
    out = torch.zeros(len(prompts), MAX_TOKENS, EMBED_DIM)
    for b, p in enumerate(prompts):
        gen = torch.Generator().manual_seed(sum(map(ord, p)) * 31 + len(p))
        out[b, : min(len(p.split()), MAX_TOKENS)] = torch.randn(min(len(p.split()), MAX_TOKENS), EMBED_DIM, generator=gen)
    return out


@pytest.fixture(scope="module")
def run(tiny_shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("tier2")
    tier2_extract(CFG, pipe=tiny_shapes, encode=_encode, out=out / "dna", progress=False)
    torch.manual_seed(1)
    samples = {}
    results = run_tier2(CFG, pipe=tiny_shapes, encode=_encode, classifier=AttributeClassifier().eval(), dna_dir=out / "dna",
                        progress=False, samples=samples, time_planning=False, predictor_out=out / "predictor")  # fmt: skip
    return results, samples, out


def test_tier2_runs_every_schedule_with_attribute_accuracy(run):
    results, _, out = run
    assert set(results["schedules"]) == set(quality.SCHEDULES) and results["tier"] == 2
    for by_k in results["schedules"].values():
        assert set(by_k) == {"2", "3"}
        for summary in by_k.values():
            assert 0.0 <= summary["accuracy"]["all"] <= 1.0 and np.isfinite(summary["psnr"])
    assert str(out / "dna") in results["dna_source"] and results["data_range"] == 1.0
    md = markdown(results)
    assert "Attribute accuracy" in md and "CoTj true DNA (oracle)" in md


def test_tier2_reference_is_what_the_shapes_pipeline_samples(run, tiny_shapes):
    """The benchmark's own Euler loop through uniform 10-step levels equals ShapesPipeline(sigmas=...) with
    Diffusers' FlowMatchEulerDiscreteScheduler on the same noise and prompts."""
    _, samples, _ = run
    tiny_shapes.scheduler = flow_scheduler()
    tier = Tier2Setup(CFG, tiny_shapes, _encode)
    images = tiny_shapes(prompt_embeds=_encode(tier.test), sigmas=schedules.uniform(CFG.grid_size).tolist(),
                       latents=tier.noise(tier.test), guidance_scale=CFG.guidance, output_type="pt").images  # fmt: skip
    np.testing.assert_allclose(samples["reference"], images.double().numpy(), atol=2e-5, rtol=0)


def test_tier2_figures_are_recomputed_from_the_saved_images(run):
    results, samples, _ = run
    ref = samples["reference"]
    for name in quality.SCHEDULES:
        for k in results["ks"]:
            mse = ((samples[f"{name}/K{k}/x"] - ref) ** 2).reshape(len(ref), -1).mean(1)
            assert results["schedules"][name][str(k)]["mse"] == pytest.approx(mse.mean(), rel=1e-9)
            assert results["schedules"][name][str(k)]["psnr"] == pytest.approx(np.mean(-10 * np.log10(mse)), rel=1e-9)
    assert samples["dna"].shape == (CFG.n_test, CFG.grid_size)


def test_tier2_saves_the_predictor_whose_predictions_it_planned_from(run, tiny_shapes):
    """The saved predictor reproduces the benchmark's predicted DNA from the held-out prompts' pooled embeddings,
    and the reported held-out cosine is that prediction's against the held-out true DNA."""
    from cotj.models.text import pool
    from cotj.predict import DNAPredictor

    results, samples, out = run
    predictor = DNAPredictor.load(out / "predictor", device="cpu")
    test = Tier2Setup(CFG, tiny_shapes, _encode).test
    assert results["heldout_prompts"] == test
    predicted = predictor.predict(pool(_encode(test)).double().numpy())
    np.testing.assert_allclose(predicted, samples["predicted"], rtol=1e-6)
    true, raw = samples["dna"], predictor.predict(pool(_encode(test)).double().numpy(), align=False)
    for row, key in ((raw, "heldout_cosine"), (predicted, "aligned_cosine")):
        cosine = (row * true).sum(1) / (np.linalg.norm(row, axis=1) * np.linalg.norm(true, axis=1))
        assert results["predictor"][f"{key}_mean"] == pytest.approx(cosine.mean(), rel=1e-6)
        assert results["predictor"][f"{key}_median"] == pytest.approx(np.median(cosine), rel=1e-6)
    assert results["predictor"]["saved_to"] == str(out / "predictor")
