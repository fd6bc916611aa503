"""Which visual frame rate? Onset timing error against encoding cost, per `--fps`.

A sound effect has to start when its visual event starts; the model can only know when that is
to within one visual frame. This measures it: synthetic clips show a white box at random
moments (events of 0.15 to 0.6 s, the length of a hit, a step, a door slam), frames are
extracted at each rate and encoded with the debug image encoder, and an event's onset is
estimated as the first frame whose feature leaves the empty-scene feature. Reported per rate:
events seen at all, mean and 95th-percentile onset error, and the cost: image-encoder frames
per minute of video (ViT-B-32 throughput on this machine gives seconds per minute) and
feature bytes per minute.

Usage: python benchmarks/visual_rate.py [--clips N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from vabcli.config import ExtractOptions
from vabcli.core.cache import Cache
from vabcli.encoders.image import load_visual_encoder
from vabcli.media.extract import extract_clip
from vabcli.media.testing import ClipSpec, make_clip

RATES = (1, 2, 4, 8, 12, 16, 25)
CLIP_SECONDS = 20.0
FEATURE_DIM = 512  # ViT-B-32's embedding size, for the storage column


def events_for(rng: np.random.Generator) -> list[tuple[float, float]]:
    """Non-overlapping (start, end) events, at least 0.5 s apart, inside the clip."""
    events, t = [], 0.3 + rng.uniform(0, 0.5)
    while t < CLIP_SECONDS - 1.0:
        length = rng.uniform(0.15, 0.6)
        events.append((round(t, 3), round(t + length, 3)))
        t += length + rng.uniform(0.5, 1.5)
    return events


def clip_with_events(path: Path, events: list[tuple[float, float]]) -> Path:
    when = "+".join(f"between(t,{a},{b})" for a, b in events)
    source = (
        f"color=c=black:size=224x224:rate=50,"
        f"drawbox=x=60:y=60:w=100:h=100:color=white:t=fill:enable='{when}'"
    )
    return make_clip(path, ClipSpec(duration=CLIP_SECONDS, video_source=source, audio=False))


def onset_errors(features: np.ndarray, fps: float, events: list[tuple[float, float]]) -> list:
    """Per event: estimated minus true onset in seconds, or None when no frame saw it."""
    empty = features[0]
    lit = 1.0 - features @ empty > 0.5 * (1.0 - features @ empty).max()
    times = np.arange(len(features)) / fps
    errors = []
    for start, end in events:
        seen = np.nonzero(lit & (times >= start - 1e-6) & (times < end))[0]
        errors.append(times[seen[0]] - start if len(seen) else None)
    return errors


def vit_frames_per_second() -> float:
    import open_clip

    from vabcli.encoders.image import OpenClipVisualEncoder

    encoder = OpenClipVisualEncoder(open_clip.create_model("ViT-B-32"), "random ViT-B-32")
    frames = np.random.default_rng(0).integers(0, 255, (64, 224, 224, 3), dtype=np.uint8)
    encoder.encode(frames[:8])  # warm-up
    start = time.perf_counter()
    encoder.encode(frames)
    return len(frames) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(7)
    encoder = load_visual_encoder("debug")
    with tempfile.TemporaryDirectory(prefix="vab-bench-rate-") as tmp:
        cache = Cache(Path(tmp) / "cache")
        clips = []
        for i in range(args.clips):
            events = events_for(rng)
            clips.append((clip_with_events(Path(tmp) / f"events{i}.mp4", events), events))
        vit_fps = vit_frames_per_second()
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.clips} clips x "
            f"{CLIP_SECONDS:.0f} s, {sum(len(e) for _, e in clips)} events of 0.15-0.6 s; "
            f"random-init ViT-B-32 on CPU: {vit_fps:.0f} frames/s"
        )
        print()
        print(
            "| fps | events seen | mean onset error ms | p95 ms | frames/min | "
            "ViT-B-32 CPU s/min | features KiB/min |"
        )
        print(
            "|----:|------------:|--------------------:|-------:|-----------:|"
            "-------------------:|-----------------:|"
        )
        for fps in RATES:
            errors = []
            for path, events in clips:
                result = extract_clip(path, ExtractOptions(fps=fps), cache)
                errors += onset_errors(encoder.encode(np.asarray(result.frames())), fps, events)
            seen = np.array([e for e in errors if e is not None]) * 1000
            per_min = 60 * fps
            print(
                f"| {fps:3d} | {len(seen) / len(errors):10.0%} | {seen.mean():19.0f} | "
                f"{np.percentile(seen, 95):6.0f} | {per_min:10d} | {per_min / vit_fps:18.1f} | "
                f"{per_min * FEATURE_DIM * 4 / 1024:16.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
