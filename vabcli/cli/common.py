"""What every `vab` command shares: the app; the option types used by more than one command
(one declaration each) and the groups of options several commands take together (`OUTPUT`,
`ENCODERS`, `SHARED`: declared once, put into each command by `with_option_groups`); running a
batch with a display; and `one_line_failures`, the one way a command's failure becomes an
`error:` line and its exit code."""

import functools
import inspect
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from vabcli import __version__
from vabcli.cli.console import (
    AnswerRows,
    JobsDisplay,
    TokenizeBars,
    print_answers,
    print_error,
    print_warning,
)
from vabcli.config import (
    CODEC_SAMPLE_RATE,
    DEFAULT_CODEC,
    DEFAULT_IMAGE_ENCODER,
    FRAME_SIZE,
    VISUAL_FPS,
    ExtractOptions,
    check_number,
    parse_frame_size,
)
from vabcli.core.cache import Cache, default_cache_dir, sweep
from vabcli.core.device import launch
from vabcli.core.errors import VabError
from vabcli.core.jobs import Job, JobEvents, Outcome, run_jobs
from vabcli.data.clips import ClipItem, clip_items
from vabcli.data.shards import Shard
from vabcli.tasks.latents import ClipAnswer
from vabcli.tasks.options import ClipOptions

EXIT_INTERRUPTED = 130
_KEYWORD = inspect.Parameter.KEYWORD_ONLY

# Commands listed in pipeline order rather than in the order their modules register them.
COMMAND_ORDER = (
    "extract",
    "tokenize",
    "train",
    "finetune",
    "embed",
    "retrieve",
    "classify",
    "generate",
    "mux",
    "manifest",
    "synth",
    "eval",
    "models",
    "cache",
)


class _PipelineOrderGroup(TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(
    name="vab",
    cls=_PipelineOrderGroup,
    help="Dub videos with audio generated from their pictures (VAB).\n\n"
    "Results go to stdout (--json: one JSON object per input); progress and errors to stderr. "
    "Exit code: 0 all inputs ok, 1 some input failed, 2 usage error, 130 interrupted.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


def in_range(low: float, high: float, *, low_open: bool = False) -> Callable:
    """A typer callback refusing NaN, infinities and numbers outside [low, high] (or (low, high])
    as usage errors, for options no options dataclass checks. None (unset) passes."""

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is not None:
            try:
                check_number(param.opts[0], value, low, high, low_open=low_open)
            except ValueError as exc:  # "--opt must be ...": typer names the option itself
                raise typer.BadParameter(str(exc).split(" ", 1)[1]) from None
        return value

    return check


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

# The clips of the commands that read videos or a manifest (tokenize, train, embed, ...).
InputsArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="INPUT", help="Video files, folders or globs (or use --data)."),
]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", metavar="MANIFEST", help="Clips: manifest.jsonl (README)."),
]
ModelOpt = Annotated[
    Path,
    typer.Option("--model", metavar="CKPT", help="A contrastive fine-tune or pre-trained model."),
]

FpsOpt = Annotated[float, typer.Option(metavar="F", help="Frames per second to decode.")]
SizeOpt = Annotated[
    str,
    typer.Option(
        metavar="S",
        help="Frame size: N for NxN or WxH; frames are scaled to cover it and centre-cropped.",
    ),
]
SampleRateOpt = Annotated[
    int, typer.Option("--sample-rate", metavar="SR", help="Audio sample rate in Hz (mono).")
]
DEFAULT_FPS, DEFAULT_SIZE, DEFAULT_SAMPLE_RATE = VISUAL_FPS, str(FRAME_SIZE), CODEC_SAMPLE_RATE
# Inputs handled at the same time by the batch commands that have no options dataclass of their own.
DEFAULT_WORKERS = ClipOptions.workers

