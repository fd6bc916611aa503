"""Iterative parallel sampling (MaskGIT's "decoding") with classifier-free guidance.

Knows nothing of layers: it drives a `LogitsFn` (codes with [MASK] ids and a per-sample
null-condition flag in, logits out). Start from a grid whose unknown tokens are all masked; at
each of S steps predict every masked token, sample it (temperature, top-k), score it by its
log-probability plus Gumbel noise that anneals to zero, and re-mask the lowest-scoring ones so
that the masked count follows cos(pi/2 * s/S). Known tokens (a prompt, the tail of the
previous window) are never changed. All randomness comes from the given torch.Generators, one
per batch row: in a call where a row has tokens to decide it draws, at every step, one number
for each of its own K x length positions (in (k, t) order) for sampling and as many for the
noise, and nothing in a call where it has none. So the numbers a row gets do not depend on the
other rows or on padding to a longer row (a clip's audio then does not depend on its batch,
given logits that do not either), and the device is waited for once per call (which rows have
tokens to decide), not at every step.

Options beyond MaskGIT's: the temperature and the guidance may anneal with the share of tokens
still masked (MAGNeT), sampling may keep to a nucleus (top-p), and `level_steps` decodes coarse
to fine, one codebook level after another in its own steps, the finer levels masked meanwhile
(SoundStorm). Which of them helps is measured in benchmarks/README.md ("generation options").

`sample_autoregressive` is the baseline the speed claim is measured against: the same logits
function, one audio frame (K tokens) per call, left to right.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vabcli.config import SamplingOptions

# (codes [B, K, T] with mask ids, null_condition [B] bool) -> logits [B, K, T, V]
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def masked_after(step: int, steps: int, total: torch.Tensor) -> torch.Tensor:
    """Tokens still masked after `step` (0-based) of `steps`: floor(total * cos(pi/2 * s/S))."""
    return torch.floor(total * math.cos(math.pi / 2 * (step + 1) / steps)).long()


def guided_logits(logits_fn: LogitsFn, codes: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: one batched call for the conditional and null passes."""
    b = codes.shape[0]
    if guidance == 1.0:
        return logits_fn(codes, torch.zeros(b, dtype=torch.bool, device=codes.device))
    # made on the device: a copy from the host would wait for the steps queued before it
    null = torch.arange(2 * b, device=codes.device) >= b
    both = logits_fn(torch.cat([codes, codes]), null).float()
    cond, uncond = both[:b], both[b:]
    return uncond + guidance * (cond - uncond)


@dataclass(frozen=True)
class Fill:
    """What a sampler is asked: fill every `mask_id` in `codes` `[B, K, T]` (other tokens are
    kept as given) from `logits_fn`, row b drawing every random number from `generators[b]`
    (on the row's device)."""

    logits_fn: LogitsFn
    codes: torch.Tensor
    mask_id: int
    generators: Sequence[torch.Generator]
    lengths: Sequence[int] | None = None  # each row's own length along T (padding after it)

    def __post_init__(self) -> None:
        if len(self.generators) != self.codes.shape[0]:
            raise ValueError(f"{len(self.generators)} generators for {self.codes.shape[0]} rows")
        if self.lengths is not None and len(self.lengths) != self.codes.shape[0]:
            raise ValueError(f"{len(self.lengths)} lengths for {self.codes.shape[0]} rows")

    def length(self, row: int) -> int:
        return self.codes.shape[2] if self.lengths is None else self.lengths[row]


# A sampler: the filled codes `[B, K, T]` of a `Fill`.
Sampler = Callable[[Fill, SamplingOptions], torch.Tensor]


def sample_maskgit(fill: Fill, opts: SamplingOptions) -> torch.Tensor:
    """Fill the masks in S steps of parallel sampling (the module's docstring); with
    `opts.level_steps`, codebook level by level (coarse to fine), each in its own steps, the
    finer levels still masked while a level is decided."""
    codes = fill.codes.clone()
    n_levels = codes.shape[1]
    if opts.level_steps is None:
        return _decide(fill, codes, torch.ones(n_levels, dtype=torch.bool), opts.steps, opts)
    if len(opts.level_steps) != n_levels:
        raise ValueError(f"{len(opts.level_steps)} level steps for {n_levels} codebooks")
    for level, steps in enumerate(opts.level_steps):
        codes = _decide(fill, codes, torch.arange(n_levels) == level, steps, opts)
    return codes


def _decide(
    fill: Fill, codes: torch.Tensor, levels: torch.Tensor, steps: int, opts: SamplingOptions
) -> torch.Tensor:
    """Decide every masked token of the codebook `levels` (`[K]` bool) of `codes` in `steps`."""
    mask_id = fill.mask_id
    in_levels = levels.to(codes.device)[None, :, None]
    total = ((codes == mask_id) & in_levels).flatten(1).sum(dim=1)  # what this call decides
    drawing = [n > 0 for n in total.tolist()]  # the call's one wait for the device
    if not any(drawing):
        return codes
    for step in range(steps):
        # A row whose tokens ran out before the last step (a handful to decide) stays as it is:
        # the schedule's count, once 0, stays 0.
        masked = (codes == mask_id) & in_levels
        share = _masked_share(step, steps)  # 1 at the first step, falling on the cosine
        guidance = _annealed(opts.guidance, opts.guidance_end, share)
        temperature = _annealed(opts.temperature, opts.temperature_end, share)
        logits = guided_logits(fill.logits_fn, codes, guidance) / temperature
        sampled, logp = _sample(logits, opts, _row_uniform(fill, drawing))
        anneal = opts.noise * (1.0 - (step + 1) / steps)
        score = logp + anneal * _gumbel(_row_uniform(fill, drawing))
        # decided tokens, and other levels' (masked or not), stay as they are
        score = score.masked_fill(~masked, math.inf)
        proposal = torch.where(masked, sampled, codes)
        keep_masked = masked_after(step, steps, total)
        codes = _remask_lowest(proposal, score, keep_masked, mask_id)
    return codes


