"""What a checkpoint makes of clips (`vab embed`, `vab retrieve`, `vab classify`): their unit
embeddings gathered into an EmbeddingIndex, their nearest matches in an embedding file, their
likeliest labels. Each clip is tokenized with the checkpoint's own encoders; a clip that fails
is an answer with its error, and the others go on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vabcli.core.cache import Cache
from vabcli.core.device import resolve_device
from vabcli.core.errors import VabError
from vabcli.core.jobs import JobEvents
from vabcli.data.clips import ClipItem
from vabcli.tasks.classify import load_classifier
from vabcli.tasks.embedding import Embedder, load_embedder
from vabcli.tasks.embedding_file import EmbeddingIndex, load_index
from vabcli.tasks.latents import ClipAnswer, answer_clips, clip_latents
from vabcli.tasks.options import (
    MODALITY_NAMES,
    ClassifyOptions,
    EmbedOptions,
    RetrieveOptions,
)
from vabcli.tasks.retrieval import top_k


def clip_vector(
    embedder: Embedder, modality: str, features: np.ndarray, codes: np.ndarray | None
) -> np.ndarray:
    """A clip's unit embedding `[D]` of its pictures (`modality` "v") or its sound ("a")."""
    if modality == "a":
        if codes is None:
            raise VabError("has no audio to embed")
        return embedder.audio(codes)
    return embedder.visual(features)


@dataclass(frozen=True)
class Embeddings:
    index: EmbeddingIndex | None  # None: no clip could be embedded
    left_out: list[ClipAnswer[np.ndarray]]  # clips not embedded, each with its error


def embed_clips(
    model: Path,
    items: Sequence[ClipItem],
    cache: Cache,
    opts: EmbedOptions,
    events: JobEvents | None = None,
) -> Embeddings:
    """The embeddings of the clips that can be embedded, rows in input order, as one index.
    `events` hears of the tokenizing."""
    embedder = load_embedder(model, resolve_device(opts.device))
    latents = clip_latents(items, embedder, cache, opts, events)
    embedded = list(answer_clips(latents, lambda f, c: clip_vector(embedder, opts.modality, f, c)))
    kept = [answer for answer in embedded if answer.error is None]
    index = None
    if kept:
        vectors = np.stack([answer.value for answer in kept])
        ids = [answer.item.name() for answer in kept]
        index = EmbeddingIndex(vectors, ids, embedder.model_id, opts.modality)
    return Embeddings(index, [answer for answer in embedded if answer.error is not None])


@dataclass(frozen=True)
class Match:
    id: str  # the index row's id (the clip's name when `vab embed` made it)
    score: float  # cosine similarity


def search_clips(
    model: Path,
    index_file: Path,
    items: Sequence[ClipItem],
    cache: Cache,
    opts: RetrieveOptions,
    events: JobEvents | None = None,
) -> Iterator[ClipAnswer[list[Match]]]:
    """Each query clip's best `opts.top_k` matches in an embedding file of the other modality,
    best first. The model and the file are read (and refused: another model's file, the wrong
    modality) before this returns."""
    embedder = load_embedder(model, resolve_device(opts.device))
    index = load_index(index_file, model=embedder.model_id)
    if index.modality != opts.index_modality:
        held, wanted = MODALITY_NAMES[index.modality], MODALITY_NAMES[opts.index_modality]
        raise VabError(f"{index_file} holds {held} embeddings; {opts.direction} searches {wanted}")
    vectors = torch.from_numpy(index.embeddings)

    def matches(features: np.ndarray, codes: np.ndarray | None) -> list[Match]:
        query = clip_vector(embedder, opts.query_modality, features, codes)
        scores, rows = top_k(torch.from_numpy(query)[None], vectors, opts.top_k)
        return [Match(index.ids[r], float(s)) for s, r in zip(scores[0], rows[0], strict=True)]

    return answer_clips(clip_latents(items, embedder, cache, opts, events), matches)


def classify_clips(
    model: Path,
    items: Sequence[ClipItem],
    cache: Cache,
    opts: ClassifyOptions,
    events: JobEvents | None = None,
) -> Iterator[ClipAnswer[list[tuple[str, float]]]]:
    """Each clip's `opts.top_k` likeliest (label, probability), likeliest first (softmax, or
    per-label sigmoids for a multi-label model). The classifier is read before this returns."""
    classifier = load_classifier(model, resolve_device(opts.device))
    labels = classifier.spec.labels

    def top_labels(features: np.ndarray, codes: np.ndarray | None) -> list[tuple[str, float]]:
        probs = classifier.probabilities(features, codes)
        top = np.argsort(-probs, kind="stable")[: opts.top_k]
        return [(labels[i], float(probs[i])) for i in top]

    return answer_clips(clip_latents(items, classifier, cache, opts, events), top_labels)
