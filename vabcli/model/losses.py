"""Every loss the VAB model trains with.

Masked audio-token prediction (pre-training): per sample a mask ratio r is drawn from a
truncated normal; each of the K x T audio tokens is masked independently with probability r; the
loss is cross-entropy on the masked tokens only. With probability `null_condition_prob` a
sample's visual condition is replaced by the null condition, which teaches the unconditional
model classifier-free guidance needs.

Symmetric InfoNCE (contrastive fine-tune) between paired visual and audio embeddings: row i of
each batch is a pair, every other row a negative. Under torchrun the trainer gathers the
embeddings of all ranks first (`vabcli.training.distributed.gather_batch`), so each rank sees the
whole global batch as negatives. The temperature is learnt, as a log inverse temperature clamped
like CLIP's.

Classification (classify fine-tune): cross-entropy for one label per clip, binary cross-entropy
per label for label lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vabcli.config import MaskingConfig
from vabcli.model.checkpoint import unwrap

INITIAL_TEMPERATURE = 0.07
MAX_INVERSE_TEMPERATURE = 100.0


@dataclass(frozen=True)
class LossResult:
    loss: torch.Tensor  # scalar, differentiable
    accuracy: torch.Tensor  # top-1 accuracy of the predictions scored, scalar
    n_masked: int  # predictions scored (masked tokens, clips or pairs)


def sample_mask_ratios(
    n: int, cfg: MaskingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`[n]` ratios from N(mean, std) truncated to [low, high], by inverse-CDF sampling."""
    normal = torch.distributions.Normal(0.0, 1.0)
    lo = normal.cdf(torch.tensor((cfg.low - cfg.mean) / cfg.std))
    hi = normal.cdf(torch.tensor((cfg.high - cfg.mean) / cfg.std))
    u = lo + (hi - lo) * torch.rand(n, generator=generator)
    return (cfg.mean + cfg.std * torch.special.ndtri(u)).clamp(cfg.low, cfg.high)


def mask_tokens(
    codes: torch.Tensor,
    mask_id: int,
    cfg: MaskingConfig,
    audio_keep: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs with [MASK] ids, bool mask of the tokens to predict), both `[B, K, T]`.

    Padding (`audio_keep` False) is never a target. Every sample keeps at least one target, so a
    short clip with an unlucky draw still teaches something.
    """
    b, k, t = codes.shape
    ratios = sample_mask_ratios(b, cfg, generator).to(codes.device)
    draws = torch.rand(b, k, t, generator=generator).to(codes.device)
    masked = draws < ratios[:, None, None]
    if audio_keep is not None:
        masked &= audio_keep[:, None, :]
        draws = draws.masked_fill(~audio_keep[:, None, :], 2.0)
    flat = masked.view(b, -1)
    none = ~flat.any(dim=1)
    if none.any():  # force the lowest draw (a real token) in samples that got no target
        flat[none, draws.view(b, -1)[none].argmin(dim=1)] = True
    return codes.masked_fill(masked, mask_id), masked


def masked_token_loss(
    model: torch.nn.Module,
    visual: torch.Tensor,
    codes: torch.Tensor,
    cfg: MaskingConfig,
    visual_keep: torch.Tensor | None = None,
    audio_keep: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> LossResult:
    """Mask, predict, score: visual `[B, T_v, D]`, codes `[B, K, T_a]`.

    `model` is a VabModel, or one wrapped for data-parallel training.
    """
    mask_id = unwrap(model).cfg.mask_id
    inputs, targets = mask_tokens(codes, mask_id, cfg, audio_keep, generator)
    null = (torch.rand(codes.shape[0], generator=generator) < cfg.null_condition_prob).to(
        codes.device
    )
    logits = model(visual, inputs, null, visual_keep, audio_keep)
    picked, truth = logits[targets], codes[targets]
    loss = F.cross_entropy(picked.float(), truth, label_smoothing=cfg.label_smoothing)
    accuracy = (picked.argmax(dim=-1) == truth).float().mean()
    return LossResult(loss, accuracy.detach(), int(truth.numel()))


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


def classification_loss(logits: torch.Tensor, target: torch.Tensor, multi: bool) -> torch.Tensor:
    """Binary cross-entropy per label for label lists (`multi`), else cross-entropy; logits
    `[B, n_labels]`, target multi-hot `[B, n_labels]`."""
    if multi:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)  # one-hot rows as class probabilities
