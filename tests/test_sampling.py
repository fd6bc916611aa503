"""Iterative parallel decoding: fills every mask, follows the cosine schedule, keeps known
tokens, applies guidance, and is reproducible from its generator."""

from __future__ import annotations

import math

import pytest
import torch

from vabcli.sampling import SamplingOptions, decode, masked_after

V, MASK = 16, 16


def target_logits(target: torch.Tensor, strength: float = 10.0):
    """A logits function that strongly prefers `target` [B, K, T] (ignores the condition)."""

    def fn(codes: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        base = torch.nn.functional.one_hot(target, V).float() * strength
        return base.repeat(codes.shape[0] // target.shape[0], 1, 1, 1)

    return fn


def test_decodes_every_token_to_the_confident_choice():
    target = torch.randint(0, V, (2, 4, 30), generator=torch.Generator().manual_seed(0))
    start = torch.full_like(target, MASK)
    out = decode(target_logits(target), start, MASK, SamplingOptions(steps=8), torch.Generator())
    assert not (out == MASK).any()
    assert torch.equal(out, target)


def test_masked_count_follows_the_cosine_schedule():
    target = torch.zeros(1, 4, 50, dtype=torch.long)
    seen = []

    def fn(codes, null):
        seen.append(int((codes[:1] == MASK).sum()))
        return target_logits(target)(codes, null)

    decode(fn, torch.full_like(target, MASK), MASK, SamplingOptions(steps=6), torch.Generator())
    total = torch.tensor([200])
    expected = [200] + [int(masked_after(s, 6, total)) for s in range(5)]
    assert seen == expected
    assert expected[1] == math.floor(200 * math.cos(math.pi / 2 / 6))


def test_known_tokens_never_change():
    g = torch.Generator().manual_seed(1)
    start = torch.randint(0, V, (1, 4, 20), generator=g)
    start[:, :, 10:] = MASK  # a prompt: the first half is known
    noisy = lambda codes, null: torch.randn(codes.shape + (V,), generator=g)  # noqa: E731
    out = decode(noisy, start, MASK, SamplingOptions(steps=4), torch.Generator().manual_seed(2))
    assert torch.equal(out[:, :, :10], start[:, :, :10]) and not (out == MASK).any()


@pytest.mark.parametrize("guidance, expected", [(5.0, 3), (0.0, 7), (1.0, 3)])
def test_classifier_free_guidance(guidance, expected):
    def fn(codes, null):
        logits = torch.zeros(codes.shape + (V,))
        logits[~null, ..., 3] = 4.0  # the condition says 3
        logits[null, ..., 7] = 4.0  # without it, 7
        return logits

    start = torch.full((2, 4, 10), MASK)
    opts = SamplingOptions(steps=4, guidance=guidance, temperature=0.05)
    out = decode(fn, start, MASK, opts, torch.Generator().manual_seed(0))
    assert (out == expected).float().mean() > 0.95


def test_the_generator_makes_it_reproducible():
    def fn(codes, null):
        g = torch.Generator().manual_seed(int(codes.sum()) % 1000)
        return torch.randn(codes.shape + (V,), generator=g)

    start = torch.full((1, 4, 40), MASK)
    opts = SamplingOptions(steps=5, top_k=4)
    a = decode(fn, start, MASK, opts, torch.Generator().manual_seed(5))
    b = decode(fn, start, MASK, opts, torch.Generator().manual_seed(5))
    c = decode(fn, start, MASK, opts, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
