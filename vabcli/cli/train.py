"""`vab train`: masked audio-token pre-training on a manifest's clips."""

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from vabcli.cli.common import (
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
    bad_options,
    open_cache,
)
from vabcli.cli.console import JobsDisplay, print_error, print_warning, stderr
from vabcli.config import (
    DEFAULT_CODEC,
    DEFAULT_IMAGE_ENCODER,
    MODEL_PRESETS,
    VISUAL_FPS,
    ExtractOptions,
    MaskingConfig,
    model_config,
)
from vabcli.core.device import launch
from vabcli.core.errors import VabError
from vabcli.core.jobs import Job, Outcome, run_jobs
from vabcli.core.threads import size_torch_threads
from vabcli.data.clips import ClipItem, clip_items

if TYPE_CHECKING:
    from vabcli.training.plan import TrainPlan
    from vabcli.training.trainer import TrainOptions


# Set by the data and its encoders, so `--set` may not change them.
DATA_DIMENSIONS = frozenset(
    {"visual_dim", "n_codebooks", "codebook_size", "visual_fps", "audio_frame_rate"}
)

# Options every run command (train, finetune) shares: one definition each.
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", metavar="MANIFEST", help="Clips: manifest.jsonl (README)."),
]
PackOpt = Annotated[
    Path | None,
    typer.Option(
        "--pack",
        metavar="DIR",
        help="Train on a pack from --write-pack instead of --data (no videos or encoders).",
    ),
]
StepsOpt = Annotated[int, typer.Option(metavar="N", min=1, help="Optimizer steps.")]
LrOpt = Annotated[float, typer.Option(metavar="LR", help="Peak learning rate.")]
WarmupOpt = Annotated[
    int, typer.Option("--warmup-steps", metavar="N", min=0, help="Linear warm-up steps.")
]
ClipSecondsOpt = Annotated[
    float, typer.Option("--clip-seconds", metavar="S", help="Training window, seconds.")
]
ValEveryOpt = Annotated[
    int, typer.Option("--val-every", metavar="N", min=1, help="Validate and save every N.")
]
SeedOpt = Annotated[int, typer.Option(metavar="N", help="Seed of every random choice.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue RUN_DIR/last.")]


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


