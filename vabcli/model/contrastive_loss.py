"""Symmetric InfoNCE between paired visual and audio embeddings (VAB's contrastive stage).

Row i of each batch is a pair; every other row is a negative. Under torchrun the trainer gathers
the embeddings of all ranks first (`vabcli.training.distributed.gather_batch`), so each rank sees
the whole global batch as negatives. The temperature is learnt, as a log inverse temperature
clamped like CLIP's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

INITIAL_TEMPERATURE = 0.07
MAX_INVERSE_TEMPERATURE = 100.0


class LogitScale(nn.Module):
    """exp(s), the learnt inverse temperature, clamped to at most MAX_INVERSE_TEMPERATURE."""

    def __init__(self, temperature: float = INITIAL_TEMPERATURE) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(MAX_INVERSE_TEMPERATURE)).exp()


def info_nce(visual: torch.Tensor, audio: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean of the visual->audio and audio->visual cross-entropies over `[B, D]` unit vectors
    (row i of each is a pair), logits = scale x cosine similarity."""
    logits = scale * visual @ audio.T
    targets = torch.arange(len(visual), device=visual.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
