"""Synthetic test videos made with ffmpeg's built-in sources: for tests, the demo and benchmarks.

Nothing is downloaded: every clip is generated from `testsrc2` (moving colour pattern) and
`sine` (a tone), in the container, codec, rate, size and rotation asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vabcli.core.errors import MediaError
from vabcli.media import ffmpeg

# Encoders per container that every common ffmpeg build has (static builds and Debian's alike).
_CODECS = {
    ".mp4": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".m4v": ("libx264", "aac"),
    ".webm": ("libvpx-vp9", "libopus"),
    ".avi": ("mpeg4", "libmp3lame"),
}
_FAST = {
    "libx264": ["-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "libvpx-vp9": ["-deadline", "realtime", "-cpu-used", "8"],
    "mpeg4": ["-q:v", "5"],
}


@dataclass(frozen=True)
class ClipSpec:
    """A synthetic clip. `fps` is an ffmpeg rate string ("25", "24000/1001")."""

    duration: float = 2.0
    fps: str = "25"
    width: int = 160
    height: int = 120
    audio: bool = True
    sample_rate: int = 44100
    tone_hz: float = 440.0
    rotation: int = 0  # display rotation metadata, degrees
    variable_frame_rate: bool = False  # first second at `fps`, then a third of it
    video_source: str | None = None  # a lavfi graph replacing the test pattern (size/fps unused)


def make_clip(path: Path | str, spec: ClipSpec = ClipSpec()) -> Path:
    """Write the clip to `path` (container from the suffix) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video_codec, audio_codec = _CODECS.get(path.suffix.lower(), _CODECS[".mkv"])
    source = spec.video_source or f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}"
    args = ["-f", "lavfi", "-i", source]
    if spec.audio:
        args += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={spec.tone_hz}:sample_rate={spec.sample_rate}",
        ]
    args += ["-t", f"{spec.duration}"]
    if spec.variable_frame_rate:
        args += ["-vf", "select='lt(t\\,1)+not(mod(n\\,3))'", "-fps_mode", "vfr"]
    args += ["-c:v", video_codec, *_FAST.get(video_codec, [])]
    if spec.audio:
        args += ["-c:a", audio_codec, "-ac", "1"]
    target = path.with_name(f".unrotated-{path.name}") if spec.rotation else path
    ffmpeg.run_checked([*args, "-y", str(target)], target)
    if spec.rotation:
        _set_rotation(target, path, spec.rotation)
        target.unlink()
    return path


def _set_rotation(source: Path, dest: Path, degrees: int) -> None:
    """Copy `source` to `dest` with display-rotation metadata (as phones store portrait video)."""
    # ffmpeg >= 7 sets the display matrix with an input option; older builds read a `rotate` tag.
    copy = ["-i", str(source), "-c", "copy"]
    modern = ffmpeg.run(["-display_rotation:v:0", str(degrees), *copy, "-y", str(dest)])
    if modern.returncode != 0:
        ffmpeg.run_checked([*copy, "-metadata:s:v:0", f"rotate={degrees}", "-y", str(dest)], dest)
    if not dest.exists():
        raise MediaError(f"{dest}: could not write rotated clip")


def write_tone(
    path: Path | str, duration: float, sample_rate: int = 24_000, tone_hz: float = 660.0
) -> Path:
    """A plain tone as an audio file (format from the suffix): stand-in for generated audio."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = f"sine=frequency={tone_hz}:sample_rate={sample_rate}"
    args = ["-f", "lavfi", "-i", tone, "-t", f"{duration}", "-ac", "1", "-y", str(path)]
    ffmpeg.run_checked(args, path)
    return path
