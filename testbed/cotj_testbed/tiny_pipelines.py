"""Tiny random-weight Diffusers pipelines with their own tokenizers and one-layer text encoders, built offline
(no download): FluxPipeline, StableDiffusion3Pipeline, StableDiffusionPipeline and StableDiffusionXLPipeline,
16x16 images. Saved with ``save_pretrained`` they load back by path like any local pipeline: the command-line
tests use them, and
``python -m cotj_testbed.tiny_pipelines flux DIR`` writes one to try ``cotj calibrate`` and ``cotj sample
--pipeline`` without a real model (the README's command)."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

WORDS = ["a", "red", "blue", "cat", "dog", "on", "the", "left", "big", "small"]
"""The ten words of the tiny tokenizers' vocabulary (any other word is the unknown token)."""
CLIP_LENGTH = 16
"""Tokens of the tiny CLIP tokenizers (their model_max_length and the encoders' positions)."""


def clip_tokenizer(folder: Path) -> Any:
    """A CLIPTokenizer from a vocabulary of :data:`WORDS` (and their letters) and an empty merges file."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["<|startoftext|>", "<|endoftext|>", *(f"{w}</w>" for w in WORDS), *string.ascii_lowercase]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(dict.fromkeys(vocab))}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=CLIP_LENGTH)


def t5_tokenizer() -> Any:
    """A WordLevel tokenizer of :data:`WORDS` (whitespace split, ``</s>`` appended) as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=16)


def _clip_encoder(cls: Any, hidden: int, projection: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    config = CLIPTextConfig(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=CLIP_LENGTH, projection_dim=projection or hidden,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return cls(config).eval()


def _t5_encoder(d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=16, d_model=d_model, d_kv=4, d_ff=2 * d_model, num_layers=1, num_heads=2,
                                   relative_attention_num_buckets=4, decoder_start_token_id=0)).eval()


def _vae(shift_factor: float | None = None) -> Any:
    import diffusers

    extra = {} if shift_factor is None else {"shift_factor": shift_factor}
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=2, sample_size=16,
        scaling_factor=1.0, **extra).eval()


def flux(folder: Path) -> Any:
    """FluxPipeline: a 1+1-layer transformer (guidance embedding on), CLIP (hidden 8) and T5 (d_model 16)."""
    import diffusers
    import torch
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, pooled_projection_dim=8, guidance_embeds=True, axes_dims_rope=(2, 2, 4)).eval()
    return diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_image_seq_len=4,
                                                            max_image_seq_len=64),
        vae=_vae(shift_factor=0.0), text_encoder=_clip_encoder(CLIPTextModel, 8), tokenizer=clip_tokenizer(folder / "_clip"),
        text_encoder_2=_t5_encoder(16), tokenizer_2=t5_tokenizer(), transformer=transformer)


def sd3(folder: Path) -> Any:
    """StableDiffusion3Pipeline: a 1-layer SD3 transformer (patch 2), two CLIPs with projections (hidden 8,
    projection 4) and T5 (d_model 16)."""
    import diffusers
    import torch
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, pos_embed_max_size=16).eval()
    tok = clip_tokenizer(folder / "_clip")
    return diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(shift_factor=0.0), text_encoder=_clip_encoder(CLIPTextModelWithProjection, 8, 4), tokenizer=tok,
        text_encoder_2=_clip_encoder(CLIPTextModelWithProjection, 8, 4), tokenizer_2=tok, text_encoder_3=_t5_encoder(16),
        tokenizer_3=t5_tokenizer())


def sd(folder: Path, scheduler: Any = None) -> Any:
    """StableDiffusionPipeline: a 2-block UNet (cross-attention 8), CLIP (hidden 8), and ``scheduler`` (default
    DDIMScheduler with SD's betas, epsilon prediction)."""
    import diffusers
    import torch
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4).eval()
    scheduler = scheduler or diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                     steps_offset=1, clip_sample=False, set_alpha_to_one=False)
    return diffusers.StableDiffusionPipeline(
        vae=_vae(), text_encoder=_clip_encoder(CLIPTextModel, 8), tokenizer=clip_tokenizer(folder / "_clip"), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def sdxl(folder: Path) -> Any:
    """StableDiffusionXLPipeline: a 2-block UNet with SDXL's added text and time conditions (cross-attention 16 =
    two CLIPs of hidden 8; the second with projection 8), EulerDiscreteScheduler with SDXL's betas."""
    import diffusers
    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + 8).eval()
    tok = clip_tokenizer(folder / "_clip")
    return diffusers.StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=_clip_encoder(CLIPTextModel, 8), text_encoder_2=_clip_encoder(CLIPTextModelWithProjection, 8, 8),
        tokenizer=tok, tokenizer_2=tok, unet=unet, add_watermarker=False,
        scheduler=diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                   steps_offset=1, timestep_spacing="leading"))


BUILDERS = {"flux": flux, "sd3": sd3, "sd": sd, "sdxl": sdxl}


def save(kind: str, folder: Path) -> Path:
    """Build the tiny ``kind`` pipeline and ``save_pretrained`` it into ``folder / kind``; returns that folder."""
    out = folder / kind
    BUILDERS[kind](folder / f"_{kind}_files").save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m cotj_testbed.tiny_pipelines KIND DIR``: save a tiny pipeline into DIR (KIND: flux, sd3, sd)."""
    import argparse
    import tempfile

    p = argparse.ArgumentParser(prog="python -m cotj_testbed.tiny_pipelines",
                                description="Save a tiny random-weight Diffusers pipeline (16x16 images) into a folder, "
                                            "to try cotj calibrate and cotj sample --pipeline without a real model.")
    p.add_argument("kind", choices=sorted(BUILDERS))
    p.add_argument("folder", help="the pipeline folder to write")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        BUILDERS[args.kind](Path(tmp)).save_pretrained(args.folder)
    print(f"wrote {args.folder}: a tiny random-weight {args.kind} pipeline (16x16 images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
