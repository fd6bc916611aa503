"""Training a small EnCodec-architecture codec on the synthetic world's sounds (bundled model).

The architecture is the `encodec` package's own (SEANet encoder/decoder + residual VQ), saved
as a codec folder that `load_codec` reads like any other. Losses: waveform L1 and multi-scale
log-mel L1, no discriminator. Two things make it learn at all: every convolution starts scaled
to keep the signal's spread (`unit_variance_init`), and the log-mel offset is large enough that
silence is not the cheapest output (`LOG_OFFSET`). Three keep the codebooks alive (with stock
settings they collapse to a few codes per level):
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
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vabcli.encoders.audio_codec import CodecConfig, build_model, save_codec_dir
from vabcli.evaluation.melspec import mel_power
from vabcli.world.scenes import SYNTH_SAMPLE_RATE, Scene, render_audio, sample_scene

WORLD_CODEC = CodecConfig(
    name="vab-world-16k",
    sample_rate=SYNTH_SAMPLE_RATE,
    # n_filters 8 (0.7 M parameters, 3000 steps) lost the bell's and glass's high partials: on
    # its round trip those mel bands kept half their spread and fd_logmel read 726 (real 8.6).
    n_filters=16,
    dimension=64,
    ratios=(8, 5, 4, 2),  # hop 320: 50 token frames per second
    lstm=2,
    n_q=4,
    bins=1024,
    causal=False,  # whole clips are coded at once: no need to stream, so look both ways
)
CODEC_STREAM = 1  # the world's scene stream the codec learns from
MEL_SCALES = (128, 256, 512, 1024, 2048)  # n_fft of each log-mel loss term
# Added to mel magnitudes (a full-scale sine is ~0.5) before the log. Most of the world is exact
# digital silence, and with a small offset (1e-3) any output there costs more than silence
# everywhere (measured on a batch: silence 0.134, input + 1% noise 0.149, input at 10% 0.096),
# so training sank into silence. At 1e-2 silence costs 0.041 and the noisy input 0.020.
LOG_OFFSET = 1e-2


@dataclass(frozen=True)
class CodecTrainOptions:
    steps: int = 8000
    batch_size: int = 64
    crop_seconds: float = 0.5
    lr: float = 1e-3
    warmup_steps: int = 400  # plain autoencoder steps before the codebooks are initialised
    init_seconds: float = 64.0  # audio whose embeddings k-means initialises the codebooks
    # Re-seed a code used less than this (EMA count per batch). A batch holds 64 x 25 vectors
    # for 1024 codes, 1.6 per code on average.
    dead_code_usage: float = 0.5
    waveform_weight: float = 0.1  # of the waveform L1 against the spectral loss
    seed: int = 0


class WorldAudio(torch.utils.data.IterableDataset):
    """Endless batches of crops of the world's soundtracks, mostly around a sound's onset.

    Rendering is CPU work (~1.4 ms a scene): loader workers each render their own share of
    scenes (worker w takes scenes w, w + W, ...), so a GPU is not left waiting. The batches are
    fixed by the seed and the number of workers (`loader_workers`: the machine's spare cores).
    """

    def __init__(self, seed: int, crop_seconds: float, batch_size: int, stream: int = 0) -> None:
        self.seed, self.batch_size, self.stream = seed, batch_size, stream
        self.samples = round(crop_seconds * SYNTH_SAMPLE_RATE)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed, self.stream, worker])
        index = self.stream * 10_000_000 + worker  # streams never share a scene
        while True:
            crops = np.zeros((self.batch_size, 1, self.samples), dtype=np.float32)
            for row in range(self.batch_size):
                scene = sample_scene(self.seed, index, 2.0, 4.0, stream=CODEC_STREAM)
                index += workers
                crops[row, 0] = self._crop(rng, scene)
            yield torch.from_numpy(crops)

    def batch(self) -> torch.Tensor:
        """One batch, rendered here (for the init and probe batches)."""
        return next(iter(self))

    def _crop(self, rng: np.random.Generator, scene: Scene) -> np.ndarray:
        audio = render_audio(scene)
        near = rng.random() < 0.9 and scene.events
        centre = rng.choice(scene.events) if near else rng.uniform(0, scene.duration)
        lead = rng.uniform(0.1, 0.6) * self.samples  # the onset lands 10-60% in
        start = int(max(0, centre * SYNTH_SAMPLE_RATE - lead))
        crop = np.zeros(self.samples, dtype=np.float32)
        piece = audio[start : start + self.samples]
        crop[: len(piece)] = piece
        return crop


def loader_workers() -> int:
    """Rendering processes beside the training one: all spare cores, at least one."""
    return max(1, min(12, (os.cpu_count() or 2) - 2))


def unit_variance_init(model: torch.nn.Module, wav: torch.Tensor) -> None:
    """Rescale each convolution, in forward order, so that its output on `wav` has unit spread
    (the decoder's last one: `wav`'s spread).

    PyTorch's default init shrinks the signal at every layer: untrained, this codec's output was
    0.004 of its input's spread and the encoder's gradients ~1e-7, and it learnt nothing in
    hundreds of steps (output silence). Scaling the weight-norm gains fixes the start.
    """
    from encodec.modules.conv import NormConv1d, NormConvTranspose1d

    convs = [m for m in model.modules() if isinstance(m, NormConv1d | NormConvTranspose1d)]
    for i, module in enumerate(convs):
        seen: list[torch.Tensor] = []
        hook = module.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.std()))
        with torch.no_grad():
            model.decoder(model.encoder(wav))
        hook.remove()
        target = wav.std() if i == len(convs) - 1 else 1.0
        layer = getattr(module, "conv", None) or module.convtr
        gain = layer.weight_g if hasattr(layer, "weight_g") else layer.weight
        with torch.no_grad():
            gain.mul_(target / seen[0].clamp_min(1e-8))


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
        total = total + ((f + LOG_OFFSET).log10() - (r + LOG_OFFSET).log10()).abs().mean()
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
    device: str = "cpu",
) -> None:
    """Train a codec with `config` for `opts.steps` steps and save it as a codec folder
    (every 1000 steps and at the end)."""
    torch.manual_seed(opts.seed)
    torch.backends.cuda.matmul.allow_tf32 = True  # the LSTM's products; convolutions already
    torch.backends.cudnn.benchmark = True  # every batch has the same shape
    model = build_model(config).to(device)
    init_crops = max(opts.batch_size, round(opts.init_seconds / opts.crop_seconds))
    side = WorldAudio(opts.seed, opts.crop_seconds, init_crops, stream=1)  # init and probe
    start_batch = side.batch().to(device)
    unit_variance_init(model, start_batch[: opts.batch_size])
    probe = start_batch[: opts.batch_size]
    optimiser = torch.optim.Adam(model.parameters(), lr=opts.lr, betas=(0.5, 0.9))
    data = WorldAudio(opts.seed, opts.crop_seconds, opts.batch_size)
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, num_workers=loader_workers(), prefetch_factor=4
    )
    batches = iter(loader)
    started = time.monotonic()
    for step in range(1, opts.steps + 1):
        if step == opts.warmup_steps + 1:
            frames = opts.batch_size * math.ceil(data.samples / config.hop_length)
            init_codebooks(model, side.batch().to(device), opts.dead_code_usage, frames)
        # Cosine decay to a tenth of the rate.
        for group in optimiser.param_groups:
            group["lr"] = opts.lr * (0.55 + 0.45 * math.cos(math.pi * step / opts.steps))
        wav = next(batches).to(device, non_blocking=True)
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
