"""`vab mux`: put audio into videos beside their untouched video streams."""

from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli.common import (
    OUTPUT,
    Output,
    OverwriteOpt,
    app,
    one_line_failures,
    run_command,
    with_option_groups,
)
from vabcli.core.jobs import Job, Outcome
from vabcli.media.mux import OUTPUT_SUFFIXES, MuxJob, MuxOptions, plan_batch, run_mux_job

_DEFAULTS = MuxOptions()


@app.command()
@with_option_groups(output=OUTPUT)
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
    ] = _DEFAULTS.reencode,
    keep_original_audio: Annotated[
        bool,
        typer.Option(
            "--keep-original-audio", help="Keep the video's own audio as a second track (as AAC)."
        ),
    ] = _DEFAULTS.keep_original_audio,
    audio_bitrate: Annotated[
        str, typer.Option("--audio-bitrate", metavar="RATE", help="AAC bitrate.")
    ] = _DEFAULTS.audio_bitrate,
    overwrite: OverwriteOpt = _DEFAULTS.overwrite,
    *,
    output: Output,
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
        with one_line_failures():
            jobs = plan_batch(video, audio, out)
    else:
        jobs = [MuxJob(video, audio, out)]
    job: Job[MuxJob] = Job(
        work=lambda j, progress: run_mux_job(j, opts), name=lambda j: str(j.video)
    )
    run_command(jobs, job, output, "mux", _describe)


def _describe(o: Outcome) -> str:
    return f"-> {o.figures['output']}  {o.figures['duration']:.3f} s"
