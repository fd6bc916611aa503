"""The `vab` command line: each command parses, builds an options object and calls the library."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .batch import Job, Outcome, run_batch
from .cache import Cache, default_cache_dir
from .config import CODEC_SAMPLE_RATE, FRAME_SIZE, VISUAL_FPS, ExtractOptions, parse_size
from .console import BatchDisplay, debug_enabled, print_error
from .errors import VabError
from .extract import extract_clip
from .inputs import InputItem, expand_inputs
from .mux import OUTPUT_SUFFIXES, MuxJob, MuxOptions, plan_batch, run_mux_job

EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="vab",
    help="Dub videos with audio generated from their pictures (VAB).\n\n"
    "Results go to stdout (--json: one JSON object per input); progress and errors to stderr. "
    "Exit code: 0 all inputs ok, 1 some input failed, 2 usage error, 130 interrupted.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Options shared by several commands: one definition each, so names and help never drift.
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        metavar="DIR",
        envvar="VAB_CACHE",
        show_envvar=True,
        help=f"Cache folder [default: {default_cache_dir()}].",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object per input on stdout (JSON Lines).")
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers", "-j", metavar="N", min=1, max=64, help="Inputs processed at the same time."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")]


def _version(value: bool) -> None:
    if value:
        print(f"vab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Dub videos with audio generated from their pictures (VAB)."""


def _run(
    items: list,
    job: Job,
    workers: int,
    verb: str,
    as_json: bool,
    quiet: bool,
    describe: Callable[[Outcome], str],
) -> None:
    """Run a batch with progress and per-item results; exit 1 if any item failed."""
    display = BatchDisplay(len(items), verb, as_json, quiet, describe)
    try:
        with display:
            outcomes = run_batch(items, job, workers, display)
    except KeyboardInterrupt:
        print_error("interrupted; unfinished outputs were removed")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(display.summary(outcomes))


def _describe_extract(o: Outcome) -> str:
    f = o.figures
    audio = f"{f['n_samples']} samples @ {f['sample_rate']} Hz" if f["has_audio"] else "no audio"
    cached = "  (cached)" if f["cache_hit"] else ""
    return f"{f['duration']:.3f} s  {f['n_frames']} frames @ {f['fps']:g} fps  {audio}{cached}"


@app.command()
def extract(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT", help="Video files, folders (searched recursively) or glob patterns."
        ),
    ],
    cache: CacheOpt = None,
    fps: Annotated[
        float, typer.Option(metavar="F", help="Frames per second to decode.")
    ] = VISUAL_FPS,
    size: Annotated[
        str,
        typer.Option(
            metavar="S",
            help="Frame size: N for NxN or WxH; frames are scaled to cover it and centre-cropped.",
        ),
    ] = str(FRAME_SIZE),
    sample_rate: Annotated[
        int, typer.Option("--sample-rate", metavar="SR", help="Audio sample rate in Hz (mono).")
    ] = CODEC_SAMPLE_RATE,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode frames and audio of videos into the cache (a cached input is not decoded again)."""
    try:
        width, height = parse_size(size)
        opts = ExtractOptions(fps=fps, width=width, height=height, sample_rate=sample_rate)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    store = Cache(cache)
    job: Job[InputItem] = Job(
        work=lambda item, progress: extract_clip(item.path, opts, store, progress).figures(),
        name=lambda item: str(item.path),
        error=lambda item: item.error,
    )
    _run(expand_inputs(inputs), job, workers, "extract", as_json, quiet, _describe_extract)


@app.command()
def mux(
    video: Annotated[
        Path, typer.Argument(metavar="VIDEO", help="A video file, or a folder of videos.")
    ],
    audio: Annotated[
        Path,
        typer.Argument(
            metavar="AUDIO", help="An audio file, or a folder with audio named like the videos."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="OUT",
            help="Output file (.mp4, .m4v, .mov, .mkv), or output folder for folders.",
        ),
    ],
    reencode: Annotated[
        bool,
        typer.Option(
            "--reencode",
            help="Re-encode the video to H.264 (for codecs the output container cannot hold).",
        ),
    ] = False,
    keep_original_audio: Annotated[
        bool,
        typer.Option(
            "--keep-original-audio", help="Keep the video's own audio as a second track (as AAC)."
        ),
    ] = False,
    audio_bitrate: Annotated[
        str, typer.Option("--audio-bitrate", metavar="RATE", help="AAC bitrate.")
    ] = "192k",
    overwrite: OverwriteOpt = False,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Put audio into a video beside its untouched video stream (batch: match by relative name).

    The audio is encoded to AAC and padded or trimmed to the video's exact duration; the video's
    own audio is replaced unless --keep-original-audio.
    """
    opts = MuxOptions(
        reencode=reencode,
        keep_original_audio=keep_original_audio,
        audio_bitrate=audio_bitrate,
        overwrite=overwrite,
    )
    if video.is_dir() != audio.is_dir():
        raise typer.BadParameter("VIDEO and AUDIO must both be files or both be folders")
    if not video.is_dir() and out.suffix.lower() not in OUTPUT_SUFFIXES:
        suffixes = ", ".join(sorted(OUTPUT_SUFFIXES))
        raise typer.BadParameter(f"output must end in one of {suffixes}", param_hint="--out")
    if video.is_dir():
        try:
            jobs = plan_batch(video, audio, out)
        except VabError as exc:
            print_error(str(exc))
            raise typer.Exit(1) from None
    else:
        jobs = [MuxJob(video, audio, out)]
    job: Job[MuxJob] = Job(
        work=lambda j, progress: run_mux_job(j, opts), name=lambda j: str(j.video)
    )
    _run(
        jobs,
        job,
        workers,
        "mux",
        as_json,
        quiet,
        lambda o: f"-> {o.figures['output']}  {o.figures['duration']:.3f} s",
    )


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        app(prog_name="vab")
    except VabError as exc:  # raised outside a batch (e.g. no ffmpeg at all)
        if debug_enabled():
            raise
        print_error(str(exc))
        sys.exit(1)
