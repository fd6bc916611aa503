"""Embedding search, recall@k, the contrastive loss and the backbone's two towers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vabcli.config import ModelConfig
from vabcli.model.losses import LogitScale, info_nce
from vabcli.model.towers import EmbeddingModel, Towers, cut_windows
from vabcli.model.transformer import VabModel
from vabcli.tasks.retrieval import chance_recall, recall_at_k, top_k


def test_chunked_search_matches_the_full_similarity_matrix():
    torch.manual_seed(0)
    index = F.normalize(torch.randn(1000, 16), dim=-1)
    queries = F.normalize(torch.randn(7, 16), dim=-1)
    full_scores, full_rows = (queries @ index.T).topk(5, dim=1)
    for chunk in (1, 3, 64, 999, 5000):  # chunks smaller than k, uneven, and larger than N
        scores, rows = top_k(queries, index, 5, chunk=chunk)
        assert torch.equal(rows, full_rows)
        assert torch.allclose(scores, full_scores)
    scores, rows = top_k(queries, index[:3], 10, chunk=2)
    assert rows.shape == (7, 3)  # never more than the index holds
    with pytest.raises(ValueError, match="16-d"):
        top_k(queries[:, :8], index, 1)


def test_recall_on_a_constructed_example():
    # Query i's target is row i. Query 0 ranks it first, query 1 second, query 2 fourth.
    index = torch.eye(4)
    queries = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.9, 0.8, 0.0, 0.0],
            [0.9, 0.8, 0.4, 0.7],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    recall = recall_at_k(queries, index, torch.arange(4), ks=(1, 2, 4))
    assert recall == {1: 0.5, 2: 0.75, 4: 1.0}
    assert chance_recall(1, 4) == 0.25 and chance_recall(10, 4) == 1.0


def test_info_nce_on_a_known_small_case():
    pairs = torch.eye(2, dtype=torch.float64)  # exact enough for e^-10
    # Logits [[s, 0], [0, s]]: each row's loss is log(1 + e^-s), in both directions.
    for s in (1.0, 10.0):
        loss = info_nce(pairs, pairs, torch.tensor(s, dtype=torch.float64))
        assert loss.item() == pytest.approx(math.log(1 + math.exp(-s)), rel=1e-6)
    swapped = info_nce(pairs, pairs.flip(0), torch.tensor(1.0, dtype=torch.float64))
    assert swapped.item() == pytest.approx(math.log(1 + math.e), rel=1e-6)  # wrong pairs cost more
    scale = LogitScale(0.07)
    assert scale().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert scale().item() == pytest.approx(100.0)  # clamped like CLIP's


# A backbone small enough to run in a moment: 2 multiway layers, visual 4 fps, audio 10 Hz.
TOWER_CFG = ModelConfig(
    visual_dim=8,
    n_codebooks=2,
    codebook_size=16,
    d_model=32,
    n_heads=4,
    n_multiway=2,
    n_shared=1,
    visual_fps=4.0,
    audio_frame_rate=10.0,
)


def test_towers_keep_the_modalities_apart_and_ignore_padding():
    torch.manual_seed(0)
    cfg = TOWER_CFG
    towers = Towers(VabModel(cfg).eval(), n_layers=1)
    features, codes = torch.randn(2, 6, 8), torch.randint(0, 16, (2, 2, 15))
    v, a = towers.visual(features), towers.audio(codes)
    assert v.shape == (2, 32) and a.shape == (2, 32)
    # The visual tower never sees audio experts: changing them leaves it unchanged.
    with torch.no_grad():
        towers.backbone.multiway[0].ffn[1][0].weight.mul_(3.0)
    assert torch.allclose(towers.visual(features), v)
    assert not torch.allclose(towers.audio(codes), a)
    # Padding positions do not count: a padded clip pools like the clip alone.
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[0, 4:] = False
    padded = towers.visual(features, keep)
    assert torch.allclose(padded[0], towers.visual(features[:1, :4])[0], atol=1e-5)
    embed = EmbeddingModel(towers, proj_dim=12)
    assert torch.allclose(embed.embed_audio(codes).norm(dim=-1), torch.ones(2))
    assert embed.embed_visual(features).shape == (2, 12)
    with pytest.raises(ValueError, match="1..2"):
        Towers(VabModel(cfg), n_layers=3)


def test_a_whole_clip_pools_over_windows_of_the_trained_length(monkeypatch):
    assert cut_windows(3, 4) == [(0, 3)]
    assert cut_windows(8, 4) == [(0, 4), (4, 8)]
    assert cut_windows(10, 4) == [(0, 4), (4, 8), (6, 10)]  # the last window ends at the end
    torch.manual_seed(0)
    cfg = TOWER_CFG
    towers = Towers(VabModel(cfg).eval())
    features, codes = torch.randn(10, 8), torch.randint(0, 16, (2, 25))
    with torch.no_grad():
        windows = torch.stack([features[s:e] for s, e in cut_windows(10, 4)])
        expected = towers.visual(windows).mean(dim=0)
        assert torch.allclose(towers.visual_clip(features, 4), expected, atol=1e-6)
        assert not torch.allclose(towers.visual_clip(features, 10), expected, atol=1e-3)
        whole = towers.audio(codes[None])[0]
        assert torch.allclose(towers.audio_clip(codes, 25), whole, atol=1e-6)
        monkeypatch.setattr(
            "vabcli.model.towers.WINDOWS_PER_BATCH", 2
        )  # several batches, same mean
        by_windows = towers.audio_clip(codes, 5)
        monkeypatch.setattr("vabcli.model.towers.WINDOWS_PER_BATCH", 64)
        assert torch.allclose(towers.audio_clip(codes, 5), by_windows, atol=1e-6)


def test_embedding_files_round_trip_and_refuse_another_model(tmp_path):
    import numpy as np

    from vabcli.core.errors import VabError
    from vabcli.tasks.embedding_file import EmbeddingIndex, load_index, save_index

    vectors = F.normalize(torch.randn(3, 8), dim=-1).numpy()
    path = tmp_path / "index.npz"
    save_index(path, EmbeddingIndex(vectors, ["a.mp4", "b.mp4", "ü.mp4"], "m@123", "v"))
    with np.load(path, allow_pickle=False) as plain:  # other tools read it with numpy alone
        assert plain["embeddings"].shape == (3, 8) and list(plain["ids"])[2] == "ü.mp4"
    back = load_index(path, model="m@123")
    assert np.array_equal(back.embeddings, vectors) and back.modality == "v"
    with pytest.raises(VabError, match="built by model m@123, not other@1"):
        load_index(path, model="other@1")
    with pytest.raises(VabError, match="exists"):
        save_index(path, back)  # never replaced silently
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(VabError, match="not a vab embedding file"):
        load_index(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="2 ids for 3"):
        save_index(tmp_path / "x.npz", EmbeddingIndex(vectors, ["a", "b"], "m", "v"))
    assert not (tmp_path / "x.npz").exists()


def test_retrieval_scores_both_ways_with_chance():
    from vabcli.tasks.retrieval import retrieval_scores

    pairs = torch.eye(4)
    right = retrieval_scores(pairs, pairs, ks=(1, 2))
    assert (right["r1_v2a"], right["r1_a2v"], right["chance_r1"], right["chance_r2"]) == (
        1.0,
        1.0,
        0.25,
        0.5,
    )
    shifted = retrieval_scores(pairs, pairs.roll(1, dims=0), ks=(1,))
    assert shifted["r1_v2a"] == 0.0 and shifted["r1_a2v"] == 0.0
