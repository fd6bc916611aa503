"""Training throughput: audio tokens per second for a model preset, on CPU or GPU.

Synthetic latents (random features and tokens of the real shapes: 512-d features at 8 fps,
4 x 1024 codes at 75 Hz) go through the same Trainer that `vab train` uses, so data loading,
masking, the optimizer and clipping are all counted. Also reports model FLOPs utilisation (MFU)
against a peak you give (`--peak-tflops`; e.g. 989 for an H100's dense bf16).

Usage: python benchmarks/train_throughput.py --preset tiny|small|base [--device cpu|cuda]
       [--batch-size B] [--clip-seconds S] [--steps N] [--peak-tflops T]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vabcli.config import model_config
from vabcli.training.dataset import LatentClip
from vabcli.training.trainer import RunInfo, Trainer, TrainOptions


def synthetic_clips(folder: Path, n: int, seconds: float) -> list[LatentClip]:
    rng = np.random.default_rng(0)
    clips = []
    for i in range(n):
        np.save(folder / f"f{i}.npy", rng.normal(size=(round(seconds * 8), 512)).astype("f4"))
        np.save(folder / f"c{i}.npy", rng.integers(0, 1024, (4, round(seconds * 75)), dtype="i2"))
        clips.append(LatentClip(folder / f"f{i}.npy", folder / f"c{i}.npy"))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=0.0)
    args = parser.parse_args()
    cfg = model_config(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        clips = synthetic_clips(Path(tmp), 16, 10.0)
        opts = TrainOptions(
            steps=args.steps + 2,
            batch_size=args.batch_size,
            workers=1,
            clip_seconds=args.clip_seconds,
            val_every=10**9,
        )
        info = RunInfo("synthetic", "synthetic")
        trainer = Trainer(cfg, info, opts, clips, [], Path(tmp) / "run", args.device)
        params = trainer.model.n_parameters()
        step_times: list[float] = []
        last = [time.perf_counter()]

        def on_step(m: dict[str, float]) -> None:
            now = time.perf_counter()
            if m["step"] > 2:  # the first steps warm up allocators and kernels
                step_times.append(now - last[0])
            last[0] = now

        trainer.run(on_step)
    seconds = float(np.median(step_times))
    tokens = args.batch_size * round(args.clip_seconds * 75) * 4
    positions = args.batch_size * (round(args.clip_seconds * 8) + round(args.clip_seconds * 75))
    flops = 6 * params * positions  # forward + backward, dense: the usual 6 N D estimate
    mfu = f"{flops / seconds / (args.peak_tflops * 1e12):.1%}" if args.peak_tflops else "n/a"
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.machine()
    shape = f"{args.batch_size} x {args.clip_seconds:g} s"
    print(
        f"| {args.preset} | {params / 1e6:.1f} M | {name}, {os.cpu_count()} cores | {shape} | "
        f"{seconds:.3f} | {tokens / seconds:,.0f} | {mfu} |"
    )


if __name__ == "__main__":
    main()
