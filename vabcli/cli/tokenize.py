"""`vab tokenize`: visual features and audio tokens for videos or a manifest, into the cache."""

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli import common
from vabcli.core.device import launch
from vabcli.core.jobs import Outcome
from vabcli.data.clips import ClipItem, clip_items
from vabcli.encoders.tokenize import ClipTokenizer, TokenizeOptions
from vabcli.encoders.tokenize_clips import tokenize_clips

_DEFAULTS = TokenizeOptions()


def _describe(o: Outcome) -> str:
    f = o.figures
    audio = f"audio {f['n_codebooks']}x{f['n_audio_frames']}" if f["has_audio"] else "no audio"
    cached = "  (cached)" if f["cache_hit"] else ""
    return f"{f['duration']:.3f} s  visual {f['n_visual']}x{f['visual_dim']}  {audio}{cached}"


@common.app.command()
@common.with_option_groups(encoders=common.ENCODERS, output=common.OUTPUT)
def tokenize(
    inputs: common.InputsArg = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", metavar="MANIFEST", help="A manifest.jsonl of clips (see the README)."
        ),
    ] = None,
    cache: common.CacheOpt = None,
    *,
    encoders: common.Encoders,
    fps: common.FpsOpt = _DEFAULTS.extract.fps,
    size: Annotated[
        str | None,
        typer.Option(
            metavar="S",
            help="Frame size N or WxH [default: the image encoder's input size, e.g. 224].",
        ),
    ] = None,
    device: common.DeviceOpt = _DEFAULTS.device,
    shard: common.ShardOpt = None,
    keep_frames: Annotated[
        bool,
        typer.Option("--keep-frames", help="Keep decoded frames in the cache after encoding."),
    ] = _DEFAULTS.keep_frames,
    output: common.Output,
) -> None:
    """Visual features and audio tokens of clips, into the cache (cached clips are skipped).

    Under torchrun each process tokenizes its share on its own GPU: of all clips when every
    machine sees the same cache, else of its machine's (each machine fills its own cache).

    JSON lines add n_visual, visual_dim, n_codebooks, n_audio_frames and cache_hit.
    """
    common.clips_given(inputs, data, "give INPUT paths or --data MANIFEST")
    frames = common.extract_options(fps, size or common.DEFAULT_SIZE, common.DEFAULT_SAMPLE_RATE)
    opts = TokenizeOptions(
        **asdict(encoders),
        extract=frames,
        frame_size_from_encoder=size is None,  # frames at the image encoder's own size
        device=device,
        keep_frames=keep_frames,
    )
    part = common.parse_shard(shard)
    with common.one_line_failures():
        store = common.open_cache(cache)
        items = clip_items(inputs, data)
        if launch().spread:  # torch's process group: imported only then (a cached run is quick)
            from vabcli.training.distributed import tokenizing_share

            items = tokenizing_share(items, part, store.root, device)
        else:
            items = part.of(items, ClipItem.share_key)
        tokenizer = ClipTokenizer(opts, store)
    display = common.jobs_display(len(items), "tokenize", output, _describe)
    with tokenizer:
        common.show_jobs(
            display, lambda: tokenize_clips(items, tokenizer, output.workers, display).outcomes
        )
