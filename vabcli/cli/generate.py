"""`vab generate`: dub videos with audio generated from their pictures, in batches."""

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from vabcli.cli.common import (
    OUTPUT,
    CacheOpt,
    DeviceOpt,
    OptionGroup,
    Output,
    OverwriteOpt,
    ShardOpt,
    app,
    bad_options,
    check_writable_folder,
    jobs_display,
    join_torchrun,
    one_line_failures,
    open_cache,
    parse_shard,
    show_jobs,
    with_option_groups,
)
from vabcli.config import DUBBED_FOLDER, DubOptions, SamplingOptions
from vabcli.core.builtin import BUILTIN
from vabcli.core.cache import Cache
from vabcli.core.device import launch, rank_device
from vabcli.core.threads import size_torch_threads
from vabcli.data.clips import clip_items
from vabcli.data.shards import Shard
from vabcli.generation.outputs import DubTarget, plan_targets, shard_key
from vabcli.generation.pipeline import run_dub

_DUB = DubOptions(model=Path(BUILTIN))  # the defaults of every option below
_DEFAULTS = _DUB.sampling
# Option spelling of each DubOptions / SamplingOptions field, for usage errors.
_OPTION_NAMES = {
    "steps": "--steps",
    "guidance": "--guidance",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "noise": "--noise",
    "temperature_end": "--temperature-end",
    "guidance_end": "--guidance-end",
    "level_steps": "--level-steps",
    "batch_size": "--batch-size",
    "workers": "--workers",
    "keep_audio": "--keep-audio",
    "gap_threshold_db": "--gap-threshold",
    "min_gap_seconds": "--min-gap",
    "window_seconds": "--window",
    "context_seconds": "--context",
    "lookahead_seconds": "--lookahead",
}


def _dub_options(chosen: dict[str, Any], device: str) -> DubOptions:
    """The DubOptions (and SamplingOptions) of the options `chosen`, named as their fields
    (but --no-mux), on `device` (under torchrun: this rank's)."""
    sampling = SamplingOptions(**_fields_of(SamplingOptions, chosen))
    fields_chosen = {**_fields_of(DubOptions, chosen), "mux": not chosen["no_mux"]}
    return DubOptions(**fields_chosen, device=rank_device(device), sampling=sampling)


def _fields_of(options: type, values: dict[str, Any]) -> dict[str, Any]:
    return {f.name: values[f.name] for f in fields(options) if f.name in values}


