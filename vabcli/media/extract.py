"""`vab extract`: frames at the visual rate and audio at the codec rate, into the cache."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vabcli.config import ExtractOptions
from vabcli.core.cache import Cache, make_key
from vabcli.core.errors import MediaError
from vabcli.media.decode import ProgressFn, decode_to_files
from vabcli.media.probe import probe

STAGE = "extract"
FRAMES_FILE = "frames.npy"
AUDIO_FILE = "audio.npy"


@dataclass(frozen=True)
class Segment:
    """A part of a video, in seconds; `end` None means to the end of the video."""

    start: float = 0.0
    end: float | None = None


WHOLE = Segment()


@dataclass(frozen=True)
class ExtractResult:
    """One extracted clip: where its arrays live in the cache and the figures that describe them."""

    input: Path
    entry: Path
    cache_key: str
    cache_hit: bool
    duration: float
    fps: float
    n_frames: int
    has_audio: bool
    sample_rate: int
    n_samples: int | None
    source: dict[str, Any]

    def frames(self) -> np.ndarray:
        """`[n_frames, H, W, 3] uint8`, memory-mapped: pages load as they are touched."""
        return np.load(self.entry / FRAMES_FILE, mmap_mode="r")

    def frame_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """`[<= rows, H, W, 3] uint8` arrays in order, read with plain reads: unlike pages of a
        memory map, which stay in the process's resident memory once touched (722 MiB for ten
        minutes at 8 fps and 224 px), memory stays at one chunk whatever the clip's length."""
        with open(self.entry / FRAMES_FILE, "rb") as f:
            fmt = np.lib.format
            major, _ = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)
            per_row = int(np.prod(shape[1:]))
            for start in range(0, shape[0], rows):
                n = min(rows, shape[0] - start)
                yield np.fromfile(f, dtype=dtype, count=n * per_row).reshape(n, *shape[1:])

    def audio(self) -> np.ndarray | None:
        """`[n_samples] float32` mono, or None when the video has no audio stream."""
        return np.load(self.entry / AUDIO_FILE) if self.has_audio else None

    def figures(self) -> dict[str, Any]:
        """The JSON-ready numbers reported per clip."""
        return {
            "duration": round(self.duration, 6),
            "fps": self.fps,
            "n_frames": self.n_frames,
            "has_audio": self.has_audio,
            "sample_rate": self.sample_rate,
            "n_samples": self.n_samples,
            "cache_key": self.cache_key,
            "cache_hit": self.cache_hit,
            **{f"source_{k}": v for k, v in self.source.items()},
        }


def extract_key(path: Path, opts: ExtractOptions, cache: Cache, segment: Segment = WHOLE) -> str:
    params = asdict(opts)
    if segment != WHOLE:  # whole-video keys stay as they were before segments existed
        params["segment"] = asdict(segment)
    return make_key(STAGE, cache.content_digest(path), params)


def extract_clip(
    path: Path | str,
    opts: ExtractOptions,
    cache: Cache,
    on_progress: ProgressFn | None = None,
    segment: Segment = WHOLE,
) -> ExtractResult:
    """Decode one video (or a segment of it) into the cache, or return the cached entry
    without decoding anything."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    key = extract_key(path, opts, cache, segment)
    meta = cache.lookup(STAGE, key)
    hit = meta is not None
    if meta is None:
        meta = _decode_into_cache(path, opts, cache, key, on_progress, segment)
    return ExtractResult(
        input=path,
        entry=cache.entry_dir(STAGE, key),
        cache_key=key,
        cache_hit=hit,
        duration=meta["duration"],
        fps=opts.fps,
        n_frames=meta["n_frames"],
        has_audio=meta["has_audio"],
        sample_rate=opts.sample_rate,
        n_samples=meta["n_samples"],
        source=meta["source"],
    )


def _segment_duration(path: Path, video_duration: float, segment: Segment) -> float:
    end = video_duration if segment.end is None else min(segment.end, video_duration)
    if end - segment.start <= 0:
        raise MediaError(
            f"{path}: segment starts at {segment.start:g} s but the video is "
            f"{video_duration:.3f} s long"
        )
    return end - segment.start


def _decode_into_cache(
    path: Path,
    opts: ExtractOptions,
    cache: Cache,
    key: str,
    on_progress: ProgressFn | None,
    segment: Segment,
) -> dict[str, Any]:
    info = probe(path)
    duration = _segment_duration(path, info.duration, segment)
    width, height = info.display_size
    meta: dict[str, Any] = {
        "options": asdict(opts),
        "segment": asdict(segment),
        "duration": duration,
        "has_audio": info.has_audio,
        "source": {
            "fps": info.fps,
            "width": width,
            "height": height,
            "rotation": info.rotation,
            "video_codec": info.video_codec,
            "audio_codec": info.audio_codec,
            "container": info.container,
            "n_video_frames": info.n_video_packets,
        },
    }
    with cache.writing(STAGE, key, meta) as tmp:
        audio_path = tmp / AUDIO_FILE if info.has_audio else None
        decoded = decode_to_files(
            info, opts, tmp / FRAMES_FILE, audio_path, on_progress, segment.start, duration
        )
        meta.update(
            n_frames=decoded.n_frames,
            n_samples=decoded.n_samples,
            n_decoded_frames=decoded.n_decoded_frames,
        )
    return meta
