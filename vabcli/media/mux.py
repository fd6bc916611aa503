"""`vab mux`: put (generated) audio beside a video's untouched video stream.

The video stream is copied packet for packet unless `reencode` is asked for; the new audio is
encoded to AAC and padded or trimmed to the video stream's exact duration, so players and
editors see audio and video end together. An output takes its final name only when ffmpeg
reported no write error (whatever its exit code) and the file is whole (`incomplete_media`).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from vabcli.config import AUDIO_EXTENSIONS
from vabcli.core.atomic import atomic_output, check_writable, sweep_temps
from vabcli.core.errors import InputError, MediaError, VabError
from vabcli.media import ffmpeg
from vabcli.media.inputs import videos_in
from vabcli.media.probe import FIRST_VIDEO, VideoInfo, probe

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
    info = _checked_inputs(video, audio)
    sweep_temps(output, only_stale=True)  # no lock here: leave those of live runs alone
    with atomic_output(output, opts.overwrite, check=incomplete_media) as tmp:
        _write(video, audio, tmp, info, opts)
    return {"output": str(output), "duration": round(info.duration, 6)}


def mux_into(video: Path, audio: Path, out: Path, opts: MuxOptions) -> None:
    """Write the muxed file to exactly `out` (a caller's temporary: it renames and checks it).

    Raises OSError when ffmpeg could not write `out` (errno ENOSPC for a full disk).
    """
    _write(video, audio, out, _checked_inputs(video, audio), opts)


def _checked_inputs(video: Path, audio: Path) -> VideoInfo:
    if not audio.is_file():
        raise MediaError(f"{audio}: no such file")
    return probe(video)


def _write(video: Path, audio: Path, out: Path, info: VideoInfo, opts: MuxOptions) -> None:
    if not info.has_audio:
        opts = replace(opts, keep_original_audio=False)
    done = ffmpeg.run(_mux_args(video, audio, out, info.start, info.duration, opts))
    failed_write = ffmpeg.write_failure(done.stderr, out)
    # A full disk or a quota explains a non-zero exit better than anything else; other write
    # complaints come with a failed run's explanation (a codec the container cannot hold).
    if failed_write is not None and (done.returncode == 0 or failed_write.errno != errno.EIO):
        raise failed_write
    if done.returncode != 0:
        raise MediaError(_explain_failure(done.stderr, video, audio, info.video_codec, out))


def incomplete_media(path: Path) -> str | None:
    """Why a muxed file is not whole, or None. Cheap: an MP4's top-level boxes must fill the
    file exactly and include the index (`moov`); other containers must open in ffmpeg."""
    if path.suffix.lower() in _MP4_FAMILY:
        try:
            return _mp4_problem(path)
        except OSError as exc:
            return f"cannot read it: {exc.strerror}"
    try:
        probe(path)
    except MediaError as exc:
        return str(exc)
    return None


def _mp4_problem(path: Path) -> str | None:
    boxes = set()
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        offset = 0
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return f"a box header is cut at byte {offset}"
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1 and len(header) == 16:  # 64-bit size follows
                length = struct.unpack(">Q", header[8:])[0]
            elif length == 0:  # runs to the end of the file
                length = size - offset
            if length < 8 or offset + length > size:
                return f"its {kind.decode('latin-1')!r} box runs past the end of the file"
            boxes.add(kind)
            offset += length
    return None if b"moov" in boxes else "no moov index"


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
