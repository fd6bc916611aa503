"""Generation options, each alone and the winners together, on held-out clips no model saw.

    python benchmarks/ablation.py [--work build/ablation] [--clips 100] [--seed 2611]
                                  [--model builtin] [--only NAME ...]

Clips: `vab synth --seed 2611` (no model or encoder of this project was trained, tuned or
scored on that seed before). Every row is `vab generate --no-mux` through `vabcli.generate` with
the model's defaults plus the row's options, scored by `vab eval`'s measures (the judge fitted on
the held-out clips' own audio). Timing: the clips' features and tokens are cached first, so
`s_per_clip` and `x_real_time` are the generation alone (model loading included) on this machine.

Each knob (lookahead, noise, temperature, top-p, guidance, levels) has one or more candidates; a
candidate "wins" when it beats the defaults on onset F1 plus event-level class without losing
more than 0.02 of clip class; the last row puts the best winner of each knob together.
Prints markdown tables and writes WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from quality import dub, synth, table, with_generated

import vabcli
from vabcli.core.threads import size_torch_threads
from vabcli.evaluation.generated_audio import EvalOptions, fit_judge, load_pairs, score
from vabcli.evaluation.metrics import EVAL_SAMPLE_RATE

# knob -> {row name: options}
CANDIDATES: dict[str, dict[str, dict]] = {
    "lookahead": {
        "lookahead 0.5 s": {"lookahead_seconds": 0.5},
        "lookahead 0.25 s": {"lookahead_seconds": 0.25},
    },
    "noise": {"noise 4.5 (MaskGIT)": {"noise": 4.5}, "noise 0": {"noise": 0.0}},
    "temperature": {
        "temperature 3 -> 0.01 (MAGNeT)": {"temperature": 3.0, "temperature_end": 0.01},
        "temperature 1 -> 0.3": {"temperature_end": 0.3},
    },
    "top_p": {"top-p 0.9": {"top_p": 0.9}},
    "guidance": {
        "guidance 10 -> 1 (MAGNeT)": {"guidance": 10.0, "guidance_end": 1.0},
        "guidance 4 -> 1": {"guidance": 4.0, "guidance_end": 1.0},
    },
    "levels": {
        "levels 16,1,1,1 (SoundStorm)": {"level_steps": (16, 1, 1, 1)},
        "levels 8,4,2,2": {"level_steps": (8, 4, 2, 2)},
    },
    # Fewer forward passes: the speed target (8x real time on two cores) against quality.
    "speed": {
        "steps 12": {"steps": 12},
        "steps 8": {"steps": 8},
        "context 0.5 s": {"context_seconds": 0.5},
    },
    # The speed knob's two winners, together (`--only fast`): the defaults since 2026-11-29.
    "fast": {"steps 8, context 0.5 s": {"steps": 8, "context_seconds": 0.5}},
    # Between the two (`--only between`).
    "between": {"steps 12, context 0.5 s": {"steps": 12, "context_seconds": 0.5}},
    # The defaults before them (`--only before`).
    "before": {"steps 16, context 1 s": {"steps": 16, "context_seconds": 1.0}},
    # The settings that helped clip class, timing or fd_logmel at some cost in onset F1, with
    # the clear winner, together (`--only combined`, after a full run).
    "combined": {
        "temperature 1 -> 0.3, guidance 4 -> 1, noise 4.5": {
            "temperature_end": 0.3,
            "guidance": 4.0,
            "guidance_end": 1.0,
            "noise": 4.5,
        },
    },
}
EXTRA = ("s_per_clip", "x_real_time")


def gain(row: dict, base: dict) -> float | None:
    """How much a row beats the defaults (onset F1 + event-level class), None if it loses clip
    class by more than 0.02."""
    if row["class_acc"] < base["class_acc"] - 0.02:
        return None
    return row["onset_f1"] + row["event_class_acc"] - base["onset_f1"] - base["event_class_acc"]


class HeldOut:
    """Held-out clips of one `vab synth` seed, tokenized, with the judge fitted on their audio:
    `score(name, model, options)` dubs them into WORK/NAME and scores what it wrote."""

    def __init__(self, work: Path, seed: int, n_clips: int) -> None:
        self.work, self.cache = work, work / "cache"
        self.manifest = synth(work / "held-out", seed, n_clips)
        self.clips = load_pairs(None, self.manifest)
        self.judge = fit_judge(self.clips)
        self.seconds = sum(len(c.real) for c in self.clips) / EVAL_SAMPLE_RATE
        size_torch_threads()  # as `vab generate` does; a library call leaves them to its caller
        vabcli.tokenize(
            data=self.manifest, cache=self.cache, codec="builtin", image_encoder="builtin"
        )

    def score(self, name: str, model: str, options: dict) -> dict:
        out = self.work / name.replace(" ", "_").replace(",", "-").replace(">", "")
        wall = dub(self.manifest, out, self.cache, model=model, overwrite=True, **options)
        row = score(with_generated(self.clips, out), self.judge, EvalOptions())
        n = len(self.clips)
        row.update(s_per_clip=wall / n, x_real_time=self.seconds / wall, options=options)
        print(f"{name}: {json.dumps(row)}", flush=True)
        return row


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/ablation"))
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--only", nargs="*", help="knobs to try (default: all)")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2611, help="of the held-out clips")
    args = parser.parse_args()
    held_out = HeldOut(args.work, args.seed, args.clips)

    def run(name: str, options: dict) -> dict:
        return held_out.score(name, args.model, options)

    rows = {"defaults": run("defaults", {})}
    best: dict[str, tuple[float, dict]] = {}
    for knob, candidates in CANDIDATES.items():
        if args.only and knob not in args.only:
            continue
        for name, options in candidates.items():
            rows[name] = run(name, options)
            won = gain(rows[name], rows["defaults"])
            if won is not None and won > 0 and won > best.get(knob, (0.0, {}))[0]:
                best[knob] = (won, options)
    if len(best) > 1:
        together = {k: v for _, options in best.values() for k, v in options.items()}
        rows["winners together"] = run("winners together", together)
    print(
        f"\n## generation options on {len(held_out.clips)} held-out clips of vab synth --seed "
        f"{args.seed} ({held_out.seconds / 60:.1f} min of video), model {args.model}, "
        f"{machine()}\n"
    )
    print(table(rows, EXTRA))
    print("\nwinners per knob:", {k: v[1] for k, v in best.items()} or "none")
    (args.work / "results.json").write_text(json.dumps(rows, indent=2, default=list) + "\n")


if __name__ == "__main__":
    main()
