"""`make model`: rebuild the bundled model from scratch: codec, image tower, VAB checkpoint.

    python -m vabcli.world.make_model [WORK_DIR] [--force] [--device auto|cpu|cuda]
                                [--stages codec,tower,data,pack,train] [--from-pack]
                                [--recipe NAME=VALUE ...]

Stages, each skipped when its output exists (an interrupted build continues where it stopped):
  codec    train_codec on the world's sounds              -> WORK/codec
  tower    train_tower on the world's frames              -> WORK/vision
           both installed into vabcli/weights/builtin (so `builtin` names them from here on)
  data     vab synth WORK/data (its own seed)              -> WORK/data/manifest.jsonl
  pack     vab train --write-pack: tokenized training data -> WORK/pack (only when asked)
  train    vab train on it with the builtin encoders      -> WORK/run, whose last checkpoint
           is installed into vabcli/weights/builtin/vab with card.json
`data` runs the real command line, as a user would; `pack` and `train` call the library
function behind `vab train` (vabcli.training.pretrain) with the same options. To train on a GPU
machine without videos or ffmpeg there: `--stages pack` here, then, with WORK/pack carried
over, `--stages train --from-pack --device cuda` there. `--recipe data_clips=2000` (any field
of Recipe; model_set as `model_set=d_model=192,n_heads=4`) builds a variant, e.g. to measure one.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from vabcli.config import CLIP_SECONDS
from vabcli.core.atomic import atomic_output
from vabcli.core.builtin import BUILTIN, BUILTIN_DIR, CARD_FILE, CHECKPOINT, CODEC, VISION
from vabcli.core.threads import prepare_process
from vabcli.encoders.tokenize import TokenizeOptions
from vabcli.training.prepare import RunSetup

STAGES = ("codec", "tower", "data", "pack", "train")
DEFAULT_STAGES = ("codec", "tower", "data", "train")


@dataclass(frozen=True)
class Recipe:
    codec_steps: int = 8000
    tower_steps: int = 3000
    data_seed: int = 1000  # `vab synth` seeds used elsewhere (tests, demo, held-out eval) differ
    # 5000 clips: on 1000 the validation loss rose from mid-run (the model learnt the clips).
    data_clips: int = 5000
    data_min_seconds: float = 2.0
    data_max_seconds: float = 10.0
    train_steps: int = 6000
    train_batch: int = 32
    clip_seconds: float = CLIP_SECONDS
    model_set: tuple[str, ...] = ("d_model=192", "n_heads=4", "n_multiway=4", "n_shared=4")
    lr: float = 1e-3
    warmup_steps: int = 300


# The bundled codec and image tower (installed by the stages before) tokenize the clips.
_ENCODERS = TokenizeOptions(codec=BUILTIN, image_encoder=BUILTIN)


def _vab(*args: str) -> None:
    print("$ vab " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "vabcli", *args], check=True)


def _options(**values: object) -> list[str]:
    """Command-line options from keywords: `clip_seconds=4.0` -> `--clip-seconds 4.0`."""
    args: list[str] = []
    for name, value in values.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


class _StageClock:
    """Minutes each stage took, kept in WORK/minutes.json as it goes, so that a training run
    resumed after an interruption counts every segment, not only the last."""

    def __init__(self, work: Path) -> None:
        self.ledger = work / "minutes.json"
        self.started: dict[str, float] = {}  # monotonic start of the stages run here
        self.earlier: dict[str, float] = {}  # minutes of a resumed stage's earlier segments
        self.minutes: dict[str, float] = {}  # stages finished here: their whole minutes

    def _spent(self) -> dict[str, float]:
        return json.loads(self.ledger.read_text()) if self.ledger.exists() else {}

    def start(self, name: str, resumed: bool = False) -> None:
        self.earlier[name] = float(self._spent().get(name, 0.0)) if resumed else 0.0
        self.started[name] = time.monotonic()
        self.note(name)

    def note(self, name: str) -> float:
        """Record `name`'s minutes so far in the ledger, and return them."""
        spent = self._spent()
        elapsed = (time.monotonic() - self.started[name]) / 60
        spent[name] = round(self.earlier[name] + elapsed, 1)
        # Whole or not at all: a half-written ledger would stop the resume it is for.
        with atomic_output(self.ledger, overwrite=True) as tmp:
            tmp.write_text(json.dumps(spent, indent=1) + "\n")
        return spent[name]

    def finish(self, name: str) -> None:
        self.minutes[name] = self.note(name)
        print(f"[{name}] finished in {self.minutes[name]} min", flush=True)


