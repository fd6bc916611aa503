"""Fine-tuning as one call: a pre-trained checkpoint and clips in, a run folder and its summary
out. `finetune_contrastive` makes an audio-visual embedding model, `finetune_classify` a
classifier; both run through one shared runner. What `vab finetune` runs; progress by
`RunEvents`. Importing this module loads no torch (the commands take their defaults here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vabcli.config import TrainOptions
from vabcli.core.errors import VabError
from vabcli.training.prepare import (
    DEFAULT_SETUP,
    RunEvents,
    RunFolderTaken,
    RunSetup,
    load_plan,
    prepare_run_dir,
    run_summary,
)

# Each fine-tune's own defaults for the fields where it differs from pre-training.
CONTRASTIVE_OPTIONS = TrainOptions(steps=1000, batch_size=32, warmup_steps=100)
CLASSIFY_OPTIONS = TrainOptions(steps=500, batch_size=32, warmup_steps=50)
PROJ_DIM = 128  # size of a contrastive fine-tune's embeddings
CLASSIFY_MODALITY = "av"  # classify from the pictures and the sound


def finetune_contrastive(
    init: Path,
    out: Path,
    *,
    data: Path | None = None,
    pack: Path | None = None,
    layers: int | None = None,
    proj_dim: int = PROJ_DIM,
    options: TrainOptions = CONTRASTIVE_OPTIONS,
    setup: RunSetup = DEFAULT_SETUP,
) -> dict[str, Any]:
    """Fine-tune the pre-trained checkpoint (or run folder) `init` into an embedding model: its
    first `layers` multiway layers (all by default) become a visual and an audio tower,
    projected to `proj_dim`, trained with symmetric InfoNCE on the clips of the manifest `data`
    (tokenized with `init`'s encoders) or of a `pack`. Run folder, resume and the summary
    returned as `training.pretrain.train`'s."""

    def trainer(start: _Start) -> tuple[Any, str]:
        from vabcli.tasks.contrastive import ContrastiveSpec, ContrastiveTrainer

        spec = ContrastiveSpec(start.n_layers, proj_dim)
        what = f"{spec.n_layers} multiway layers per tower, {proj_dim}-d embeddings"
        return start.make(ContrastiveTrainer, spec, start.weights), what

    run = _FineTune("contrastive", init, out, data, pack, layers, options, (None,))
    return run.run(trainer, setup)


def finetune_classify(
    init: Path,
    out: Path,
    *,
    data: Path | None = None,
    pack: Path | None = None,
    modality: str = CLASSIFY_MODALITY,
    freeze: bool = False,
    layers: int | None = None,
    options: TrainOptions = CLASSIFY_OPTIONS,
    setup: RunSetup = DEFAULT_SETUP,
) -> dict[str, Any]:
    """Fine-tune `init` (pre-trained, or a contrastive fine-tune) into a classifier: a linear
    head on the mean-pooled outputs of its first `layers` multiway layers, from the pictures
    and the sound (`modality` "av"), or one ("v", "a"); `freeze` trains the head alone. Labels
    come from the clips' `label` (lists: multi-label). ValueError for an unknown modality; run
    folder, resume and the summary returned as `training.pretrain.train`'s."""
    from vabcli.tasks.classify import MODALITIES

    if modality not in MODALITIES:
        raise ValueError("av (both), v (pictures) or a (sound)")

    def trainer(start: _Start) -> tuple[Any, str]:
        from vabcli.tasks.classify import ClassifySpec, ClassifyTrainer, backbone_weights, label_set

        weights = backbone_weights(start.meta, start.weights, init)
        labels, multi = label_set(start.plan.train, start.plan.val)
        spec = ClassifySpec(start.n_layers, modality, labels, multi, freeze)
        kind = "linear probe" if freeze else "full fine-tune"
        lists = " (lists: BCE)" if multi else ""
        what = f"{kind} on {modality}, {spec.n_layers} multiway layers, {len(labels)} labels{lists}"
        return start.make(ClassifyTrainer, spec, weights), what

    run = _FineTune("classify", init, out, data, pack, layers, options, (None, "contrastive"))
    return run.run(trainer, setup)


@dataclass
class _Start:
    """What a fine-tune starts from: the init checkpoint, its data, where it runs."""

    cfg: Any  # ModelConfig of the init checkpoint
    weights: dict  # its state dict
    meta: Any  # CheckpointMeta of the init checkpoint
    plan: Any  # TrainPlan: the clips
    n_layers: int  # N1
    info: Any  # RunInfo the checkpoints will carry
    opts: TrainOptions
    out: Path
    device: str
    resume: bool

    def make(self, trainer_class: type, spec: Any, weights: dict) -> Any:
        """The task's trainer; its spec's fields go into every checkpoint's meta."""
        self.info.meta.update(spec.meta())
        train, val = self.plan.train, self.plan.val
        where = (self.out, self.device, self.resume)
        return trainer_class(
            self.cfg, self.info, self.opts, train, val, *where, spec=spec, init=weights
        )


@dataclass(frozen=True)
class _FineTune:
    """The steps every fine-tune shares: read the init, prepare the run folder, tokenize (or
    read the pack) with the init's encoders, train."""

    task: str
    init: Path
    out: Path
    data: Path | None
    pack: Path | None
    layers: int | None
    options: TrainOptions
    init_tasks: tuple[str | None, ...]  # what `init` may be: None is a pre-trained model

    def run(
        self,
        make_trainer: Callable[[_Start], tuple[Any, str]],
        setup: RunSetup,
    ) -> dict[str, Any]:
        from vabcli.core.device import rank_device, resolve_device
        from vabcli.encoders.tokenize import options_from_spec
        from vabcli.training.distributed import join_process_group
        from vabcli.training.trainer import RunInfo

        events = setup.events_here()
        init_folder, (cfg, weights, meta) = self._read_init()
        if self.out.resolve() in (init_folder, *init_folder.parents):
            raise RunFolderTaken(f"{self.init} lies inside {self.out}: write the run elsewhere")
        prepare_run_dir(self.out, setup.resume, setup.overwrite, events)
        run_device = rank_device(resolve_device(setup.device))
        join_process_group(run_device)
        n_layers = (meta.n_layers or cfg.n_multiway) if self.layers is None else self.layers
        if n_layers > cfg.n_multiway:
            raise VabError(f"--layers {n_layers}: {self.init} has {cfg.n_multiway} multiway layers")
        tok_opts = options_from_spec(meta.encoders, device=setup.device)
        workers = self.options.workers
        plan = load_plan(
            self.data, self.pack, setup.cache, tok_opts, "tiny", {}, workers, events.tokenize
        )
        if (plan.codec_id, plan.visual_id) != (meta.codec_id, meta.visual_id):
            raise VabError(f"these clips were tokenized with other encoders than {self.init}'s")
        extra = {"init": str(self.init), "encoders": meta.encoders, "train_clips": len(plan.train)}
        info = RunInfo(plan.codec_id, plan.visual_id, extra)
        start = _Start(
            cfg,
            weights,
            meta,
            plan,
            n_layers,
            info,
            self.options,
            self.out,
            run_device,
            setup.resume,
        )
        final = self._train(make_trainer, start, events)
        return run_summary(self.out, final)

    def _read_init(self) -> tuple[Path, tuple[Any, dict, Any]]:
        """The init checkpoint's folder and contents, refused (VabError) if it is a fine-tune
        this task cannot start from: nothing in the run folder is touched for a bad one."""
        from vabcli.model.checkpoint import load_checkpoint, resolve_checkpoint

        folder = resolve_checkpoint(self.init).resolve()
        loaded = load_checkpoint(folder)
        task = loaded[2].task
        if task not in self.init_tasks:
            wanted = " or ".join(t or "pre-trained" for t in self.init_tasks)
            raise VabError(f"{self.init} is a {task} fine-tune: start from a {wanted} one")
        return folder, loaded

    def _train(
        self, make_trainer: Callable[[_Start], tuple[Any, str]], start: _Start, events: RunEvents
    ) -> dict[str, float]:
        """Build, announce and run the trainer. It is gone when this returns, so its
        data-parallel wrapper is destroyed before the process group is (gloo work still
        referenced at interpreter exit aborts the process: "terminate called without an
        active exception")."""
        trainer, what = make_trainer(start)
        clips = f"{len(start.plan.train)} train and {len(start.plan.val)} val clips"
        events.message(f"{self.task} fine-tune of {self.init}: {what}; {clips}")
        return trainer.run(events.step)
