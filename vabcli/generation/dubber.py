"""One clip through `vab generate`: prepare (features + token grid), sample, finish (audio file,
muxed video, sidecar JSON). `Dubber` holds what every clip shares: the model, its encoders, the
window plan and the sampler; `pipeline.py` runs many clips through it at once, and the Python
API dubs one clip in memory (`dub_in_memory`: the same samples, no file written).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vabcli import __version__
from vabcli.config import DubOptions
from vabcli.core.atomic import output_group
from vabcli.core.cache import Cache
from vabcli.core.device import resolve_device
from vabcli.core.errors import InputError, MediaError, OutputExistsError
from vabcli.data.clips import ClipItem
from vabcli.encoders.tokenize import ClipTokenizer, latent_files, options_from_spec
from vabcli.generation.audio_file import (
    AudioOutput,
    Splice,
    samples_short,
    synthesize_waveform,
    write_tokens_as_audio,
)
from vabcli.generation.outputs import DubTarget, OutputLock
from vabcli.generation.prompts import fill_gaps, keep_prompt, silent_frames, token_grid
from vabcli.generation.windowed import ClipTokens, WindowSampler, clip_seed
from vabcli.generation.windows import WindowPlan
from vabcli.media.decode import decode_audio
from vabcli.media.extract import WHOLE
from vabcli.media.mux import MuxOptions, incomplete_media, mux_into
from vabcli.media.probe import probe
from vabcli.model.checkpoint import (
    WEIGHTS_FILE,
    check_encoders,
    load_model,
    read_meta,
    resolve_checkpoint,
)

# The options that choose what a Dubber loads (the rest choose how each clip is dubbed).
_LOADED = ("model", "device", "codec", "codec_weights", "bandwidth", "image_encoder")


@dataclass
class ClipJob:
    item: ClipItem
    duration: float
    features: np.ndarray  # [T_v, D]
    grid: np.ndarray  # [K, T_a], mask id where audio is to be generated
    seed: int
    timings: dict[str, float]
    splice: Splice | None = None  # fill-gaps: the clip's own audio, kept outside the gaps
    tokens: ClipTokens | None = None
    target: DubTarget | None = None  # where `finish` writes; None for a clip dubbed in memory
    lock: OutputLock | None = None  # held on the target's outputs while the clip is worked on

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


class Dubber:
    """Loads the checkpoint and the encoders it was trained with; fails fast if they are missing."""

    def __init__(self, opts: DubOptions, cache: Cache) -> None:
        self.opts, self.cache = opts, cache
        self.checkpoint = resolve_checkpoint(opts.model)
        meta = read_meta(self.checkpoint)  # a foreign file fails before any encoder loads
        self.tok_opts = options_from_spec(
            meta.encoders,
            codec=opts.codec,
            codec_weights=opts.codec_weights,
            bandwidth=opts.bandwidth,
            image_encoder=opts.image_encoder,
            device=opts.device,
        )
        self.tokenizer = ClipTokenizer(self.tok_opts, cache)
        self.tokenizer.load_codec()  # every clip needs its decoder, even with features cached
        check_encoders(meta, self.tokenizer.codec_id, self.tokenizer.visual_id, self.checkpoint)
        device = resolve_device(opts.device)
        self.model, _ = load_model(self.checkpoint, device)
        self.trained_window = meta.window_seconds
        self.codec = self.tokenizer.codec
        self.model_id = {
            "path": str(self.checkpoint.resolve()),
            "step": meta.step,
            "weights_sha256": cache.content_digest(self.checkpoint / WEIGHTS_FILE)[:16],
        }
        self._configure(opts)

    def _configure(self, opts: DubOptions) -> None:
        """What a run chooses beyond the model and encoders: the window plan and the sampler."""
        self.opts, cfg = opts, self.model.cfg
        window = opts.window_seconds or self.trained_window
        context = min(opts.context_seconds, window / 2)  # at least half of each window is new
        lookahead = min(opts.lookahead_seconds, (window - context) / 2)
        rates = (cfg.visual_fps, cfg.audio_frame_rate)
        try:
            self.plan = WindowPlan(window, context, *rates, lookahead)
        except ValueError:
            # A short --window with no room for a lookahead beside its context works without one.
            try:
                self.plan = WindowPlan(window, context, *rates)
            except ValueError as exc:  # a window too short for the model's frame rate
                raise InputError(str(exc)) from None
        levels = opts.sampling.level_steps
        if levels is not None and len(levels) != cfg.n_codebooks:
            raise InputError(
                f"--level-steps gives {len(levels)} levels; the model has {cfg.n_codebooks} "
                "codebooks"
            )
        self.sampler = WindowSampler(self.model, opts.sampling, opts.sampler)

    def with_options(self, opts: DubOptions) -> Dubber:
        """This dubber with other sampling, window and prompt options, sharing its model and
        encoders (so `opts` must choose the same ones; close only the original)."""
        if any(getattr(opts, name) != getattr(self.opts, name) for name in _LOADED):
            raise ValueError(f"with_options keeps the model and encoders ({', '.join(_LOADED)})")
        twin = copy.copy(self)
        twin._configure(opts)
        return twin

    def close(self) -> None:
        self.tokenizer.__exit__(None, None, None)

    def prepare(self, target: DubTarget) -> ClipJob:
        lock = OutputLock(target.sidecar)
        lock.acquire()
        try:
            if not self.opts.overwrite and target.complete():  # another run just finished it
                raise OutputExistsError("done")
            job = self.prepare_clip(target.item)
            job.target, job.lock = target, lock
            return job
        except BaseException:
            lock.release()
            raise

    def prepare_clip(self, item: ClipItem) -> ClipJob:
        """A clip's visual features, token grid and seed (tokenized into the cache if not there);
        no output is locked or written."""
        opts, cfg = self.opts, self.model.cfg
        figures = self.tokenizer.tokenize(item.path, item.segment, with_audio=opts.needs_own_audio)
        features_file, codes_file = latent_files(self.cache, figures)
        duration = figures["duration"]
        n_audio = max(1, math.ceil(duration * cfg.audio_frame_rate - 1e-9))
        grid = token_grid(cfg.n_codebooks, n_audio, cfg.mask_id)
        seed = clip_seed(opts.seed, self._clip_key(item))
        job = ClipJob(item, duration, np.load(features_file), grid, seed, dict(figures["timings"]))
        if opts.needs_own_audio:
            if codes_file is None:
                raise MediaError(f"{item.path}: no audio to keep or fill (it has no audio stream)")
            own = np.load(codes_file).astype(np.int64)
            if opts.keep_audio > 0:
                job.grid = keep_prompt(job.grid, own, round(opts.keep_audio * cfg.audio_frame_rate))
            if opts.fill_gaps:
                self._mark_gaps(job, own)
        return job

    def _mark_gaps(self, job: ClipJob, own: np.ndarray) -> None:
        item, opts, hop = job.item, self.opts, self.codec.hop_length
        wav = decode_audio(
            probe(item.path), self.codec.sample_rate, item.segment.start, job.duration
        )
        min_frames = max(1, round(opts.min_gap_seconds * self.codec.frame_rate))
        gaps = silent_frames(wav, hop, job.grid.shape[1], opts.gap_threshold_db, min_frames)
        regenerate = gaps & (job.grid == self.model.cfg.mask_id).all(axis=0)  # not a kept prompt
        job.grid = fill_gaps(job.grid, own, regenerate)
        job.splice = Splice(wav, regenerate)

    def _clip_key(self, item: ClipItem) -> str:
        segment = item.segment
        part = "" if segment == WHOLE else f"@{segment.start}-{segment.end}"
        return self.cache.content_digest(item.path) + part

    def start_sampling(self, job: ClipJob) -> ClipJob:
        features, grid = torch.from_numpy(job.features), torch.from_numpy(job.grid)
        job.tokens = self.sampler.new_clip(features, grid, self.plan, job.seed)
        return job

    def sample(self, jobs: list[ClipJob]) -> None:
        self.sampler.advance([job.tokens for job in jobs])

    def dub_in_memory(self, item: ClipItem) -> tuple[ClipJob, np.ndarray]:
        """One clip alone from video to audio `[n_samples]` float32, written nowhere (the cache
        aside): the samples `finish` would write for it in a batch of its own."""
        job = self.start_sampling(self.prepare_clip(item))
        while not job.tokens.finished:
            self.sample([job])
        return job, self.synthesize(job)

    def synthesize(self, job: ClipJob) -> np.ndarray:
        """A sampled clip's audio `[n_samples]` float32 at the codec's rate, in memory: the
        samples `finish` writes (before the file's 16-bit quantisation)."""
        return synthesize_waveform(self.codec, self._sampled(job))

    def _sampled(self, job: ClipJob) -> AudioOutput:
        """A sampled clip's audio output: its codes `[K, T_a]` on the CPU, exactly as long as
        the clip."""
        codes = job.tokens.codes.cpu()
        assert not (codes == self.model.cfg.mask_id).any(), "a token was left masked"
        return AudioOutput(codes, round(job.duration * self.codec.sample_rate), job.splice)

    def finish(self, job: ClipJob) -> dict[str, Any]:
        """Write the audio, the muxed video and then the sidecar (which marks the clip done).

        The three are renamed into place together once all are written and whole; if any
        fails, none of them stays (see `atomic.output_group`).
        """
        target, opts = job.target, self.opts
        audio = self._sampled(job)
        timings = {**job.timings, "sampling": job.tokens.seconds}
        with output_group(overwrite=True) as group:
            temps = {target.audio: group.add(target.audio, samples_short(audio.n_samples))}
            began = time.perf_counter()
            write_tokens_as_audio(self.codec, audio, temps[target.audio], opts.audio_format)
            timings["synthesis"] = time.perf_counter() - began
            if target.video is not None:
                temps[target.video] = group.add(target.video, incomplete_media)
                began = time.perf_counter()
                mux_into(
                    target.item.path,
                    temps[target.audio],
                    temps[target.video],
                    MuxOptions(reencode=opts.reencode),
                )
                timings["mux"] = time.perf_counter() - began
            figures = self._figures(job, audio.n_samples, timings)
            # Sizes let a later run tell a whole output from one damaged since (`complete`).
            figures["output_bytes"] = {f.name: tmp.stat().st_size for f, tmp in temps.items()}
            sidecar_tmp = group.add(target.sidecar)
            sidecar_tmp.write_text(json.dumps(self._sidecar(job, figures), indent=2) + "\n")
        return figures

    def _figures(self, job: ClipJob, n_samples: int, timings: dict[str, float]) -> dict[str, Any]:
        target = job.target
        outputs = {"audio": target.audio.name, "sidecar": target.sidecar.name}
        if target.video is not None:
            outputs["video"] = target.video.name
        return {
            "audio": str(target.audio),
            "video": str(target.video) if target.video else None,
            "duration": round(job.duration, 6),
            "sample_rate": self.codec.sample_rate,
            "n_samples": n_samples,
            "n_windows": len(job.tokens.spans),
            "seed": self.opts.seed,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "outputs": outputs,
        }

    def _sidecar(self, job: ClipJob, figures: dict[str, Any]) -> dict[str, Any]:
        opts, item = self.opts, job.item
        generated = int((job.grid == self.model.cfg.mask_id).all(axis=0).sum())
        return {
            "vab_version": __version__,
            "input": str(item.path.resolve()),
            "segment": None if item.segment == WHOLE else asdict(item.segment),
            "model": self.model_id,
            "codec_id": self.tokenizer.codec_id,
            "visual_id": self.tokenizer.visual_id,
            "device": str(self.sampler.device),
            "sampler": opts.sampler,
            "sampling": asdict(opts.sampling),
            "clip_seed": job.seed,
            "window_seconds": self.plan.seconds,
            "context_seconds": self.plan.context,
            "lookahead_seconds": self.plan.lookahead,
            "keep_audio_seconds": opts.keep_audio,
            "fill_gaps": opts.fill_gaps,
            "generated_token_frames": generated,
            **figures,
        }
