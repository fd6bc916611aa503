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

INITIAL_TEMPERATURE = 0.07
MAX_INVERSE_TEMPERATURE = 100.0


@dataclass(frozen=True)
class LossResult:
    loss: torch.Tensor  # scalar, differentiable
    accuracy: torch.Tensor  # top-1 accuracy of the predictions scored, scalar
    # Predictions scored (masked tokens, clips or pairs); a tensor where counting on the host
    # would make it wait for the device.
    n_masked: int | torch.Tensor


@dataclass(frozen=True)
class MaskedCodes:
    """One batch's corruption, drawn where the random numbers live (the host, in training)."""

    inputs: torch.Tensor  # [B, K, T] codes with [MASK] ids
    targets: torch.Tensor  # [B, K, T] bool: the tokens scored
    null: torch.Tensor  # [B] bool: samples shown the null condition instead of their pictures


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
) -> MaskedCodes:
    """The corruption of a batch, on `codes`' device: inputs with [MASK] ids and the tokens to
    predict, both `[B, K, T]`, and the samples shown the null condition.

    Padding (`audio_keep` False) is never a target. Every sample keeps at least one target, so a
    short clip with an unlucky draw still teaches something. With `cfg.cosine_share` some
    samples' ratios are cosine draws; with `cfg.level_share` some samples are masked level-wise
    (see MaskingConfig), hiding more than they score.
    """
    b, k, t = codes.shape
    ratios = sample_mask_ratios(b, cfg, generator)
    if cfg.cosine_share > 0:  # only then: other runs draw exactly the numbers they always drew
        ratios = torch.where(_share(b, cfg.cosine_share, generator), _cosine(b, generator), ratios)
    draws = torch.rand(b, k, t, generator=generator).to(codes.device)
    masked = draws < ratios.to(codes.device)[:, None, None]
    hidden = masked
    if cfg.level_share > 0:
        hidden, masked, draws = _level_wise(draws, masked, cfg.level_share, generator)
    if audio_keep is not None:
        masked &= audio_keep[:, None, :]
        draws = draws.masked_fill(~audio_keep[:, None, :], 2.0)
    flat = masked.view(b, -1)
    none = ~flat.any(dim=1)
    if none.any():  # force the lowest draw (a real token) in samples that got no target
        flat[none, draws.view(b, -1)[none].argmin(dim=1)] = True
    null = torch.rand(b, generator=generator) < cfg.null_condition_prob
    return MaskedCodes(codes.masked_fill(hidden | masked, mask_id), masked, null.to(codes.device))


def _share(n: int, share: float, generator: torch.Generator | None) -> torch.Tensor:
    """`[n]` bool, each True with probability `share`."""
    return torch.rand(n, generator=generator) < share


def _cosine(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """`[n]` ratios cos(pi/2 u), u uniform on [0, 1): MaskGIT's schedule as a distribution."""
    return torch.cos(math.pi / 2 * torch.rand(n, generator=generator))


def _level_wise(
    draws: torch.Tensor, masked: torch.Tensor, share: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden, scored, draws) `[B, K, T]`: `masked` for most samples; for a `share` of them,
    one level chosen uniformly masked by a cosine ratio and scored, every finer level hidden
    whole (and the draws of the other levels out of reach of a forced target)."""
    b, k, _ = draws.shape
    chosen = _share(b, share, generator).to(draws.device)[:, None, None]
    level = torch.randint(0, k, (b,), generator=generator).to(draws.device)[:, None, None]
    depth = torch.arange(k, device=draws.device)[None, :, None]
    ratio = _cosine(b, generator).to(draws.device)[:, None, None]
    scored = (depth == level) & (draws < ratio)
    hidden = scored | (depth > level)
    elsewhere = chosen & (depth != level)
    return (
        torch.where(chosen, hidden, masked),
        torch.where(chosen, scored, masked),
        draws.masked_fill(elsewhere, 2.0),
    )


def scored_token_loss(
    model: torch.nn.Module,
    visual: torch.Tensor,
    codes: torch.Tensor,
    masked: MaskedCodes,
    visual_keep: torch.Tensor | None = None,
    audio_keep: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossResult:
    """Predict the masked tokens and score them: cross-entropy averaged over the targets.

    Every position is scored and the targets weighted in, rather than the targets picked out:
    picking gives a tensor whose size the device must report to the host, a wait every step."""
    logits = model(visual, masked.inputs, masked.null, visual_keep, audio_keep)
    weights = masked.targets.float()
    count = weights.sum()
    per_token = F.cross_entropy(
        logits.float().flatten(0, 2),
        codes.flatten(),
        reduction="none",
        label_smoothing=label_smoothing,
    )
    loss = (per_token * weights.flatten()).sum() / count.clamp(min=1)
    hits = (logits.detach().argmax(dim=-1) == codes).float()
    accuracy = (hits * weights).sum() / count.clamp(min=1)
    return LossResult(loss, accuracy, count)


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
