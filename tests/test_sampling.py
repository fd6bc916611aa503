"""Iterative parallel sampling: fills every mask, follows the cosine schedule, keeps known
tokens, applies guidance, and is reproducible from its generator."""

from __future__ import annotations

import math

import pytest
import torch

from vabcli.generation.maskgit import (
    Fill,
    SamplingOptions,
    masked_after,
    sample_autoregressive,
    sample_maskgit,
)

V, MASK = 16, 16


def gens(n: int, seed: int = 0) -> list[torch.Generator]:
    """One generator per batch row, each from its own seed."""
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def target_logits(target: torch.Tensor, strength: float = 10.0):
    """A logits function that strongly prefers `target` [B, K, T] (ignores the condition)."""

    def fn(codes: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        base = torch.nn.functional.one_hot(target, V).float() * strength
        return base.repeat(codes.shape[0] // target.shape[0], 1, 1, 1)

    return fn


def test_samples_every_token_to_the_confident_choice():
    target = torch.randint(0, V, (2, 4, 30), generator=torch.Generator().manual_seed(0))
    start = torch.full_like(target, MASK)
    out = sample_maskgit(
        Fill(target_logits(target), start, MASK, gens(2)), SamplingOptions(steps=8)
    )
    assert not (out == MASK).any()
    assert torch.equal(out, target)


def test_masked_count_follows_the_cosine_schedule():
    target = torch.zeros(1, 4, 50, dtype=torch.long)
    seen = []

    def fn(codes, null):
        seen.append(int((codes[:1] == MASK).sum()))
        return target_logits(target)(codes, null)

    sample_maskgit(Fill(fn, torch.full_like(target, MASK), MASK, gens(1)), SamplingOptions(steps=6))
    total = torch.tensor([200])
    expected = [200] + [int(masked_after(s, 6, total)) for s in range(5)]
    assert seen == expected
    assert expected[1] == math.floor(200 * math.cos(math.pi / 2 / 6))


def test_known_tokens_never_change():
    g = torch.Generator().manual_seed(1)
    start = torch.randint(0, V, (1, 4, 20), generator=g)
    start[:, :, 10:] = MASK  # a prompt: the first half is known
    noisy = lambda codes, null: torch.randn(codes.shape + (V,), generator=g)  # noqa: E731
    out = sample_maskgit(Fill(noisy, start, MASK, gens(1, 2)), SamplingOptions(steps=4))
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
    out = sample_maskgit(Fill(fn, start, MASK, gens(2)), opts)
    assert (out == expected).float().mean() > 0.95


def test_the_generator_makes_it_reproducible():
    def fn(codes, null):
        g = torch.Generator().manual_seed(int(codes.sum()) % 1000)
        return torch.randn(codes.shape + (V,), generator=g)

    start = torch.full((1, 4, 40), MASK)
    opts = SamplingOptions(steps=5, top_k=4)
    a = sample_maskgit(Fill(fn, start, MASK, gens(1, 5)), opts)
    b = sample_maskgit(Fill(fn, start, MASK, gens(1, 5)), opts)
    c = sample_maskgit(Fill(fn, start, MASK, gens(1, 6)), opts)
    assert torch.equal(a, b) and not torch.equal(a, c)


def rowwise_noise(codes: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """Logits that depend on each row's own tokens only (like a model without cross-row terms)."""
    rows = []
    for row in codes:
        g = torch.Generator().manual_seed(int(row.sum()) % 10_000)
        rows.append(torch.randn(row.shape + (V,), generator=g))
    return torch.stack(rows)


def test_a_row_does_not_depend_on_its_batch_neighbours():
    start = torch.full((3, 4, 12), MASK)
    opts = SamplingOptions(steps=4, guidance=1.0)
    together = sample_maskgit(Fill(rowwise_noise, start, MASK, gens(3, 10)), opts)
    alone = sample_maskgit(Fill(rowwise_noise, start[1:2], MASK, gens(1, 11)), opts)
    assert torch.equal(together[1:2], alone)


def test_autoregressive_baseline_fills_left_to_right_and_keeps_known_tokens():
    target = torch.randint(0, V, (2, 4, 9), generator=torch.Generator().manual_seed(3))
    start = torch.full_like(target, MASK)
    start[0, :, :3] = 5  # row 0 has a 3-frame prompt
    calls = []

    def fn(codes, null):
        calls.append(int((codes == MASK).sum()))
        return target_logits(target)(codes, null)

    out = sample_autoregressive(Fill(fn, start, MASK, gens(2)), SamplingOptions(guidance=1.0))
    assert torch.equal(out[0, :, :3], start[0, :, :3])
    assert torch.equal(out[0, :, 3:], target[0, :, 3:]) and torch.equal(out[1], target[1])
    assert len(calls) == 9  # one call per frame that still had a masked token
    assert calls == sorted(calls, reverse=True)


def test_generators_must_match_the_rows():
    with pytest.raises(ValueError, match="2 generators for 1 rows"):
        Fill(rowwise_noise, torch.full((1, 4, 3), MASK), MASK, gens(2))


def test_top_p_samples_only_within_the_nucleus():
    logits = torch.full((1, 4, 50, V), -5.0)
    logits[..., 2] = 0.0  # one likely token (p ~ 0.91); the rest share what is left
    out = sample_maskgit(
        Fill(
            lambda c, n: logits.repeat(c.shape[0], 1, 1, 1),
            torch.full((1, 4, 50), MASK),
            MASK,
            gens(1),
        ),
        SamplingOptions(steps=3, guidance=1.0, top_p=0.5),
    )
    assert (out == 2).all()  # without the nucleus, 9 of these 200 are others


def test_guidance_and_temperature_anneal_with_the_masked_share(monkeypatch):
    import vabcli.generation.maskgit as maskgit

    used = []
    guided = maskgit.guided_logits

    def recording(logits_fn, codes, guidance):
        used.append(guidance)
        return guided(logits_fn, codes, guidance)

    monkeypatch.setattr(maskgit, "guided_logits", recording)
    target = torch.zeros(1, 4, 20, dtype=torch.long)
    opts = SamplingOptions(steps=4, guidance=10.0, guidance_end=1.0)
    sample_maskgit(Fill(target_logits(target), torch.full_like(target, MASK), MASK, gens(1)), opts)
    shares = [math.cos(math.pi / 2 * s / 4) for s in range(4)]
    assert used == pytest.approx([1.0 + 9.0 * share for share in shares])  # 10 at full mask


def test_coarse_to_fine_decides_one_level_after_another():
    target = torch.randint(0, V, (2, 4, 12), generator=torch.Generator().manual_seed(4))
    seen = []

    def fn(codes, null):
        seen.append([int((codes[:2, k] == MASK).sum()) for k in range(4)])
        return target_logits(target)(codes, null)

    opts = SamplingOptions(guidance=1.0, level_steps=(3, 1, 1, 2))
    out = sample_maskgit(Fill(fn, torch.full_like(target, MASK), MASK, gens(2)), opts)
    assert torch.equal(out, target) and len(seen) == 3 + 1 + 1 + 2
    # while level 0 is decided, the finer levels are all still masked; then level 1, ...
    assert all(levels[1:] == [24, 24, 24] for levels in seen[:3])
    assert seen[3] == [0, 24, 24, 24] and seen[4] == [0, 0, 24, 24]
    with pytest.raises(ValueError, match="3 level steps for 4 codebooks"):
        sample_maskgit(Fill(fn, target, MASK, gens(2)), SamplingOptions(level_steps=(1, 1, 1)))


def test_a_call_reads_the_device_once_not_at_every_step(monkeypatch):
    """On a GPU each read from the device waits for the steps queued before it: the sampler
    reads one thing per call (which rows have tokens to decide), however many steps it takes."""
    import sys

    reads = []
    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("vabcli"):
                reads.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    target = torch.randint(0, V, (3, 4, 20), generator=torch.Generator().manual_seed(0))
    start = torch.full_like(target, MASK)
    start[1] = target[1]  # a row with nothing to decide
    fill = Fill(target_logits(target), start, MASK, gens(3), lengths=[20, 20, 14])
    out = sample_maskgit(fill, SamplingOptions(steps=12, noise=1.0, top_p=0.9))
    assert reads == ["tolist"]
    assert not (out[:, :, :14] == MASK).any() and torch.equal(out[1], target[1])


def test_lengths_must_match_the_rows():
    with pytest.raises(ValueError, match="2 lengths for 3 rows"):
        Fill(
            target_logits(torch.zeros(3, 1, 2, dtype=torch.long)),
            torch.zeros(3, 1, 2),
            MASK,
            gens(3),
            [2, 2],
        )
