"""Tiny, randomly initialised diffusers pipelines, made from nothing but code.

Nothing is downloaded: the CLIP tokenizer's vocabulary is written here (the 256 byte symbols,
no merges), every model is built from a small config with a fixed seed, and the pipeline is
saved with ``save_pretrained`` so the local provider loads it through its real loading code.
At 32x32 with 2 steps a generation takes a fraction of a second on a CPU.

Import this module only after ``pytest.importorskip("diffusers")``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing may reach the hub

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    TextToVideoSDPipeline,
    UNet2DConditionModel,
    UNet3DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

_BUILT: dict[str, Path] = {}


def _byte_symbols() -> list[str]:
    """The printable stand-in GPT-2 / CLIP byte-level BPE uses for each of the 256 bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols, extra = {b: chr(b) for b in printable}, 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the byte symbols alone (every word spelled out)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for symbol in _byte_symbols():
            vocab[symbol + suffix] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )


def _text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    )


def _tokenizer(target: Path) -> CLIPTokenizer:
    return write_tokenizer(target.parent / f"{target.name}-tokenizer-files")


def build_tiny_text2img(target: Path) -> Path:
    """Save a tiny Stable Diffusion pipeline (UNet, VAE, CLIP text encoder) to ``target``."""
    tokenizer = _tokenizer(target)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    text_encoder = _text_encoder(tokenizer)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(target))
    return target


def build_tiny_upscale(target: Path) -> Path:
    """Save a tiny 4x Stable Diffusion upscaler (its UNet also reads the low-res image)."""
    tokenizer = _tokenizer(target)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=7,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=100,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        scaling_factor=0.08333,
    )
    pipe = StableDiffusionUpscalePipeline(
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction", steps_offset=1),
        vae=vae,
        text_encoder=_text_encoder(tokenizer),
        tokenizer=tokenizer,
        max_noise_level=350,
    )
    pipe.save_pretrained(str(target))
    return target


def build_tiny_text2video(target: Path) -> Path:
    """Save a tiny text-to-video pipeline (a 3D UNet over frames)."""
    tokenizer = _tokenizer(target)
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
    )
    pipe = TextToVideoSDPipeline(
        vae=vae,
        text_encoder=_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
    )
    pipe.save_pretrained(str(target))
    return target


BUILDERS = {
    "text2img": build_tiny_text2img,
    "upscale": build_tiny_upscale,
    "text2video": build_tiny_text2video,
}


def tiny_model_dir(factory: pytest.TempPathFactory, which: str) -> Path:
    """A tiny model directory (``text2img``, ``upscale``, ``text2video``), built once."""
    if which not in _BUILT:
        _BUILT[which] = BUILDERS[which](factory.mktemp("models") / f"tiny-{which}")
    return _BUILT[which]


def tiny_text2img_dir(factory: pytest.TempPathFactory) -> Path:
    """The tiny text-to-image model directory, built once per test session."""
    return tiny_model_dir(factory, "text2img")


def corrupt_copy(source: Path, target: Path, how: str) -> Path:
    """A copy of ``source`` broken in one way: ``index`` (garbage model_index.json) or
    ``weights`` (the UNet's weights truncated)."""
    shutil.copytree(source, target)
    if how == "index":
        (target / "model_index.json").write_text("{ this is not json", encoding="utf-8")
    elif how == "weights":
        [weights] = (target / "unet").glob("*.safetensors")
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        raise ValueError(how)
    return target
