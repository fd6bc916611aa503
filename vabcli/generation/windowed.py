"""Audio tokens for clips of any length: the model, the sampler and the window plan together.

`ClipTokens` is one clip in progress: its visual features, its token grid (`mask_id` where still
unknown; known tokens such as a kept prompt stay as given) and the windows still to sample.
`WindowSampler.advance` samples the next window of several clips in one batch, padding shorter
windows (padding is never attended to and never sampled).

Batch invariance: a clip's tokens are the same alone and in any batch, bit for bit on a CPU
where MKL runs its AVX-512 kernels (measured; its AVX2 kernels round a row differently with the
row count, by up to 2e-5 in a logit). Each clip draws from its own torch.Generator, one number
per token it still has to decide (sampling.py), and the model in eval attends each padded row
over exactly its real positions and gives no linear layer fewer than 16 rows (model.py). Not
promised on CUDA (bf16 autocast; cuBLAS picks kernels by shape).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from vabcli.config import SamplerName
from vabcli.generation.maskgit import (
    Fill,
    LogitsFn,
    Sampler,
    SamplingOptions,
    sample_autoregressive,
    sample_maskgit,
)
from vabcli.generation.windows import Span, WindowPlan

SAMPLERS: dict[str, Sampler] = {"maskgit": sample_maskgit, "ar": sample_autoregressive}


def clip_seed(seed: int, clip_digest: str) -> int:
    """The seed of one clip: the run's seed mixed with the clip's content, so two clips in one run
    differ, and a clip gets the same audio whatever else is in the batch or the folder."""
    digest = hashlib.sha256(f"{seed}:{clip_digest}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class ClipTokens:
    """features `[T_v, D]` float; codes `[K, T_a]` int64 on the model's device."""

    features: torch.Tensor
    codes: torch.Tensor
    spans: list[Span]
    generator: torch.Generator
    done: int = 0  # windows sampled so far
    seconds: float = 0.0  # wall time of the batches this clip was in

    @property
    def finished(self) -> bool:
        return self.done >= len(self.spans)


class WindowSampler:
    def __init__(
        self,
        model: torch.nn.Module,
        sampling: SamplingOptions,
        sampler: SamplerName = "maskgit",
    ) -> None:
        self.model, self.sampling, self.sample = model, sampling, SAMPLERS[sampler]
        self.mask_id: int = model.cfg.mask_id
        self.device = next(model.parameters()).device

    def new_clip(
        self, features: torch.Tensor, codes: torch.Tensor, plan: WindowPlan, seed: int
    ) -> ClipTokens:
        """A clip ready to sample: `codes` holds `mask_id` wherever audio is to be generated."""
        assert features.dim() == 2 and codes.dim() == 2, "features [T_v, D], codes [K, T_a]"
        generator = torch.Generator(device=self.device).manual_seed(seed)
        spans = plan.spans(features.shape[0], codes.shape[1])
        codes = codes.to(self.device, copy=True)  # sampled in place: never the caller's array
        return ClipTokens(features.to(self.device), codes, spans, generator)

    @torch.inference_mode()
    def advance(self, clips: Sequence[ClipTokens]) -> None:
        """Sample the next window of every clip in `clips` (none finished), as one batch."""
        began = time.perf_counter()
        spans = [c.spans[c.done] for c in clips]
        t_v = max(s.visual_end - s.visual_start for s in spans)
        t_a = max(s.audio_end - s.audio_start for s in spans)
        b, (k, dim) = len(clips), (clips[0].codes.shape[0], clips[0].features.shape[1])
        visual = torch.zeros(b, t_v, dim, device=self.device)
        # Padding tokens are 0, not mask_id: the sampler leaves every non-mask token alone.
        codes = torch.zeros(b, k, t_a, dtype=torch.long, device=self.device)
        visual_keep = torch.zeros(b, t_v, dtype=torch.bool, device=self.device)
        audio_keep = torch.zeros(b, t_a, dtype=torch.bool, device=self.device)
        for i, (clip, s) in enumerate(zip(clips, spans, strict=True)):
            n_v, n_a = s.visual_end - s.visual_start, s.audio_end - s.audio_start
            visual[i, :n_v] = clip.features[s.visual_start : s.visual_end]
            codes[i, :, :n_a] = clip.codes[:, s.audio_start : s.audio_end]
            visual_keep[i, :n_v], audio_keep[i, :n_a] = True, True
        padded = any(
            s.visual_end - s.visual_start < t_v or s.audio_end - s.audio_start < t_a for s in spans
        )
        keeps = (visual_keep, audio_keep) if padded else (None, None)
        logits_fn = self._logits_fn(visual, *keeps)
        with self._autocast():
            lengths = [s.audio_end - s.audio_start for s in spans]
            fill = Fill(logits_fn, codes, self.mask_id, [c.generator for c in clips], lengths)
            out = self.sample(fill, self.sampling)
        for i, (clip, s) in enumerate(zip(clips, spans, strict=True)):
            # Tokens past keep_end stay masked: the next window decides them, seeing past them.
            clip.codes[:, s.audio_start : s.keep_end] = out[i, :, : s.keep_end - s.audio_start]
            clip.done += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # honest timings: wait for the queued kernels
        for clip in clips:
            clip.seconds += time.perf_counter() - began

    def _logits_fn(
        self,
        visual: torch.Tensor,
        visual_keep: torch.Tensor | None,
        audio_keep: torch.Tensor | None,
    ) -> LogitsFn:
        b = visual.shape[0]

        def logits(codes: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
            # Guidance doubles the batch (conditional rows, then null rows): repeat to match.
            n = codes.shape[0] // b
            vk = None if visual_keep is None else visual_keep.repeat(n, 1)
            ak = None if audio_keep is None else audio_keep.repeat(n, 1)
            return self.model(visual.repeat(n, 1, 1), codes, null, vk, ak).float()

        return logits

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()
