"""`vab synth`: write a data set of the synthetic world as MP4 clips and a manifest."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile

from vabcli.core.atomic import atomic_output, sweep_temps
from vabcli.core.errors import MediaError
from vabcli.data.manifest import SPLITS
from vabcli.media import ffmpeg
from vabcli.world.scenes import (
    SYNTH_SAMPLE_RATE,
    Painter,
    Scene,
    frame_times,
    render_audio,
    sample_scene,
)

MANIFEST_NAME = "manifest.jsonl"
# `auto` splits: of every ten clips, eight train, one val, one test.
_AUTO_SPLITS = ("train",) * 8 + ("val", "test")


@dataclass(frozen=True)
class SynthOptions:
    n: int = 100
    seed: int = 0
    min_duration: float = 2.0
    max_duration: float = 20.0
    split: str = "auto"  # train, val, test, or auto

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"--n must be >= 1, got {self.n}")
        if not 0.5 <= self.min_duration <= self.max_duration <= 600:
            raise ValueError(
                "durations must satisfy 0.5 <= min <= max <= 600 seconds, got "
                f"{self.min_duration:g}..{self.max_duration:g}"
            )
        if self.split != "auto" and self.split not in SPLITS:
            raise ValueError(f"split must be auto or one of {', '.join(SPLITS)}")

    def split_of(self, index: int) -> str:
        return _AUTO_SPLITS[index % len(_AUTO_SPLITS)] if self.split == "auto" else self.split


def clip_name(index: int) -> str:
    return f"clip-{index:05d}.mp4"


def write_clip(scene: Scene, path: Path) -> None:
    """Encode `scene` as an H.264 + AAC MP4 at `path` (written atomically)."""
    painter = Painter(scene)
    with tempfile.TemporaryDirectory(prefix="vab-synth-") as tmp:
        wav = Path(tmp) / "audio.wav"
        soundfile.write(wav, render_audio(scene), SYNTH_SAMPLE_RATE, subtype="PCM_16")
        sweep_temps(path, only_stale=True)  # a killed earlier run's half-written clip
        with atomic_output(path, overwrite=True) as out:
            args = [
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-s",
                f"{scene.width}x{scene.height}",
                "-framerate",
                scene.fps,
                "-i",
                "pipe:0",
                "-i",
                str(wav),
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-threads",
                "1",
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                "-movflags",
                "+faststart",
                "-y",
                str(out),
            ]
            proc = ffmpeg.spawn(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                for t in frame_times(scene):
                    proc.stdin.write(painter.frame(t).tobytes())
                proc.stdin.close()
                err = proc.stderr.read().decode("utf-8", errors="replace")
                code = proc.wait()
            except BrokenPipeError:
                code, err = proc.wait(), proc.stderr.read().decode("utf-8", errors="replace")
            finally:
                ffmpeg.release(proc)
            if code != 0:
                raise MediaError(f"{path}: {ffmpeg.last_error_line(err)}")


def manifest_line(scene: Scene, video: str, split: str) -> dict:
    return {
        "video": video,
        "label": scene.label,
        "split": split,
        "events": scene.events,
        "sources": [{"label": s.label, "events": list(s.events)} for s in scene.sources],
    }


def synthesize(
    out_dir: Path,
    opts: SynthOptions,
    workers: int = 2,
    on_clip: Callable[[Path], None] | None = None,
) -> Path:
    """Write `opts.n` clips and `out_dir/manifest.jsonl`; returns the manifest's path.

    The manifest is written last, so it only ever names clips that exist.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = [
        sample_scene(opts.seed, i, opts.min_duration, opts.max_duration) for i in range(opts.n)
    ]

    def make(index: int) -> None:
        path = out_dir / clip_name(index)
        write_clip(scenes[index], path)
        if on_clip is not None:
            on_clip(path)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done in [pool.submit(make, i) for i in range(opts.n)]:
            done.result()
    lines = [
        json.dumps(manifest_line(scene, clip_name(i), opts.split_of(i)))
        for i, scene in enumerate(scenes)
    ]
    manifest = out_dir / MANIFEST_NAME
    with atomic_output(manifest, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return manifest
