"""Training options, each alone and together, at a reduced scale, scored on held-out clips.

    python benchmarks/training_ablation.py [--work build/train-ablation] [--steps 800]
        [--data build/model/data/manifest.jsonl] [--cache build/model/cache]
        [--held-out build/retrained-2611:2611 ...] [--only NAME ...]

Every row trains the bundled model's architecture and schedule (`make_model`'s recipe: its
dimensions, batch 32, peak learning rate 1e-3) on the bundled model's training clips (their
tokens cached by `make model`), for --steps instead of the recipe's 6000 (a run at full scale
takes ~3.7 h on two CPU cores), with one training option changed:
  baseline            VAB's mask-ratio draw, sinusoidal time code of unit amplitude
  time code 1/sqrt(d/2)  `--set time_scale`: the time code at unit norm, like a content vector
  cosine masks 0.5    `--mask-cosine-share 0.5`: half the samples masked cos(pi/2 u) (MaskGIT)
  level masks 0.5     `--mask-level-share 0.5`: half masked as coarse-to-fine decoding sees them
  all three
Each model is then scored with the default sampler settings (and the level-trained ones also
decoding coarse to fine, --level-steps 8,2,2,2) on each held-out set by `vab eval`'s measures,
through `benchmarks/ablation.py`'s HeldOut. A finished run is not retrained, so an interrupted
benchmark resumes at the run it was on (started again from its start). Prints markdown tables
and writes WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from ablation import EXTRA, HeldOut, machine
from quality import table

from vabcli.model.checkpoint import read_meta
from vabcli.world.make_model import Recipe

RECIPE = Recipe()
TIME_SCALE = 1 / math.sqrt(int(dict(s.split("=") for s in RECIPE.model_set)["d_model"]) / 2)
LEVELS = {"level_steps": (8, 2, 2, 2)}
# row -> (`vab train` options, sampler settings to score it with besides the defaults)
RUNS: dict[str, tuple[list[str], dict[str, dict]]] = {
    "baseline": ([], {"levels 8,2,2,2": LEVELS}),
    "time code 1/sqrt(d/2)": (["--set", f"time_scale={TIME_SCALE:.4f}"], {}),
    "cosine masks 0.5": (["--mask-cosine-share", "0.5"], {}),
    "level masks 0.5": (["--mask-level-share", "0.5"], {"levels 8,2,2,2": LEVELS}),
    "all three": (
        [
            "--set",
            f"time_scale={TIME_SCALE:.4f}",
            "--mask-cosine-share",
            "0.5",
            "--mask-level-share",
            "0.5",
        ],
        {"levels 8,2,2,2": LEVELS},
    ),
}


def folder_name(row: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in row)


def trained_step(run: Path) -> int:
    """The step of RUN/last, 0 if there is none."""
    if not (run / "last" / "config.json").exists():
        return 0
    return read_meta(run / "last").step or 0


def train(run: Path, options: list[str], args: argparse.Namespace) -> float | None:
    """`vab train` RUN with the recipe and `options`; its minutes, None if it was done already."""
    if trained_step(run) >= args.steps:
        return None
    dims = [arg for s in RECIPE.model_set for arg in ("--set", s)]
    command = [
        *(sys.executable, "-m", "vabcli", "train", "--data", str(args.data)),
        *("--cache", str(args.cache), "--codec", "builtin", "--image-encoder", "builtin"),
        *("--preset", "tiny", *dims, "--batch-size", str(RECIPE.train_batch)),
        *("--lr", str(RECIPE.lr), "--warmup-steps", "100", "--steps", str(args.steps)),
        *("--val-every", "200", "--seed", "0", "--out", str(run), "--overwrite", "-q", *options),
    ]
    print("$ " + " ".join(command[2:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return (time.perf_counter() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/train-ablation"))
    parser.add_argument("--data", type=Path, default=Path("build/model/data/manifest.jsonl"))
    parser.add_argument("--cache", type=Path, default=Path("build/model/cache"))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument(
        "--held-out",
        nargs="+",
        default=["build/retrained-2611:2611", "build/retrained-4471:4471"],
        help="WORK:SEED of held-out clips (made there if missing, 100 clips)",
    )
    parser.add_argument("--only", nargs="*", help="rows to train and score (default: all)")
    args = parser.parse_args()
    results_file = args.work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    held_out = {}
    for spec in args.held_out:
        folder, seed = spec.rsplit(":", 1)
        held_out[seed] = HeldOut(Path(folder), int(seed), 100)
    for row, (options, sampler_rows) in RUNS.items():
        if args.only and row not in args.only:
            continue
        run = args.work / folder_name(row)
        minutes = train(run, options, args)
        if minutes is not None:
            results.setdefault(row, {})["train_minutes"] = minutes
        for seed, clips in held_out.items():
            for setting, sampler in {"defaults": {}, **sampler_rows}.items():
                name = f"{row}, {setting}"
                scored = clips.score(folder_name(f"train {name}"), str(run), sampler)
                results.setdefault(row, {})[f"seed {seed}, {setting}"] = scored
        results_file.write_text(json.dumps(results, indent=2, default=list) + "\n")
    for seed in held_out:
        rows = {
            f"{row}, {key.split(', ', 1)[1]}": value
            for row, scores in results.items()
            for key, value in scores.items()
            if key.startswith(f"seed {seed},")
        }
        print(f"\n## training options, {args.steps} steps, held-out seed {seed}, {machine()}\n")
        print(table(rows, EXTRA))
    minutes = {row: round(r.get("train_minutes", 0), 1) for row, r in results.items()}
    print("\ntraining minutes:", minutes)


if __name__ == "__main__":
    main()
