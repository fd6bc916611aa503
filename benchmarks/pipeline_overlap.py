"""How well `vab generate` overlaps its stages: a batch's wall time against the time of its two
serial necessities, sampling (the calling thread, one batched window after another) and codec
synthesis (finisher threads), with features cached.

Runs `vabcli.generate` (what `vab generate` runs) with the bundled model on `vab synth` clips of
mixed lengths: once to fill the cache, then timed with `--overwrite`. The sampler's busy time is
the sum of its batched steps (timed around `WindowSampler.advance` here, not in the library);
synthesis and mux come from the clips' sidecars. Also the share of sampled positions that are
padding (windows shorter than the longest of their batch).

    python benchmarks/pipeline_overlap.py [--clips 24] [--batch-size 8] [--workers 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seed", type=int, default=2611, help="vab synth seed of the clips")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, help="keep clips and cache here (else a temp dir)")
    args = parser.parse_args()
    import vabcli
    from vabcli.core.threads import size_torch_threads
    from vabcli.generation.windowed import WindowSampler

    root = args.work or Path(tempfile.mkdtemp(prefix="vab-bench-overlap-"))
    clips = root / f"clips-{args.seed}-{args.clips}"
    if not (clips / "manifest.jsonl").exists():
        synth = ["synth", str(clips), "--n", str(args.clips), "--seed", str(args.seed)]
        subprocess.run([sys.executable, "-m", "vabcli", *synth, "-q"], check=True)
    options = {"batch_size": args.batch_size, "workers": args.workers, "device": args.device}
    size_torch_threads()  # as `vab generate` sizes them
    try:
        vabcli.generate([clips], root / "out", cache=root / "cache", **options)  # fill the cache
        busy = {"sampling": 0.0, "positions": 0, "padding": 0}
        advance = WindowSampler.advance

        def timed_advance(self, batch):
            spans = [c.spans[c.done] for c in batch]
            lengths = [s.audio_end - s.audio_start for s in spans]
            began = time.perf_counter()
            advance(self, batch)
            busy["sampling"] += time.perf_counter() - began
            busy["positions"] += max(lengths) * len(lengths)
            busy["padding"] += sum(max(lengths) - n for n in lengths)

        WindowSampler.advance = timed_advance  # type: ignore[method-assign]
        start = time.perf_counter()
        outcomes = vabcli.generate(
            [clips], root / "out", cache=root / "cache", overwrite=True, **options
        )
        wall = time.perf_counter() - start
        WindowSampler.advance = advance  # type: ignore[method-assign]
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    ok = [o.figures for o in outcomes if o.status == "ok"]
    synthesis = sum(f["timings"]["synthesis"] for f in ok)
    mux = sum(f["timings"].get("mux", 0.0) for f in ok)
    video = sum(f["duration"] for f in ok)
    serial = busy["sampling"] + synthesis
    padding = busy["padding"] / max(busy["positions"], 1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, device {args.device}; "
        f"{len(ok)} clips of vab synth --seed {args.seed} ({video:.0f} s of video), bundled "
        f"model, --batch-size {args.batch_size} --workers {args.workers}, features cached\n"
    )
    print(
        "| wall s | sampling s | synthesis s | mux s | wall / (sampling + synthesis) "
        "| padding | x real time |"
    )
    print("|-------:|-----------:|------------:|------:|------:|--------:|------------:|")
    print(
        f"| {wall:6.1f} | {busy['sampling']:10.1f} | {synthesis:11.1f} | {mux:5.1f} | "
        f"{wall / serial:5.2f} | {padding:7.1%} | {video / wall:10.1f}x |"
    )


if __name__ == "__main__":
    main()
