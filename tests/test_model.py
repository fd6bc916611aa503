"""The multiway transformer and its masked-token objective: shapes, padding, guidance, learning."""

from __future__ import annotations

import torch

from vabcli.config import MaskingConfig, model_config
from vabcli.model.losses import mask_tokens, sample_mask_ratios, scored_token_loss
from vabcli.model.transformer import VabModel, time_code

VISUAL_DIM = 32


def tiny(**overrides) -> VabModel:
    torch.manual_seed(0)
    return VabModel(model_config("tiny", visual_dim=VISUAL_DIM, **overrides)).eval()


def batch(b=2, t_v=8, t_a=75, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t_v, VISUAL_DIM, generator=g), torch.randint(
        0, 1024, (b, 4, t_a), generator=g
    )


def test_logit_shape_and_mask_id():
    model = tiny()
    visual, codes = batch()
    codes[:, :, ::2] = model.cfg.mask_id
    assert model(visual, codes).shape == (2, 4, 75, 1024)


def test_padding_changes_nothing_for_real_positions():
    model = tiny()
    visual, codes = batch(b=1)
    plain = model(visual, codes)
    padded_visual = torch.cat([visual, torch.randn(1, 3, VISUAL_DIM)], dim=1)
    padded_codes = torch.cat([codes, torch.randint(0, 1024, (1, 4, 20))], dim=2)
    keep_v = torch.tensor([[True] * 8 + [False] * 3])
    keep_a = torch.tensor([[True] * 75 + [False] * 20])
    padded = model(padded_visual, padded_codes, None, keep_v, keep_a)
    assert torch.allclose(padded[:, :, :75], plain, atol=1e-5)


def test_null_condition_ignores_the_visual_features():
    model = tiny()
    visual, codes = batch()
    null = torch.tensor([True, True])
    a = model(visual, codes, null)
    b = model(torch.randn_like(visual), codes, null)
    assert torch.allclose(a, b) and not torch.allclose(a, model(visual, codes))


def test_time_code_aligns_streams_at_different_rates():
    visual = time_code(torch.arange(9) / 8.0, 64)  # 8 fps
    audio = time_code(torch.arange(76) / 75.0, 64)  # 75 frames/s
    assert torch.allclose(visual[8], audio[75], atol=1e-5)  # both at 1.0 s
    assert not torch.allclose(visual[8], audio[74], atol=1e-3)  # 13 ms apart: told apart


def test_base_preset_is_the_paper_size():
    with torch.device("meta"):
        model = VabModel(model_config("base"))
    assert 395e6 < model.n_parameters() < 420e6


def test_mask_ratios_follow_the_truncated_normal():
    cfg = MaskingConfig()
    ratios = sample_mask_ratios(20_000, cfg, torch.Generator().manual_seed(0))
    assert ratios.min() >= cfg.low and ratios.max() <= cfg.high
    # N(0.55, 0.25) truncated to [0.5, 1]: mean about 0.71
    assert 0.69 < ratios.mean().item() < 0.73


def test_masking_skips_padding_and_keeps_a_target_per_sample():
    codes = torch.randint(0, 1024, (64, 4, 10))
    keep = torch.zeros(64, 10, dtype=torch.bool)
    keep[:, :2] = True
    cfg = MaskingConfig(mean=0.0, std=0.01, low=0.0, high=0.02)  # almost never masks
    masked = mask_tokens(codes, 1024, cfg, keep, torch.Generator().manual_seed(0))
    inputs, targets = masked.inputs, masked.targets
    assert not targets[:, :, 2:].any()
    assert targets.view(64, -1).any(dim=1).all()
    assert torch.equal(inputs[targets], torch.full_like(inputs[targets], 1024))


def test_cosine_share_reaches_the_low_ratios_decoding_asks_about():
    codes = torch.randint(0, 1024, (2000, 2, 500))
    vab = mask_tokens(codes, 1024, MaskingConfig(), None, torch.Generator().manual_seed(0)).targets
    again = mask_tokens(
        codes, 1024, MaskingConfig(cosine_share=0.0), None, torch.Generator().manual_seed(0)
    ).targets
    assert torch.equal(vab, again)  # no share: the very draws of before
    mixed = MaskingConfig(cosine_share=0.5)
    ratios = (
        mask_tokens(codes, 1024, mixed, None, torch.Generator().manual_seed(0))
        .targets.float()
        .mean(dim=(1, 2))
    )
    assert (vab.float().mean(dim=(1, 2)) > 0.42).all()  # VAB's draw: never below 0.5
    # half the samples cosine, and cos(pi/2 u) < 0.4 for 26% of u: 13%
    assert 0.11 < (ratios < 0.4).float().mean() < 0.15


