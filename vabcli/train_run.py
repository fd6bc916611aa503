"""From tokenized manifest clips to a training run: data split, model dimensions, bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .batch import Outcome
from .cache import Cache
from .clips import ClipItem
from .config import ModelConfig, model_config
from .dataset import LatentClip
from .errors import VabError
from .latents import latent_files


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
        import torch

        from .model import VabModel

        with torch.device("meta"):  # counts without allocating
            return VabModel(self.model_cfg).n_parameters()

    def summary(self) -> str:
        return (
            f"model {self.preset}: {self.n_parameters() / 1e6:.1f} M parameters; "
            f"{len(self.train)} train and {len(self.val)} val clips; skipped "
            f"{self.n_without_audio} without audio and {self.n_failed} that failed"
        )

    def trainer(self, opts: Any, out: Path, device: str, resume: bool) -> Any:
        from .train import RunInfo, Trainer

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
        clip = LatentClip(features, codes)
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
