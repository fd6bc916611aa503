"""Quality of the bundled model on held-out `vab synth` clips, next to baselines, and the effect
of the sampler settings on quality and speed.

    python benchmarks/quality.py [--work build/quality] [--clips 100] [--sweep-clips 40]
                                 [--no-sweep] [--train-data build/model/data/manifest.jsonl]

Held-out clips: `vab synth --seed 7` (the bundled model trained on seed 1000; its encoders on
their own scene streams). Rows, all scored by the same `vab eval` measures:
  real (other clips)  the real audio of `vab synth --seed 8` clips, one per held-out clip: what
                      real-vs-real fd_logmel is for two disjoint sets
  silence             all zeros
  random other clip   the real audio of another held-out clip, looped or cut to length
  nearest neighbour   the real audio of the training clip whose mean visual feature (builtin
                      tower) is closest to the held-out clip's
  builtin model       `vab generate --data ...` with the default settings (through
                      `vabcli.generate`; x_real_time counts its wall time, model loading
                      included, Python start-up not)
Prints markdown tables and writes WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import soundfile

import vabcli
from vabcli.core.cache import Cache
from vabcli.core.threads import size_torch_threads
from vabcli.data.clips import clip_items
from vabcli.evaluation.generated_audio import (
    ClipAudio,
    EvalOptions,
    find_generated,
    fit_judge,
    load_pairs,
    score,
)
from vabcli.evaluation.metrics import EVAL_SAMPLE_RATE
from vabcli.media.decode import decode_audio_file
from vabcli.world.synth import SynthOptions, synthesize

HELD_OUT_SEED, OTHER_SEED = 7, 8
STEPS, GUIDANCES = (1, 4, 8, 16, 32), (0.0, 2.0, 5.0)
COLUMNS = (
    "onset_f1",
    "onset_offset_ms",
    "event_class_acc",
    "class_acc",
    "fd_logmel",
    "silence_ratio",
    "clipping",
)


def dub(manifest: Path, out: Path, cache: Path, **options: object) -> float:
    """`vab generate --data MANIFEST --out OUT --no-mux`, through the library; wall seconds."""
    started = time.perf_counter()
    outcomes = vabcli.generate(out=out, data=manifest, cache=cache, mux=False, **options)
    failed = [o for o in outcomes if o.status == "error"]
    if failed:
        raise SystemExit(f"generate failed: {failed[0].input}: {failed[0].error}")
    return time.perf_counter() - started


def synth(folder: Path, seed: int, n: int) -> Path:
    if not (folder / "manifest.jsonl").exists():
        synthesize(folder, SynthOptions(n=n, seed=seed))
    return folder / "manifest.jsonl"


def write_audio(folder: Path, clips: list[ClipAudio], audio_of) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, clip in enumerate(clips):
        wav = np.resize(np.asarray(audio_of(i, clip), dtype=np.float32), len(clip.real))
        soundfile.write(folder / f"{clip.entry.video.stem}.wav", wav, EVAL_SAMPLE_RATE)
    return folder


def with_generated(clips: list[ClipAudio], folder: Path) -> list[ClipAudio]:
    out = []
    items = {item.path: item for item in clip_items([str(c.entry.video) for c in clips], None)}
    for clip in clips:
        path = find_generated(folder, items[clip.entry.video])
        wav = decode_audio_file(path, EVAL_SAMPLE_RATE) if path else None
        out.append(ClipAudio(clip.entry, clip.real, wav, path))
    return out


def mean_features(manifest: Path, cache: Path) -> dict[Path, np.ndarray]:
    """Unit mean builtin-tower feature of every clip of a manifest (tokenized into `cache`)."""
    from vabcli.encoders.tokenize import ClipTokenizer, TokenizeOptions, latent_files

    store = Cache(cache)
    tokenizer = ClipTokenizer(TokenizeOptions(codec="builtin", image_encoder="builtin"), store)
    result = {}
    for item in clip_items(None, manifest):
        figures = tokenizer.tokenize(item.path, item.segment, with_audio=False)
        features = np.load(latent_files(store, figures)[0]).mean(axis=0)
        result[item.path] = features / np.linalg.norm(features)
    return result


def table(rows: dict[str, dict], extra: tuple[str, ...] = ()) -> str:
    head = ["setting", *COLUMNS, *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in rows.items():
        cells = [name] + [
            "n/a" if s.get(k) is None else f"{s[k]:.3g}" if k != "clipping" else f"{s[k]:.1e}"
            for k in (*COLUMNS, *extra)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_card_scores(row: dict, n_clips: int) -> None:
    """Put the bundled model's held-out scores on its card (`vab models` shows them)."""
    from vabcli.core.builtin import BUILTIN_DIR, CARD_FILE

    path = BUILTIN_DIR / CARD_FILE
    card = json.loads(path.read_text())
    keys = ("class_acc", "event_class_acc", "onset_f1", "onset_offset_ms", "fd_logmel")
    card["scores"] = {k: row[k] for k in keys}
    card["summary"]["held-out"] = (
        ", ".join(f"{k} {row[k]:.3g}" for k in keys)
        + f" on {n_clips} clips of vab synth --seed {HELD_OUT_SEED} (benchmarks/quality.py)"
    )
    path.write_text(json.dumps(card, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("build/quality"))
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--sweep-clips", type=int, default=40)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--write-card", action="store_true", help="scores onto the model card")
    parser.add_argument("--train-data", type=Path, default=Path("build/model/data/manifest.jsonl"))
    args = parser.parse_args()
    work, cache = args.work, args.work / "cache"
    held_out = synth(work / "held-out", HELD_OUT_SEED, args.clips)
    other = synth(work / "other", OTHER_SEED, args.clips)
    clips = load_pairs(None, held_out)
    judge = fit_judge(clips)
    others = load_pairs(None, other)
    rng = np.random.default_rng(0)
    shift = rng.integers(1, len(clips), size=len(clips))  # never the clip itself
    baselines = {
        "real (other clips)": write_audio(work / "real-other", clips, lambda i, c: others[i].real),
        "silence": write_audio(work / "silence", clips, lambda i, c: np.zeros(1)),
        "random other clip": write_audio(
            work / "random-other", clips, lambda i, c: clips[(i + shift[i]) % len(clips)].real
        ),
    }
    if args.train_data.exists():
        train = mean_features(args.train_data, Path("build/model/cache"))
        query = mean_features(held_out, cache)
        names, bank = list(train), np.stack(list(train.values()))
        train_audio = {e.entry.video: e.real for e in load_pairs(None, args.train_data)}
        nearest = {v: names[int(np.argmax(bank @ f))] for v, f in query.items()}
        baselines["nearest neighbour"] = write_audio(
            work / "nearest", clips, lambda i, c: train_audio[nearest[c.entry.video]]
        )
    rows = {
        name: score(with_generated(clips, folder), judge, EvalOptions())
        for name, folder in baselines.items()
    }
    seconds = sum(len(c.real) for c in clips) / EVAL_SAMPLE_RATE
    default_dir = work / "builtin-default"
    size_torch_threads()  # as `vab generate` does; a library call leaves them to its caller
    wall = dub(held_out, default_dir, cache, overwrite=True)  # a re-run scores this model
    model_row = score(with_generated(clips, default_dir), judge, EvalOptions())
    rows["builtin model (defaults)"] = {**model_row, "x_real_time": seconds / wall}
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    minutes = seconds / 60
    print(f"\n## quality on {len(clips)} held-out clips ({minutes:.1f} min of video), {machine}\n")
    print(table(rows))
    results = {"held_out": rows}
    if args.write_card:
        write_card_scores(model_row, len(clips))
    if not args.no_sweep:
        subset = work / "held-out" / "sweep.jsonl"
        lines = held_out.read_text().splitlines()[: args.sweep_clips]
        subset.write_text("\n".join(lines) + "\n")
        sweep_clips = clips[: args.sweep_clips]
        sweep_seconds = sum(len(c.real) for c in sweep_clips) / EVAL_SAMPLE_RATE
        sweep = {}
        for steps in STEPS:
            for guidance in GUIDANCES:
                out = work / f"sweep-s{steps}-g{guidance:g}"
                wall = dub(subset, out, cache, steps=steps, guidance=guidance, overwrite=True)
                row = score(with_generated(sweep_clips, out), judge, EvalOptions())
                row["x_real_time"] = sweep_seconds / wall
                sweep[f"steps {steps}, guidance {guidance:g}"] = row
                print(f"steps {steps} guidance {guidance:g}: {row}", flush=True)
        print(f"\n## sampler settings on {len(sweep_clips)} held-out clips, {machine}\n")
        print(table(sweep, ("x_real_time",)))
        results["sweep"] = sweep
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