@app.command()
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
    ] = "tiny",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="NAME=VALUE", help="Override one model dimension."),
    ] = None,
    steps: StepsOpt = 1000,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="N", min=1, help="Clips per step and process.")
    ] = 16,
    lr: LrOpt = 3e-4,
    warmup_steps: WarmupOpt = 100,
    clip_seconds: ClipSecondsOpt = 4.0,
    mask_bounds: Annotated[
        str,
        typer.Option(
            "--mask-bounds",
            metavar="LOW,HIGH",
            help="Bounds of the mask ratio, drawn from N(0.55, 0.25) truncated to them.",
        ),
    ] = "0.5,1.0",
    label_smoothing: Annotated[
        float,
        typer.Option(
            "--label-smoothing", metavar="E", min=0.0, max=0.5, help="Label smoothing of the loss."
        ),
    ] = 0.0,
    val_every: ValEveryOpt = 100,
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an earlier run in RUN_DIR (or pack in DIR)."),
    ] = False,
    device: DeviceOpt = "auto",
    codec: CodecOpt = DEFAULT_CODEC,
    codec_weights: CodecWeightsOpt = None,
    bandwidth: BandwidthOpt = None,
    image_encoder: ImageEncoderOpt = DEFAULT_IMAGE_ENCODER,
    fps: FpsOpt = VISUAL_FPS,
    cache: CacheOpt = None,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pre-train the VAB model: tokenize missing clips, then masked audio-token prediction.

    Clips with split "val" are validated on; "test" clips are left out. Checkpoints go to
    RUN_DIR/last and RUN_DIR/best, metrics to RUN_DIR/metrics.jsonl. Ctrl-C saves RUN_DIR/last;
    --resume continues it exactly. To tokenize on one machine and train on another:
    `--data M --write-pack P` there, then `--pack P --out RUN_DIR` here.
    """
    # Imported here: torch takes seconds to import, and `vab --help` needs none of it.
    from vabcli.core.device import rank_device, resolve_device
    from vabcli.encoders.tokenize import TokenizeOptions
    from vabcli.training.distributed import join_process_group

    size_torch_threads()  # one steady caller: the training loop (loader workers are processes)
    _check_sources(data, pack, write_pack, out)
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
    masking = _masking(mask_bounds, label_smoothing)
    opts = train_options(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                         clip_seconds=clip_seconds, val_every=val_every, seed=seed,
                         workers=workers, masking=masking)  # fmt: skip
    tok_opts = TokenizeOptions(extract=ExtractOptions(fps=fps), codec=codec,
                               codec_weights=codec_weights, bandwidth=bandwidth,
                               image_encoder=image_encoder, device=device)  # fmt: skip
    if out is not None:
        prepare_run_dir(out, resume, overwrite)
    with training_failures(out):
        run_device = rank_device(resolve_device(device))
        ranks = join_process_group(run_device)
        quiet = quiet or not ranks.leader  # one process speaks for the whole run
        plan = load_plan(data, pack, cache, tok_opts, preset, dims, workers, quiet)
        if write_pack is not None:
            _write_pack(plan, write_pack, overwrite, as_json, ranks.leader)
            return
        _report_plan(plan, quiet)
        final = plan.trainer(opts, out, run_device, resume).run(_progress(steps, quiet))
    if ranks.leader:
        report_run(out, final, as_json)


# TrainOptions' fields as the options users type, for one-line usage errors.
_TRAIN_OPTION_NAMES = {
    "steps": "--steps", "batch_size": "--batch-size", "lr": "--lr",
    "warmup_steps": "--warmup-steps", "clip_seconds": "--clip-seconds",
    "val_every": "--val-every", "seed": "--seed", "workers": "--workers",
}  # fmt: skip


def train_options(**values: Any) -> "TrainOptions":
    """The run's TrainOptions, checked before any clip is tokenized; a bad value is a usage
    error naming the option."""
    from vabcli.training.trainer import TrainOptions

    try:
        return TrainOptions(**values)
    except ValueError as exc:
        raise bad_options(exc, _TRAIN_OPTION_NAMES) from None


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """An existing run is continued (--resume) or replaced (--overwrite), never silently; a
    run to resume that saved no checkpoint yet (killed early) starts over, with a warning."""
    if resume:
        from vabcli.model.checkpoint import tidy_checkpoint

        tidy_checkpoint(out / "last")  # before deciding there is nothing to resume
    if resume and not (out / "last").exists() and _speaks_for_the_run():
        print_warning(f"{out}: no checkpoint yet to resume; starting from the beginning")
    if not resume and out.exists() and any(out.iterdir()):
        if not overwrite:
            raise typer.BadParameter(
                f"{out} holds a run: add --resume to continue it or --overwrite to replace it",
                param_hint="--out",
            )
        shutil.rmtree(out)


def interrupted(out: Path | None) -> NoReturn:
    """Ctrl-C: say what was kept, exit 130. Under torchrun the first process speaks for the
    run: the others would look before it has saved and say nothing was kept."""
    if not _speaks_for_the_run():
        raise typer.Exit(130)
    if out is None:
        print_error("interrupted; no pack was written")
        raise typer.Exit(130)
    saved = f"{out / 'last'} holds the run so far (continue with --resume)"
    print_error(f"interrupted; {saved if (out / 'last').exists() else 'nothing was trained'}")
    raise typer.Exit(130)


def _speaks_for_the_run() -> bool:
    """The process that reports for a run: the only one, or torchrun's rank 0."""
    return launch().leader


