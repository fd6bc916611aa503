"""Training a small EnCodec-architecture codec on the synthetic world's sounds (bundled model).

The architecture is the `encodec` package's own (SEANet encoder/decoder + residual VQ), saved
as a codec folder that `load_codec` reads like any other. Losses: waveform L1 and multi-scale
log-mel L1, no discriminator. Three things keep the codebooks alive (with stock settings they
collapse to a few codes per level):
- a penalty holds each embedding dimension near zero mean and unit spread: otherwise the
  encoder's output shrinks (measured: per-dimension std 0.002 around a constant 0.03 after 60
  steps), the decoder makes up the scale, and the codebooks cannot resolve anything;
- the quantizer is k-means-initialised only after a warm-up of the plain autoencoder, on a large
  batch of its embeddings;
- codes that fall out of use are re-seeded from the batch, their usage counted per batch from
  the start (k-means counts over the large init batch would keep dead codes looking alive).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .codecs import CodecConfig, build_model, save_codec_dir
from .melspec import mel_power
from .world import SYNTH_SAMPLE_RATE, render_audio, sample_scene

WORLD_CODEC = CodecConfig(
    name="vab-world-16k",
    sample_rate=SYNTH_SAMPLE_RATE,
    n_filters=8,
    dimension=64,
    ratios=(8, 5, 4, 2),  # hop 320: 50 token frames per second
    lstm=1,
    n_q=4,
    bins=256,
)
CODEC_STREAM = 1  # the world's scene stream the codec learns from
MEL_SCALES = (128, 256, 512, 1024, 2048)  # n_fft of each log-mel loss term


@dataclass(frozen=True)
class CodecTrainOptions:
    steps: int = 6000
    batch_size: int = 16
    crop_seconds: float = 1.0
    lr: float = 1e-3
    warmup_steps: int = 300  # plain autoencoder steps before the codebooks are initialised
    init_seconds: float = 64.0  # audio whose embeddings k-means initialises the codebooks
    dead_code_usage: float = 1.0  # re-seed a code used less than this (EMA count per batch)
    waveform_weight: float = 1.0  # of the waveform L1 against the spectral loss
    output_gain: float = 10.0  # the decoder's last layer starts this much louder
    seed: int = 0


class WorldAudio:
    """Endless crops of the world's soundtracks, mostly around a sound's onset."""

    def __init__(self, seed: int, crop_seconds: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.samples = round(crop_seconds * SYNTH_SAMPLE_RATE)
        self.index = 0

    def batch(self, n: int) -> torch.Tensor:
        crops = np.zeros((n, 1, self.samples), dtype=np.float32)
        for row in range(n):
            scene = sample_scene(self.seed, self.index, 2.0, 4.0, stream=CODEC_STREAM)
            self.index += 1
            audio = render_audio(scene)
            near = self.rng.random() < 0.9 and scene.events
            centre = self.rng.choice(scene.events) if near else self.rng.uniform(0, scene.duration)
            lead = self.rng.uniform(0.1, 0.6) * self.samples  # the onset lands 10-60% in
            start = int(max(0, centre * SYNTH_SAMPLE_RATE - lead))
            piece = audio[start : start + self.samples]
            crops[row, 0, : len(piece)] = piece
        return torch.from_numpy(crops)


def spectral_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean over MEL_SCALES of L1 between log mel magnitudes (plus L1 of the magnitudes)."""
    total = fake.new_zeros(())
    for n_fft in MEL_SCALES:
        # Magnitudes, not powers: the gradient of a power vanishes as the output goes quiet,
        # which made silence a trap (measured: output peak 0.003 of the input's after 1000
        # steps). An offset rather than a clamp, which has no gradient below it.
        f = (mel_power(fake.squeeze(1), SYNTH_SAMPLE_RATE, n_fft, 64) + 1e-10).sqrt()
        r = (mel_power(real.squeeze(1), SYNTH_SAMPLE_RATE, n_fft, 64) + 1e-10).sqrt()
        # The log term hears quiet detail and timbre; the linear term weighs loud parts.
        total = total + ((f + 1e-3).log10() - (r + 1e-3).log10()).abs().mean()
        total = total + (f - r).abs().mean()
    return total / len(MEL_SCALES)


