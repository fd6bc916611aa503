"""Tokenizing many clips with one `ClipTokenizer`: each clip a job on a worker pool, so a clip
that fails is an error outcome and the others go on. `vab tokenize`, training and every command
that runs a checkpoint on clips tokenize through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vabcli.core.jobs import Job, JobEvents, Outcome, run_jobs
from vabcli.data.clips import ClipItem
from vabcli.encoders.tokenize import ClipTokenizer


class TokenizeEvents(JobEvents):
    """JobEvents that also hear how many clips are about to be tokenized, for a caller that
    does not list the clips itself (e.g. they come from a manifest read further down)."""

    def tokenizing(self, total: int) -> None: ...


@dataclass(frozen=True)
class TokenizedClips:
    """One outcome per clip, in input order (an ok one's figures name its cache entries, see
    `latent_files`), and the ids of the encoders that made them."""

    outcomes: list[Outcome]
    codec_id: str | None
    visual_id: str | None


def tokenize_clips(
    items: Sequence[ClipItem],
    tokenizer: ClipTokenizer,
    workers: int,
    events: JobEvents | None = None,
) -> TokenizedClips:
    """Features and tokens of every clip, cached or computed by `tokenizer` (opened by the
    caller, which also closes it) on `workers` threads; progress through `events` (told the
    number of clips first if they are TokenizeEvents). An ok
    outcome's figures hold the manifest fields of its clip as well (`ClipItem.labels`)."""
    job: Job[ClipItem] = Job(
        work=lambda item, progress: {
            **item.labels(),
            **tokenizer.tokenize(item.path, item.segment, progress),
        },
        name=ClipItem.name,
        error=lambda item: item.error,  # e.g. "no such file", known before any work
    )
    if isinstance(events, TokenizeEvents):
        events.tokenizing(len(items))
    outcomes = run_jobs(items, job, workers, events)
    return TokenizedClips(outcomes, tokenizer.codec_id, tokenizer.visual_id)
