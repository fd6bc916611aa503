"""`vab generate`: dub videos with audio generated from their pictures, in batches."""

from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli.common import (
    CacheOpt,
    DeviceOpt,
    JsonOpt,
    OverwriteOpt,
    QuietOpt,
    WorkersOpt,
    app,
    bad_options,
    check_writable_folder,
    open_cache,
    show_jobs,
)
from vabcli.cli.console import JobsDisplay, print_error
from vabcli.config import DubOptions, SamplingOptions
from vabcli.core.builtin import BUILTIN
from vabcli.core.device import launch, rank_device
from vabcli.core.errors import VabError
from vabcli.core.threads import size_torch_threads
from vabcli.data.clips import clip_items
from vabcli.generation.outputs import DubTarget, in_shard, parse_shard, plan_targets
from vabcli.generation.pipeline import run_dub

_DEFAULTS = SamplingOptions()
# Option spelling of each DubOptions / SamplingOptions field, for usage errors.
_OPTION_NAMES = {"steps": "--steps", "guidance": "--guidance", "temperature": "--temperature",
                 "top_k": "--top-k", "batch_size": "--batch-size", "workers": "--workers",
                 "keep_audio": "--keep-audio", "gap_threshold_db": "--gap-threshold",
                 "min_gap_seconds": "--min-gap", "window_seconds": "--window",
                 "context_seconds": "--context"}  # fmt: skip


def _describe(outcome) -> str:
    f = outcome.figures
    where = f["video"] or f["audio"]
    t = f["timings"]
    windows = f"{f['n_windows']} window" + ("s" if f["n_windows"] > 1 else "")
    return f"{f['duration']:.3f} s  {windows}  sampling {t['sampling']:.2f} s  -> {where}"


def _shard_of_run(shard: str | None) -> tuple[int, int] | None:
    """--shard I/N, or under torchrun each rank its own shard (RANK/WORLD_SIZE)."""
    if shard is not None:
        try:
            return parse_shard(shard)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--shard") from None
    run = launch()
    return (run.rank + 1, run.world_size) if run.spread else None


