"""Classification from the VAB backbone: a linear head on the pooled outputs of the first N1
multiway layers (visual, audio, or both side by side).

Single labels train with cross-entropy; label lists (a manifest `label` may be a list) with
binary cross-entropy per label. With the backbone frozen this is a linear probe of what
pre-training learnt; unfrozen, the towers are fine-tuned with the head. The label set is part
of the checkpoint, so `vab classify` needs nothing but the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vabcli.config import ModelConfig
from vabcli.core.errors import VabError
from vabcli.model.checkpoint import load_checkpoint, resolve_checkpoint
from vabcli.model.checkpoint_meta import CheckpointMeta
from vabcli.model.losses import LossResult, classification_loss
from vabcli.model.towers import Towers
from vabcli.model.transformer import AUDIO, VISUAL, VabModel
from vabcli.tasks.contrastive import CONTRASTIVE_TASK
from vabcli.tasks.embedding import trained_window
from vabcli.tasks.finetune import FineTuneTrainer
from vabcli.training.dataset import CropDataset, Label, LatentClip, WindowLength

CLASSIFY_TASK = "classify"
MODALITIES = {"av": (VISUAL, AUDIO), "v": (VISUAL,), "a": (AUDIO,)}


@dataclass(frozen=True)
class ClassifySpec:
    n_layers: int  # N1: multiway layers the pooled outputs come from
    modality: str  # "av", "v" or "a"
    labels: tuple[str, ...]  # the head's outputs, in order
    multi_label: bool  # label lists: BCE per label; else one label per clip, cross-entropy
    frozen: bool = False  # linear probe: the backbone stays as it was

    def meta(self) -> dict[str, Any]:
        return {
            "task": CLASSIFY_TASK,
            "n_layers": self.n_layers,
            "modality": self.modality,
            "labels": list(self.labels),
            "multi_label": self.multi_label,
            "frozen": self.frozen,
        }

    @classmethod
    def from_meta(cls, meta: CheckpointMeta) -> ClassifySpec:
        return cls(
            int(meta.n_layers),
            meta.modality,
            tuple(meta.labels),
            bool(meta.multi_label),
            bool(meta.frozen),
        )

    @property
    def modalities(self) -> tuple[int, ...]:
        return MODALITIES[self.modality]


def _as_tuple(label: Label) -> tuple[str, ...]:
    return label if isinstance(label, tuple) else (label,)


def label_set(
    train: Sequence[LatentClip], val: Sequence[LatentClip]
) -> tuple[tuple[str, ...], bool]:
    """The sorted label set of the training clips, and whether clips carry label lists."""
    unlabelled = sum(c.label is None for c in (*train, *val))
    if unlabelled:
        raise VabError(
            f"classification needs a `label` on every clip: {unlabelled} of "
            f"{len(train) + len(val)} train and val clips have none (packs written "
            "before labels were kept have none: write the pack again)"
        )
    labels = sorted({name for clip in train for name in _as_tuple(clip.label)})
    unseen = sorted({n for c in val for n in _as_tuple(c.label)} - set(labels))
    if unseen:
        raise VabError(
            f"val label {unseen[0]!r} is on no train clip: the model could never learn it"
        )
    if len(labels) < 2:
        raise VabError(f"classification needs two labels or more; the train clips have {labels}")
    multi = any(isinstance(c.label, tuple) for c in (*train, *val))
    return tuple(labels), multi


def label_targets(labels: Sequence[Label], names: Sequence[str], where: str = "") -> torch.Tensor:
    """Multi-hot rows `[N, len(names)]` of `labels`; a label not in `names` is a VabError."""
    column = {name: i for i, name in enumerate(names)}
    targets = torch.zeros(len(labels), len(names))
    for row, label in enumerate(labels):
        for name in _as_tuple(label):
            if name not in column:
                known = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                raise VabError(
                    f"{where}label {name!r} is not one of the model's {len(names)} labels ({known})"
                )
            targets[row, column[name]] = 1.0
    return targets


class ClassifierModel(nn.Module):
    """Towers -> pooled outputs of the chosen modalities, layer-normalised and side by side ->
    linear head (logits)."""

    def __init__(self, cfg: ModelConfig, spec: ClassifySpec) -> None:
        super().__init__()
        self.towers = Towers(VabModel(cfg), spec.n_layers)
        self.modalities = spec.modalities
        self.head = nn.Linear(self.towers.dim * len(self.modalities), len(spec.labels))

    def _head(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        # Without a norm the probe would see the residual stream's raw scale (which differs by
        # modality and layer); normalised, one learning rate suits any checkpoint.
        return self.head(torch.cat([F.layer_norm(p, p.shape[-1:]) for p in pooled], dim=-1))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits `[B, n_labels]` of a batch's aligned windows (`training.dataset.collate`'s
        visual, codes, visual_keep, audio_keep)."""
        pooled = [
            self.towers.visual(batch["visual"], batch["visual_keep"])
            if m == VISUAL
            else self.towers.audio(batch["codes"], batch["audio_keep"])
            for m in self.modalities
        ]
        return self._head(pooled)

    def clip_logits(
        self, features: torch.Tensor, codes: torch.Tensor | None, window: WindowLength
    ) -> torch.Tensor:
        """Logits `[n_labels]` of a whole clip, pooled window by window."""
        pooled = [
            self.towers.visual_clip(features, window.n_visual)
            if m == VISUAL
            else self.towers.audio_clip(codes, window.n_audio)
            for m in self.modalities
        ]
        return self._head(pooled)


