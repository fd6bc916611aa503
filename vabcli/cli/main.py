"""The `vab` command line: each command parses, builds an options object and calls the library.

Commands live in small modules (`cli_*.py`) that register on the one app defined in cli_common.
"""

import atexit
import os
import select
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

# Each command module registers its commands on the one app (vabcli.cli.common.app).
import vabcli.cli.cache  # noqa: F401
import vabcli.cli.classify  # noqa: F401
import vabcli.cli.embed  # noqa: F401
import vabcli.cli.eval  # noqa: F401
import vabcli.cli.finetune  # noqa: F401
import vabcli.cli.generate  # noqa: F401
import vabcli.cli.models  # noqa: F401
import vabcli.cli.synth  # noqa: F401
import vabcli.cli.tokenize  # noqa: F401
import vabcli.cli.train  # noqa: F401
from vabcli.cli.common import (
    DEFAULT_FPS,
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SIZE,
    EXIT_INTERRUPTED,
    CacheOpt,
    FpsOpt,
    JsonOpt,
    OverwriteOpt,
    QuietOpt,
    SampleRateOpt,
    SizeOpt,
    WorkersOpt,
    app,
    extract_options,
    open_cache,
    run_command,
)
from vabcli.cli.console import debug_enabled, print_error
from vabcli.core.errors import VabError
from vabcli.core.jobs import Job, Outcome
from vabcli.core.process import exit_now
from vabcli.core.threads import prepare_process
from vabcli.media.extract import extract_clip
from vabcli.media.inputs import InputItem, expand_inputs
from vabcli.media.mux import OUTPUT_SUFFIXES, MuxJob, MuxOptions, plan_batch, run_mux_job


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
    fps: FpsOpt = DEFAULT_FPS,
    size: SizeOpt = DEFAULT_SIZE,
    sample_rate: SampleRateOpt = DEFAULT_SAMPLE_RATE,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode frames and audio of videos into the cache (a cached input is not decoded again)."""
    opts = extract_options(fps, size, sample_rate)
    store = open_cache(cache)
    job: Job[InputItem] = Job(
        work=lambda item, progress: extract_clip(item.path, opts, store, progress).figures(),
        name=lambda item: str(item.path),
        error=lambda item: item.error,
    )
    run_command(expand_inputs(inputs), job, workers, "extract", as_json, quiet, _describe_extract)


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
    run_command(
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


# 128 + SIGPIPE: what a shell reports for a tool stopped because its reader left (`| head`).
EXIT_BROKEN_PIPE = 141


def main() -> None:
    """Console-script entry point: set the process up, run the command, leave with its status."""
    prepare_process()  # first: torch's OpenMP reads its settings once, when torch loads
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    code = _command_status()
    # The command is over: a SIGTERM from here on (threads joining, teardown) ends the process as
    # SIGTERM does, not as a KeyboardInterrupt escaping at exit.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # only a process that imported the distributed plumbing joined a process group
    distributed = sys.modules.get("vabcli.training.distributed")
    if distributed is not None:
        distributed.exit_process(code)
    if code == EXIT_INTERRUPTED:
        _leave_interrupted()
    sys.exit(code)


def _leave_interrupted() -> NoReturn:
    """End an interrupted run with exit 130 for certain.

    CPython 3.11 marks a KeyboardInterrupt raised inside code run by eval/exec (namedtuple and
    dataclass creation while a module imports) as unhandled even when vab caught it, and then ends
    the process by SIGINT (-2) after a clean exit 130. So an interrupted run does the usual exit
    work itself (atexit handlers, flushing) and leaves through os._exit.
    """
    atexit._run_exitfuncs()
    exit_now(EXIT_INTERRUPTED)


def _command_status() -> int:
    """Run the command line and return its exit status, whatever way it ends."""
    try:
        app(prog_name="vab")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before or between batches (start-up, loading)
        print_error("interrupted")
        code = EXIT_INTERRUPTED
    except VabError as exc:  # raised outside a batch (e.g. no ffmpeg at all)
        if debug_enabled():
            sys.excepthook(*sys.exc_info())
        else:
            print_error(str(exc))
        code = 1
    except Exception:  # a bug: shown as Python would, but the process still ends through here
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        sys.stdout.flush()  # what is still buffered reaches the reader now, or the run says so
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    if code == EXIT_BROKEN_PIPE:
        # Nothing more can reach the reader: later flushes (interpreter exit) go nowhere, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def _exit_code(exc: SystemExit) -> int:
    """The status of a command that ended by exiting. Typer turns a write to a closed stdout
    into a silent exit 1 (the BrokenPipeError is the exit's context): a reader that left
    (`vab ... | head`) gets the pipe status instead, a broken pipe elsewhere an error line."""
    cause = exc.__context__
    if isinstance(cause, BrokenPipeError):
        if _stdout_gone():
            return EXIT_BROKEN_PIPE
        print_error(f"internal error: {cause}")
        return 1
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has left (poll reports an error on its end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False