def _codebooks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [layer._codebook for layer in model.quantizer.vq.layers]


def init_codebooks(
    model: torch.nn.Module, wav: torch.Tensor, dead_code_usage: float, batch_vectors: int
) -> None:
    """k-means each level on the residuals of `wav`'s embeddings; set the re-seeding bar, with
    usage counts rescaled to batches of `batch_vectors` embeddings."""
    for book in _codebooks(model):
        book.inited.fill_(0)
        book.threshold_ema_dead_code = dead_code_usage
    model.quantizer.train()
    with torch.no_grad():
        emb = model.encoder(wav)
        model.quantizer(emb, model.sample_rate)
    for book in _codebooks(model):
        book.cluster_size.mul_(batch_vectors / (emb.shape[0] * emb.shape[-1]))


def spread_penalty(emb: torch.Tensor) -> torch.Tensor:
    """How far each embedding dimension is from zero mean and unit spread (batch and time)."""
    return ((emb.std(dim=(0, 2)) - 1) ** 2).mean() + (emb.mean(dim=(0, 2)) ** 2).mean()


def codes_in_use(model: torch.nn.Module, wav: torch.Tensor) -> list[int]:
    """Distinct codes per level that `wav` uses."""
    with torch.no_grad():
        codes = model.quantizer.vq.encode(model.encoder(wav))
    return [int(level.unique().numel()) for level in codes]


def train_codec(
    out: Path,
    opts: CodecTrainOptions = CodecTrainOptions(),
    config: CodecConfig = WORLD_CODEC,
    log: Callable[[str], None] = print,
) -> None:
    """Train a codec with `config` for `opts.steps` steps and save it as a codec folder."""
    torch.manual_seed(opts.seed)
    model = build_model(config)
    with torch.no_grad():
        # The decoder starts ~30x too quiet, and Adam grows a gain only ~lr per step: without a
        # louder start the quiet output is the loss's easy way out (measured: output RMS 1% of
        # the input's after 200 steps at gain 1, 100-130% at gain 10).
        model.decoder.model[-1].conv.conv.weight_g.mul_(opts.output_gain)
    data = WorldAudio(opts.seed, opts.crop_seconds)
    optimiser = torch.optim.Adam(model.parameters(), lr=opts.lr, betas=(0.5, 0.9))
    started = time.monotonic()
    probe = data.batch(opts.batch_size)
    for step in range(1, opts.steps + 1):
        if step == opts.warmup_steps + 1:
            n = max(opts.batch_size, round(opts.init_seconds / opts.crop_seconds))
            frames = opts.batch_size * math.ceil(data.samples / config.hop_length)
            init_codebooks(model, data.batch(n), opts.dead_code_usage, frames)
        # Cosine decay to a tenth of the rate.
        for group in optimiser.param_groups:
            group["lr"] = opts.lr * (0.55 + 0.45 * math.cos(math.pi * step / opts.steps))
        wav = data.batch(opts.batch_size)
        model.train()
        emb = model.encoder(wav)
        spread = spread_penalty(emb)
        commit = emb.new_zeros(())
        if step > opts.warmup_steps:
            quantized = model.quantizer(emb, model.sample_rate)
            emb, commit = quantized.quantized, quantized.penalty
        fake = model.decoder(emb)[..., : wav.shape[-1]]
        wave_l1 = F.l1_loss(fake, wav)
        mel = spectral_loss(fake, wav)
        loss = opts.waveform_weight * wave_l1 + mel + commit + spread
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if step % 100 == 0 or step == opts.steps:
            used = codes_in_use(model, probe) if step > opts.warmup_steps else []
            level = fake.detach().abs().amax() / wav.abs().amax().clamp_min(1e-6)
            log(
                f"codec step {step}/{opts.steps}  mel {mel.item():.3f}  l1 {wave_l1.item():.4f}  "
                f"peak out/in {level.item():.2f}  "
                f"commit {commit.item():.4f}  codes used {used}  "
                f"{(time.monotonic() - started) / 60:.1f} min"
            )
        if step % 1000 == 0 or step == opts.steps:
            save_codec_dir(model.eval(), config, out)
