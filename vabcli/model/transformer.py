"""The VAB multiway transformer: visual prefix + audio token grid in, token logits out.

Sequence = [visual prefix ; audio frames]. Visual features go through a Linear; each audio frame
is the sum of its K codebook embeddings (each table has a [MASK] row). Every position adds the
sinusoidal code of its time in seconds (so visual frame k at k / fps and audio frame j at
j / 75 Hz line up, at any rate and length) and a learned modality embedding. N1 multiway layers
share attention but give each modality its own norms and feed-forward expert; N2 ordinary
pre-norm layers follow; K heads on the audio positions predict every level in parallel.
No sampling and no I/O here (sampling.py and train.py do those).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vabcli.config import ModelConfig

VISUAL, AUDIO = 0, 1
# Batch invariance (eval): MKL's sgemm (AVX-512, measured) gives a row the same bits whatever the
# row count from 16 rows up, but switches to other kernels below; so no linear layer of an eval
# forward sees fewer rows than this (a tiny batch runs as several copies of itself).
MIN_GEMM_ROWS = 16


def time_code(seconds: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal code of times in seconds: `[...]` -> `[..., dim]`.

    Periods run from 10 ms to about 3 hours, so the finest audio step (13 ms) and long videos
    both get distinct codes.
    """
    half = dim // 2
    # float64 (on the CPU: MPS has none): at 10 minutes the fastest angle is 4e5 rad, beyond
    # float32's precision for sin.
    periods = torch.logspace(math.log10(0.01), math.log10(10_000.0), half, dtype=torch.float64)
    angles = 2 * math.pi * seconds.detach().cpu().double().unsqueeze(-1) / periods
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(seconds.device, torch.float32)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, keep: Keep) -> torch.Tensor:
        """`[B, S, d]`; `keep` `[B, S]` bool marks real (not padding) keys (or their KeyGroups)."""
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.n_heads, d // self.n_heads).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if keep is None:
            y = self._attend(q, k, v, None)
        elif self.training:
            mask = keep.keep if isinstance(keep, KeyGroups) else keep
            y = self._attend(q, k, v, mask[:, None, None, :])
        else:
            groups = keep if isinstance(keep, KeyGroups) else KeyGroups.of(keep)
            y = _attend_real_keys(self._attend, q, k, v, groups)
        return self.out(y.transpose(1, 2).reshape(b, s, d))

    def _attend(self, q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
        """`[B, H, S, d_head]` each; `mask` `[B, 1, 1, S]` bool or None."""
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


@dataclass(frozen=True)
class KeyGroups:
    """The rows of a padded batch grouped by padding pattern: (rows, real positions) per group,
    positions None where all are real. Built once per forward, not once per layer."""

    keep: torch.Tensor  # [B, S] bool
    groups: tuple[tuple[torch.Tensor, torch.Tensor | None], ...]

    @classmethod
    def of(cls, keep: torch.Tensor) -> KeyGroups:
        patterns, group = torch.unique(keep, dim=0, return_inverse=True)
        groups = []
        for i, pattern in enumerate(patterns):
            rows, real = (group == i).nonzero()[:, 0], pattern.nonzero()[:, 0]
            if real.numel():  # an all-padding row attends to nothing, and nothing reads it
                groups.append((rows, None if real.numel() == keep.shape[1] else real))
        return cls(keep, tuple(groups))


Keep = torch.Tensor | KeyGroups | None


def _attend_real_keys(attend, q, k, v, keep: KeyGroups) -> torch.Tensor:
    """Attention of a padded batch in which each row sees exactly what it would see alone.

    A key mask keeps padding out of the weights but not out of the kernel's arithmetic: the
    reduction over a longer, masked key axis (padding sits mid-sequence, between the visual and
    the audio frames) rounds differently, and the sampler turns a last-bit difference into
    other tokens. So the rows that share one padding pattern gather their real positions and
    attend over exactly those, unmasked, as the row alone would (bit for bit on the CPU, where
    the unpadded kernel's result for a row does not depend on the batch size). Padded queries
    get zeros: no real position ever reads them.
    """
    y = torch.zeros_like(q)
    for rows, real in keep.groups:
        if real is None:
            y[rows] = attend(q[rows], k[rows], v[rows], None)
        else:
            part = y[rows]
            part[:, :, real] = attend(*(t[rows][:, :, real] for t in (q, k, v)), None)
            y[rows] = part
    return y


def feed_forward(cfg: ModelConfig) -> nn.Sequential:
    hidden = cfg.ffn_mult * cfg.d_model
    return nn.Sequential(
        nn.Linear(cfg.d_model, hidden),
        nn.GELU(),
        nn.Linear(hidden, cfg.d_model),
        nn.Dropout(cfg.dropout),
    )


class MultiwayLayer(nn.Module):
    """Shared self-attention; a visual and an audio expert (norms + feed-forward)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.norm_attn = nn.ModuleList([nn.LayerNorm(cfg.d_model) for _ in (VISUAL, AUDIO)])
        self.norm_ffn = nn.ModuleList([nn.LayerNorm(cfg.d_model) for _ in (VISUAL, AUDIO)])
        self.ffn = nn.ModuleList([feed_forward(cfg) for _ in (VISUAL, AUDIO)])

    def forward(self, x: torch.Tensor, n_visual: int, keep: Keep) -> torch.Tensor:
        v, a = x[:, :n_visual], x[:, n_visual:]
        normed = torch.cat([self.norm_attn[VISUAL](v), self.norm_attn[AUDIO](a)], dim=1)
        x = x + self.attn(normed, keep)
        v, a = x[:, :n_visual], x[:, n_visual:]
        v = v + self.ffn[VISUAL](self.norm_ffn[VISUAL](v))
        a = a + self.ffn[AUDIO](self.norm_ffn[AUDIO](a))
        return torch.cat([v, a], dim=1)


class SharedLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm_attn, self.norm_ffn = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.ffn = Attention(cfg), feed_forward(cfg)

    def forward(self, x: torch.Tensor, keep: Keep) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), keep)
        return x + self.ffn(self.norm_ffn(x))


class VabModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.visual_in = nn.Linear(cfg.visual_dim, d)
        # Classifier-free guidance: this learned vector stands in for every visual token.
        self.null_visual = nn.Parameter(torch.zeros(d))
        self.codebooks = nn.ModuleList(
            [nn.Embedding(cfg.codebook_size + 1, d) for _ in range(cfg.n_codebooks)]
        )
        self.modality = nn.Embedding(2, d)
        self.multiway = nn.ModuleList([MultiwayLayer(cfg) for _ in range(cfg.n_multiway)])
        self.shared = nn.ModuleList([SharedLayer(cfg) for _ in range(cfg.n_shared)])
        self.norm_out = nn.LayerNorm(d)
        self.heads = nn.Linear(d, cfg.n_codebooks * cfg.codebook_size)
        self.apply(_init_weights)
        self._time_codes: dict[tuple[int, float, str], torch.Tensor] = {}

    def forward(
        self,
        visual: torch.Tensor,
        codes: torch.Tensor,
        null_condition: torch.Tensor | None = None,
        visual_keep: torch.Tensor | None = None,
        audio_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits `[B, K, T_a, V]` for every audio token.

        visual `[B, T_v, D_v]` float; codes `[B, K, T_a]` int64 with `cfg.mask_id` where masked;
        null_condition `[B]` bool: replace that sample's visual tokens by the null condition;
        visual_keep `[B, T_v]` / audio_keep `[B, T_a]` bool: False marks padding (never attended).
        """
        cfg = self.cfg
        b, t_v, d_v = visual.shape
        assert d_v == cfg.visual_dim, f"visual features are {d_v}-d, model takes {cfg.visual_dim}"
        assert codes.shape[:2] == (b, cfg.n_codebooks), f"codes {tuple(codes.shape)} != [B, K, T]"
        t_a = codes.shape[2]
        copies = 1 if self.training else -(-MIN_GEMM_ROWS // (b * max(1, min(t_v, t_a))))
        if copies > 1:  # a tiny batch: run it as `copies` identical ones, keep the first
            args = (visual, codes, null_condition, visual_keep, audio_keep)
            rep = [None if t is None else t.repeat(copies, *[1] * (t.dim() - 1)) for t in args]
            return self(*rep)[:b]
        v = self.visual_in(visual)
        if null_condition is not None:
            v = torch.where(null_condition[:, None, None], self.null_visual.to(v.dtype), v)
        a = sum(table(codes[:, k]) for k, table in enumerate(self.codebooks))
        v = v + self._position(t_v, cfg.visual_fps, VISUAL, visual.device)
        a = a + self._position(t_a, cfg.audio_frame_rate, AUDIO, visual.device)
        x = torch.cat([v, a], dim=1)
        keep: Keep = _joint_keep(visual_keep, audio_keep, b, t_v, t_a, visual.device)
        if keep is not None and not self.training:
            keep = KeyGroups.of(keep)
        for layer in self.multiway:
            x = layer(x, t_v, keep)
        for layer in self.shared:
            x = layer(x, keep)
        logits = self._logits(x[:, t_v:])  # [B, T_a, K * V]
        return logits.view(b, t_a, cfg.n_codebooks, cfg.codebook_size).permute(0, 2, 1, 3)

    def _logits(self, audio: torch.Tensor) -> torch.Tensor:
        """The output norm and heads in float32 even under autocast: bf16 logits carry a
        rounding error of ~1% that guidance (uncond + w (cond - uncond)) multiplies by w."""
        with torch.autocast(audio.device.type, enabled=False):
            return self.heads(self.norm_out(audio.float()))

    def _position(self, n: int, rate: float, modality: int, device: torch.device) -> torch.Tensor:
        key = (n, rate, str(device))
        code = self._time_codes.get(key)
        if code is None:  # built once per length: it costs a CPU round trip (float64)
            code = time_code(torch.arange(n) / rate, self.cfg.d_model) * self.cfg.time_scale
            code = code.to(device)
            if len(self._time_codes) > 64:
                self._time_codes.clear()
            self._time_codes[key] = code
        return code.to(self.modality.weight.dtype) + self.modality.weight[modality]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _joint_keep(
    visual_keep: torch.Tensor | None,
    audio_keep: torch.Tensor | None,
    b: int,
    t_v: int,
    t_a: int,
    device: torch.device,
) -> torch.Tensor | None:
    if visual_keep is None and audio_keep is None:
        return None  # no padding: let attention take its fastest path
    if visual_keep is None:
        visual_keep = torch.ones(b, t_v, dtype=torch.bool, device=device)
    if audio_keep is None:
        audio_keep = torch.ones(b, t_a, dtype=torch.bool, device=device)
    return torch.cat([visual_keep, audio_keep], dim=1)


def _init_weights(module: nn.Module) -> None:
    """GPT-style small init: keeps early logits near uniform, so the first loss is ~ln V."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
