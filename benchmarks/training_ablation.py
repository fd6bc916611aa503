"""Training options, each alone and together, at a reduced scale, scored on held-out clips.

    python benchmarks/training_ablation.py [--work build/train-ablation] [--steps 800]
        [--continue-from build/model/run] [--continue-steps 400]
        [--data build/model/data/manifest.jsonl] [--cache build/model/cache]
        [--held-out build/retrained-2611:2611 ...] [--only NAME ...]

A run at the bundled model's full scale takes ~3.7 h on two CPU cores, so two smaller
experiments, both with the bundled model's architecture, batch (32) and training clips (their
tokens cached by `make model`):
- from scratch, --steps (the recipe's 6000 cut short), peak learning rate 1e-3 (the recipe's):
    baseline                 VAB's mask-ratio draw, sinusoidal time code of unit amplitude
                             (`--set time_scale=1`: the code of models built before it changed)
    time code 1/sqrt(d/2)    `--set time_scale`: the time code at unit norm, as a content vector
                             (the default for new models since)
  The time code is fixed at a model's birth, so it can only be tried from scratch; what it
  promises is a model that learns faster, which a short run shows.
- continued: a copy of --continue-from's last checkpoint (the bundled model's run) trained
  --continue-steps more, the learning rate back to 3e-4 and decaying by the cosine to its end
  (`vab train --resume --steps 6000+N --warmup-steps 6000 --lr 3e-4`), with:
    continued                VAB's mask-ratio draw, as before
    cosine masks 0.5         `--mask-cosine-share 0.5`: half the samples masked cos(pi/2 u)
                             (MaskGIT's draw: the low ratios of a decoding's last steps)
    level masks 0.5          `--mask-level-share 0.5`: half masked as coarse-to-fine decoding
                             sees them (one level partly, the finer ones whole)
    cosine and level masks   both
  The mask options change what the model is asked, not what it is, so teaching a trained model
  the questions a decoding asks shows what they are worth, at a fraction of a run's cost.
Each model is scored with the default sampler settings (the level-trained ones and their
control also decoding coarse to fine, --level-steps 8,2,2,2) on each held-out set by `vab
eval`'s measures, through `benchmarks/ablation.py`'s HeldOut. A finished run is not trained
again, so an interrupted benchmark resumes at the run it was on. Prints markdown tables and
writes WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ablation import EXTRA, HeldOut, machine
from quality import table

from vabcli.config import unit_time_scale
from vabcli.model.checkpoint import read_meta
from vabcli.world.make_model import Recipe

RECIPE = Recipe()
TIME_SCALE = unit_time_scale(int(dict(s.split("=") for s in RECIPE.model_set)["d_model"]))
LEVELS = {"levels 8,2,2,2": {"level_steps": (8, 2, 2, 2)}}
COSINE, LEVEL = ["--mask-cosine-share", "0.5"], ["--mask-level-share", "0.5"]
# row -> (`vab train` options, sampler settings to score it with besides the defaults)
FROM_SCRATCH: dict[str, tuple[list[str], dict[str, dict]]] = {
    "baseline": (["--set", "time_scale=1"], {}),
    "time code 1/sqrt(d/2)": (["--set", f"time_scale={TIME_SCALE:.4f}"], {}),
}
CONTINUED: dict[str, tuple[list[str], dict[str, dict]]] = {
    "continued": ([], LEVELS),
    "cosine masks 0.5": (COSINE, {}),
    "level masks 0.5": (LEVEL, LEVELS),
    "cosine and level masks": (COSINE + LEVEL, LEVELS),
}
CONTINUED_LR = 3e-4


def folder_name(row: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in row)


def trained_step(run: Path) -> int:
    """The step of RUN/last, 0 if there is none."""
    if not (run / "last" / "config.json").exists():
        return 0
    return read_meta(run / "last").step or 0


def train(run: Path, options: list[str], args: argparse.Namespace, continued: bool) -> float | None:
    """`vab train` RUN with the recipe and `options`, from scratch or continuing a copy of
    --continue-from; its minutes, None if it was done already."""
    if continued:
        start = trained_step(args.continue_from)
        steps = start + args.continue_steps
        schedule = ["--lr", str(CONTINUED_LR), "--warmup-steps", str(start), "--resume"]
        if trained_step(run) < start:
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(args.continue_from / "last", run / "last")
    else:
        steps = args.steps
        schedule = ["--lr", str(RECIPE.lr), "--warmup-steps", "100", "--overwrite"]
    if trained_step(run) >= steps:
        return None
    dims = [arg for s in RECIPE.model_set for arg in ("--set", s)]
    command = [
        *(sys.executable, "-m", "vabcli", "train", "--data", str(args.data)),
        *("--cache", str(args.cache), "--codec", "builtin", "--image-encoder", "builtin"),
        *("--preset", "tiny", *dims, "--batch-size", str(RECIPE.train_batch), *schedule),
        *("--steps", str(steps), "--val-every", "200", "--seed", "0", "--out", str(run), "-q"),
        *options,
    ]
    print("$ " + " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return (time.perf_counter() - started) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/train-ablation"))
    parser.add_argument("--data", type=Path, default=Path("build/model/data/manifest.jsonl"))
    parser.add_argument("--cache", type=Path, default=Path("build/model/cache"))
    parser.add_argument("--steps", type=int, default=800, help="of the runs from scratch")
    parser.add_argument("--continue-from", type=Path, default=Path("build/model/run"))
    parser.add_argument("--continue-steps", type=int, default=400)
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
    runs = [(row, run, False) for row, run in FROM_SCRATCH.items()]
    runs += [(row, run, True) for row, run in CONTINUED.items()]
    for row, (options, sampler_rows), continued in runs:
        if args.only and row not in args.only:
            continue
        run = args.work / folder_name(row)
        minutes = train(run, options, args, continued)
        if minutes is not None:
            results.setdefault(row, {})["train_minutes"] = minutes
        for seed, clips in held_out.items():
            for setting, sampler in {"defaults": {}, **sampler_rows}.items():
                name = f"{row}, {setting}"
                # its last checkpoint (a continued run's best/ can be older)
                scored = clips.score(folder_name(f"train {name}"), str(run / "last"), sampler)
                results.setdefault(row, {})[f"seed {seed}, {setting}"] = scored
        results_file.write_text(json.dumps(results, indent=2, default=list) + "\n")
    for seed in held_out:
        rows = {
            f"{row}, {key.split(', ', 1)[1]}": value
            for row, scores in results.items()
            for key, value in scores.items()
            if key.startswith(f"seed {seed},")
        }
        print(f"\n## training options, held-out seed {seed}, {machine()}\n")
        print(table(rows, EXTRA))
    minutes = {row: round(r.get("train_minutes", 0), 1) for row, r in results.items()}
    print("\ntraining minutes:", minutes)


if __name__ == "__main__":
    main()