def test_level_wise_masking_scores_one_level_with_the_finer_ones_hidden():
    codes = torch.randint(0, 1024, (400, 4, 30))
    cfg = MaskingConfig(level_share=1.0)
    masked = mask_tokens(codes, 1024, cfg, None, torch.Generator().manual_seed(1))
    inputs, targets = masked.inputs, masked.targets
    hidden = inputs == 1024
    for row in range(400):
        levels = targets[row].any(dim=1).nonzero().flatten().tolist()
        assert len(levels) == 1, levels  # one level scored
        level = levels[0]
        assert hidden[row, level + 1 :].all()  # every finer level hidden whole
        assert not hidden[row, :level].any()  # the coarser ones given
        assert torch.equal(hidden[row, level], targets[row, level])


# 150 sufficed with the time code at amplitude 1 (accuracy 0.64 at unit norm, the default now:
# fully masked grids tell their positions apart by the code alone); 250 reach it again.
MEMORISING_STEPS = 250


def test_tiny_preset_learns_and_uses_the_visual_condition():
    """Overfit 4 clips whose tokens depend on their pictures, then predict every token of a
    fully masked grid: right with the pictures, near chance with the null condition."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = VabModel(model_config("tiny", visual_dim=VISUAL_DIM))
    pictures = torch.randn(4, VISUAL_DIM, generator=g)
    grids = torch.randint(0, 1024, (4, 4, 75), generator=g)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(MEMORISING_STEPS):
        pick = torch.randint(0, 4, (8,), generator=g)
        visual = pictures[pick, None, :].expand(8, 8, VISUAL_DIM)
        masked = mask_tokens(grids[pick], model.cfg.mask_id, MaskingConfig(), generator=g)
        result = scored_token_loss(model, visual, grids[pick], masked)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        visual = pictures[:, None, :].expand(4, 8, VISUAL_DIM)
        all_masked = torch.full_like(grids, model.cfg.mask_id)
        guided = model(visual, all_masked).argmax(-1)
        unguided = model(visual, all_masked, torch.ones(4, dtype=torch.bool)).argmax(-1)
    accuracy = (guided == grids).float().mean().item()
    without = (unguided == grids).float().mean().item()
    assert accuracy > 0.9, f"masked-token accuracy {accuracy:.2f} (chance 0.001)"
    assert without < 0.5, f"without the pictures it still got {without:.2f}"


def test_logits_are_float32_under_autocast():
    """Under bf16 autocast the output norm and heads still run in float32: guidance multiplies
    the logits' rounding error."""
    import torch

    from vabcli.config import ModelConfig
    from vabcli.model.transformer import VabModel

    cfg = ModelConfig(visual_dim=8, n_codebooks=2, codebook_size=16, d_model=16, n_heads=2)
    model = VabModel(cfg).eval()
    visual, codes = torch.randn(1, 8, 8), torch.randint(0, 16, (1, 2, 75))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(visual, codes)
    assert logits.dtype == torch.float32


def test_shapes_only_builds_the_meta_model_without_importing_the_compiler():
    # A plain meta build imports torch._dynamo (~1 s of every generate process) through the
    # reference kernels of its random fills; shapes_only skips the fills, nothing else.
    check = (
        "import sys, torch\n"
        "from vabcli.config import ModelConfig\n"
        "from vabcli.model.shapes_only import shapes_only\n"
        "from vabcli.model.transformer import VabModel\n"
        "cfg = ModelConfig(d_model=64, n_heads=2, n_multiway=1, n_shared=1)\n"
        "with shapes_only():\n    fast = VabModel(cfg)\n"
        "imported = 'torch._dynamo' in sys.modules\n"
        "with torch.device('meta'):\n    plain = VabModel(cfg)\n"
        "same = {k: v.shape for k, v in fast.state_dict().items()} == "
        "{k: v.shape for k, v in plain.state_dict().items()}\n"
        "meta = all(p.is_meta for p in fast.parameters())\n"
        "print(imported, 'torch._dynamo' in sys.modules, same, meta)\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True", "True", "True"], out.stderr
