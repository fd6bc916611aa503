"""From a token grid to an audio file exactly as long as the video.

The codec synthesizes in chunks with a little left context (dropped), so memory stays bounded for a
10-minute clip and chunk seams see the same receptive field as the inside of a chunk. Samples go
straight into the file (or, for a caller that wants them in memory, into one array): `n_samples`
of them, the last chunk cut, silence added if the tokens fall short. With a `Splice`
(fill-gaps), the generated sound replaces the video's own only where asked,
cross-faded over one token frame at each edge. A write the system refused (a full disk) is
raised as the OSError it was, not as libsndfile's bare "System error".
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from vabcli.core.atomic import Check
from vabcli.encoders.audio_codec import AudioCodec

SYNTHESIS_CHUNK_SECONDS = 30.0
SYNTHESIS_CONTEXT_SECONDS = 1.0
AUDIO_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}


@dataclass(frozen=True)
class Splice:
    """Fill-gaps: the video's own audio `original` `[n_samples]` float, kept except in the token
    frames `regenerate` `[T]` bool marks."""

    original: np.ndarray
    regenerate: np.ndarray

    def mix(self, generated: np.ndarray, start: int, hop: int) -> np.ndarray:
        """Generated samples `[start, start + n)` mixed into the original, weighted per sample
        by the regenerate mask interpolated between token-frame centres (a one-frame
        cross-fade)."""
        idx = np.arange(start, start + len(generated))
        centres = (np.arange(len(self.regenerate)) + 0.5) * hop
        weight = np.interp(idx, centres, self.regenerate.astype(np.float32)).astype(np.float32)
        base = np.zeros(len(generated), dtype=np.float32)
        inside = idx < len(self.original)
        base[inside] = self.original[idx[inside]]
        return base + weight * (generated - base)


@dataclass(frozen=True)
class AudioOutput:
    """What an audio output holds: `codes` `[K, T]` synthesized, exactly `n_samples` mono
    samples at the codec's rate, spliced into the video's own audio when `splice` is given."""

    codes: torch.Tensor
    n_samples: int
    splice: Splice | None = None


def write_tokens_as_audio(
    codec: AudioCodec, audio: AudioOutput, path: Path, audio_format: str = "wav"
) -> None:
    """Synthesize `audio` and write it to `path` as `audio_format` (wav or flac)."""
    fmt, subtype = AUDIO_FORMATS[audio_format]
    try:
        with soundfile.SoundFile(
            str(path), "w", samplerate=codec.sample_rate, channels=1, format=fmt, subtype=subtype
        ) as out:
            for chunk in output_samples(codec, audio):
                out.write(chunk)
    except soundfile.LibsndfileError as exc:
        raise _system_error(exc, path) from exc


def synthesize_waveform(codec: AudioCodec, audio: AudioOutput) -> np.ndarray:
    """The samples `[n_samples]` float32 that `write_tokens_as_audio` writes, in memory (before
    the file's 16-bit quantisation)."""
    return np.concatenate([_silence(0), *output_samples(codec, audio)])


def output_samples(codec: AudioCodec, audio: AudioOutput) -> Iterator[np.ndarray]:
    """Yield, chunk by chunk, the samples of `audio`: synthesized, cut to length or padded with
    silence, spliced into the original (fill-gaps)."""
    n_samples, splice, hop = audio.n_samples, audio.splice, codec.hop_length
    written = 0
    for start, chunk in synthesized_chunks(codec, audio.codes):
        chunk = chunk[: max(0, n_samples - start)]
        if splice is not None:
            chunk = splice.mix(chunk, start, hop)
        # Clip explicitly: integer PCM conversion of out-of-range floats is not
        # guaranteed to saturate.
        yield np.clip(chunk, -1.0, 1.0)
        written += len(chunk)
    if written < n_samples:
        tail = _silence(n_samples - written)
        yield tail if splice is None else splice.mix(tail, written, hop)


def _silence(n_samples: int) -> np.ndarray:
    return np.zeros(n_samples, dtype=np.float32)


_SFE_SYSTEM = 2  # libsndfile's code for "the system refused": the reason is in errno


def _system_error(exc: soundfile.LibsndfileError, path: Path) -> Exception:
    if exc.code != _SFE_SYSTEM:
        return exc
    # soundfile drops the errno; cffi keeps the last one per thread (private, hence getattr).
    ffi = getattr(soundfile, "_ffi", None)
    code = getattr(ffi, "errno", 0) or errno.EIO
    return OSError(code, os.strerror(code), str(path))


def samples_short(n_samples: int) -> Check:
    """A check for `atomic.output_group`: why an audio file does not hold `n_samples`, or None."""

    def check(path: Path) -> str | None:
        try:
            frames = soundfile.info(str(path)).frames
        except soundfile.LibsndfileError as exc:
            return str(exc)
        return None if frames == n_samples else f"{frames} of {n_samples} samples"

    return check


def synthesized_chunks(codec: AudioCodec, codes: torch.Tensor):
    """Yield (first sample index, samples `[n] float32`) covering `codes` `[K, T]` in order."""
    chunk = max(1, round(SYNTHESIS_CHUNK_SECONDS * codec.frame_rate))
    context = round(SYNTHESIS_CONTEXT_SECONDS * codec.frame_rate)
    hop, total = codec.hop_length, codes.shape[1]
    for start in range(0, total, chunk):
        first = max(0, start - context)
        with torch.inference_mode():
            wav = codec.synthesize(codes[None, :, first : start + chunk])[0, 0]
        yield start * hop, wav[(start - first) * hop :].float().cpu().numpy()
