"""`vab mux`: put (generated) audio beside a video's untouched video stream.

The video stream is copied packet for packet unless `reencode` is asked for; the new audio is
encoded to AAC and padded or trimmed to the video stream's exact duration, so players and
editors see audio and video end together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import ffmpeg
from .atomic import atomic_output, check_writable
from .config import AUDIO_EXTENSIONS
from .errors import InputError, MediaError, VabError
from .inputs import videos_in
from .probe import FIRST_VIDEO, probe

# Containers that hold AAC audio next to the common video codecs.
OUTPUT_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv"})
_MP4_FAMILY = frozenset({".mp4", ".m4v", ".mov"})


@dataclass(frozen=True)
class MuxOptions:
    reencode: bool = False
    keep_original_audio: bool = False
    audio_bitrate: str = "192k"
    overwrite: bool = False


@dataclass(frozen=True)
class MuxJob:
    video: Path
    audio: Path | None
    output: Path
    problem: str | None = None  # why this item cannot run (reported as its error)


def mux(video: Path | str, audio: Path | str, output: Path | str, opts: MuxOptions) -> dict:
    """Write `output` with `video`'s video stream and `audio` as its (first) audio track.

    Returns the figures reported per item: output path and duration in seconds.
    """
    video, audio, output = Path(video), Path(audio), Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise VabError(f"{output}: output must end in one of {', '.join(sorted(OUTPUT_SUFFIXES))}")
    check_writable(output, opts.overwrite)
    if not audio.is_file():
        raise MediaError(f"{audio}: no such file")
    info = probe(video)
    with atomic_output(output, opts.overwrite) as tmp:
        if not info.has_audio:
            opts = replace(opts, keep_original_audio=False)
        done = ffmpeg.run(_mux_args(video, audio, tmp, info.start, info.duration, opts))
        if done.returncode != 0:
            raise MediaError(_explain_failure(done.stderr, video, audio, info.video_codec, output))
    return {"output": str(output), "duration": round(info.duration, 6)}


def _mux_args(
    video: Path, audio: Path, out: Path, start: float, duration: float, opts: MuxOptions
) -> list[str]:
    # The new audio begins with the first video frame (at `start` on the file's clock) and ends
    # with the last one: delayed by `start`, then padded or cut to `start + duration`.
    end = start + duration
    delay = f"adelay=delays={start * 1000:.3f}:all=1," if start > 0 else ""
    fit = f"aresample=async=1:first_pts=0,{delay}apad=whole_dur={end:.6f},atrim=end={end:.6f}"
    # fmt: off
    args = ["-i", str(video), "-i", str(audio), "-map", FIRST_VIDEO, "-map", "1:a:0"]
    if opts.keep_original_audio:
        args += ["-map", "0:a:0"]
    if opts.reencode:
        # passthrough keeps every source frame and its timestamp: same frame count as the input.
        args += ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p",
                 "-fps_mode", "passthrough"]
    else:
        args += ["-c:v", "copy"]
    args += ["-filter:a:0", fit, "-c:a", "aac", "-b:a", opts.audio_bitrate,
             "-disposition:a:0", "default", "-metadata:s:a:0", "title=vab"]
    # fmt: on
    if opts.keep_original_audio:
        args += ["-disposition:a:1", "0", "-metadata:s:a:1", "title=original"]
    if out.suffix.lower() in _MP4_FAMILY:
        args += ["-movflags", "+faststart"]  # index first: plays while downloading
    return [*args, "-map_metadata", "0", "-y", str(out)]


def _explain_failure(stderr: str, video: Path, audio: Path, codec: str, output: Path) -> str:
    if "matches no streams" in stderr:
        return f"{audio}: no audio stream"
    if "not currently supported in container" in stderr or "Could not find tag" in stderr:
        return (
            f"{video}: its {codec} video cannot be copied into {output.suffix}; "
            "use --reencode or an .mkv output"
        )
    return f"{video}: mux failed ({ffmpeg.last_error_line(stderr)})"


def plan_batch(
    video_dir: Path, audio_dir: Path, out_dir: Path, suffix: str = ".mp4"
) -> list[MuxJob]:
    """Pair every video under `video_dir` with the audio of the same relative stem in `audio_dir`.

    `clips/a/b.mov` pairs with `audio/a/b.wav` (any audio extension) and writes `out/a/b.mp4`.
    """
    videos = videos_in(video_dir)
    if not videos:
        raise InputError(f"{video_dir}: no video files in this folder")
    audio_by_stem: dict[Path, list[Path]] = {}
    for path in videos_in(audio_dir, AUDIO_EXTENSIONS):
        audio_by_stem.setdefault(path.relative_to(audio_dir).with_suffix(""), []).append(path)
    first_video_for: dict[Path, Path] = {}
    jobs = []
    for video in videos:
        stem = video.relative_to(video_dir).with_suffix("")
        output = out_dir / stem.parent / (stem.name + suffix)
        audios = audio_by_stem.get(stem, [])
        claimed_by = first_video_for.setdefault(output, video)
        problem = None
        if claimed_by != video:
            problem = f"{video}: same output name as {claimed_by.name} ({output}); rename one"
        elif not audios:
            problem = f"{video}: no audio file named {stem}.* in {audio_dir}"
        elif len(audios) > 1:
            names = ", ".join(a.name for a in audios)
            problem = f"{video}: several audio files match ({names}); keep one"
        jobs.append(MuxJob(video, audios[0] if len(audios) == 1 else None, output, problem))
    return jobs


def run_mux_job(job: MuxJob, opts: MuxOptions) -> dict:
    if job.problem or job.audio is None:
        raise MediaError(job.problem or f"{job.video}: no audio to mux")
    return mux(job.video, job.audio, job.output, opts)