def _stage(name: str, done: Path, force: bool, clock: _StageClock, resumed: bool = False) -> bool:
    """True when the stage must run (its clock started); prints why not otherwise."""
    if done.exists() and not force:
        print(f"[{name}] done already ({done}); skipping", flush=True)
        return False
    print(f"[{name}] {'resuming' if resumed else 'starting'}", flush=True)
    clock.start(name, resumed)
    return True


def _install(source: Path, target: Path, files: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy2(source / file, target / file)


def build(
    work: Path,
    recipe: Recipe = Recipe(),
    force: bool = False,
    device: str = "auto",
    stages: tuple[str, ...] = DEFAULT_STAGES,
    from_pack: bool = False,
) -> None:
    from vabcli.core.device import resolve_device
    from vabcli.world.train_codec import CodecTrainOptions, train_codec
    from vabcli.world.train_vision import train_tower

    device = resolve_device(device)
    work.mkdir(parents=True, exist_ok=True)
    clock = _StageClock(work)
    say = lambda line: print(line, flush=True)  # noqa: E731
    if "codec" in stages and _stage("codec", work / "codec" / CODEC.files[1], force, clock):
        train_codec(
            work / "codec", CodecTrainOptions(steps=recipe.codec_steps), log=say, device=device
        )
        clock.finish("codec")
    if "tower" in stages and _stage("tower", work / "vision" / VISION.files[1], force, clock):
        train_tower(work / "vision", steps=recipe.tower_steps, log=say, device=device)
        clock.finish("tower")
    for part in (CODEC, VISION):
        if (work / part.folder.name / part.files[1]).exists():
            _install(work / part.folder.name, part.folder, part.files)
    data = work / "data"
    manifest = data / "manifest.jsonl"
    if "data" in stages and _stage("data", manifest, force, clock):
        counts = _options(n=recipe.data_clips, seed=recipe.data_seed)
        lengths = _options(
            min_duration=recipe.data_min_seconds, max_duration=recipe.data_max_seconds
        )
        _vab("synth", str(data), *counts, *lengths)
        clock.finish("data")
    # Each validation (every 500 steps) records the training minutes so far.
    setup = _train_setup(work / "cache", say, on_validated=lambda: clock.note("train"))
    pack = work / "pack"
    if "pack" in stages and _stage("pack", pack / "plan.json", force, clock):
        from vabcli.training.pretrain import write_training_pack

        write_training_pack(
            manifest, pack, tokenize=_ENCODERS, setup=replace(setup, overwrite=True)
        )
        clock.finish("pack")
    run = work / "run"
    # Done only at the recipe's last step: an interrupted run resumes rather than installs.
    done = run / "last" / CHECKPOINT.files[1]
    trained = _trained_steps(run / "last") if done.exists() and not force else 0
    finished = trained >= recipe.train_steps
    if "train" in stages and _stage(
        "train", done if finished else run / "-", force, clock, resumed=trained > 0
    ):
        source = {"pack": pack} if from_pack else {"data": manifest}
        again = {"resume": True} if trained else {"overwrite": True}
        _pretrain(run, recipe, source, replace(setup, device=device, **again), say)
        clock.finish("train")
    if "train" in stages:
        # The end of the schedule, not the lowest val loss: val loss rises after mid-run while
        # the sampler keeps improving (30 held-out clips, step 3000 -> 6000: onset_f1 0.33 ->
        # 0.71, fd_logmel 400 -> 160, class_acc 0.87 -> 0.83).
        _install(run / "last", CHECKPOINT.folder, CHECKPOINT.files)
        if clock.minutes:  # something was rebuilt: the card's held-out scores no longer apply
            _write_card(recipe, clock.minutes, device)
        print(f"bundled model installed in {BUILTIN_DIR}", flush=True)


def _train_setup(
    cache: Path, say: Callable[[str], None], on_validated: Callable[[], object]
) -> RunSetup:
    """How `build` runs `vab train`'s library call: its cache, and its messages as lines."""
    from vabcli.core.cache import Cache, sweep
    from vabcli.training.prepare import RunEvents, RunSetup

    store = Cache(cache, on_damage=say)
    sweep(store.root)  # the leftovers of killed runs, as `vab train` sweeps them

    def on_step(metrics: dict[str, float]) -> None:
        if "val_loss" in metrics:
            losses = f"loss {metrics['loss']:.3f}  val_loss {metrics['val_loss']:.3f}"
            say(f"step {metrics['step']}: {losses}")
            on_validated()

    return RunSetup(cache=store, events=RunEvents(warning=say, message=say, step=on_step))


def _pretrain(
    run: Path, recipe: Recipe, source: dict[str, Path], setup: RunSetup, say: Callable[[str], None]
) -> None:
    """`vab train` on `source` (data= or pack=) into `run` with the recipe's model and schedule,
    as a library call (torch's threads sized as the command sizes them)."""
    from vabcli.config import TrainOptions
    from vabcli.core.threads import size_torch_threads
    from vabcli.training.pretrain import train

    size_torch_threads()
    encoders = replace(_ENCODERS, device=setup.device)
    dims = {name: _number(value) for name, _, value in (s.partition("=") for s in recipe.model_set)}
    schedule = TrainOptions(
        steps=recipe.train_steps,
        batch_size=recipe.train_batch,
        clip_seconds=recipe.clip_seconds,
        lr=recipe.lr,
        warmup_steps=recipe.warmup_steps,
        val_every=500,
    )
    summary = train(
        run, preset="tiny", dims=dims, options=schedule, tokenize=encoders, setup=setup, **source
    )
    say(f"trained to step {summary['step']} -> {summary['last']}")


def _number(text: str) -> int | float:
    """`"4"` -> 4, `"0.5"` -> 0.5: recipe values and model settings, typed as they read."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def with_overrides(recipe: Recipe, overrides: list[str]) -> Recipe:
    """`recipe` with `NAME=VALUE` fields replaced, each value typed as its field's default."""
    fields = asdict(recipe)
    changes: dict[str, object] = {}
    for item in overrides:
        name, equals, value = item.partition("=")
        if not equals or name not in fields:
            raise ValueError(
                f"--recipe {item!r}: expected NAME=VALUE, NAME one of {', '.join(fields)}"
            )
        default = fields[name]
        if isinstance(default, (tuple, list)):
            changes[name] = tuple(part for part in value.split(",") if part)
        else:
            try:
                changes[name] = type(default)(value)
            except ValueError:
                raise ValueError(
                    f"--recipe {item!r}: {name} takes a {type(default).__name__}"
                ) from None
    return replace(recipe, **changes)


def _trained_steps(checkpoint: Path) -> int:
    from vabcli.model.checkpoint import read_meta

    return read_meta(checkpoint).step or 0


def _write_card(recipe: Recipe, minutes: dict[str, float], device: str) -> None:
    from vabcli.encoders.audio_codec import read_codec_config
    from vabcli.model.checkpoint import read_meta

    codec = read_codec_config(CODEC.folder / "config.json")
    tower = json.loads((VISION.folder / VISION.files[0]).read_text())["model_cfg"]["vision_cfg"]
    step = read_meta(CHECKPOINT.folder).step
    old = {}
    if (BUILTIN_DIR / CARD_FILE).exists():
        old = json.loads((BUILTIN_DIR / CARD_FILE).read_text())
    where = _machine(device)
    card = {
        "recipe": asdict(recipe),
        # Stages skipped in this build keep the times (and machines) of the build that ran them.
        "build_minutes": {**old.get("build_minutes", {}), **minutes},
        "build_machine": {**old.get("build_machine", {}), **{k: where for k in minutes}},
        "summary": {
            "codec": f"{codec.name}: EnCodec architecture, {codec.sample_rate} Hz, {codec.n_q} "
            f"x {codec.bins} codes at {codec.frame_rate:g} Hz, trained on vab synth sounds",
            "image encoder": f"open_clip ViT, {tower['image_size']} px, {tower['layers']} layers "
            f"x {tower['width']}, trained on vab synth frames (classes in view, time to sounds)",
            "model": f"VAB {' '.join(recipe.model_set)}, {'?' if step is None else step} steps on "
            f"{recipe.data_clips} vab synth clips (seed {recipe.data_seed})",
        },
        **{
            k: v
            for k, v in old.items()
            if k not in ("recipe", "build_minutes", "build_machine", "summary", "scores")
        },
    }
    (BUILTIN_DIR / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


def _machine(device: str) -> str:
    import os

    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    return f"{platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    prepare_process()  # as `vab` does, before torch loads: training runs in this process
    parser = argparse.ArgumentParser(
        prog="python -m vabcli.world.make_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("work", nargs="?", type=Path, default=Path("build/model"))
    parser.add_argument("--force", action="store_true", help="redo stages that are done")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda")
    parser.add_argument(
        "--stages",
        default=",".join(DEFAULT_STAGES),
        help=f"comma-separated, of {', '.join(STAGES)}",
    )
    parser.add_argument("--from-pack", action="store_true", help="train on WORK/pack")
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="replace a Recipe field (repeatable), e.g. data_clips=2000",
    )
    args = parser.parse_args()
    try:
        recipe = with_overrides(Recipe(), args.recipe)
    except ValueError as error:
        parser.error(str(error))
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage {unknown[0]!r}: one of {', '.join(STAGES)}")
    build(
        args.work,
        recipe,
        force=args.force,
        device=args.device,
        stages=stages,
        from_pack=args.from_pack,
    )


if __name__ == "__main__":
    main()
