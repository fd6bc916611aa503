"""`vab finetune contrastive|classify`: the pre-trained backbone becomes an audio-visual
embedding model, or a classifier."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from vabcli.cli.common import CacheOpt, DeviceOpt, JsonOpt, QuietOpt, WorkersOpt, app
from vabcli.cli.console import print_error, stderr
from vabcli.cli.train import (
    ClipSecondsOpt,
    DataOpt,
    LrOpt,
    PackOpt,
    ResumeOpt,
    SeedOpt,
    StepsOpt,
    ValEveryOpt,
    WarmupOpt,
    _check_sources,
    _progress,
    load_plan,
    prepare_run_dir,
    report_run,
    train_options,
    training_failures,
)
from vabcli.core.errors import VabError
from vabcli.core.threads import size_torch_threads

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


@finetune_app.command()
def contrastive(
    init: InitOpt,
    out: OutOpt,
    data: DataOpt = None,
    pack: PackOpt = None,
    layers: LayersOpt = None,
    proj_dim: Annotated[
        int, typer.Option("--proj-dim", metavar="D", min=1, help="Embedding size.")
    ] = 128,
    steps: StepsOpt = 1000,
    batch_size: BatchOpt = 32,
    lr: LrOpt = 3e-4,
    warmup_steps: WarmupOpt = 100,
    clip_seconds: ClipSecondsOpt = 4.0,
    val_every: ValEveryOpt = 100,
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    cache: CacheOpt = None,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Contrastive fine-tuning: the first N1 multiway layers become a visual and an audio tower
    (no cross-modal attention), mean-pooled, projected, L2-normalised, trained with symmetric
    InfoNCE and a learnt temperature (negatives from every process under torchrun).

    Clips are tokenized with the encoders the checkpoint was trained with. Same run folder,
    resume and Ctrl-C conventions as `vab train`; validation R@1/5/10 both ways go to
    RUN_DIR/metrics.jsonl.
    """

    def trainer(setup: Setup) -> tuple[Any, str]:
        from vabcli.tasks.contrastive import ContrastiveSpec, ContrastiveTrainer

        spec = ContrastiveSpec(setup.n_layers, proj_dim)
        what = f"{spec.n_layers} multiway layers per tower, {proj_dim}-d embeddings"
        return setup.make(ContrastiveTrainer, spec, setup.weights), what

    opts = dict(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                clip_seconds=clip_seconds, val_every=val_every, seed=seed)  # fmt: skip
    _finetune("contrastive", init, out, data, pack, layers, opts, trainer, resume, overwrite,
              device, cache, workers, as_json, quiet, init_tasks=(None,))  # fmt: skip


@finetune_app.command()
def classify(
    init: InitOpt,
    out: OutOpt,
    data: DataOpt = None,
    pack: PackOpt = None,
    modality: Annotated[
        str,
        typer.Option(metavar="av|v|a", help="Classify from the pictures and the sound, or one."),
    ] = "av",
    freeze: Annotated[
        bool,
        typer.Option(
            "--freeze", help="Keep the backbone as it is: train the head alone (a linear probe)."
        ),  # fmt: skip
    ] = False,
    layers: LayersOpt = None,
    steps: StepsOpt = 500,
    batch_size: BatchOpt = 32,
    lr: LrOpt = 3e-4,
    warmup_steps: WarmupOpt = 50,
    clip_seconds: ClipSecondsOpt = 4.0,
    val_every: ValEveryOpt = 100,
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    cache: CacheOpt = None,
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Classification: a linear head on the mean-pooled outputs of the first N1 multiway layers
    (visual, audio, or both side by side). Labels come from the manifest's `label` (a list
    makes it multi-label: BCE per label; else cross-entropy); the label set is stored in the
    checkpoint. --init may be a pre-trained checkpoint or a contrastive fine-tune.

    Same run folder, resume and Ctrl-C conventions as `vab train`; validation loss and accuracy
    (and mAP for label lists) go to RUN_DIR/metrics.jsonl.
    """
    from vabcli.tasks.classify import MODALITIES

    if modality not in MODALITIES:
        raise typer.BadParameter("av (both), v (pictures) or a (sound)", param_hint="--modality")

    def trainer(setup: Setup) -> tuple[Any, str]:
        from vabcli.tasks.classify import ClassifySpec, ClassifyTrainer, backbone_weights, label_set

        weights = backbone_weights(setup.meta, setup.weights, init)
        labels, multi = label_set(setup.plan.train, setup.plan.val)
        spec = ClassifySpec(setup.n_layers, modality, labels, multi, freeze)
        what = (f"{'linear probe' if freeze else 'full fine-tune'} on {modality}, "
                f"{spec.n_layers} multiway layers, {len(labels)} labels"
                f"{' (lists: BCE)' if multi else ''}")  # fmt: skip
        return setup.make(ClassifyTrainer, spec, weights), what

    opts = dict(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                clip_seconds=clip_seconds, val_every=val_every, seed=seed)  # fmt: skip
    _finetune("classify", init, out, data, pack, layers, opts, trainer, resume, overwrite, device,
              cache, workers, as_json, quiet, init_tasks=(None, "contrastive"))  # fmt: skip


@dataclass
class Setup:
    """What a fine-tune starts from: the init checkpoint, its data, where it runs."""

    cfg: Any  # ModelConfig of the init checkpoint
    weights: dict  # its state dict
    meta: Any  # CheckpointMeta of the init checkpoint
    plan: Any  # TrainPlan: the clips
    n_layers: int  # N1
    info: Any  # RunInfo the checkpoints will carry
    opts: Any  # TrainOptions
    out: Path
    device: str
    resume: bool

    def make(self, trainer_class: type, spec: Any, weights: dict) -> Any:
        """The task's trainer; its spec's fields go into every checkpoint's meta."""
        self.info.meta.update(spec.meta())
        return trainer_class(self.cfg, self.info, self.opts, self.plan.train, self.plan.val,
                             self.out, self.device, self.resume, spec=spec,
                             init=weights)  # fmt: skip