def _level_steps(text: str | None) -> tuple[int, ...] | None:
    """--level-steps 16,1,1,1 -> (16, 1, 1, 1)."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected whole numbers like 16,1,1,1") from None


def _seconds(flag: str, low: float, help: str) -> Any:
    """A typer option taking a number of seconds, at least `low`."""
    return typer.Option(flag, metavar="SECONDS", min=low, help=help)


def _describe(outcome) -> str:
    f = outcome.figures
    where = f["video"] or f["audio"]
    t = f["timings"]
    windows = f"{f['n_windows']} window" + ("s" if f["n_windows"] > 1 else "")
    return f"{f['duration']:.3f} s  {windows}  sampling {t['sampling']:.2f} s  -> {where}"


def _shard_of_run(shard: str | None) -> Shard:
    """--shard I/N, and under torchrun each rank its part of that share (RANK/WORLD_SIZE)."""
    part = parse_shard(shard)
    run = launch()
    return part.within(Shard(run.rank + 1, run.world_size)) if run.spread else part


# The options of `vab generate` in groups, each gathered into a dict of DubOptions' fields.
_SAMPLING = OptionGroup.of(
    dict,
    steps=(
        Annotated[int, typer.Option(metavar="N", min=1, help="Decoding steps (maskgit sampler).")],
        _DEFAULTS.steps,
    ),
    guidance=(
        Annotated[
            float,
            typer.Option(
                metavar="W", help="Classifier-free guidance: 1 = none, 0 = unconditional."
            ),
        ],
        _DEFAULTS.guidance,
    ),
    temperature=(
        Annotated[float, typer.Option(metavar="T", min=0.01, help="Sampling temperature.")],
        _DEFAULTS.temperature,
    ),
    top_k=(
        Annotated[
            int | None,
            typer.Option(
                "--top-k", metavar="K", min=1, help="Sample among the K likeliest tokens."
            ),
        ],
        _DEFAULTS.top_k,
    ),
    top_p=(
        Annotated[
            float | None,
            typer.Option(
                "--top-p", metavar="P", help="Sample within the likeliest tokens of mass P."
            ),
        ],
        _DEFAULTS.top_p,
    ),
    noise=(
        Annotated[
            float,
            typer.Option(
                metavar="G",
                help="Gumbel noise on the choice of which tokens to keep, at the first step "
                "(it anneals to 0).",
            ),
        ],
        _DEFAULTS.noise,
    ),
    temperature_end=(
        Annotated[
            float | None,
            typer.Option(
                "--temperature-end",
                metavar="T",
                help="Anneal the temperature to T as the masked tokens run out (T equal to "
                "--temperature: constant).",
            ),
        ],
        _DEFAULTS.temperature_end,
    ),
    guidance_end=(
        Annotated[
            float | None,
            typer.Option(
                "--guidance-end",
                metavar="W",
                help="Anneal the guidance to W as the masked tokens run out.",
            ),
        ],
        _DEFAULTS.guidance_end,
    ),
    level_steps=(
        Annotated[
            str | None,
            typer.Option(
                "--level-steps",
                metavar="S1,S2,..",
                callback=_level_steps,
                help="Decode coarse to fine: steps for each codebook level, one level after "
                "another (e.g. 16,1,1,1) [default: all levels together in --steps].",
            ),
        ],
        None,
    ),
    seed=(
        Annotated[int, typer.Option(metavar="N", help="Seed: same seed, same audio.")],
        _DUB.seed,
    ),
    sampler=(
        Annotated[
            str,
            typer.Option(
                metavar="NAME",
                help="maskgit (parallel) or ar (one frame per step: the baseline for speed "
                "comparisons).",
            ),
        ],
        _DUB.sampler,
    ),
)
# What is written: the audio's format, a video beside it or not.
_FILES = OptionGroup.of(
    dict,
    audio_format=(
        Annotated[
            str, typer.Option("--format", metavar="FMT", help="Audio file format: wav or flac.")
        ],
        _DUB.audio_format,
    ),
    no_mux=(
        Annotated[
            bool, typer.Option("--no-mux", help="Write audio (and the sidecar) only, no video.")
        ],
        not _DUB.mux,
    ),
    reencode=(
        Annotated[
            bool,
            typer.Option("--reencode", help="Re-encode video (H.264) when it cannot be copied."),
        ],
        _DUB.reencode,
    ),
)
# What is done with the video's own sound.
_OWN_AUDIO = OptionGroup.of(
    dict,
    keep_audio=(
        Annotated[
            float,
            _seconds(
                "--keep-audio",
                0.0,
                "Keep the video's own first SECONDS of audio; generate the rest.",
            ),
        ],
        _DUB.keep_audio,
    ),
    fill_gaps=(
        Annotated[
            bool,
            typer.Option(
                "--fill-gaps",
                help="Regenerate only the silent stretches of the video's own audio; keep the rest "
                "untouched.",
            ),
        ],
        _DUB.fill_gaps,
    ),
    gap_threshold_db=(
        Annotated[
            float,
            typer.Option(
                "--gap-threshold", metavar="DB", help="Level below which audio is silent."
            ),
        ],
        _DUB.gap_threshold_db,
    ),
    min_gap_seconds=(
        Annotated[float, _seconds("--min-gap", 0.01, "Shortest gap to fill.")],
        _DUB.min_gap_seconds,
    ),
)
# How a long video is cut into windows.
_WINDOWS = OptionGroup.of(
    dict,
    window_seconds=(
        Annotated[
            float | None,
            _seconds("--window", 0.1, "Window length [default: the model's training window]."),
        ],
        _DUB.window_seconds,
    ),
    context_seconds=(
        Annotated[
            float,
            _seconds(
                "--context",
                0.0,
                "Overlap kept from the previous window in long videos (at most half a window).",
            ),
        ],
        _DUB.context_seconds,
    ),
    lookahead_seconds=(
        Annotated[
            float,
            _seconds(
                "--lookahead",
                0.0,
                "Keep only the tokens with this much of their window after them; the next window "
                "decides the rest, seeing past them.",
            ),
        ],
        _DUB.lookahead_seconds,
    ),
)
# The encoders, when not the model's own.
_ENCODERS = OptionGroup.of(
    dict,
    codec=(
        Annotated[
            str | None,
            typer.Option(
                metavar="NAME", help="Audio codec [default: the one the model was trained with]."
            ),
        ],
        _DUB.codec,
    ),
    codec_weights=(
        Annotated[
            Path | None,
            typer.Option("--codec-weights", metavar="FILE", help="Weights for encodec_24khz."),
        ],
        _DUB.codec_weights,
    ),
    image_encoder=(
        Annotated[
            str | None,
            typer.Option(
                "--image-encoder",
                metavar="SPEC",
                help="Image encoder [default: the one the model was trained with].",
            ),
        ],
        _DUB.image_encoder,
    ),
)


@app.command()
@with_option_groups(
    decoding=_SAMPLING,
    files=_FILES,
    own_audio=_OWN_AUDIO,
    windows=_WINDOWS,
    encoders=_ENCODERS,
    output=OUTPUT.with_defaults(workers=_DUB.workers),
)
def generate(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(metavar="INPUT", help="Video files, folders (recursive) or globs."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder (mirrors the inputs).")
    ] = Path(DUBBED_FOLDER),
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            "-m",
            metavar="CKPT",
            help="builtin (the bundled model, see vab models), a checkpoint folder, its "
            "config.json/model.safetensors, or a run folder (its best/, else last/).",
        ),
    ] = _DUB.model,
    data: Annotated[
        Path | None,
        typer.Option("--data", metavar="MANIFEST", help="A manifest.jsonl of clips."),
    ] = None,
    *,
    decoding: dict[str, Any],
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", metavar="N", min=1, help="Clips per forward pass.")
    ] = _DUB.batch_size,
    files: dict[str, Any],
    own_audio: dict[str, Any],
    windows: dict[str, Any],
    shard: ShardOpt = None,
    overwrite: OverwriteOpt = _DUB.overwrite,
    device: DeviceOpt = _DUB.device,
    encoders: dict[str, Any],
    cache: CacheOpt = None,
    output: Output,
) -> None:
    """Dub videos: generate audio from their pictures and mux it beside the untouched video.

    Writes OUT/<name>.mp4, OUT/<name>.wav and OUT/<name>.json (model, encoders, seed, options,
    timings) per clip, mirroring the input folders. Finished clips are skipped, so a re-run
    (cron) only does new ones; Ctrl-C leaves no partial files.
    """
    if not inputs and data is None:
        raise typer.BadParameter("give INPUT paths or --data MANIFEST")
    if str(model) != BUILTIN and not model.exists():
        raise typer.BadParameter(f"{model}: no such checkpoint", param_hint="--model")
    if decoding["sampler"] not in ("maskgit", "ar"):
        raise typer.BadParameter("maskgit or ar", param_hint="--sampler")
    chosen = {**decoding, **files, **own_audio, **windows, **encoders, "workers": output.workers}
    try:
        opts = _dub_options(
            {**chosen, "model": model, "batch_size": batch_size, "overwrite": overwrite},
            device,
        )
    except ValueError as exc:
        raise bad_options(exc, _OPTION_NAMES) from None
    part = _shard_of_run(shard)
    join_torchrun(opts.device)
    with one_line_failures():
        targets = plan_targets(clip_items(inputs, data), out, opts.audio_format, mux=opts.mux)
        store = open_cache(cache)
        check_writable_folder(out)
    targets = part.of(targets, shard_key)
    _run(targets, opts, store, output)


def _run(targets: list[DubTarget], opts: DubOptions, store: Cache, output: Output) -> None:
    def make_dubber():
        from vabcli.generation.dubber import Dubber  # torch: only when some clip needs work

        size_torch_threads()  # one steady caller: the sampling loop of the calling thread
        return Dubber(opts, store)

    display = jobs_display(len(targets), "generate", output, _describe)
    show_jobs(display, lambda: run_dub(targets, opts, make_dubber, display))
