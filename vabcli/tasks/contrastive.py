"""Contrastive fine-tuning of a pre-trained VAB backbone (VAB's "beyond" stage).

The first N1 multiway layers become two towers (`towers.py`), each mean-pooled, projected and
L2-normalised; symmetric InfoNCE with a learnt temperature pulls a clip's picture and sound
together and pushes the batch's other clips away (across all ranks under torchrun). The run
uses `vab train`'s loop: the same checkpoints, resume, metrics and Ctrl-C handling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vabcli.config import ModelConfig
from vabcli.model.checkpoint import unwrap
from vabcli.model.checkpoint_meta import CheckpointMeta
from vabcli.model.losses import LogitScale, LossResult, info_nce
from vabcli.model.towers import EmbeddingModel, Towers
from vabcli.model.transformer import AUDIO, VISUAL, VabModel
from vabcli.tasks.finetune import FineTuneTrainer
from vabcli.tasks.finetune_run import PROJ_DIM
from vabcli.tasks.retrieval import recall_at_k
from vabcli.training.distributed import gather_batch

CONTRASTIVE_TASK = "contrastive"
RECALL_KS = (1, 5, 10)


@dataclass(frozen=True)
class ContrastiveSpec:
    n_layers: int  # N1: multiway layers in each tower
    proj_dim: int = PROJ_DIM

    def meta(self) -> dict[str, Any]:
        return {"task": CONTRASTIVE_TASK, "n_layers": self.n_layers, "proj_dim": self.proj_dim}

    @classmethod
    def from_meta(cls, meta: CheckpointMeta) -> ContrastiveSpec:
        return cls(int(meta.n_layers), int(meta.proj_dim))


class ContrastiveModel(nn.Module):
    """Backbone towers + projections + the learnt temperature."""

    def __init__(self, cfg: ModelConfig, spec: ContrastiveSpec) -> None:
        super().__init__()
        self.embed = EmbeddingModel(Towers(VabModel(cfg), spec.n_layers), spec.proj_dim)
        self.scale = LogitScale()

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit embeddings (visual `[B, D]`, audio `[B, D]`) of a batch's aligned windows
        (`training.dataset.collate`'s visual, codes, visual_keep, audio_keep)."""
        return (
            self.embed.embed_visual(batch["visual"], batch["visual_keep"]),
            self.embed.embed_audio(batch["codes"], batch["audio_keep"]),
        )


class ContrastiveTrainer(FineTuneTrainer[ContrastiveSpec]):
    """`Trainer`'s loop on the contrastive model, starting from pre-trained backbone weights.

    Metrics: `accuracy` is in-batch visual-to-audio top-1; validation reports `val_loss` (InfoNCE
    over the whole val set at once), R@1/5/10 both ways, and `val_accuracy` = v2a R@1.
    """

    def build_model(self) -> nn.Module:
        model = ContrastiveModel(self.cfg, self.spec)
        model.embed.towers.backbone.load_state_dict(self.init)
        model.embed.towers.train_only((VISUAL, AUDIO))
        return model

    def _embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        (v, a), _ = self.run_net(batch)
        return v.float(), a.float()

    def _loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> LossResult:
        v, a = (gather_batch(x) for x in self._embed(batch))
        loss = info_nce(v, a, unwrap(self.net).scale())
        with torch.no_grad():
            hits = (v @ a.T).argmax(dim=1) == torch.arange(len(v), device=v.device)
        return LossResult(loss, hits.float().mean(), len(v))

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Every rank embeds the whole (small) val set, so all agree on the best checkpoint."""
        if len(self.val_clips) < 2:
            return {}
        parts = [self._embed(batch) for _, batch in self.val_batches(shard=False)]
        v = torch.cat([p[0] for p in parts])
        a = torch.cat([p[1] for p in parts])
        targets = torch.arange(len(v), device=v.device)
        values = {"val_loss": info_nce(v, a, unwrap(self.net).scale()).item()}
        for name, (queries, index) in {"v2a": (v, a), "a2v": (a, v)}.items():
            for k, r in recall_at_k(queries, index, targets, RECALL_KS).items():
                values[f"val_r{k}_{name}"] = r
        values["val_accuracy"] = values["val_r1_v2a"]
        return values