@app.command()
def generate(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(metavar="INPUT", help="Video files, folders (recursive) or globs."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder (mirrors the inputs).")
    ] = Path("dubbed"),
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            "-m",
            metavar="CKPT",
            help="builtin (the bundled model, see vab models), a checkpoint folder, its "
            "config.json/model.safetensors, or a run folder (its best/, else last/).",
        ),
    ] = Path(BUILTIN),  # fmt: skip
    data: Annotated[
        Path | None,
        typer.Option("--data", metavar="MANIFEST", help="A manifest.jsonl of clips."),
    ] = None,
    steps: Annotated[
        int, typer.Option(metavar="N", min=1, help="Decoding steps (maskgit sampler).")
    ] = _DEFAULTS.steps,
    guidance: Annotated[
        float,
        typer.Option(metavar="W", help="Classifier-free guidance: 1 = none, 0 = unconditional."),
    ] = _DEFAULTS.guidance,
    temperature: Annotated[
        float, typer.Option(metavar="T", min=0.01, help="Sampling temperature.")
    ] = _DEFAULTS.temperature,
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", metavar="K", min=1, help="Sample among the K likeliest tokens."),
    ] = _DEFAULTS.top_k,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed: same seed, same audio.")] = 0,
    sampler: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="maskgit (parallel) or ar (one frame per step: the "
            "baseline for speed comparisons).",
        ),
    ] = "maskgit",  # fmt: skip
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", metavar="N", min=1, help="Clips per forward pass.")
    ] = 4,
    audio_format: Annotated[
        str, typer.Option("--format", metavar="FMT", help="Audio file format: wav or flac.")
    ] = "wav",
    no_mux: Annotated[
        bool, typer.Option("--no-mux", help="Write audio (and the sidecar) only, no video.")
    ] = False,
    reencode: Annotated[
        bool, typer.Option("--reencode", help="Re-encode video (H.264) when it cannot be copied.")
    ] = False,
    keep_audio: Annotated[
        float,
        typer.Option(
            "--keep-audio",
            metavar="SECONDS",
            min=0.0,
            help="Keep the video's own first SECONDS of audio; generate the rest.",
        ),
    ] = 0.0,  # fmt: skip
    fill_gaps: Annotated[
        bool,
        typer.Option(
            "--fill-gaps",
            help="Regenerate only the silent stretches of the video's "
            "own audio; keep the rest untouched.",
        ),
    ] = False,  # fmt: skip
    gap_threshold: Annotated[
        float,
        typer.Option("--gap-threshold", metavar="DB", help="Level below which audio is silent."),
    ] = -50.0,
    min_gap: Annotated[
        float,
        typer.Option("--min-gap", metavar="SECONDS", min=0.01, help="Shortest gap to fill."),
    ] = 0.25,
    window: Annotated[
        float | None,
        typer.Option(
            "--window",
            metavar="SECONDS",
            min=0.1,
            help="Window length [default: the model's training window].",
        ),
    ] = None,  # fmt: skip
    context: Annotated[
        float,
        typer.Option(
            "--context",
            metavar="SECONDS",
            min=0.0,
            help="Overlap kept from the previous window in long videos (at most half a window).",
        ),
    ] = 1.0,  # fmt: skip
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Do only shard I of N (stable per clip); under torchrun each rank takes its own.",
        ),
    ] = None,  # fmt: skip
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    codec: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Audio codec [default: the one the model was trained with]."
        ),
    ] = None,  # fmt: skip
    codec_weights: Annotated[
        Path | None,
        typer.Option("--codec-weights", metavar="FILE", help="Weights for encodec_24khz."),
    ] = None,
    image_encoder: Annotated[
        str | None,
        typer.Option(
            "--image-encoder",
            metavar="SPEC",
            help="Image encoder [default: the one the model was trained with].",
        ),
    ] = None,  # fmt: skip
    cache: CacheOpt = None,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
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
    if sampler not in ("maskgit", "ar"):
        raise typer.BadParameter("maskgit or ar", param_hint="--sampler")
    try:
        sampling = SamplingOptions(steps=steps, guidance=guidance, temperature=temperature,
                                   top_k=top_k)  # fmt: skip
        opts = DubOptions(model=model, sampling=sampling, sampler=sampler, seed=seed,
                          batch_size=batch_size, workers=workers, audio_format=audio_format,
                          mux=not no_mux, reencode=reencode, overwrite=overwrite,
                          keep_audio=keep_audio, fill_gaps=fill_gaps,
                          gap_threshold_db=gap_threshold, min_gap_seconds=min_gap,
                          window_seconds=window, context_seconds=context,
                          device=rank_device(device), codec=codec, codec_weights=codec_weights,
                          image_encoder=image_encoder)  # fmt: skip
    except ValueError as exc:
        raise bad_options(exc, _OPTION_NAMES) from None
    part = _shard_of_run(shard)
    try:
        targets = plan_targets(clip_items(inputs, data), out, audio_format, mux=not no_mux)
        store = open_cache(cache)
        check_writable_folder(out)
    except VabError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    if part is not None:
        targets = [t for t in targets if in_shard(t.item, *part)]
    _run(targets, opts, store, as_json, quiet)


def _run(targets: list[DubTarget], opts: DubOptions, store, as_json: bool, quiet: bool) -> None:
    def make_dubber():
        from vabcli.generation.dubber import Dubber  # torch: only when some clip needs work

        size_torch_threads()  # one steady caller: the sampling loop of the calling thread
        return Dubber(opts, store)

    display = JobsDisplay(len(targets), "generate", as_json, quiet, _describe)
    show_jobs(display, lambda: run_dub(targets, opts, make_dubber, display))
