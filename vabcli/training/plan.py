"""From tokenized manifest clips to a training run: data split, model dimensions, bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vabcli.config import ModelConfig, model_config
from vabcli.core.cache import Cache
from vabcli.core.errors import VabError
from vabcli.core.jobs import Outcome
from vabcli.data.clips import ClipItem
from vabcli.encoders.tokenize import latent_files
from vabcli.training.dataset import LatentClip


@dataclass(frozen=True)
class TrainPlan:
    preset: str
    model_cfg: ModelConfig
    codec_id: str
    visual_id: str
    train: list[LatentClip]
    val: list[LatentClip]
    n_failed: int
    n_without_audio: int
    encoders: dict[str, Any] | None = None  # how to load the encoders again (latents.encoder_spec)

    def n_parameters(self) -> int:
        from vabcli.model.shapes_only import shapes_only
        from vabcli.model.transformer import VabModel

        with shapes_only():  # counts without allocating
            return VabModel(self.model_cfg).n_parameters()

    def summary(self) -> str:
        return (
            f"model {self.preset}: {self.n_parameters() / 1e6:.1f} M parameters; "
            f"{len(self.train)} train and {len(self.val)} val clips; skipped "
            f"{self.n_without_audio} without audio and {self.n_failed} that failed"
        )

    def trainer(self, opts: Any, out: Path, device: str, resume: bool) -> Any:
        from vabcli.training.trainer import RunInfo, Trainer

        meta = {"preset": self.preset, "train_clips": len(self.train), "encoders": self.encoders}
        info = RunInfo(self.codec_id, self.visual_id, meta)
        return Trainer(self.model_cfg, info, opts, self.train, self.val, out, device, resume)


def plan_training(
    items: list[ClipItem],
    outcomes: list[Outcome],
    cache: Cache,
    preset: str,
    overrides: dict[str, int | float],
    fps: float,
    codec_id: str,
    visual_id: str,
    encoders: dict[str, Any] | None = None,
) -> TrainPlan:
    """Sort tokenized clips into train and val; size the model to the data and encoders."""
    train, val = [], []
    failed = silent = 0
    figures: dict[str, Any] = {}
    for item, outcome in zip(items, outcomes, strict=True):
        if outcome.status != "ok":
            failed += 1
            continue
        features, codes = latent_files(cache, outcome.figures)
        if codes is None:  # nothing to learn to predict
            silent += 1
            continue
        figures = outcome.figures
        clip = LatentClip(features, codes, item.label)
        (val if item.split == "val" else train).append(clip)
    if not train:
        raise VabError(
            f"no usable training clips: {failed} failed, {silent} without audio, "
            f"{len(val)} in the val split"
        )
    dims = {
        "visual_dim": figures["visual_dim"],
        "n_codebooks": figures["n_codebooks"],
        "codebook_size": figures["codebook_size"],
        "audio_frame_rate": figures["audio_frame_rate"],
        "visual_fps": fps,
    }
    cfg = model_config(preset, **{**dims, **overrides})
    return TrainPlan(preset, cfg, codec_id, visual_id, train, val, failed, silent, encoders)


# A pack: a run's training data without the videos or encoders (cached arrays + plan.json), so
# clips tokenized on one machine train on another (`vab train --write-pack` / `--pack`).
PACK_PLAN = "plan.json"
PACK_FORMAT = 1
_PACK_DATA_DIMS = ("visual_dim", "n_codebooks", "codebook_size", "audio_frame_rate", "visual_fps")


def write_pack(plan: TrainPlan, folder: Path, overwrite: bool = False) -> int:
    """Copy the plan's arrays and its bookkeeping into `folder` (built aside, then renamed into
    place, so an interrupted write leaves no half pack). Returns the bytes written."""
    import json
    import os
    import shutil
    from dataclasses import asdict

    from vabcli.core.atomic import check_writable
    from vabcli.core.temps import TMP_MARK, sweep_abandoned, temp_name

    check_writable(folder, overwrite)
    cfg = asdict(plan.model_cfg)
    names: dict[str, list[str]] = {"train": [], "val": []}
    labels: dict[str, Any] = {}
    sweep_abandoned(folder.parent, f".{folder.name}{TMP_MARK}")  # of packs killed mid-write
    tmp = folder.with_name("." + temp_name(folder.name))
    try:
        tmp.mkdir(parents=True)
        for split, clips in (("train", plan.train), ("val", plan.val)):
            for i, clip in enumerate(clips):
                name = f"{split}-{i:06d}"
                shutil.copyfile(clip.features, tmp / f"{name}.features.npy")
                shutil.copyfile(clip.codes, tmp / f"{name}.codes.npy")
                names[split].append(name)
                if clip.label is not None:
                    labels[name] = clip.label
        meta = {
            "format": PACK_FORMAT,
            "codec_id": plan.codec_id,
            "visual_id": plan.visual_id,
            "encoders": plan.encoders,
            "data_dims": {k: cfg[k] for k in _PACK_DATA_DIMS},
            "n_failed": plan.n_failed,
            "n_without_audio": plan.n_without_audio,
            **names,
            "labels": labels,
        }
        (tmp / PACK_PLAN).write_text(json.dumps(meta, indent=1) + "\n")
        size = sum(f.stat().st_size for f in tmp.iterdir())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_pack(folder: Path, preset: str, overrides: dict[str, int | float]) -> TrainPlan:
    """The plan of a pack, its model sized by `preset` and `overrides` like `plan_training`."""
    import json

    try:
        meta = json.loads((folder / PACK_PLAN).read_text())
    except (OSError, ValueError) as exc:
        raise VabError(f"{folder}: not a training pack (no readable {PACK_PLAN})") from exc
    if meta.get("format") != PACK_FORMAT:
        raise VabError(f"{folder}: pack format {meta.get('format')} is not {PACK_FORMAT}")

    labels = meta.get("labels", {})  # packs written before labels were kept have none

    def clips(split: str) -> list[LatentClip]:
        found = [
            LatentClip(
                folder / f"{n}.features.npy", folder / f"{n}.codes.npy", _label(labels.get(n))
            )
            for n in meta[split]
        ]
        missing = [c for c in found if not (c.features.exists() and c.codes.exists())]
        if missing:
            raise VabError(f"{folder}: pack is missing {missing[0].codes.name} and others")
        return found

    cfg = model_config(preset, **{**meta["data_dims"], **overrides})
    return TrainPlan(
        preset,
        cfg,
        meta["codec_id"],
        meta["visual_id"],
        clips("train"),
        clips("val"),
        meta["n_failed"],
        meta["n_without_audio"],
        meta["encoders"],
    )


def _label(value: Any) -> Any:
    """A label as read back from JSON: lists become tuples again, as the manifest reader makes."""
    return tuple(value) if isinstance(value, list) else value
