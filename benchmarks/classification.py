"""Classification from the VAB backbone: linear probe against full fine-tune, per modality.

    python benchmarks/classification.py [--init builtin] [--steps 300] [--out build/classify]

Each row is what `vab finetune classify --init INIT --data TRAIN --modality M [--freeze]` does
(through the library: `vabcli.finetune`) on the bundled model's 1000 training clips (`make
model`'s data: 800 train, 200 val, 4 s windows), then `vab eval --task classify`
(`vabcli.evaluate`) on the 100 held-out clips of `vab synth --seed 7` (a seed no model saw), each
classified whole. Prints a markdown table (accuracy, minutes to train) and writes
OUT/results.json. Runs one after another: on two cores two runs would halve each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import vabcli

ROWS = [(modality, freeze) for freeze in (True, False) for modality in ("av", "v", "a")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--init", default="builtin")
    parser.add_argument("--train", default="build/model/data/manifest.jsonl")
    parser.add_argument("--train-cache", default="build/model/cache")
    parser.add_argument("--held-out", default="build/quality/held-out/manifest.jsonl")
    parser.add_argument("--held-out-cache", default="build/quality/cache")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--lr-probe", type=float, default=1e-3, help="learning rate of the linear probes"
    )
    parser.add_argument(
        "--lr-full", type=float, default=3e-4, help="learning rate of full fine-tunes"
    )
    parser.add_argument("--rows", default="all", help="e.g. 'av-probe,a-full' (default: all 6)")
    parser.add_argument("--out", type=Path, default=Path("build/classify"))
    args = parser.parse_args()
    rows = (
        ROWS
        if args.rows == "all"
        else [(name.split("-")[0], name.split("-")[1] == "probe") for name in args.rows.split(",")]
    )
    results = []
    for modality, freeze in rows:
        kind = "probe" if freeze else "full"
        run_dir = args.out / f"{modality}-{kind}"
        started = time.perf_counter()
        trained = vabcli.finetune(
            "classify",
            args.init,
            run_dir,
            data=args.train,
            cache=args.train_cache,
            overwrite=True,
            modality=modality,
            freeze=freeze,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr_probe if freeze else args.lr_full,
            warmup_steps=args.steps // 10,
            val_every=max(1, args.steps // 3),
        )
        minutes = (time.perf_counter() - started) / 60
        scored = vabcli.evaluate(
            args.held_out, model=run_dir, task="classify", cache=args.held_out_cache
        )
        results.append(
            {
                "modality": modality,
                "kind": kind,
                "minutes": round(minutes, 2),
                "val_accuracy": trained.get("val_accuracy"),
                **scored,
            }
        )
        print(
            f"{modality} {kind}: held-out accuracy {scored['accuracy']:.3f} ({minutes:.1f} min)",
            file=sys.stderr,
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; init {args.init}, "
        f"{args.steps} steps x {args.batch_size} clips, lr {args.lr_probe} (probe) / "
        f"{args.lr_full} (full)"
    )
    print("| modality | backbone | held-out accuracy | chance | val accuracy | train minutes |")
    print("|---|---|---|---|---|---|")
    for r in results:
        backbone = "frozen (linear probe)" if r["kind"] == "probe" else "fine-tuned"
        print(
            f"| {r['modality']} | {backbone} | {r['accuracy']:.3f} | {r['chance']:.3f} | "
            f"{r['val_accuracy']:.3f} | {r['minutes']:.1f} |"
        )


if __name__ == "__main__":
    main()
