"""Decoding a video's frames and audio with one ffmpeg process, straight to files.

Frames stream from ffmpeg's stdout into a `.npy` file a chunk at a time, so memory stays bounded by
the chunk size whatever the video's length; audio goes to a raw file written by the same ffmpeg
process (one demux for both), then is cut or padded to the exact sample count.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vabcli.config import ExtractOptions
from vabcli.core import cancel
from vabcli.core.errors import MediaError
from vabcli.media import ffmpeg
from vabcli.media.probe import FIRST_VIDEO, VideoInfo

FRAMES_PER_CHUNK = 32
ProgressFn = Callable[[int, int], None]  # (frames done, frames total)


@dataclass(frozen=True)
class Decoded:
    n_frames: int
    n_decoded_frames: int  # before padding/trimming to n_frames
    n_samples: int | None  # None when the video has no audio stream


def video_filter(opts: ExtractOptions) -> str:
    """Resample to the visual rate, cover the target box, centre-crop; square pixels out.

    Frame k must show the picture on screen at time k / fps, the time the audio is aligned to.
    The fps filter emits the last source frame of each output slot; with the default rounding
    the slot of k is [k - 1/2, k + 1/2) / fps, so frame k showed the picture half a frame
    *later* (62 ms at 8 fps). `round=up` makes the slot (k - 1, k] / fps: the latest source frame
    at or before k / fps.
    """
    rate = Fraction(opts.fps).limit_denominator(1001)
    w, h = opts.width, opts.height
    return (
        f"fps={rate.numerator}/{rate.denominator}:round=up,"
        f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"
    )


def audio_filter(video_start: float = 0.0) -> str:
    """Audio on the video's clock: async resampling puts the first sample at the file's time
    zero (padding a late track, filling gaps), then whatever precedes the first video frame is
    cut, so sample 0 plays with frame 0."""
    trim = f",atrim=start={video_start:.6f}" if video_start > 0 else ""
    return f"aresample=async=1:first_pts=0{trim}"


def decode_to_files(
    info: VideoInfo,
    opts: ExtractOptions,
    frames_path: Path,
    audio_path: Path | None,
    on_progress: ProgressFn | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> Decoded:
    """Write frames `[n_frames, H, W, 3] uint8` and (if any) audio `[n_samples] float32` as .npy.

    Decodes `duration` seconds from `start` (default: the whole video). n_frames =
    round(duration * fps) and n_samples = round(duration * sample_rate) exactly: missing frames
    repeat the last one, missing samples are silence, extra ones are dropped.
    """
    duration = info.duration - start if duration is None else duration
    n_frames = opts.n_frames(duration)
    want_audio = info.has_audio and audio_path is not None
    raw_audio = audio_path.with_suffix(".f32") if want_audio else None
    segment, offset = _part(info, start, duration)
    # fmt: off
    args = [*segment, "-i", str(info.path),
            "-map", FIRST_VIDEO, "-vf", video_filter(opts), "-fps_mode", "passthrough",
            "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]
    if raw_audio is not None:
        args += ["-map", "0:a:0", "-af", audio_filter(offset), "-ac", "1",
                 "-ar", str(opts.sample_rate),
                 "-c:a", "pcm_f32le", "-f", "f32le", "-y", str(raw_audio)]
    # fmt: on
    # stderr goes to a file, not a pipe: a chatty ffmpeg can never block on a full pipe.
    with tempfile.TemporaryFile() as stderr_file:
        proc = ffmpeg.spawn(args, stdout=subprocess.PIPE, stderr=stderr_file)
        try:
            decoded = _stream_frames(proc, frames_path, n_frames, opts, on_progress)
            proc.wait()
        finally:
            ffmpeg.release(proc)
        cancel.check()
        if proc.returncode != 0 or decoded == 0:
            stderr_file.seek(0)
            message = ffmpeg.last_error_line(stderr_file.read().decode("utf-8", errors="replace"))
            raise MediaError(f"{info.path}: decoding failed ({message})")
    n_samples = None
    if raw_audio is not None:
        n_samples = opts.n_samples(duration)
        _raw_to_npy(raw_audio, audio_path, n_samples)
    return Decoded(n_frames=n_frames, n_decoded_frames=decoded, n_samples=n_samples)


def _part(info: VideoInfo, start: float, duration: float) -> tuple[list[str], float]:
    """(input options that select `duration` s from `start`, audio offset still to remove).

    Input options seek before decoding (accurate: ffmpeg decodes from the previous keyframe).
    After an input seek both streams start at the seek point: no offset is left to remove;
    for the whole video, the audio is cut to the first video frame's time."""
    if start > 0 or duration < info.duration:
        return ["-ss", f"{start:.6f}", "-t", f"{duration:.6f}"], 0.0
    return [], info.start


