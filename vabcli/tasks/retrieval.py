"""Searching embeddings: top-k by cosine similarity, in chunks, and recall@k.

The index is searched a chunk at a time and only the running top k per query is kept, so the
extra memory is `queries x chunk` whatever the index size (a million entries never make a full
similarity matrix).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_CHUNK = 65_536  # index rows per matrix product


def top_k(
    queries: torch.Tensor, index: torch.Tensor, k: int, chunk: int = DEFAULT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and row numbers `[Q, k']` (k' = min(k, N)) of the `index` rows `[N, D]` with the
    largest dot product with each query `[Q, D]`, best first. Unit vectors: cosine similarity."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if queries.shape[-1] != index.shape[-1]:
        raise ValueError(f"queries are {queries.shape[-1]}-d, the index {index.shape[-1]}-d")
    n_queries, keep = queries.shape[0], min(k, index.shape[0])
    best = queries.new_empty((n_queries, 0))
    rows = torch.empty((n_queries, 0), dtype=torch.long, device=queries.device)
    for start in range(0, index.shape[0], chunk):
        block = index[start : start + chunk].to(queries.dtype)
        scores, found = (queries @ block.T).topk(min(keep, block.shape[0]), dim=1)
        merged = torch.cat([best, scores], dim=1)
        merged_rows = torch.cat([rows, found + start], dim=1)
        best, order = merged.topk(min(keep, merged.shape[1]), dim=1)
        rows = merged_rows.gather(1, order)
    return best, rows


def recall_at_k(
    queries: torch.Tensor,
    index: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = DEFAULT_CHUNK,
) -> dict[int, float]:
    """Fraction of queries whose target row (`targets[i]` for query i) is among the top k, for
    each k in `ks`."""
    _, rows = top_k(queries, index, max(ks), chunk)
    hits = rows == targets.to(rows.device)[:, None]
    return {k: float(hits[:, :k].any(dim=1).float().mean()) for k in ks}


def chance_recall(k: int, n: int) -> float:
    """Recall@k of a random ranking of `n` candidates with one right answer."""
    return min(k, n) / n


def retrieval_scores(
    visual: torch.Tensor, audio: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """R@k both ways for N paired unit embeddings (row i of each is one clip), with chance."""
    targets = torch.arange(len(visual))
    scores: dict[str, float] = {}
    for name, (queries, index) in {"v2a": (visual, audio), "a2v": (audio, visual)}.items():
        for k, r in recall_at_k(queries, index, targets, ks).items():
            scores[f"r{k}_{name}"] = r
    for k in ks:
        scores[f"chance_r{k}"] = chance_recall(k, len(visual))
    return scores
