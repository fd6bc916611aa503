"""What a training run (pre-training or a fine-tune) does before its first step: the run folder
made ready, and the clips to train on read from a pack or tokenized from a manifest (under
torchrun, shared among the processes). How a run reports what happens (`RunEvents`) lives here too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vabcli.core.cache import Cache
from vabcli.core.device import launch
from vabcli.core.errors import VabError
from vabcli.core.jobs import JobEvents

if TYPE_CHECKING:
    from vabcli.data.clips import ClipItem
    from vabcli.encoders.tokenize import ClipTokenizer, TokenizeOptions
    from vabcli.encoders.tokenize_clips import TokenizedClips
    from vabcli.training.plan import TrainPlan

StepFn = Callable[[dict[str, float]], None]

# Set by the data and its encoders, so a run may not override them.
DATA_DIMENSIONS = frozenset(
    {"visual_dim", "n_codebooks", "codebook_size", "visual_fps", "audio_frame_rate"}
)


def _nothing(message: str) -> None:
    pass


@dataclass(frozen=True)
class RunEvents:
    """How a run tells its caller what happens; all optional. Under torchrun only the first
    process speaks for the run: the others hear nothing."""

    warning: Callable[[str], None] = _nothing  # e.g. a run to resume had no checkpoint yet
    message: Callable[[str], None] = _nothing  # what is about to be trained, on how many clips
    tokenize: JobEvents | None = None  # progress of each clip being tokenized
    step: StepFn | None = None  # the metrics after every optimizer step


@dataclass(frozen=True)
class RunSetup:
    """How a training run goes, beyond what it trains: on which device, with which cache (None:
    the default folder), continuing (`resume`) or replacing (`overwrite`) an earlier run in
    its folder, and whom it tells what happens."""

    device: str = "auto"  # auto: cuda, then mps, then cpu
    cache: Cache | None = None
    resume: bool = False
    overwrite: bool = False
    events: RunEvents = RunEvents()

    def events_here(self) -> RunEvents:
        """The run's events in the process that speaks for it, silence in the others."""
        return self.events if launch().leader else RunEvents()


DEFAULT_SETUP = RunSetup()


class RunFolderTaken(ValueError):
    """The run folder cannot be used as asked (a usage error: the caller chose it)."""


def prepare_run_dir(out: Path, resume: bool, overwrite: bool, events: RunEvents) -> None:
    """An existing run is continued (`resume`) or replaced (`overwrite`), never silently; a
    run to resume that saved no checkpoint yet (killed early) starts over, with a warning."""
    if resume:
        from vabcli.model.checkpoint import tidy_checkpoint

        tidy_checkpoint(out / "last")  # before deciding there is nothing to resume
    if resume and not (out / "last").exists():
        events.warning(f"{out}: no checkpoint yet to resume; starting from the beginning")
    if not resume and out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunFolderTaken(
                f"{out} holds a run: add --resume to continue it or --overwrite to replace it"
            )
        shutil.rmtree(out)


def load_plan(
    data: Path | None,
    pack: Path | None,
    cache: Cache | None,
    tok_opts: TokenizeOptions,
    preset: str,
    dims: Mapping[str, int | float],
    workers: int,
    events: JobEvents | None = None,
) -> TrainPlan:
    """The clips to train on, from a pack or by tokenizing a manifest's (cached ones are free);
    the manifest's "test" clips are left out. `cache` None: the default cache folder."""
    from vabcli.data.clips import clip_items
    from vabcli.encoders.tokenize import ClipTokenizer, encoder_spec
    from vabcli.training.plan import plan_training, read_pack

    if pack is not None:
        return read_pack(pack, preset, dict(dims))
    items = [i for i in clip_items(None, data) if i.split != "test"]
    if not items:
        raise VabError(f"{data}: no train or val clips in this manifest")
    store = cache or Cache(None)
    tokenized = tokenize_in_shares(
        items, lambda: ClipTokenizer(tok_opts, store), workers, events, store.root
    )
    ids = (tokenized.codec_id, tokenized.visual_id)
    return plan_training(
        items,
        tokenized.outcomes,
        store,
        preset,
        dict(dims),
        tok_opts.extract.fps,
        *ids,  # type: ignore[arg-type]
        encoders=encoder_spec(tok_opts),
    )


def tokenize_in_shares(
    items: list[ClipItem],
    make_tokenizer: Callable[[], ClipTokenizer],
    workers: int,
    events: JobEvents | None,
    cache_root: Path,
) -> TokenizedClips:
    """The clips tokenized. Under torchrun every process tokenizes its share (on its own GPU):
    a share of all clips when every process sees the one cache, else of its machine's (see
    `tokenizing_shard`); after a barrier each reads the whole list from the cache, and with the
    encoder ids remembered loads no model for it."""
    import torch.distributed as dist

    from vabcli.encoders.tokenize_clips import tokenize_clips
    from vabcli.training.distributed import tokenizing_shard

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        with make_tokenizer() as tokenizer:
            return tokenize_clips(items, tokenizer, workers, events)
    shard = tokenizing_shard(cache_root)
    with make_tokenizer() as tokenizer:
        tokenize_clips(shard.of(items, lambda item: item.share_key()), tokenizer, workers, events)
    dist.barrier()
    with make_tokenizer() as tokenizer:
        return tokenize_clips(items, tokenizer, workers, None)


def run_summary(out: Path, final: Mapping[str, float]) -> dict[str, object]:
    """What a finished run reports: its folder, checkpoints and last metrics."""
    best = {"best": str(out / "best")} if (out / "best").exists() else {}
    return {"out": str(out), "last": str(out / "last"), **best, **final}