def _finetune(
    task: str,
    init: Path,
    out: Path,
    data: Path | None,
    pack: Path | None,
    layers: int | None,
    opts: dict[str, Any],
    make_trainer: Callable[[Setup], tuple[Any, str]],
    resume: bool,
    overwrite: bool,
    device: str,
    cache: Path | None,
    workers: int,
    as_json: bool,
    quiet: bool,
    init_tasks: tuple[str | None, ...],
) -> None:
    """The steps every fine-tune shares: read the init, prepare the run folder, tokenize (or
    read the pack) with the init's encoders, train, report."""
    from vabcli.core.device import rank_device, resolve_device
    from vabcli.encoders.tokenize import options_from_spec
    from vabcli.model.checkpoint import load_checkpoint, resolve_checkpoint
    from vabcli.training.distributed import join_process_group
    from vabcli.training.trainer import RunInfo

    size_torch_threads()  # one steady caller: the training loop (loader workers are processes)
    _check_sources(data, pack, None, out)
    train_opts = train_options(workers=workers, **opts)
    try:  # the starting point first: nothing in --out is touched for a bad one
        init_folder = resolve_checkpoint(init).resolve()
        cfg, weights, meta = load_checkpoint(init_folder)
        if meta.task not in init_tasks:
            wanted = " or ".join(t or "pre-trained" for t in init_tasks)
            raise VabError(f"{init} is a {meta.task} fine-tune: start from a {wanted} one")
    except VabError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    if out.resolve() in (init_folder, *init_folder.parents):
        raise typer.BadParameter(f"{init} lies inside {out}: write the run elsewhere",
                                 param_hint="--out")  # fmt: skip
    prepare_run_dir(out, resume, overwrite)
    with training_failures(out):
        run_device = rank_device(resolve_device(device))
        ranks = join_process_group(run_device)
        quiet = quiet or not ranks.leader
        n_layers = (meta.n_layers or cfg.n_multiway) if layers is None else layers
        if n_layers > cfg.n_multiway:
            raise VabError(f"--layers {n_layers}: {init} has {cfg.n_multiway} multiway layers")
        tok_opts = options_from_spec(meta.encoders, device=device)
        plan = load_plan(data, pack, cache, tok_opts, "tiny", {}, workers, quiet)
        if (plan.codec_id, plan.visual_id) != (meta.codec_id, meta.visual_id):
            raise VabError(f"these clips were tokenized with other encoders than {init}'s")
        info = RunInfo(plan.codec_id, plan.visual_id,
                       {"init": str(init), "encoders": meta.encoders,
                        "train_clips": len(plan.train)})  # fmt: skip
        setup = Setup(cfg, weights, meta, plan, n_layers, info, train_opts, out, run_device,
                      resume)  # fmt: skip
        final = _run_trainer(make_trainer, setup, f"{task} fine-tune of {init}", quiet)
    if ranks.leader:
        report_run(out, final, as_json)


def _run_trainer(
    make_trainer: Callable[[Setup], tuple[Any, str]], setup: Setup, title: str, quiet: bool
) -> dict[str, Any]:
    """Build, announce and run the trainer. It is gone when this returns, so its data-parallel
    wrapper is destroyed before the process group is (gloo work still referenced at
    interpreter exit aborts the process: "terminate called without an active exception")."""
    trainer, what = make_trainer(setup)
    if not quiet:
        stderr.print(f"{title}: {what}; {len(setup.plan.train)} train and "
                     f"{len(setup.plan.val)} val clips", markup=False)  # fmt: skip
    return trainer.run(_progress(setup.opts.steps, quiet))
