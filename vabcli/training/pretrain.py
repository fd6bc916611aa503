"""Pre-training as one call: from a manifest (or a pack) and options to a run folder and its
summary (`train`); and tokenizing a manifest into a pack to train on elsewhere
(`write_training_pack`). What `vab train` runs; progress by `RunEvents`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vabcli.config import TrainOptions
from vabcli.training.prepare import DEFAULT_SETUP, RunSetup, load_plan, prepare_run_dir, run_summary

if TYPE_CHECKING:
    from vabcli.encoders.tokenize import TokenizeOptions

DEFAULT_PRESET = "tiny"


def train(
    out: Path,
    *,
    data: Path | None = None,
    pack: Path | None = None,
    preset: str = DEFAULT_PRESET,
    dims: Mapping[str, int | float] | None = None,
    options: TrainOptions | None = None,
    tokenize: TokenizeOptions | None = None,
    setup: RunSetup = DEFAULT_SETUP,
) -> dict[str, Any]:
    """Pre-train a model of `preset` size (`dims` overriding single dimensions) on the train
    and val clips of the manifest `data` (tokenized with `tokenize`'s encoders, cached ones
    skipped) or of a `pack`, writing checkpoints to `out`/last and `out`/best and metrics to
    `out`/metrics.jsonl. An earlier run in `out` is continued (`setup.resume`) or replaced
    (`setup.overwrite`); otherwise RunFolderTaken. Returns the summary: out, last, best, and the
    last step's metrics. Ctrl-C saves `out`/last and raises KeyboardInterrupt. Under torchrun
    every process calls this; the process group is joined here and left to the caller to end
    (`training.distributed.end_distributed`)."""
    from vabcli.core.device import rank_device, resolve_device
    from vabcli.encoders.tokenize import TokenizeOptions
    from vabcli.training.distributed import join_process_group

    options = options or TrainOptions()
    tokenize = tokenize or TokenizeOptions(device=setup.device)
    events = setup.events_here()
    prepare_run_dir(out, setup.resume, setup.overwrite, events)
    dims = {**(dims or {})}
    if setup.resume and "time_scale" not in dims and (out / "last").exists():
        dims["time_scale"] = _time_scale_of(out / "last")
    run_device = rank_device(resolve_device(setup.device))
    join_process_group(run_device)
    plan = load_plan(
        data, pack, setup.cache, tokenize, preset, dims, options.workers, events.tokenize
    )
    events.message(plan.summary())
    final = plan.trainer(options, out, run_device, setup.resume).run(events.step)
    return run_summary(out, final)


def _time_scale_of(checkpoint: Path) -> float:
    """A resumed run keeps the time code it was born with (runs from before unit-norm codes were
    the default have amplitude 1), unless --set says otherwise and the resume refuses."""
    from vabcli.model.checkpoint import read_model_config

    return read_model_config(checkpoint).time_scale


def write_training_pack(
    data: Path,
    folder: Path,
    *,
    tokenize: TokenizeOptions | None = None,
    workers: int = TrainOptions.workers,
    setup: RunSetup = DEFAULT_SETUP,
) -> dict[str, Any] | None:
    """Tokenize the train and val clips of the manifest `data` and write their training arrays
    to `folder` as a pack (`train(pack=folder)` trains on it, on any machine). Returns what was
    written (pack, train_clips, val_clips, bytes); `setup.overwrite` replaces a pack in `folder`
    (`resume` means nothing here); under torchrun None in every process but
    the first, which alone writes."""
    from vabcli.core.device import launch, rank_device, resolve_device
    from vabcli.encoders.tokenize import TokenizeOptions
    from vabcli.training.distributed import join_process_group
    from vabcli.training.plan import write_pack

    tokenize = tokenize or TokenizeOptions(device=setup.device)
    events = setup.events_here()
    join_process_group(rank_device(resolve_device(setup.device)))
    plan = load_plan(
        data, None, setup.cache, tokenize, DEFAULT_PRESET, {}, workers, events.tokenize
    )
    if not launch().leader:
        return None
    size = write_pack(plan, folder, setup.overwrite)
    return {
        "pack": str(folder),
        "train_clips": len(plan.train),
        "val_clips": len(plan.val),
        "bytes": size,
    }
