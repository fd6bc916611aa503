"""Pre-training loop: masked audio-token prediction on cached latents, resumable, data-parallel.

Everything random is derived from (seed, step) or (seed, epoch, index), and the optimizer's
moments are saved with the weights, so `resume` continues the exact run: an interrupted and an
uninterrupted run of the same length log the same losses. Under torchrun each rank trains on its
own slice of every global batch; rank 0 alone writes checkpoints and metrics.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vabcli.config import ModelConfig, TrainOptions
from vabcli.core.errors import VabError
from vabcli.model.checkpoint import (
    check_encoders,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    tidy_checkpoint,
)
from vabcli.model.losses import masked_token_loss
from vabcli.model.transformer import VabModel
from vabcli.training.dataset import CropDataset, EpochBatches, LatentClip, WindowLength, collate
from vabcli.training.distributed import join_process_group, sum_across_ranks


@dataclass(frozen=True)
class RunInfo:
    """What the checkpoint must remember beyond the weights (encoders, rates, options)."""

    codec_id: str
    visual_id: str
    meta: dict[str, Any] = field(default_factory=dict)  # more CheckpointMeta keys (preset, ...)


class TrainingStopped(VabError):
    """Training cannot go on (for example the loss became NaN); the last good checkpoint stays."""


StepFn = Callable[[dict[str, float]], None]


def lr_at(step: int, opts: TrainOptions) -> float:
    """Linear warm-up, then cosine decay to `lr * min_lr_ratio` at `steps`."""
    if step < opts.warmup_steps:
        return opts.lr * (step + 1) / opts.warmup_steps
    progress = min(1.0, (step - opts.warmup_steps) / max(1, opts.steps - opts.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return opts.lr * (opts.min_lr_ratio + (1 - opts.min_lr_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.AdamW:
    """AdamW; matrices decay, biases, norms and single vectors do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": opts.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.95))


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat named tensors (safetensors, no pickle)."""
    flat = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            flat[f"optimizer.{index}.{name}"] = torch.as_tensor(value)
    return flat


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    saved = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


class Trainer:
    """One training run writing to `out`: `last/` and `best/` checkpoints, `metrics.jsonl`."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        info: RunInfo,
        opts: TrainOptions,
        train_clips: list[LatentClip],
        val_clips: list[LatentClip],
        out: Path,
        device: str,
        resume: bool = False,
    ) -> None:
        self.cfg, self.info, self.opts, self.out, self.device = model_cfg, info, opts, out, device
        self.train_clips, self.val_clips = train_clips, val_clips
        self.launch = join_process_group(device)
        self.window = WindowLength(
            opts.clip_seconds, model_cfg.visual_fps, model_cfg.audio_frame_rate
        )
        torch.manual_seed(opts.seed)  # the same initial weights on every rank
        self.model = self.build_model().to(device)
        self.optimizer = make_optimizer(self.model, opts)
        self.step, self.best = 0, math.inf
        if resume:
            self._resume()
        self.net: torch.nn.Module = self.model
        if self.launch.spread:
            ids = [torch.device(device).index] if device.startswith("cuda") else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def build_model(self) -> torch.nn.Module:
        """The model this run trains (subclasses train others on the same loop)."""
        return VabModel(self.cfg)

    def dataset(self, clips: list[LatentClip]) -> CropDataset:
        """Training or validation windows of `clips` (subclasses add what their loss needs)."""
        return CropDataset(clips, self.window, self.opts.seed)

    def on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def autocast(self) -> torch.autocast:
        """bf16 on CUDA (the model trains in it), full precision on CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda"))

    def run(self, on_step: StepFn | None = None) -> dict[str, float]:
        """Train until `opts.steps`; returns the last metrics. Ctrl-C or SIGTERM saves `last`
        after the step in progress, then raises KeyboardInterrupt."""
        sampler = EpochBatches(
            len(self.train_clips),
            self.opts.batch_size,
            self.opts.seed,
            self.step,
            self.launch.rank,
            self.launch.world_size,
        )
        loader = DataLoader(
            self.dataset(self.train_clips),
            batch_sampler=sampler,
            num_workers=self.opts.workers,
            collate_fn=collate,
        )
        batches, metrics = iter(loader), {"step": self.step}
        with _stop_between_steps() as stop:
            while self.step < self.opts.steps:
                metrics = self._train_step(next(batches))
                self.step += 1
                checkpoint = self.step % self.opts.val_every == 0 or self.step == self.opts.steps
                if checkpoint:
                    metrics.update(self._validate())
                # Logged before the checkpoint is saved: a run killed in between resumes from
                # the previous checkpoint and drops this line, rather than miss it for good.
                self._log(metrics)
                if checkpoint:
                    self._save_checkpoints(metrics)
                if on_step:
                    on_step(metrics)
                if self._any_rank(stop.is_set()):  # all ranks stop at the same step
                    self._save("last")
                    raise KeyboardInterrupt
        return metrics

    def _train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        started = time.perf_counter()
        lr = lr_at(self.step, self.opts)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        generator = _generator(self.opts.seed, self.step, self.launch.rank)
        torch.manual_seed(generator.initial_seed())  # dropout draws from the global generator
        result = self._loss(batch, generator)
        loss = result.loss.item()
        if self._any_rank(not math.isfinite(loss)):
            value = loss if not math.isfinite(loss) else "non-finite in another process"
            raise TrainingStopped(
                f"loss became {value} at step {self.step}; stopped, and the last good "
                f"checkpoint in {self.out / 'last'} is kept"
            )
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        self.optimizer.step()
        tokens = int(batch["audio_keep"].sum()) * self.cfg.n_codebooks
        seconds = time.perf_counter() - started
        values = {"loss": loss, "accuracy": result.accuracy.item()}
        summed = sum_across_ranks(values, self.launch, self.device)
        values = {k: v / self.launch.world_size for k, v in summed.items()}
        return {"step": self.step + 1, **values, "lr": lr, "tokens_per_s": tokens / seconds}

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank if it is true on one (a lone rank leaving would hang the rest)."""
        if not self.launch.spread:
            return flag
        return sum_across_ranks({"flag": float(flag)}, self.launch, self.device)["flag"] > 0

    def _loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator):
        batch = self.on_device(batch)
        with self.autocast():
            return masked_token_loss(
                self.net,
                batch["visual"],
                batch["codes"],
                self.opts.masking,
                batch["visual_keep"],
                batch["audio_keep"],
                generator,
            )

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Masked-token loss and accuracy over every val clip (each rank scores its share)."""
        if not self.val_clips:
            return {}
        sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
        for first, batch in self.val_batches(shard=True):
            result = self._loss(batch, _generator(self.opts.seed, -1 - first, 0))
            sums["loss"] += result.loss.item() * result.n_masked
            sums["correct"] += result.accuracy.item() * result.n_masked
            sums["count"] += result.n_masked
        sums = sum_across_ranks(sums, self.launch, self.device)
        count = max(sums["count"], 1.0)
        return {"val_loss": sums["loss"] / count, "val_accuracy": sums["correct"] / count}

    def val_batches(self, shard: bool) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """(first clip index, batch) over one window (epoch 0) of every val clip, the model in
        eval mode; with `shard`, each rank takes its share of the batches."""
        data = self.dataset(self.val_clips)
        self.net.eval()
        starts = range(0, len(data), self.opts.batch_size)
        for first in starts[self.launch.rank :: self.launch.world_size] if shard else starts:
            last = min(len(data), first + self.opts.batch_size)
            yield first, collate([data[(i, 0)] for i in range(first, last)])

    def _save_checkpoints(self, metrics: dict[str, float]) -> None:
        values = {k: v for k, v in metrics.items() if k.startswith("val_")}
        if values and values["val_loss"] < self.best:
            self.best = values["val_loss"]
            self._save("best", values)
        self._save("last", values)

    def _save(self, name: str, values: dict[str, float] | None = None) -> None:
        if not self.launch.leader:
            return
        meta = {
            "step": self.step,
            "seed": self.opts.seed,
            "codec_id": self.info.codec_id,
            "visual_id": self.info.visual_id,
            "best_val_loss": _finite_or_none(self.best),
            "options": asdict(self.opts),
            **self.info.meta,
            **(values or {}),
        }
        state = optimizer_tensors(self.optimizer) if name == "last" else None
        save_checkpoint(self.out / name, self.model, self.cfg, meta, state)

    def _resume(self) -> None:
        """Continue from `last`; a run killed before its first checkpoint starts over (its log
        is cleared), so the same command line with --resume serves every re-run."""
        last = self.out / "last"
        tidy_checkpoint(last)  # a save killed between its renames left the previous one aside
        if not last.exists():
            if self.launch.leader:
                _truncate_metrics(self.out / "metrics.jsonl", 0)
            return
        cfg, weights, meta = load_checkpoint(last)
        if cfg != self.cfg:
            raise VabError(f"{last} was trained with other model dimensions; start a new --out")
        check_encoders(meta, self.info.codec_id, self.info.visual_id, last)
        self.model.load_state_dict(weights)
        load_optimizer_tensors(self.optimizer, load_training_state(last))
        self.step = meta.step or 0
        self.best = math.inf if meta.best_val_loss is None else meta.best_val_loss
        if self.launch.leader:
            _truncate_metrics(self.out / "metrics.jsonl", self.step)

    def _log(self, metrics: dict[str, float]) -> None:
        if self.launch.leader:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")


def _generator(seed: int, step: int, rank: int) -> torch.Generator:
    """Masking randomness of one step on one rank: a function of (seed, step, rank) only."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_009 + rank) % 2**62)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the resumed checkpoint, so the log reads as one continuous run."""
    if not path.exists():
        return
    kept = [ln for ln in path.read_text().splitlines() if _logged_step(ln) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _logged_step(line: str) -> float:
    """The step of a metrics line; a line cut short by a killed run counts as after any step."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


class _stop_between_steps:
    """While training, SIGINT/SIGTERM set a flag the loop checks after each step, so a step is
    never cut between the optimizer update and its bookkeeping (which would break --resume)."""

    def __enter__(self) -> threading.Event:
        self.flag = threading.Event()
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, lambda *_: self.flag.set())
        return self.flag

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
