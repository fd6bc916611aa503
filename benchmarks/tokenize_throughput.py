"""Tokenize throughput: a batch of 10 s clips, first run vs cached run, per encoder size.

Two encoder pairs: the tiny debug encoders (pipeline overhead: decoding, caching) and random-init
encoders of the real sizes, a ViT-B-32 image tower and the EnCodec 24 kHz codec (the compute of
the real thing; pretrained weights cannot be downloaded here). The random weights are saved to
files and loaded through the same `--image-encoder MODEL:FILE` / `--codec-weights FILE` paths
users use. Runs the real `vab tokenize` command line.

Usage: python benchmarks/tokenize_throughput.py [--clips N] [--device cpu|cuda] [--workers N]
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

CLIP_SECONDS = 10.0


def make_clips(folder: Path, count: int) -> None:
    from vabcli.media.testing import ClipSpec, make_clip

    source = "testsrc2=size=640x360:rate=30000/1001,noise=alls=12:allf=t+u"
    for i in range(count):
        spec = ClipSpec(duration=CLIP_SECONDS, video_source=source, tone_hz=220.0 + 20 * i)
        make_clip(folder / f"clip{i:03d}.mp4", spec)


def real_size_weights(folder: Path) -> list[str]:
    """Random-init ViT-B-32 and EnCodec 24 kHz weights saved to files; options that use them."""
    import open_clip
    import safetensors.torch
    import torch

    from vabcli.encoders.audio_codec import ENCODEC_24KHZ, build_model

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32")
    vit = folder / "vit-b-32-random.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, vit)
    codec = folder / "encodec-24khz-random.th"
    torch.save(build_model(ENCODEC_24KHZ).state_dict(), codec)
    return [
        "--image-encoder",
        f"ViT-B-32:{vit}",
        "--codec",
        "encodec_24khz",
        "--codec-weights",
        str(codec),
    ]


def timed(cmd: list[str]) -> float:
    # A whole `vab tokenize` process is what is measured (start-up included), not a library call.
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"tokenize failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fps", default="8")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vab-bench-tok-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        make_clips(root / "clips", args.clips)
        pairs = {
            "debug (tiny)": ["--image-encoder", "debug", "--codec", "debug"],
            "ViT-B-32 + EnCodec 24k (random)": real_size_weights(root),
        }
        video_seconds = CLIP_SECONDS * args.clips
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, device {args.device}; "
            f"{args.clips} clips x {CLIP_SECONDS:.0f} s, 640x360 29.97 fps + AAC; "
            f"--fps {args.fps} --workers {args.workers}"
        )
        print()
        print("| encoders                          | run    | wall s | clips/s | x real time |")
        print("|-----------------------------------|--------|-------:|--------:|------------:|")
        for label, options in pairs.items():
            cache = root / f"cache-{len(label)}"
            cmd = [
                sys.executable,
                "-m",
                "vabcli",
                "tokenize",
                str(root / "clips"),
                "--cache",
                str(cache),
                "--device",
                args.device,
                "--workers",
                str(args.workers),
                "--fps",
                args.fps,
                "--quiet",
                *options,
            ]
            for run in ("first", "cached"):
                wall = timed(cmd)
                print(
                    f"| {label:33s} | {run:6s} | {wall:6.2f} | {args.clips / wall:7.2f} "
                    f"| {video_seconds / wall:10.1f}x |",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
