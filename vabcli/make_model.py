"""`make model`: rebuild the bundled model from scratch: codec, image tower, VAB checkpoint.

    python -m vabcli.make_model [WORK_DIR] [--force]

Stages, each skipped when its output exists (an interrupted build continues where it stopped):
  codec    train_codec on the world's sounds              -> WORK/codec
  tower    train_tower on the world's frames              -> WORK/vision
  install  both into vabcli/models/builtin (so `builtin` names them from here on)
  data     vab synth WORK/data (its own seed)              -> WORK/data/manifest.jsonl
  train    vab train on it with the builtin encoders      -> WORK/run
  install  the best checkpoint's weights and config       -> vabcli/models/builtin/vab, card.json
Long stages run through the real command line, as a user would run them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .builtin import BUILTIN, BUILTIN_DIR, CARD_FILE, CHECKPOINT, CODEC, VISION


@dataclass(frozen=True)
class Recipe:
    codec_steps: int = 3000
    tower_steps: int = 3000
    data_seed: int = 1000  # `vab synth` seeds used elsewhere (tests, demo, held-out eval) differ
    data_clips: int = 1000
    data_min_seconds: float = 2.0
    data_max_seconds: float = 10.0
    train_steps: int = 2000
    train_batch: int = 16
    clip_seconds: float = 4.0
    model_set: tuple[str, ...] = ("d_model=192", "n_heads=4", "n_multiway=3", "n_shared=3")
    lr: float = 1e-3


def _vab(*args: str) -> None:
    print("$ vab " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "vabcli", *args], check=True)


def _stage(name: str, done: Path, force: bool, minutes: dict[str, float]) -> bool:
    """True when the stage must run; prints why not otherwise."""
    if done.exists() and not force:
        print(f"[{name}] done already ({done}); skipping", flush=True)
        return False
    print(f"[{name}] starting", flush=True)
    minutes[name] = time.monotonic()
    return True


def _finished(name: str, minutes: dict[str, float]) -> None:
    minutes[name] = round((time.monotonic() - minutes[name]) / 60, 1)
    print(f"[{name}] finished in {minutes[name]} min", flush=True)


def _install(source: Path, target: Path, files: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy2(source / file, target / file)


def build(work: Path, recipe: Recipe = Recipe(), force: bool = False) -> None:

    from .train_codec import CodecTrainOptions, train_codec
    from .train_vision import train_tower

    work.mkdir(parents=True, exist_ok=True)
    minutes: dict[str, float] = {}
    if _stage("codec", work / "codec" / "weights.safetensors", force, minutes):
        opts = CodecTrainOptions(steps=recipe.codec_steps)
        train_codec(work / "codec", opts, log=lambda line: print(line, flush=True))
        _finished("codec", minutes)
    if _stage("tower", work / "vision" / VISION.files[1], force, minutes):
        train_tower(work / "vision", steps=recipe.tower_steps, log=lambda s: print(s, flush=True))
        _finished("tower", minutes)
    _install(work / "codec", CODEC.folder, CODEC.files)
    _install(work / "vision", VISION.folder, VISION.files)
    data = work / "data"
    if _stage("data", data / "manifest.jsonl", force, minutes):
        _vab("synth", str(data), "--n", str(recipe.data_clips), "--seed", str(recipe.data_seed),
             "--min-duration", str(recipe.data_min_seconds),
             "--max-duration", str(recipe.data_max_seconds))  # fmt: skip
        _finished("data", minutes)
    run = work / "run"
    if _stage("train", run / "best" / CHECKPOINT.files[1], force, minutes):
        sets = [arg for pair in recipe.model_set for arg in ("--set", pair)]
        _vab("train", "--data", str(data / "manifest.jsonl"), "--out", str(run), "--overwrite",
             "--codec", BUILTIN, "--image-encoder", BUILTIN, "--cache", str(work / "cache"),
             "--preset", "tiny", *sets, "--steps", str(recipe.train_steps),
             "--batch-size", str(recipe.train_batch), "--clip-seconds", str(recipe.clip_seconds),
             "--lr", str(recipe.lr), "--val-every", "250")  # fmt: skip
        _finished("train", minutes)
    _install(run / "best", CHECKPOINT.folder, CHECKPOINT.files)
    _write_card(recipe, minutes)
    print(f"bundled model installed in {BUILTIN_DIR}", flush=True)


def _write_card(recipe: Recipe, minutes: dict[str, float]) -> None:
    from .checkpoint import read_meta
    from .codecs import read_codec_config

    codec = read_codec_config(CODEC.folder / "config.json")
    tower = json.loads((VISION.folder / VISION.files[0]).read_text())["model_cfg"]["vision_cfg"]
    meta = read_meta(CHECKPOINT.folder)
    old = {}
    if (BUILTIN_DIR / CARD_FILE).exists():
        old = json.loads((BUILTIN_DIR / CARD_FILE).read_text())
    card = {
        "recipe": asdict(recipe),
        # Stages skipped in this build keep the times of the build that ran them.
        "build_minutes": {**old.get("build_minutes", {}), **minutes},
        "summary": {
            "codec": f"{codec.name}: EnCodec architecture, {codec.sample_rate} Hz, {codec.n_q} "
            f"x {codec.bins} codes at {codec.frame_rate:g} Hz, trained on vab synth sounds",
            "image encoder": f"open_clip ViT, {tower['image_size']} px, {tower['layers']} layers "
            f"x {tower['width']}, trained on vab synth frames (classes in view, time to sounds)",
            "model": f"VAB {' '.join(recipe.model_set)}, {meta.get('step', '?')} steps on "
            f"{recipe.data_clips} vab synth clips (seed {recipe.data_seed})",
        },
        **{k: v for k, v in old.items() if k not in ("recipe", "build_minutes", "summary")},
    }
    (BUILTIN_DIR / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--force"]
    build(Path(args[0] if args else "build/model"), force="--force" in sys.argv[1:])
