"""`vab finetune contrastive|classify`: the pre-trained backbone becomes an audio-visual
embedding model, or a classifier."""

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from vabcli.cli import common
from vabcli.cli.common import DataOpt, OptionGroup, PackOpt, app, with_option_groups
from vabcli.cli.runs import (
    STEPPING_TYPES,
    Stepping,
    check_sources,
    print_summary,
    train_options,
    training_run,
)
from vabcli.config import TrainOptions
from vabcli.core.threads import size_torch_threads
from vabcli.tasks.finetune_run import (
    CLASSIFY_MODALITY,
    CLASSIFY_OPTIONS,
    CONTRASTIVE_OPTIONS,
    PROJ_DIM,
)
from vabcli.training.prepare import DEFAULT_SETUP

finetune_app = typer.Typer(
    help="Fine-tune a pre-trained checkpoint for retrieval (contrastive) or classification.",
    no_args_is_help=True,
)
app.add_typer(finetune_app, name="finetune")


InitOpt = Annotated[
    Path,
    typer.Option("--init", metavar="CKPT", help="Pre-trained checkpoint (or run folder)."),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", metavar="RUN_DIR", help="Run folder.")]
LayersOpt = Annotated[
    int | None,
    typer.Option("--layers", metavar="N1", min=1, help="Multiway layers per tower (all)."),
]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", metavar="N", min=2, help="Clips per step and process.")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an earlier run in RUN_DIR.")
]


@dataclass(frozen=True)
class _Start:
    """What both fine-tunes start from and write to: the checkpoint, the run folder, the clips."""

    init: Path
    out: Path
    data: Path | None
    pack: Path | None


@dataclass(frozen=True)
class _Run(Stepping):
    """The options both fine-tunes end with: how long and how they train, where they run."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    clip_seconds: float
    val_every: int
    seed: int
    resume: bool
    overwrite: bool
    device: str
    cache: Path | None
    workers: int
    as_json: bool
    quiet: bool

    def start(self, start: _Start, finetune: Callable[..., dict[str, Any]], **task: Any) -> None:
        """Check the options, run `finetune` (a tasks.finetune_run function) from `start`
        showing its progress, and print its summary."""
        size_torch_threads()  # one steady caller: the training loop (loader workers are processes)
        check_sources(start.data, start.pack, None, start.out)
        opts = train_options(asdict(self))
        where = {"data": start.data, "cache": self.cache, "device": self.device}
        again = {"resume": self.resume, "overwrite": self.overwrite}
        with training_run(start.out, self.steps, self.quiet, **again, **where) as setup:
            clips = {"data": start.data, "pack": start.pack}
            summary = finetune(start.init, start.out, **clips, options=opts, setup=setup, **task)
        print_summary(summary, self.as_json)


_START = OptionGroup.of(
    _Start,
    init=(InitOpt, inspect.Parameter.empty),
    out=(OutOpt, inspect.Parameter.empty),
    data=(DataOpt, None),
    pack=(PackOpt, None),
)


def _run_options(defaults: TrainOptions) -> OptionGroup:
    """The options both fine-tunes end with, with a fine-tune's own defaults."""
    return OptionGroup.of(
        _Run,
        steps=(common.StepsOpt, defaults.steps),
        batch_size=(BatchOpt, defaults.batch_size),
        lr=(common.LrOpt, defaults.lr),
        warmup_steps=(common.WarmupOpt, defaults.warmup_steps),
        clip_seconds=(common.ClipSecondsOpt, defaults.clip_seconds),
        val_every=(common.ValEveryOpt, defaults.val_every),
        **STEPPING_TYPES,
        seed=(common.SeedOpt, defaults.seed),
        resume=(common.ResumeOpt, DEFAULT_SETUP.resume),
        overwrite=(OverwriteOpt, DEFAULT_SETUP.overwrite),
        device=(common.DeviceOpt, DEFAULT_SETUP.device),
        cache=(common.CacheOpt, None),
        workers=(common.WorkersOpt, defaults.workers),
        as_json=(common.JsonOpt, False),
        quiet=(common.QuietOpt, False),
    )


@finetune_app.command()
@with_option_groups(start=_START, run=_run_options(CONTRASTIVE_OPTIONS))
def contrastive(
    *,
    start: _Start,
    layers: LayersOpt = None,
    proj_dim: Annotated[
        int, typer.Option("--proj-dim", metavar="D", min=1, help="Embedding size.")
    ] = PROJ_DIM,
    run: _Run,
) -> None:
    """Contrastive fine-tuning: the first N1 multiway layers become a visual and an audio tower
    (no cross-modal attention), mean-pooled, projected, L2-normalised, trained with symmetric
    InfoNCE and a learnt temperature (negatives from every process under torchrun).

    Clips are tokenized with the encoders the checkpoint was trained with. Same run folder,
    resume and Ctrl-C conventions as `vab train`; validation R@1/5/10 both ways go to
    RUN_DIR/metrics.jsonl.
    """
    from vabcli.tasks.finetune_run import finetune_contrastive

    run.start(start, finetune_contrastive, layers=layers, proj_dim=proj_dim)


@finetune_app.command()
@with_option_groups(start=_START, run=_run_options(CLASSIFY_OPTIONS))
def classify(
    *,
    start: _Start,
    modality: Annotated[
        str,
        typer.Option(metavar="av|v|a", help="Classify from the pictures and the sound, or one."),
    ] = CLASSIFY_MODALITY,
    freeze: Annotated[
        bool,
        typer.Option(
            "--freeze", help="Keep the backbone as it is: train the head alone (a linear probe)."
        ),
    ] = False,
    layers: LayersOpt = None,
    run: _Run,
) -> None:
    """Classification: a linear head on the mean-pooled outputs of the first N1 multiway layers
    (visual, audio, or both side by side). Labels come from the manifest's `label` (a list
    makes it multi-label: BCE per label; else cross-entropy); the label set is stored in the
    checkpoint. --init may be a pre-trained checkpoint or a contrastive fine-tune.

    Same run folder, resume and Ctrl-C conventions as `vab train`; validation loss and accuracy
    (and mAP for label lists) go to RUN_DIR/metrics.jsonl.
    """
    from vabcli.tasks.classify import MODALITIES
    from vabcli.tasks.finetune_run import finetune_classify

    if modality not in MODALITIES:
        raise typer.BadParameter("av (both), v (pictures) or a (sound)", param_hint="--modality")
    run.start(start, finetune_classify, modality=modality, freeze=freeze, layers=layers)