def _masked_share(step: int, steps: int) -> float:
    """The share of the tokens still masked when `step` (0-based) of `steps` starts."""
    return math.cos(math.pi / 2 * step / steps)


def _annealed(start: float, end: float | None, share: float) -> float:
    """`start` while every token is masked, moving to `end` as the masked `share` falls to 0
    (MAGNeT's guidance annealing; None: `start` throughout)."""
    return start if end is None else end + (start - end) * share


def sample_autoregressive(fill: Fill, opts: SamplingOptions) -> torch.Tensor:
    """The baseline: one call per audio frame, left to right, sampling its K tokens together.

    Same options (guidance, temperature, top-k, top-p; steps, annealing and levels do not
    apply), same known-token rule.
    """
    codes = fill.codes.clone()
    for t in range(codes.shape[2]):
        masked = codes[:, :, t] == fill.mask_id  # [B, K]
        if not masked.any():
            continue
        logits = guided_logits(fill.logits_fn, codes, opts.guidance)[:, :, t : t + 1]
        sampled, _ = _sample(
            logits / opts.temperature, opts, _uniform(masked[..., None], fill.generators)
        )
        codes[:, :, t] = torch.where(masked, sampled[:, :, 0], codes[:, :, t])
    return codes


def _sample(
    logits: torch.Tensor, opts: SamplingOptions, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled ids and their log-probabilities, `[B, K, T]` each, from the uniform numbers `u`
    `[B, K, T]`, among the `opts.top_k` likeliest and the nucleus of mass `opts.top_p`."""
    if opts.top_k is not None and opts.top_k < logits.shape[-1]:
        kth = logits.topk(opts.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if opts.top_p is not None and opts.top_p < 1:
        logits = _nucleus(logits, opts.top_p)
    logp = logits.log_softmax(dim=-1)
    # Inverse-CDF sampling: one uniform number per token. torch.multinomial draws one per
    # vocabulary entry (1024 per token) and took 43% of a CPU sampling step.
    cdf = logp.exp().cumsum(dim=-1)
    u = u * cdf[..., -1]
    ids = torch.searchsorted(cdf, u.unsqueeze(-1).contiguous(), right=True).squeeze(-1)
    ids = ids.clamp_(max=logits.shape[-1] - 1)  # u at the very top of a rounded-down total
    return ids, logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """`logits` outside the nucleus (the likeliest tokens whose mass first reaches `top_p`;
    never empty) set to -inf."""
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    outside = probs.cumsum(dim=-1) - probs >= top_p  # the mass before it already reached p
    return logits.masked_fill(outside.scatter(-1, order, outside), -math.inf)


def _uniform(at: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Uniform [0, 1) numbers where `at` `[B, ...]` is True (0 elsewhere): row b draws exactly
    `at[b].sum()` numbers from `generators[b]`, laid out in the row's flattened order. Padding
    after a row's end and tokens already decided take none, so neither shifts the row's stream."""
    out = torch.zeros(at.shape, device=at.device)
    counts = at.flatten(1).sum(dim=1).tolist()  # one device sync for the batch, not one per row
    for row, (generator, n) in enumerate(zip(generators, counts, strict=True)):
        if n:
            draws = torch.rand(n, generator=generator, device=generator.device)
            out[row][at[row]] = draws.to(at.device)
    return out


def _row_uniform(fill: Fill, drawing: Sequence[bool]) -> torch.Tensor:
    """Uniform [0, 1) numbers `[B, K, T]`: a `drawing` row b draws K x its own length from
    `fill.generators[b]` (padding after it gets 0), the others none. Fixed counts, known on
    the host: the draws need nothing back from the device."""
    b, k, t = fill.codes.shape
    out = torch.zeros(b, k, t, device=fill.codes.device)
    for row, (generator, draws) in enumerate(zip(fill.generators, drawing, strict=True)):
        if draws:
            n = fill.length(row)
            numbers = torch.rand(k, n, generator=generator, device=generator.device)
            out[row, :, :n] = numbers.to(out.device)
    return out


def _gumbel(uniform: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(uniform.clamp_(1e-9, 1 - 1e-9)))


def _remask_lowest(
    proposal: torch.Tensor, score: torch.Tensor, keep_masked: torch.Tensor, mask_id: int
) -> torch.Tensor:
    """Per sample, set the `keep_masked[b]` lowest-scoring tokens back to `mask_id`."""
    b = proposal.shape[0]
    flat_score, flat = score.reshape(b, -1), proposal.reshape(b, -1).clone()
    # Lowest first; stable, so ties (possible with --noise 0) go by (k, t), as in any padding.
    order = flat_score.argsort(dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand(b, -1))
    flat[rank < keep_masked[:, None]] = mask_id
    return flat.view_as(proposal)