def _stream_frames(
    proc: subprocess.Popen,
    frames_path: Path,
    n_frames: int,
    opts: ExtractOptions,
    on_progress: ProgressFn | None,
) -> int:
    """Copy exactly n_frames frames from ffmpeg's stdout into a .npy; returns frames decoded."""
    frame_bytes = opts.width * opts.height * 3
    chunk = bytearray(frame_bytes * FRAMES_PER_CHUNK)
    view = memoryview(chunk)
    written = decoded = 0
    last_frame = b""
    with open(frames_path, "wb") as out:
        _write_npy_header(out, np.dtype(np.uint8), (n_frames, opts.height, opts.width, 3))
        while True:
            got = _read_full(proc.stdout, view)
            whole = got // frame_bytes
            if whole == 0:
                break
            decoded += whole
            keep = min(whole, n_frames - written)
            if keep > 0:
                out.write(view[: keep * frame_bytes])
                written += keep
                last_frame = bytes(view[(keep - 1) * frame_bytes : keep * frame_bytes])
                if on_progress:
                    on_progress(written, n_frames)
            # Frames past n_frames are read and dropped: ffmpeg must run to the end for the audio.
        cancel.check()  # a killed ffmpeg also ends the stream early: do not pad then
        if 0 < written < n_frames:
            for _ in range(n_frames - written):  # one frame at a time: memory stays bounded
                out.write(last_frame)
            if on_progress:
                on_progress(n_frames, n_frames)
    return decoded


def _read_full(stream, view: memoryview) -> int:
    """Fill `view` from `stream` unless it ends first; returns the bytes read."""
    total = 0
    while total < len(view):
        got = stream.readinto(view[total:])
        if not got:
            break
        total += got
    return total


def _raw_to_npy(raw: Path, npy: Path, n_samples: int) -> None:
    """Wrap raw float32 samples as a .npy of exactly n_samples, copying in bounded chunks."""
    sample_bytes = 4
    available = raw.stat().st_size // sample_bytes if raw.exists() else 0
    keep = min(available, n_samples)
    with open(npy, "wb") as out:
        _write_npy_header(out, np.dtype("<f4"), (n_samples,))
        if keep:
            with open(raw, "rb") as src:
                remaining = keep * sample_bytes
                while remaining:
                    block = src.read(min(remaining, 1 << 20))
                    out.write(block)
                    remaining -= len(block)
        # The rest is silence: float32 0.0 is all-zero bytes.
        _write_zeros(out, (n_samples - keep) * sample_bytes)
    raw.unlink(missing_ok=True)


def _write_zeros(out, n_bytes: int, block: int = 1 << 20) -> None:
    zeros = bytes(min(n_bytes, block))
    while n_bytes > 0:
        n_bytes -= out.write(zeros[: min(n_bytes, block)])


def _write_npy_header(out, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """The .npy header for an array whose data will be streamed after it."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)


def decode_audio(
    info: VideoInfo, sample_rate: int, start: float = 0.0, duration: float | None = None
) -> np.ndarray:
    """A video's own audio, mono `[round(duration * sample_rate)] float32`, on the same clock as
    `decode_to_files` gives it (sample 0 plays with the first frame of the part)."""
    if not info.has_audio:
        raise MediaError(f"{info.path}: no audio stream")
    duration = info.duration - start if duration is None else duration
    segment, offset = _part(info, start, duration)
    # fmt: off
    done = ffmpeg.run_checked(
        [*segment, "-i", str(info.path), "-map", "0:a:0", "-af", audio_filter(offset),
         "-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"],
        info.path,
    )
    # fmt: on
    samples = np.frombuffer(done.stdout, dtype="<f4")
    wanted = round(duration * sample_rate)
    out = np.zeros(wanted, dtype=np.float32)
    out[: min(wanted, len(samples))] = samples[:wanted]
    return out


def decode_audio_file(path: Path, sample_rate: int) -> np.ndarray:
    """The first audio stream of any file ffmpeg reads (WAV, FLAC, MP4...), mono float32 at
    `sample_rate`, all of it: no alignment to video, for files that are audio already."""
    # fmt: off
    done = ffmpeg.run_checked(
        ["-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate),
         "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"],
        path,
    )
    # fmt: on
    return np.frombuffer(done.stdout, dtype="<f4").copy()
