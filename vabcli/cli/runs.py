"""What the training commands (`vab train`, `vab finetune contrastive|classify`) share: their
TrainOptions from the typed options, the run's events shown on stderr (tokenizing bars, a
training bar, validation lines), the summary on stdout, and how a run that does not finish ends
(`training_failures`)."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from vabcli.cli.common import OptionGroup, bad_options, one_line_failures, open_cache
from vabcli.cli.console import TokenizeBars, print_warning, stderr
from vabcli.config import TrainOptions
from vabcli.core.device import launch
from vabcli.training.prepare import RunEvents, RunFolderTaken, RunSetup

# TrainOptions' fields as the options users type, for one-line usage errors.
_TRAIN_OPTION_NAMES = {
    "steps": "--steps",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "warmup_steps": "--warmup-steps",
    "clip_seconds": "--clip-seconds",
    "val_every": "--val-every",
    "seed": "--seed",
    "workers": "--workers",
    "log_every": "--log-every",
    "save_every": "--save-every",
    "grad_accum": "--grad-accum",
}

_DEFAULTS = TrainOptions()


@dataclass(frozen=True)
class Stepping:
    """How a run's steps go on big machines (train and both fine-tunes): TrainOptions' fields."""

    grad_accum: int
    log_every: int
    save_every: int
    compile: bool


STEPPING_TYPES = {
    "grad_accum": (
        Annotated[
            int,
            typer.Option(
                "--grad-accum",
                metavar="N",
                min=1,
                help="Micro-batches per step, their gradients summed: a batch N x --batch-size "
                "in the memory of one.",
            ),
        ],
        _DEFAULTS.grad_accum,
    ),
    "log_every": (
        Annotated[
            int,
            typer.Option(
                "--log-every",
                metavar="N",
                min=1,
                help="Log metrics and check the loss every N steps (the only steps that wait "
                "for the device).",
            ),
        ],
        _DEFAULTS.log_every,
    ),
    "save_every": (
        Annotated[
            int,
            typer.Option(
                "--save-every",
                metavar="N",
                min=0,
                help="Also save RUN_DIR/last every N steps between validations (0: never).",
            ),
        ],
        _DEFAULTS.save_every,
    ),
    "compile": (
        Annotated[
            bool,
            typer.Option(
                "--compile", help="torch.compile the model: faster CUDA steps after compiling."
            ),
        ],
        _DEFAULTS.compile,
    ),
}
# A command's keyword-only `stepping: Stepping` placeholder stands for these options.
STEPPING = OptionGroup.of(Stepping, **STEPPING_TYPES)


def train_options(parameters: dict[str, Any], **more: Any) -> TrainOptions:
    """The run's TrainOptions from the command's `parameters` that are TrainOptions fields (and
    `more`), checked before any clip is tokenized; a bad value is a usage error naming the
    option."""
    chosen = {f.name: parameters[f.name] for f in fields(TrainOptions) if f.name in parameters}
    try:
        return TrainOptions(**chosen, **more)
    except ValueError as exc:
        raise bad_options(exc, _TRAIN_OPTION_NAMES) from None


def check_sources(
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


@contextmanager
def training_failures(out: Path | None) -> Iterator[None]:
    """How a training run ends when it does not finish: a run folder that cannot be used is a
    usage error on --out (exit 2); Ctrl-C says what was kept (exit 130); a failure is one
    line (exit 1). The torchrun process group is always torn down."""
    from vabcli.training.distributed import end_distributed

    try:
        with one_line_failures(interrupted=lambda: _what_was_kept(out)):
            yield
    except RunFolderTaken as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from None
    finally:
        end_distributed()


def _what_was_kept(out: Path | None) -> str | None:
    """The interrupted run's last words. Under torchrun the first process speaks for the run:
    the others would look before it has saved and say nothing was kept."""
    if not launch().leader:
        return None
    if out is None:
        return "interrupted; no pack was written"
    saved = f"{out / 'last'} holds the run so far (continue with --resume)"
    return f"interrupted; {saved if (out / 'last').exists() else 'nothing was trained'}"


@contextmanager
def training_run(
    out: Path | None,
    steps: int,
    quiet: bool,
    *,
    data: Path | None,
    cache: Path | None,
    device: str,
    resume: bool = False,
    overwrite: bool = False,
) -> Iterator[RunSetup]:
    """The RunSetup of a command's run, its events shown on stderr (warnings always; unless
    `quiet`, what is trained, bars while clips are tokenized and while it trains, a line per
    validation), its failures ending it as `training_failures` says. Clips from a pack (no
    `data`) need no cache."""

    def message(text: str) -> None:
        if not quiet:
            stderr.print(text, markup=False)

    with training_failures(out), TokenizeBars(quiet) as bars:
        events = RunEvents(print_warning, message, bars, _progress(steps, quiet))
        store = None if data is None else open_cache(cache)
        yield RunSetup(device, store, resume, overwrite, events)


def print_summary(
    summary: dict[str, Any] | None,
    as_json: bool,
    describe: Callable[[dict[str, Any]], str] | None = None,
) -> None:
    """The run's summary on stdout: one line, or one JSON object; nothing from the processes
    that do not speak for a torchrun run (None)."""
    if summary is not None and launch().leader:
        print(json.dumps(summary) if as_json else (describe or describe_run)(summary))


def describe_run(summary: dict[str, Any]) -> str:
    if "loss" not in summary:
        return f"nothing to do: {summary['last']} is already at step {summary['step']}"
    val = f"  val_loss {summary['val_loss']:.3f}" if "val_loss" in summary else ""
    step, loss = summary["step"], summary["loss"]
    return f"trained to step {step}: loss {loss:.3f}{val}  -> {summary['last']}"


def _progress(steps: int, quiet: bool) -> Callable[[dict[str, float]], None]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    bars = Progress(
        TextColumn("train"),
        *columns,
        TextColumn("{task.fields[stats]}"),
        console=stderr,
        transient=True,
        disable=quiet or not stderr.is_terminal,
    )
    task = bars.add_task("train", total=steps, stats="")

    def on_step(m: dict[str, float]) -> None:
        if not bars.live.is_started and not bars.disable:
            bars.start()
        if "loss" not in m:  # a step between log steps: its number only
            bars.update(task, completed=m["step"])
            return
        stats = (
            f"loss {m['loss']:.3f}  acc {m['accuracy']:.3f}  lr {m['lr']:.2e}  "
            f"{m['tokens_per_s']:.0f} tok/s"
        )
        bars.update(task, completed=m["step"], stats=stats)
        if "val_loss" in m and not quiet:
            val = f"val_loss {m['val_loss']:.3f}  val_acc {m['val_accuracy']:.3f}"
            bars.console.print(f"step {m['step']}: {stats}  {val}", markup=False)
        if m["step"] >= steps:
            bars.stop()

    return on_step
