"""How much of the world's sound survives a codec's encode + synthesize, by `vab eval`'s measures.

    python benchmarks/codec_roundtrip.py [--codec builtin] [--clips 40] [--work build/codec-rt]

Clips: `vab synth --seed 9`. Row "original" scores the real audio against itself (the ceiling);
row "round trip" scores the codec's reconstruction of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path

import torch

from vabcli.encoders.audio_codec import load_codec
from vabcli.evaluation.generated_audio import EvalOptions, fit_judge, load_pairs, score
from vabcli.evaluation.metrics import EVAL_SAMPLE_RATE
from vabcli.world.synth import SynthOptions, synthesize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codec", default="builtin")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path("build/codec-rt"))
    args = parser.parse_args()
    manifest = args.work / "manifest.jsonl"
    if not manifest.exists():
        synthesize(args.work, SynthOptions(n=args.clips, seed=9))
    clips = load_pairs(None, manifest)
    codec = load_codec(args.codec)
    if codec.sample_rate != EVAL_SAMPLE_RATE:
        raise SystemExit(f"this benchmark reads audio at {EVAL_SAMPLE_RATE} Hz")
    started = time.perf_counter()
    rebuilt = []
    for clip in clips:
        wav = torch.from_numpy(clip.real)[None, None]
        out = codec.synthesize(codec.encode(wav))[0, 0, : len(clip.real)].cpu().numpy()
        rebuilt.append(dataclasses.replace(clip, generated=out))
    seconds = time.perf_counter() - started
    judge = fit_judge(clips)
    rows = {
        "original": score(
            [dataclasses.replace(c, generated=c.real) for c in clips], judge, EvalOptions()
        ),
        "round trip": score(rebuilt, judge, EvalOptions()),
    }
    audio = sum(len(c.real) for c in clips) / EVAL_SAMPLE_RATE
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    speed = f"encode + synthesize {audio / seconds:.0f}x real time"
    print(f"codec {codec.id}, {len(clips)} clips ({audio:.0f} s), {machine}; {speed}\n")
    keys = ("onset_f1", "onset_offset_ms", "class_acc", "fd_logmel", "silence_ratio")
    print("| audio | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.3g}" for k in keys) + " |")


if __name__ == "__main__":
    main()
