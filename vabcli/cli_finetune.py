"""`vab finetune contrastive`: the pre-trained backbone becomes an audio-visual embedding model."""

from pathlib import Path
from typing import Annotated

import typer

from .cli_common import CacheOpt, DeviceOpt, JsonOpt, QuietOpt, WorkersOpt, app
from .cli_train import (
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
    interrupted,
    load_plan,
    prepare_run_dir,
    report_run,
)
from .console import print_error, stderr
from .errors import VabError

finetune_app = typer.Typer(
    help="Fine-tune a pre-trained checkpoint for retrieval (contrastive).",
    no_args_is_help=True,
)
app.add_typer(finetune_app, name="finetune")


@finetune_app.command()
def contrastive(
    init: Annotated[
        Path,
        typer.Option("--init", metavar="CKPT", help="Pre-trained checkpoint (or run folder)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="RUN_DIR", help="Run folder.")],
    data: DataOpt = None,
    pack: PackOpt = None,
    layers: Annotated[
        int | None,
        typer.Option("--layers", metavar="N1", min=1, help="Multiway layers per tower (all)."),
    ] = None,
    proj_dim: Annotated[
        int, typer.Option("--proj-dim", metavar="D", min=1, help="Embedding size.")
    ] = 128,
    steps: StepsOpt = 1000,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", metavar="N", min=2, help="Clips per step and process."),
    ] = 32,
    lr: LrOpt = 3e-4,
    warmup_steps: WarmupOpt = 100,
    clip_seconds: ClipSecondsOpt = 4.0,
    val_every: ValEveryOpt = 100,
    seed: SeedOpt = 0,
    resume: ResumeOpt = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier run in RUN_DIR.")
    ] = False,
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
    from .checkpoint import load_checkpoint, resolve_checkpoint
    from .finetune import ContrastiveSpec, ContrastiveTrainer
    from .latents import options_from_spec, resolve_device
    from .train import (
        RunInfo,
        TrainingStopped,
        TrainOptions,
        distributed_rank,
        end_distributed,
        rank_device,
    )

    _check_sources(data, pack, None, out)
    try:  # the starting point first: nothing in --out is touched for a bad one
        init_folder = resolve_checkpoint(init).resolve()
        cfg, weights, meta = load_checkpoint(init_folder)
        if meta.get("task"):
            raise VabError(f"{init} is a {meta['task']} fine-tune: start from a pre-trained one")
    except VabError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    if out.resolve() in (init_folder, *init_folder.parents):
        raise typer.BadParameter(f"{init} lies inside {out}: write the run elsewhere",
                                 param_hint="--out")  # fmt: skip
    prepare_run_dir(out, resume, overwrite)
    try:
        ranks = distributed_rank(resolve_device(device))
        run_device = rank_device(resolve_device(device), ranks)
        quiet = quiet or not ranks.leader
        n_layers = cfg.n_multiway if layers is None else layers
        if n_layers > cfg.n_multiway:
            raise VabError(f"--layers {n_layers}: {init} has {cfg.n_multiway} multiway layers")
        tok_opts = options_from_spec(meta.get("encoders") or {}, device=device)
        plan = load_plan(data, pack, cache, tok_opts, "tiny", {}, workers, quiet)
        if (plan.codec_id, plan.visual_id) != (meta.get("codec_id"), meta.get("visual_id")):
            raise VabError(f"these clips were tokenized with other encoders than {init}'s")
        if not quiet:
            stderr.print(f"contrastive fine-tune of {init}: {n_layers} multiway layers per "
                         f"tower, {proj_dim}-d embeddings; {len(plan.train)} train and "
                         f"{len(plan.val)} val clips", markup=False)  # fmt: skip
        spec = ContrastiveSpec(n_layers, proj_dim)
        info = RunInfo(plan.codec_id, plan.visual_id,
                       {**spec.meta(), "init": str(init), "encoders": meta.get("encoders"),
                        "train_clips": len(plan.train)})  # fmt: skip
        opts = TrainOptions(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                            clip_seconds=clip_seconds, val_every=val_every, seed=seed,
                            workers=workers)  # fmt: skip
        trainer = ContrastiveTrainer(cfg, info, opts, plan.train, plan.val, out, run_device,
                                     resume, spec=spec, init=weights)  # fmt: skip
        final = trainer.run(_progress(steps, quiet))
    except KeyboardInterrupt:
        interrupted(out)
    except (TrainingStopped, VabError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    finally:
        end_distributed()
    if ranks.leader:
        report_run(out, final, as_json)
