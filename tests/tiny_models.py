"""Tiny models for tests: a codec whose tokens mean something, and VAB checkpoints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from vabcli.config import ModelConfig
from vabcli.encoders.audio_codec import DEBUG_CODEC, build_model, load_codec, save_codec_dir
from vabcli.encoders.image import load_visual_encoder
from vabcli.encoders.tokenize import TokenizeOptions, encoder_spec
from vabcli.model.checkpoint import save_checkpoint
from vabcli.model.transformer import VabModel

COLOURS_AND_TONES = [("red", 220.0), ("green", 440.0), ("blue", 880.0), ("white", 1320.0)]


def output_spread(encoder: torch.nn.Module, layer: torch.nn.Module, audio) -> torch.Tensor:
    spreads = []
    hook = layer.register_forward_hook(lambda module, inp, out: spreads.append(out.std()))
    encoder(audio)
    hook.remove()
    return spreads[0]


def informative_codec(folder) -> None:
    torch.manual_seed(0)
    model = build_model(DEBUG_CODEC)
    t = torch.arange(DEBUG_CODEC.sample_rate) / DEBUG_CODEC.sample_rate
    audio = torch.stack([0.5 * torch.sin(2 * math.pi * hz * t) for _, hz in COLOURS_AND_TONES])
    audio = audio[:, None, :]
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv1d)]
    with torch.no_grad():
        for conv in convs:
            conv.bias.zero_()
        for conv in convs:  # in order: each layer sees already-rescaled inputs
            conv.weight_g.div_(output_spread(model.encoder, conv, audio))
        model.quantizer.train()  # the first training-mode call k-means-initialises the codebooks
        model.quantizer(model.encoder(audio), DEBUG_CODEC.frame_rate, 3.0)
    model.eval()
    save_codec_dir(model, DEBUG_CODEC, folder)


def make_checkpoint(
    folder: Path, window: float = 2.0, codec: Path | str = "debug", **meta_changes: Any
) -> Path:
    """A tiny random VAB model on `codec` and the debug image encoder, saved as `vab train`
    saves one (with the encoder spec that lets `vab generate` load them again)."""
    codec_spec = str(codec)
    codec, visual = load_codec(codec_spec), load_visual_encoder("debug")
    cfg = ModelConfig(
        visual_dim=visual.dim,
        n_codebooks=codec.n_codebooks,
        codebook_size=codec.codebook_size,
        d_model=32,
        n_heads=2,
        n_multiway=1,
        n_shared=1,
        audio_frame_rate=codec.frame_rate,
    )
    torch.manual_seed(0)
    meta = {
        "step": 0,
        "codec_id": codec.id,
        "visual_id": visual.id,
        "encoders": encoder_spec(TokenizeOptions(codec=codec_spec, image_encoder="debug")),
        "options": {"clip_seconds": window},
        **meta_changes,
    }
    return save_checkpoint(folder, VabModel(cfg), cfg, meta)
