"""Clips as a checkpoint sees them: tokenized with the encoders it was trained with (recorded in
its metadata), then read back from the cache as features and codes; and a checkpoint's answer
for each clip, a clip that fails being an answer with an error (the others go on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from vabcli.core.cache import Cache
from vabcli.core.errors import VabError
from vabcli.core.jobs import JobEvents
from vabcli.data.clips import ClipItem
from vabcli.encoders.tokenize import ClipTokenizer, latent_files, options_from_spec
from vabcli.encoders.tokenize_clips import tokenize_clips
from vabcli.tasks.options import ClipOptions

T = TypeVar("T")


@dataclass(frozen=True)
class ClipLatents:
    item: ClipItem
    error: str | None  # why the clip could not be tokenized (then no arrays)
    features: np.ndarray | None  # [n_visual, visual_dim] float32
    codes: np.ndarray | None  # [n_codebooks, n_audio_frames]; None: the clip has no audio


def clip_latents(
    items: Sequence[ClipItem],
    model: Any,
    cache: Cache,
    opts: ClipOptions | None = None,
    events: JobEvents | None = None,
) -> Iterator[ClipLatents]:
    """Every clip's latents, in input order, tokenized with the encoders `model` (an Embedder
    or a Classifier) records. All clips are tokenized first, and the encoders freed, before the
    first is yielded; the arrays are read from the cache one clip at a time."""
    opts = opts or ClipOptions()
    tok_opts = options_from_spec(model.meta.encoders, device=opts.device)
    with ClipTokenizer(tok_opts, cache) as tokenizer:
        tokenized = tokenize_clips(items, tokenizer, opts.workers, events)
    for item, outcome in zip(items, tokenized.outcomes, strict=True):
        if outcome.status != "ok":
            yield ClipLatents(item, outcome.error or "failed", None, None)
            continue
        features, codes = latent_files(cache, outcome.figures)
        yield ClipLatents(item, None, np.load(features), None if codes is None else np.load(codes))


@dataclass(frozen=True)
class ClipAnswer(Generic[T]):
    """What a checkpoint made of one clip: `value`, or the `error` that stopped it."""

    item: ClipItem
    value: T | None
    error: str | None = None


def answer_clips(
    latents: Iterable[ClipLatents], answer: Callable[[np.ndarray, np.ndarray | None], T]
) -> Iterator[ClipAnswer[T]]:
    """`answer(features, codes)` of each clip as it comes; a clip that could not be tokenized,
    or whose answer raises VabError, is an answer with that error."""
    for clip in latents:
        error = clip.error
        value = None
        if error is None:
            try:
                value = answer(clip.features, clip.codes)
            except VabError as exc:
                error = str(exc)
        yield ClipAnswer(clip.item, value, error)
