"""`vab train`: masked audio-token pre-training on a manifest's clips."""

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli.common import (
    ENCODERS,
    OUTPUT,
    CacheOpt,
    ClipSecondsOpt,
    DataOpt,
    DeviceOpt,
    Encoders,
    FpsOpt,
    LrOpt,
    OptionGroup,
    Output,
    PackOpt,
    ResumeOpt,
    SeedOpt,
    StepsOpt,
    ValEveryOpt,
    WarmupOpt,
    app,
    with_option_groups,
)
from vabcli.cli.runs import (
    STEPPING,
    Stepping,
    check_sources,
    print_summary,
    train_options,
    training_run,
)
from vabcli.config import (
    MODEL_PRESETS,
    VISUAL_FPS,
    ExtractOptions,
    MaskingConfig,
    TrainOptions,
    model_config,
)
from vabcli.core.threads import size_torch_threads
from vabcli.training.prepare import DATA_DIMENSIONS, DEFAULT_SETUP
from vabcli.training.pretrain import DEFAULT_PRESET

_DEFAULTS = TrainOptions()
_MASKING = _DEFAULTS.masking


def _overrides(pairs: list[str]) -> dict[str, int | float]:
    """`--set d_model=256 --set n_shared=4` -> {"d_model": 256, "n_shared": 4}."""
    result: dict[str, int | float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        try:
            result[name.strip()] = (
                int(value) if value.strip().lstrip("-").isdigit() else float(value)
            )
        except ValueError:
            raise typer.BadParameter(
                f"{pair!r}: value must be a number", param_hint="--set"
            ) from None
    return result


def _masking(
    mask_bounds: str, label_smoothing: float, cosine_share: float, level_share: float
) -> MaskingConfig:
    """The masking of --mask-bounds, --label-smoothing, --mask-cosine-share and
    --mask-level-share; a bad value is a usage error."""
    try:
        low, high = (float(v) for v in mask_bounds.split(","))
    except ValueError:
        raise typer.BadParameter("expected LOW,HIGH", param_hint="--mask-bounds") from None
    if not 0.0 <= low < high <= 1.0:
        raise typer.BadParameter("need 0 <= LOW < HIGH <= 1", param_hint="--mask-bounds")
    try:
        return MaskingConfig(
            low=low,
            high=high,
            label_smoothing=label_smoothing,
            cosine_share=cosine_share,
            level_share=level_share,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label-smoothing") from None


# The masking options, gathered into the MaskingConfig they make.
_MASKING_OPTIONS = OptionGroup.of(
    _masking,
    mask_bounds=(
        Annotated[
            str,
            typer.Option(
                "--mask-bounds",
                metavar="LOW,HIGH",
                help=f"Bounds of the mask ratio, drawn from N({_MASKING.mean}, {_MASKING.std}) "
                "truncated to them.",
            ),
        ],
        f"{_MASKING.low},{_MASKING.high}",
    ),
    label_smoothing=(
        Annotated[
            float,
            typer.Option(
                "--label-smoothing",
                metavar="E",
                min=0.0,
                max=0.5,
                help="Label smoothing of the loss.",
            ),
        ],
        _MASKING.label_smoothing,
    ),
    cosine_share=(
        Annotated[
            float,
            typer.Option(
                "--mask-cosine-share",
                metavar="F",
                min=0.0,
                max=1.0,
                help="Share of samples whose mask ratio is cos(pi/2 u) instead (MaskGIT's "
                "schedule: low ratios too, as a decoding's last steps ask).",
            ),
        ],
        _MASKING.cosine_share,
    ),
    level_share=(
        Annotated[
            float,
            typer.Option(
                "--mask-level-share",
                metavar="F",
                min=0.0,
                max=1.0,
                help="Share of samples masked as coarse-to-fine decoding sees them: one codebook "
                "level partly, the finer ones whole (for --level-steps).",
            ),
        ],
        _MASKING.level_share,
    ),
)

_OUTPUT = OUTPUT.with_defaults(workers=_DEFAULTS.workers)


@app.command()
@with_option_groups(masking=_MASKING_OPTIONS, stepping=STEPPING, encoders=ENCODERS, output=_OUTPUT)
def train(
    data: DataOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="RUN_DIR", help="Run folder.")
    ] = None,
    pack: PackOpt = None,
    write_pack: Annotated[
        Path | None,
        typer.Option(
            "--write-pack",
            metavar="DIR",
            help="Tokenize --data, write its training arrays to DIR as a pack, and stop: "
            "for training on another machine.",
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option(metavar="NAME", help=f"Model size: {', '.join(MODEL_PRESETS)}.")
    ] = DEFAULT_PRESET,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="NAME=VALUE", help="Override one model dimension."),
    ] = None,
    steps: StepsOpt = _DEFAULTS.steps,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="N", min=1, help="Clips per step and process.")
    ] = _DEFAULTS.batch_size,
    lr: LrOpt = _DEFAULTS.lr,
    warmup_steps: WarmupOpt = _DEFAULTS.warmup_steps,
    clip_seconds: ClipSecondsOpt = _DEFAULTS.clip_seconds,
    *,
    masking: MaskingConfig,
    val_every: ValEveryOpt = _DEFAULTS.val_every,
    stepping: Stepping,
    seed: SeedOpt = _DEFAULTS.seed,
    resume: ResumeOpt = DEFAULT_SETUP.resume,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an earlier run in RUN_DIR (or pack in DIR)."),
    ] = DEFAULT_SETUP.overwrite,
    device: DeviceOpt = DEFAULT_SETUP.device,
    encoders: Encoders,
    fps: FpsOpt = VISUAL_FPS,
    cache: CacheOpt = None,
    output: Output,
) -> None:
    """Pre-train the VAB model: tokenize missing clips, then masked audio-token prediction.

    Clips with split "val" are validated on; "test" clips are left out. Checkpoints go to
    RUN_DIR/last and RUN_DIR/best, metrics to RUN_DIR/metrics.jsonl. Ctrl-C saves RUN_DIR/last;
    --resume continues it exactly. To tokenize on one machine and train on another:
    `--data M --write-pack P` there, then `--pack P --out RUN_DIR` here.
    """
    # Imported here: torch takes seconds to import, and `vab --help` needs none of it.
    from vabcli.encoders.tokenize import TokenizeOptions
    from vabcli.training.pretrain import train as pretrain
    from vabcli.training.pretrain import write_training_pack

    size_torch_threads()  # one steady caller: the training loop (loader workers are processes)
    check_sources(data, pack, write_pack, out)
    if write_pack is not None and write_pack.exists() and not overwrite:
        raise typer.BadParameter(
            f"{write_pack} exists: add --overwrite to replace it", param_hint="--write-pack"
        )
    dims = _overrides(set_ or [])
    fixed = sorted(set(dims) & DATA_DIMENSIONS)
    if fixed:
        raise typer.BadParameter(
            f"{', '.join(fixed)} come from the data and encoders", param_hint="--set"
        )
    try:
        model_config(preset, **dims)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset/--set") from None
    opts = train_options({**locals(), **asdict(stepping)}, workers=output.workers)
    tok_opts = TokenizeOptions(extract=ExtractOptions(fps=fps), **asdict(encoders), device=device)
    places = {"data": data, "cache": cache, "device": device, "overwrite": overwrite}
    with training_run(out, steps, output.quiet, resume=resume, **places) as setup:
        if write_pack is not None:
            written = write_training_pack(
                data, write_pack, tokenize=tok_opts, workers=output.workers, setup=setup
            )
            print_summary(written, output.as_json, _describe_pack)
            return
        assert out is not None  # check_sources
        summary = pretrain(
            out,
            data=data,
            pack=pack,
            preset=preset,
            dims=dims,
            options=opts,
            tokenize=tok_opts,
            setup=setup,
        )
    print_summary(summary, output.as_json)


def _describe_pack(written: dict) -> str:
    folder = written["pack"]
    clips = f"{written['train_clips']} train and {written['val_clips']} val clips"
    return (
        f"pack {folder}: {clips}, {written['bytes'] / 1e6:.1f} MB; "
        f"train it with: vab train --pack {folder} --out RUN_DIR"
    )