@contextmanager
def training_failures(out: Path | None) -> Iterator[None]:
    """How a training run (`vab train`, `vab finetune`) ends when it does not finish: Ctrl-C
    says what was kept (exit 130), a failure is one line (exit 1); the torchrun process group is
    always torn down."""
    from vabcli.training.distributed import end_distributed
    from vabcli.training.trainer import TrainingStopped

    try:
        yield
    except KeyboardInterrupt:
        interrupted(out)
    except (TrainingStopped, VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    finally:
        end_distributed()


def report_run(out: Path, final: dict[str, Any], as_json: bool) -> None:
    """The run's summary on stdout: one line, or one JSON object."""
    best = {"best": str(out / "best")} if (out / "best").exists() else {}
    summary = {"out": str(out), "last": str(out / "last"), **best, **final}
    print(json.dumps(summary) if as_json else _describe(summary))


def load_plan(
    data: Path | None,
    pack: Path | None,
    cache: Path | None,
    tok_opts: Any,
    preset: str,
    dims: dict[str, int | float],
    workers: int,
    quiet: bool,
) -> "TrainPlan":
    """The clips to train on, from a pack or by tokenizing a manifest's (cached ones are free)."""
    from vabcli.encoders.tokenize import ClipTokenizer, encoder_spec
    from vabcli.training.plan import plan_training, read_pack

    if pack is not None:
        return read_pack(pack, preset, dims)
    items = [i for i in clip_items(None, data) if i.split != "test"]
    if not items:
        raise VabError(f"{data}: no train or val clips in this manifest")
    store = open_cache(cache)
    tokenizer = lambda: ClipTokenizer(tok_opts, store)  # noqa: E731
    outcomes, ids = _tokenize_all(items, tokenizer, workers, quiet)
    fps = tok_opts.extract.fps
    return plan_training(
        items, outcomes, store, preset, dims, fps, *ids, encoders=encoder_spec(tok_opts)
    )


def _check_sources(
    data: Path | None, pack: Path | None, write_pack: Path | None, out: Path | None
) -> None:
    """Exactly one source of clips; a run folder unless only a pack is written."""
    if (data is None) == (pack is None):
        raise typer.BadParameter("give --data MANIFEST or --pack DIR (one of them)")
    if write_pack is not None and data is None:
        raise typer.BadParameter("--write-pack needs --data", param_hint="--write-pack")
    if write_pack is None and out is None:
        raise typer.BadParameter("where should the run go?", param_hint="--out")
    if write_pack is not None and out is not None:
        raise typer.BadParameter("--write-pack trains nothing: leave out --out", param_hint="--out")


def _write_pack(
    plan: "TrainPlan", folder: Path, overwrite: bool, as_json: bool, leader: bool
) -> None:
    from vabcli.training.plan import write_pack

    if not leader:
        return
    size = write_pack(plan, folder, overwrite)
    summary = {"pack": str(folder), "train_clips": len(plan.train), "val_clips": len(plan.val),
               "bytes": size}  # fmt: skip
    if as_json:
        print(json.dumps(summary))
    else:
        clips = f"{len(plan.train)} train and {len(plan.val)} val clips"
        print(f"pack {folder}: {clips}, {size / 1e6:.1f} MB; "
              f"train it with: vab train --pack {folder} --out RUN_DIR")  # fmt: skip


def _masking(bounds: str, label_smoothing: float) -> MaskingConfig:
    try:
        low, high = (float(v) for v in bounds.split(","))
    except ValueError:
        raise typer.BadParameter("expected LOW,HIGH", param_hint="--mask-bounds") from None
    if not 0.0 <= low < high <= 1.0:
        raise typer.BadParameter("need 0 <= LOW < HIGH <= 1", param_hint="--mask-bounds")
    try:
        return MaskingConfig(low=low, high=high, label_smoothing=label_smoothing)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label-smoothing") from None


def _tokenize_all(
    items: list[ClipItem], make_tokenizer: Callable[[], Any], workers: int, quiet: bool
) -> tuple[list[Outcome], tuple[str, str]]:
    """Outcomes per clip and the (codec id, visual id). Under torchrun the first process of each
    machine tokenizes while the others wait; they then find everything cached and, with the
    encoder ids remembered, load no model at all."""
    import torch.distributed as dist

    spread = dist.is_initialized() and dist.get_world_size() > 1
    first_on_machine = launch().local_rank == 0
    if spread and not first_on_machine:
        dist.barrier()
    with make_tokenizer() as tokenizer:
        job: Job[ClipItem] = Job(
            work=lambda item, progress: tokenizer.tokenize(item.path, item.segment, progress),
            name=ClipItem.name,
            error=lambda item: item.error,  # e.g. "no such file", known before any work
        )
        with _BarsOnly(len(items), "tokenize", as_json=False, quiet=quiet, describe=str) as bars:
            outcomes = run_jobs(items, job, workers, bars)
        ids = (tokenizer.codec_id, tokenizer.visual_id)
    if spread and first_on_machine:
        dist.barrier()
    for outcome in outcomes:
        if outcome.status == "error" and not quiet:
            print_warning(f"skipped: {outcome.error}")
    return outcomes, ids


class _BarsOnly(JobsDisplay):
    """Progress bars only: per-clip results of this preparatory step are not the output."""

    def _report(self, outcome: Outcome) -> None:
        pass


def _report_plan(plan: "TrainPlan", quiet: bool) -> None:
    if not quiet:
        stderr.print(plan.summary(), markup=False)


def _progress(steps: int, quiet: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bars = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[stats]}"), console=stderr, transient=True,
                    disable=quiet or not stderr.is_terminal)  # fmt: skip
    task = bars.add_task("train", total=steps, stats="")

    def on_step(m: dict[str, float]) -> None:
        if not bars.live.is_started and not bars.disable:
            bars.start()
        stats = f"loss {m['loss']:.3f}  acc {m['accuracy']:.3f}  lr {m['lr']:.2e}  " \
                f"{m['tokens_per_s']:.0f} tok/s"  # fmt: skip
        bars.update(task, completed=m["step"], stats=stats)
        if "val_loss" in m and not quiet:
            bars.console.print(f"step {m['step']}: {stats}  val_loss {m['val_loss']:.3f}  "
                               f"val_acc {m['val_accuracy']:.3f}", markup=False)  # fmt: skip
        if m["step"] >= steps:
            bars.stop()

    return on_step


def _describe(summary: dict[str, Any]) -> str:
    if "loss" not in summary:
        return f"nothing to do: {summary['last']} is already at step {summary['step']}"
    val = f"  val_loss {summary['val_loss']:.3f}" if "val_loss" in summary else ""
    return (
        f"trained to step {summary['step']}: loss {summary['loss']:.3f}{val}  -> {summary['last']}"
    )