# The frozen encoders (tokenize, train): one definition each.
CodecOpt = Annotated[
    str,
    typer.Option(
        metavar="NAME",
        help="Audio tokenizer: encodec_24khz, builtin (the bundled 16 kHz codec, trained on "
        "vab synth sounds), a folder holding config.json and weights.safetensors, or debug "
        "(random weights: its tokens carry no meaning).",
    ),
]
CodecWeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--codec-weights",
        metavar="FILE",
        help="Weights for encodec_24khz (e.g. encodec_24khz-d7cc33bc.th) instead of the "
        "torch hub cache.",
    ),
]
BandwidthOpt = Annotated[
    float | None,
    typer.Option(
        metavar="KBPS",
        callback=in_range(0, 1000, low_open=True),
        help="Codec bandwidth: for encodec_24khz 1.5, 3 (default), 6, 12 or 24 kbps; other "
        "codecs default to all their codebooks.",
    ),
]
ImageEncoderOpt = Annotated[
    str,
    typer.Option(
        "--image-encoder",
        metavar="SPEC",
        help="open_clip MODEL:PRETRAINED (tag or weights file), local-dir:PATH, builtin (the "
        "bundled tower, trained on vab synth scenes), or debug (random weights: its features "
        "carry no meaning).",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option(metavar="DEVICE", help="auto (cuda, then mps, then cpu), cpu, cuda.")
]

# The options of the training runs (train, finetune contrastive, finetune classify).
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
ShardOpt = Annotated[
    str | None,
    typer.Option(
        metavar="I/N",
        help="Only share I of N of the clips (1 <= I <= N; a clip's share follows from its "
        "name), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT of a Slurm --array=1-N; "
        "under torchrun each process takes its part of that share.",
    ),
]


def parse_shard(text: str | None) -> Shard:
    """--shard's value; a malformed one is a usage error."""
    try:
        return Shard() if text is None else Shard.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard") from None


ValEveryOpt = Annotated[
    int, typer.Option("--val-every", metavar="N", min=1, help="Validate and save every N.")
]
SeedOpt = Annotated[int, typer.Option(metavar="N", help="Seed of every random choice.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue RUN_DIR/last.")]


@dataclass(frozen=True)
class OptionGroup:
    """Options several commands share, declared once: `with_option_groups` puts them into a
    command's signature where its placeholder parameter stands and hands the command their
    values gathered into `gather(**values)`."""

    parameters: tuple[inspect.Parameter, ...]
    gather: Callable[..., Any]

    @classmethod
    def of(cls, gather: Callable[..., Any], **typed: tuple[Any, Any]) -> "OptionGroup":
        """The group of the options `typed` (name=(option type, default)), in that order."""
        parameters = (
            inspect.Parameter(name, _KEYWORD, annotation=annotation, default=default)
            for name, (annotation, default) in typed.items()
        )
        return cls(tuple(parameters), gather)

    def with_defaults(self, **defaults: Any) -> "OptionGroup":
        """The same options, those named with a command's own defaults."""
        parameters = tuple(
            p.replace(default=defaults.get(p.name, p.default)) for p in self.parameters
        )
        return OptionGroup(parameters, self.gather)


def with_option_groups(
    **groups: OptionGroup,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator: each parameter of the command named in `groups` (a keyword-only placeholder)
    is, as typer sees the command, that group's options, in its place in `--help`; the command
    receives their values gathered into the group's `gather`."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command)
        parameters: list[inspect.Parameter] = []
        for own in signature.parameters.values():
            group = groups.get(own.name)
            # typer passes every option by name
            parameters.extend(group.parameters if group else [own.replace(kind=_KEYWORD)])

        @functools.wraps(command)
        def with_groups(**values: Any) -> None:
            for name, group in groups.items():
                gathered = {p.name: values.pop(p.name) for p in group.parameters}
                values[name] = group.gather(**gathered)
            command(**values)

        with_groups.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return with_groups

    return decorate


@dataclass(frozen=True)
class Output:
    """The options every batch command ends with: how many inputs at once, and what it prints."""

    workers: int
    as_json: bool
    quiet: bool


_OUTPUT_TYPES = {
    "workers": (WorkersOpt, DEFAULT_WORKERS),
    "as_json": (JsonOpt, False),
    "quiet": (QuietOpt, False),
}
OUTPUT = OptionGroup.of(Output, **_OUTPUT_TYPES)


@dataclass(frozen=True)
class SharedOptions(Output):
    """The options every command that runs a checkpoint over clips (embed, retrieve, classify,
    eval) ends with: --cache, --device, --workers, --json, --quiet."""

    cache: Path | None
    device: str


_CLIP_DEFAULTS = ClipOptions()
SHARED = OptionGroup.of(
    SharedOptions,
    cache=(CacheOpt, None),
    device=(DeviceOpt, _CLIP_DEFAULTS.device),
    **_OUTPUT_TYPES,
)
# A command whose keyword-only parameter `shared: SharedOptions` stands for the shared options.
shared_options = with_option_groups(shared=SHARED)


@dataclass(frozen=True)
class Encoders:
    """The frozen encoders a command tokenizes with (tokenize, train): TokenizeOptions' fields."""

    codec: str
    codec_weights: Path | None
    bandwidth: float | None
    image_encoder: str


ENCODERS = OptionGroup.of(
    Encoders,
    codec=(CodecOpt, DEFAULT_CODEC),
    codec_weights=(CodecWeightsOpt, None),
    bandwidth=(BandwidthOpt, None),
    image_encoder=(ImageEncoderOpt, DEFAULT_IMAGE_ENCODER),
)


def run_command(
    items: list, job: Job, output: Output, verb: str, describe: Callable[[Outcome], str]
) -> None:
    """Run a batch with progress and per-item results; exit 1 if any item failed."""
    display = jobs_display(len(items), verb, output, describe)
    show_jobs(display, lambda: run_jobs(items, job, output.workers, display))


def jobs_display(
    n_items: int, verb: str, output: Output, describe: Callable[[Outcome], str]
) -> JobsDisplay:
    """The progress and per-item lines of a batch of `n_items`, as `output` asks. Under
    torchrun only the first process draws bars and sums up, saying that it speaks for its own
    share (each process prints its own items' lines)."""
    run = launch()
    if run.spread:
        verb = f"{verb} (process 1 of {run.world_size}, its share)"
    return JobsDisplay(n_items, verb, output.as_json, output.quiet or not run.leader, describe)


def show_jobs(display: JobsDisplay, run: Callable[[], list[Outcome]]) -> None:
    """Run a batch under `display` and exit: 0 all ok, 1 some item (or the run: e.g. a model
    that cannot load) failed, 130 on Ctrl-C or SIGTERM. Under torchrun every process first
    waits for the others to finish their share: torchrun stops all processes as soon as one
    leaves with a status other than 0, which some failed clip gives."""
    with one_line_failures(interrupted="interrupted; unfinished outputs were removed"), display:
        outcomes = run()
        if launch().spread:
            from vabcli.training.distributed import wait_for_all_processes  # torch

            sys.stdout.flush()  # every result out before torchrun may stop this process
            wait_for_all_processes()
    raise typer.Exit(display.summary(outcomes))


def join_torchrun(device: str) -> None:
    """Under torchrun, join its process group (on `device`'s backend), so that the processes
    of a batch command can wait for each other at the end (`show_jobs`)."""
    if launch().spread:
        from vabcli.training.distributed import join_process_group  # torch

        join_process_group(device)


@contextmanager
def one_line_failures(
    interrupted: str | Callable[[], str | None] = "interrupted",
) -> Iterator[None]:
    """How a command ends when its work fails as a whole: a VabError or OSError (a model that
    cannot load, an unreadable file) is one `error:` line and exit 1; Ctrl-C or SIGTERM is
    `error: {interrupted}` and exit 130 (`interrupted` may be a function saying, once the work
    has stopped, what it left behind; None from it: exit 130 without a word). A reader of
    stdout that left is no failure of the command: that passes on to `main`, which exits with
    the pipe's status (141)."""
    try:
        yield
    except KeyboardInterrupt:
        message = interrupted() if callable(interrupted) else interrupted
        if message is not None:
            print_error(message)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # stdout's reader left (`| head`): main gives the pipe's status
        raise
    except (VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None


def print_clip_answers(
    inputs: list[str] | None,
    data: Path | None,
    answer: Callable[[list[ClipItem], Cache, JobEvents], Iterable[ClipAnswer]],
    rows: AnswerRows,
    shared: SharedOptions,
) -> None:
    """The clips of INPUT... and --data, `answer`ed (tokenizing under progress bars) and
    printed as they come; exit 1 if a clip failed (one `error:` line if the whole run did)."""
    with one_line_failures():
        items = clip_items(inputs, data)
        with TokenizeBars(shared.quiet) as bars:
            answers = answer(items, open_cache(shared.cache), bars)
            failed = print_answers(answers, rows, shared.as_json)
    if failed:
        raise typer.Exit(1)


def clips_given(
    inputs: list[str] | None, data: Path | None, usage: str = "give INPUT... or --data MANIFEST"
) -> None:
    """Refuse (usage error `usage`) a command given neither INPUT paths nor --data."""
    if not inputs and data is None:
        raise typer.BadParameter(usage)


def bad_options(exc: ValueError, names: dict[str, str]) -> typer.BadParameter:
    """The usage error for an options dataclass's ValueError, its field named as the option
    the user typed (`window_seconds must ...` -> `--window must ...`)."""
    message = str(exc)
    field_name = message.split(" ", 1)[0]
    if field_name in names:
        message = names[field_name] + message[len(field_name) :]
    return typer.BadParameter(message)


def extract_options(fps: float, size: str, sample_rate: int) -> ExtractOptions:
    """The options object for --fps/--size/--sample-rate; a bad value is a usage error."""
    try:
        width, height = parse_frame_size(size)
        return ExtractOptions(fps=fps, width=width, height=height, sample_rate=sample_rate)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def check_writable_folder(folder: Path, what: str = "output folder") -> None:
    """Create `folder` if needed and prove a file can be written there, before any model loads:
    VabError (one line) otherwise, rather than a failure per clip after minutes of work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vab-write-test-"):
            pass
    except OSError as exc:
        raise VabError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from None


def open_cache(root: Path | None, sweep_leftovers: bool = True) -> Cache:
    """The cache, reporting damaged entries it finds (and recomputes) as warnings on stderr,
    with the leftovers of killed runs at its root swept first: a run that finds everything
    cached writes nothing, so no write would ever meet them. `vab cache` itself reports them
    (and prunes them when asked), so it opens the cache with `sweep_leftovers=False`."""
    cache = Cache(root, on_damage=print_warning)
    if sweep_leftovers:
        sweep(cache.root)
    return cache