def top1_hits(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 where the highest-scoring label is one of the clip's labels."""
    return target.gather(1, scores.argmax(dim=1, keepdim=True))[:, 0]


def mean_average_precision(scores: np.ndarray, target: np.ndarray) -> float:
    """Mean over labels (those with a positive clip) of the precision at each positive, ranked
    by score: the usual multi-label measure (AudioSet's mAP)."""
    precisions = []
    for column in range(target.shape[1]):
        truth = target[np.argsort(-scores[:, column], kind="stable"), column] > 0
        if truth.any():
            hits = np.cumsum(truth)
            precisions.append(float(np.mean(hits[truth] / (np.flatnonzero(truth) + 1))))
    return float(np.mean(precisions)) if precisions else float("nan")


def classification_scores(scores: np.ndarray, target: np.ndarray, multi: bool) -> dict[str, float]:
    """`accuracy` (top label right) for single labels; `map` as well for label lists."""
    values = {
        "accuracy": float(top1_hits(torch.from_numpy(scores), torch.from_numpy(target)).mean())
    }
    if multi:
        values["map"] = mean_average_precision(scores, target)
    return values


def backbone_weights(meta: CheckpointMeta, weights: dict[str, torch.Tensor], name: Path) -> dict:
    """The backbone of a pre-trained checkpoint or of a contrastive fine-tune."""
    task = meta.task
    if not task:
        return weights
    if task == CONTRASTIVE_TASK:
        prefix = "embed.towers.backbone."
        return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    raise VabError(f"{name} is a {task} fine-tune: start from a pre-trained or contrastive one")


class ClassifyTrainer(FineTuneTrainer[ClassifySpec]):
    """`Trainer`'s loop on the classifier. Metrics: `accuracy` = top-1 hits in the batch;
    validation `val_loss`, `val_accuracy` (and `val_map` for label lists), one window per val
    clip, scored by every rank alike."""

    def build_model(self) -> nn.Module:
        model = ClassifierModel(self.cfg, self.spec)
        model.towers.backbone.load_state_dict(self.init)
        model.towers.train_only(self.spec.modalities)
        if self.spec.frozen:  # a linear probe: the head alone learns
            model.towers.requires_grad_(False)
        return model

    def dataset(self, clips: list[LatentClip]) -> CropDataset:
        targets = label_targets([c.label for c in clips], self.spec.labels)
        return CropDataset(clips, self.window, self.opts.seed, targets)

    def _logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits, batch = self.run_net(batch)
        return logits.float(), batch["target"]

    def _loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> LossResult:
        logits, target = self._logits(batch)
        loss = classification_loss(logits, target, self.spec.multi_label)
        return LossResult(loss, top1_hits(logits.detach(), target).mean(), len(logits))

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        if not self.val_clips:
            return {}
        parts = [self._logits(batch) for _, batch in self.val_batches(shard=False)]
        logits, target = (torch.cat(p) for p in zip(*parts, strict=True))
        values = {"val_loss": classification_loss(logits, target, self.spec.multi_label).item()}
        probs = probabilities(logits, self.spec.multi_label).cpu().numpy()
        scores = classification_scores(probs, target.cpu().numpy(), self.spec.multi_label)
        return {**values, **{f"val_{k}": v for k, v in scores.items()}}


def probabilities(logits: torch.Tensor, multi: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)


@dataclass
class Classifier:
    """A classify checkpoint ready for whole clips."""

    model: ClassifierModel
    spec: ClassifySpec
    meta: CheckpointMeta
    window: WindowLength
    device: str

    @property
    def needs_audio(self) -> bool:
        return AUDIO in self.spec.modalities

    @torch.no_grad()
    def probabilities(self, features: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        """Per-label probabilities `[n_labels]` of a clip (softmax, or sigmoids for lists)."""
        if codes is None and self.needs_audio:
            raise VabError(f"has no audio, and this classifier listens ({self.spec.modality})")
        x = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(self.device)
        c = None if codes is None else torch.from_numpy(np.asarray(codes, dtype=np.int64))
        logits = self.model.clip_logits(x, None if c is None else c.to(self.device), self.window)
        return probabilities(logits.float(), self.spec.multi_label).cpu().numpy()


def load_classifier(path: Path, device: str = "cpu") -> Classifier:
    folder = resolve_checkpoint(path)
    cfg, state, meta = load_checkpoint(folder, device)
    if meta.task != CLASSIFY_TASK:
        kind = f"a {meta.task} fine-tune" if meta.task else "a pre-trained checkpoint"
        raise VabError(
            f"{path} is {kind}, not a classifier: train one with `vab finetune "
            f"classify --init {path}` (--freeze for a linear probe)"
        )
    spec = ClassifySpec.from_meta(meta)
    model = ClassifierModel(cfg, spec)
    model.load_state_dict(state)
    return Classifier(model.to(device).eval(), spec, meta, trained_window(cfg, meta), device)
