"""The VAB backbone as two towers: its multiway layers run on one modality at a time.

Visual features go through the visual experts, audio tokens through the audio experts, with no
cross-modal attention (each tower attends within its own stream); the outputs are mean-pooled
over the real (not padded) positions. With no projection this is the pre-trained backbone's own
embedding; `EmbeddingModel` adds the projections the contrastive stage learns.

A whole clip is pooled window by window (`visual_clip`, `audio_clip`): the model was trained on
windows of a few seconds and has never attended over longer ones, so a clip is cut into windows
of the trained length and their pooled outputs are averaged (measured on 100 held-out clips of
2-20 s: see benchmarks/README.md, "retrieval").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vabcli.model.transformer import AUDIO, VISUAL, VabModel

WINDOWS_PER_BATCH = 64  # bounds memory for clips of any length


def cut_windows(n: int, length: int) -> list[tuple[int, int]]:
    """`[start, end)` windows of `length` covering `n` positions, as `vab generate` cuts: the last
    ends at `n`, overlapping its neighbour, so every window is full length (a clip shorter than
    one window is one short window)."""
    if n <= length:
        return [(0, n)]
    starts = [*range(0, n - length, length), n - length]
    return [(s, s + length) for s in starts]


def _mean_pool(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    if keep is None:
        return x.mean(dim=1)
    weights = keep.to(x.dtype)[..., None]
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class Towers(nn.Module):
    """Pooled outputs `[B, d_model]` of the first `n_layers` multiway layers, per modality."""

    def __init__(self, backbone: VabModel, n_layers: int | None = None) -> None:
        super().__init__()
        n_layers = backbone.cfg.n_multiway if n_layers is None else n_layers
        if not 1 <= n_layers <= backbone.cfg.n_multiway:
            raise ValueError(f"n_layers must be 1..{backbone.cfg.n_multiway}, got {n_layers}")
        self.backbone, self.n_layers = backbone, n_layers

    @property
    def dim(self) -> int:
        return self.backbone.cfg.d_model

    def train_only(self, modalities: tuple[int, ...]) -> None:
        """Gradients only for the backbone parts the towers of `modalities` run: the rest (shared
        layers, token heads, null condition, layers past N1, the other modality's experts) stays
        as pre-trained, and data-parallel training never waits for gradients that never come."""
        m = self.backbone
        modules: list[nn.Module] = [m.modality]
        modules += [m.visual_in] if VISUAL in modalities else []
        modules += [m.codebooks] if AUDIO in modalities else []
        for layer in m.multiway[: self.n_layers]:
            modules.append(layer.attn)
            for i in modalities:
                modules += [layer.norm_attn[i], layer.norm_ffn[i], layer.ffn[i]]
        used = {id(p) for module in modules for p in module.parameters()}
        for p in m.parameters():
            p.requires_grad_(id(p) in used)

    def visual(self, features: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """features `[B, T_v, D_v]` float; keep `[B, T_v]` bool (False: padding)."""
        m = self.backbone
        x = m.visual_in(features) + m._position(
            features.shape[1], m.cfg.visual_fps, VISUAL, features.device
        )
        for layer in m.multiway[: self.n_layers]:
            x = layer(x, x.shape[1], keep)  # every position is visual
        return _mean_pool(x, keep)

    def audio(self, codes: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """codes `[B, K, T_a]` int64; keep `[B, T_a]` bool (False: padding)."""
        m = self.backbone
        x = sum(table(codes[:, k]) for k, table in enumerate(m.codebooks))
        x = x + m._position(codes.shape[2], m.cfg.audio_frame_rate, AUDIO, codes.device)
        for layer in m.multiway[: self.n_layers]:
            x = layer(x, 0, keep)  # every position is audio
        return _mean_pool(x, keep)

    def visual_clip(self, features: torch.Tensor, window: int) -> torch.Tensor:
        """A whole clip's features `[T_v, D_v]` -> `[d_model]`, pooled over windows of `window`
        frames."""
        return self._over_windows(self.visual, features, features.shape[0], window, 0)

    def audio_clip(self, codes: torch.Tensor, window: int) -> torch.Tensor:
        """A whole clip's codes `[K, T_a]` -> `[d_model]`, pooled over windows of `window`
        token frames."""
        return self._over_windows(self.audio, codes, codes.shape[1], window, 1)

    @staticmethod
    def _over_windows(tower, x: torch.Tensor, n: int, window: int, time_dim: int) -> torch.Tensor:
        spans = cut_windows(n, window)
        total = None
        for first in range(0, len(spans), WINDOWS_PER_BATCH):
            batch = torch.stack(
                [x.narrow(time_dim, s, e - s) for s, e in spans[first : first + WINDOWS_PER_BATCH]]
            )
            pooled = tower(batch).sum(dim=0)
            total = pooled if total is None else total + pooled
        return total / len(spans)


class EmbeddingModel(nn.Module):
    """Towers + a linear projection per modality, L2-normalised: the contrastive model. With
    `proj_dim=None` the projections are left out (the pre-trained backbone, normalised)."""

    def __init__(self, towers: Towers, proj_dim: int | None = None) -> None:
        super().__init__()
        self.towers = towers
        make = (lambda: nn.Linear(towers.dim, proj_dim)) if proj_dim else nn.Identity
        self.proj = nn.ModuleList([make() for _ in (VISUAL, AUDIO)])

    def project(self, pooled: torch.Tensor, modality: int) -> torch.Tensor:
        """Pooled tower outputs `[..., d_model]` of `modality` -> unit vectors `[..., D]`."""
        return F.normalize(self.proj[modality](pooled), dim=-1)

    def embed_visual(
        self, features: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unit vectors `[B, D]` of visual features `[B, T_v, D_v]`."""
        return self.project(self.towers.visual(features, keep), VISUAL)

    def embed_audio(self, codes: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Unit vectors `[B, D]` of audio codes `[B, K, T_a]`."""
        return self.project(self.towers.audio(codes, keep), AUDIO)
