"""`vab tokenize`: visual features and audio tokens for videos or a manifest, into the cache."""

from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli.common import (
    DEFAULT_FPS,
    DEFAULT_SAMPLE_RATE,
    DEFAULT_SIZE,
    BandwidthOpt,
    CacheOpt,
    CodecOpt,
    CodecWeightsOpt,
    DeviceOpt,
    FpsOpt,
    ImageEncoderOpt,
    JsonOpt,
    QuietOpt,
    WorkersOpt,
    app,
    extract_options,
    open_cache,
    run_command,
)
from vabcli.cli.console import print_error
from vabcli.config import DEFAULT_CODEC, DEFAULT_IMAGE_ENCODER
from vabcli.core.errors import VabError
from vabcli.core.jobs import Job, Outcome
from vabcli.data.clips import ClipItem, clip_items
from vabcli.encoders.tokenize import ClipTokenizer, TokenizeOptions


def _describe(o: Outcome) -> str:
    f = o.figures
    audio = f"audio {f['n_codebooks']}x{f['n_audio_frames']}" if f["has_audio"] else "no audio"
    cached = "  (cached)" if f["cache_hit"] else ""
    return f"{f['duration']:.3f} s  visual {f['n_visual']}x{f['visual_dim']}  {audio}{cached}"


@app.command()
def tokenize(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(metavar="INPUT", help="Video files, folders or globs (or use --data)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", metavar="MANIFEST", help="A manifest.jsonl of clips (see the README)."
        ),
    ] = None,
    cache: CacheOpt = None,
    codec: CodecOpt = DEFAULT_CODEC,
    codec_weights: CodecWeightsOpt = None,
    bandwidth: BandwidthOpt = None,
    image_encoder: ImageEncoderOpt = DEFAULT_IMAGE_ENCODER,
    fps: FpsOpt = DEFAULT_FPS,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="S",
            help="Frame size N or WxH [default: the image encoder's input size, e.g. 224].",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    keep_frames: Annotated[
        bool,
        typer.Option("--keep-frames", help="Keep decoded frames in the cache after encoding."),
    ] = False,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Visual features and audio tokens of clips, into the cache (cached clips are skipped).

    JSON lines add n_visual, visual_dim, n_codebooks, n_audio_frames and cache_hit.
    """
    if not inputs and data is None:
        raise typer.BadParameter("give INPUT paths or --data MANIFEST")
    opts = TokenizeOptions(
        extract=extract_options(fps, size or DEFAULT_SIZE, DEFAULT_SAMPLE_RATE),
        frame_size_from_encoder=size is None,
        codec=codec,
        codec_weights=codec_weights,
        bandwidth=bandwidth,
        image_encoder=image_encoder,
        device=device,
        keep_frames=keep_frames,
    )
    try:
        items = clip_items(inputs, data)
        tokenizer = ClipTokenizer(opts, open_cache(cache))
    except VabError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    job: Job[ClipItem] = Job(
        work=lambda item, progress: {
            **item.labels(),
            **tokenizer.tokenize(item.path, item.segment, progress),
        },
        name=ClipItem.name,
        error=lambda item: item.error,
    )
    with tokenizer:
        run_command(items, job, workers, "tokenize", as_json, quiet, _describe)
