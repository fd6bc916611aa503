"""`vab extract`: decode frames and audio of videos into the cache."""

from typing import Annotated

import typer

from vabcli.cli.common import (
    DEFAULT_FPS,
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SIZE,
    OUTPUT,
    CacheOpt,
    FpsOpt,
    Output,
    SampleRateOpt,
    SizeOpt,
    app,
    extract_options,
    open_cache,
    run_command,
    with_option_groups,
)
from vabcli.core.jobs import Job, Outcome
from vabcli.media.extract import extract_clip
from vabcli.media.inputs import InputItem, expand_inputs


def _describe(o: Outcome) -> str:
    f = o.figures
    audio = f"{f['n_samples']} samples @ {f['sample_rate']} Hz" if f["has_audio"] else "no audio"
    cached = "  (cached)" if f["cache_hit"] else ""
    return f"{f['duration']:.3f} s  {f['n_frames']} frames @ {f['fps']:g} fps  {audio}{cached}"


@app.command()
@with_option_groups(output=OUTPUT)
def extract(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT", help="Video files, folders (searched recursively) or glob patterns."
        ),
    ],
    cache: CacheOpt = None,
    fps: FpsOpt = DEFAULT_FPS,
    size: SizeOpt = DEFAULT_SIZE,
    sample_rate: SampleRateOpt = DEFAULT_SAMPLE_RATE,
    *,
    output: Output,
) -> None:
    """Decode frames and audio of videos into the cache (a cached input is not decoded again)."""
    opts = extract_options(fps, size, sample_rate)
    store = open_cache(cache)
    job: Job[InputItem] = Job(
        work=lambda item, progress: extract_clip(item.path, opts, store, progress).figures(),
        name=lambda item: str(item.path),
        error=lambda item: item.error,
    )
    run_command(expand_inputs(inputs), job, output, "extract", _describe)
