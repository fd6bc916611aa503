"""Embeddings of whole clips from any checkpoint of the project.

A contrastive fine-tune embeds through its towers and projections; a pre-trained checkpoint
through its multiway layers alone (mean-pooled, normalised), so the two can be compared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vabcli.config import ModelConfig
from vabcli.core.errors import VabError
from vabcli.model.checkpoint import WEIGHTS_FILE, load_checkpoint, resolve_checkpoint
from vabcli.model.checkpoint_meta import CheckpointMeta
from vabcli.model.towers import EmbeddingModel, Towers
from vabcli.model.transformer import AUDIO, VISUAL, VabModel
from vabcli.tasks.contrastive import CONTRASTIVE_TASK, ContrastiveModel, ContrastiveSpec
from vabcli.training.dataset import WindowLength


@dataclass
class Embedder:
    model: EmbeddingModel
    meta: CheckpointMeta
    model_id: str  # what embedding files record: vectors of two models never mix
    device: str
    window: WindowLength  # the window length the checkpoint was trained on

    @torch.no_grad()
    def visual(self, features: np.ndarray) -> np.ndarray:
        """A clip's visual features `[T_v, D_v]` -> unit vector `[D]`."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(self.device)
        pooled = self.model.towers.visual_clip(x, self.window.n_visual)
        return self.model.project(pooled, VISUAL).float().cpu().numpy()

    @torch.no_grad()
    def audio(self, codes: np.ndarray) -> np.ndarray:
        """A clip's audio codes `[K, T_a]` -> unit vector `[D]`."""
        x = torch.from_numpy(np.asarray(codes, dtype=np.int64)).to(self.device)
        pooled = self.model.towers.audio_clip(x, self.window.n_audio)
        return self.model.project(pooled, AUDIO).float().cpu().numpy()


def trained_window(cfg: ModelConfig, meta: CheckpointMeta) -> WindowLength:
    """The window a checkpoint was trained on (`meta.window_seconds`), at its frame rates."""
    return WindowLength(meta.window_seconds, cfg.visual_fps, cfg.audio_frame_rate)


def load_embedder(path: Path, device: str = "cpu") -> Embedder:
    """The embedding model of a checkpoint (a contrastive fine-tune, or a pre-trained one)."""
    folder = resolve_checkpoint(path)
    cfg, state, meta = load_checkpoint(folder, device)
    task = meta.task
    if task == CONTRASTIVE_TASK:
        full = ContrastiveModel(cfg, ContrastiveSpec.from_meta(meta))
        full.load_state_dict(state)
        model = full.embed
    elif task:
        raise VabError(
            f"{path} is a {task} checkpoint; embeddings need a contrastive or a pre-trained one"
        )
    else:
        backbone = VabModel(cfg)
        backbone.load_state_dict(state)
        model = EmbeddingModel(Towers(backbone), None)
    digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
    return Embedder(
        model.to(device).eval(), meta, f"sha256:{digest}", device, trained_window(cfg, meta)
    )
