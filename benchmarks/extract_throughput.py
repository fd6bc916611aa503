"""Extract throughput: a batch of 10 s clips, first (decoding) run vs cached run.

Prints a table of clips/s and real-time factor (seconds of video per second of wall time).
Runs the real `vab extract` command line, so the figures include what a user pays (startup,
hashing, probing). Usage: python benchmarks/extract_throughput.py [--clips N] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vabcli.media.ffmpeg import ffmpeg_binary
from vabcli.media.testing import ClipSpec, make_clip

CLIP_SECONDS = 10.0


def make_clips(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """Distinct clips (each its own tone, so its own cache key) with film-grain-like noise, so
    the decoder works about as hard as on camera footage rather than on a flat test pattern."""
    source = f"testsrc2=size={width}x{height}:rate=30000/1001,noise=alls=12:allf=t+u"
    return [
        make_clip(
            folder / f"clip{i:03d}.mp4",
            ClipSpec(
                duration=CLIP_SECONDS,
                video_source=source,
                sample_rate=48_000,
                tone_hz=220.0 + 20 * i,
            ),
        )
        for i in range(count)
    ]


def timed_extract(clips: Path, cache: Path, workers: int, extra: list[str]) -> float:
    # A whole `vab extract` process is what is measured (start-up included), not a library call.
    cmd = [
        sys.executable,
        "-m",
        "vabcli",
        "extract",
        str(clips),
        "--cache",
        str(cache),
        "--workers",
        str(workers),
        "--quiet",
        "--json",
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"extract failed: {done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", default="1280x720", help="source clip size WxH")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--extract-args", default="", help="extra `vab extract` options")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    extra = args.extract_args.split()
    root = Path(tempfile.mkdtemp(prefix="vab-bench-"))
    try:
        clips = make_clips(root / "clips", args.clips, width, height)
        total_seconds = CLIP_SECONDS * len(clips)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
            f"ffmpeg {ffmpeg_binary()}"
        )
        options = " ".join(extra) or "defaults (8 fps, 224, 24 kHz)"
        print(
            f"batch: {len(clips)} clips x {CLIP_SECONDS:.0f} s, {width}x{height} H.264 29.97 fps "
            f"(noisy test pattern) + AAC 48 kHz; extract options: {options}"
        )
        print()
        print("| workers | run    | wall s | clips/s | real-time factor |")
        print("|--------:|--------|-------:|--------:|-----------------:|")
        for workers in args.workers:
            cache = root / f"cache-{workers}"
            for run in ("first", "cached"):
                wall = timed_extract(root / "clips", cache, workers, extra)
                print(
                    f"| {workers:7d} | {run:6s} | {wall:6.2f} | {len(clips) / wall:7.2f} "
                    f"| {total_seconds / wall:15.1f}x |",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
