"""Visual-conditioned masked audio-token prediction: VAB's one pre-training loss.

Per sample a mask ratio r is drawn from a truncated normal; each of the K x T audio tokens is
masked independently with probability r; the loss is cross-entropy on the masked tokens only.
With probability `null_condition_prob` a sample's visual condition is replaced by the null
condition, which teaches the unconditional model classifier-free guidance needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vabcli.config import MaskingConfig
from vabcli.model.checkpoint import unwrap


@dataclass(frozen=True)
class LossResult:
    loss: torch.Tensor  # scalar, differentiable
    accuracy: torch.Tensor  # masked-token top-1 accuracy, scalar
    n_masked: int


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
