"""`vab synth`: a synthetic audio-visual data set with ground truth."""

import time
from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli.common import QuietOpt, WorkersOpt, app, one_line_failures
from vabcli.cli.console import progress_bars, stderr
from vabcli.world.scenes import CLASS_NAMES
from vabcli.world.synth import SynthOptions

_DEFAULTS = SynthOptions()


@app.command()
def synth(
    out_dir: Annotated[
        Path, typer.Argument(metavar="OUT_DIR", help="Folder for the clips and manifest.jsonl.")
    ],
    n: Annotated[
        int, typer.Option("--n", metavar="N", min=1, help="Number of clips.")
    ] = _DEFAULTS.n,
    seed: Annotated[
        int, typer.Option(metavar="S", help="Data-set seed: the same seed gives the same clips.")
    ] = _DEFAULTS.seed,
    duration: Annotated[
        float | None,
        typer.Option(metavar="D", help="Every clip D seconds (instead of a random length)."),
    ] = None,
    min_duration: Annotated[
        float, typer.Option(metavar="D", help="Shortest random clip length, seconds.")
    ] = _DEFAULTS.min_duration,
    max_duration: Annotated[
        float, typer.Option(metavar="D", help="Longest random clip length, seconds.")
    ] = _DEFAULTS.max_duration,
    split: Annotated[
        str,
        typer.Option(
            metavar="SPLIT", help="Split of every clip: train, val, test, or auto (8:1:1)."
        ),
    ] = _DEFAULTS.split,
    workers: WorkersOpt = 2,
    quiet: QuietOpt = False,
) -> None:
    """Write synthetic clips with ground truth: objects whose look gives their sound.

    Each MP4 (H.264 + AAC, varied frame rates, sizes and lengths) shows one to three objects
    of these classes:"""  # the class list is appended below
    from vabcli.world.synth import synthesize

    low, high = (duration, duration) if duration is not None else (min_duration, max_duration)
    try:
        opts = SynthOptions(n=n, seed=seed, min_duration=low, max_duration=high, split=split)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    bars = progress_bars(quiet)
    task = bars.add_task("synth", total=n)
    started = time.monotonic()
    interrupted = "interrupted; the clips written so far are complete, the manifest is not"
    with one_line_failures(interrupted), bars:
        manifest = synthesize(out_dir, opts, workers, on_clip=lambda _: bars.advance(task))
    print(manifest)
    if not quiet:
        stderr.print(f"{n} clips in {out_dir} ({time.monotonic() - started:.1f} s)")


_CLASS_LIST = ", ".join(CLASS_NAMES)
synth.__doc__ = (synth.__doc__ or "") + (
    f" {_CLASS_LIST}. Droppers strike the floor, flashers light up, and each sound starts at "
    "that moment. manifest.jsonl lists video, label (the class heard most), split, events (sound "
    "onsets, seconds) and sources (each object's label and events)."
)
