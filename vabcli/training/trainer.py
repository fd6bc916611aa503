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
from contextlib import nullcontext
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
from vabcli.model.losses import LossResult, MaskedCodes, mask_tokens, scored_token_loss
from vabcli.model.transformer import VabModel
from vabcli.training.dataset import CropDataset, EpochBatches, LatentClip, WindowLength, collate
from vabcli.training.distributed import Launch, all_ranks_sum, join_process_group


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


def make_optimizer(
    model: torch.nn.Module, opts: TrainOptions, device: str = "cpu"
) -> torch.optim.AdamW:
    """AdamW; matrices decay, biases, norms and single vectors do not. On CUDA the fused
    kernel: one launch for every parameter instead of several per tensor."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": opts.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = device.startswith("cuda")
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.95), fused=fused)


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
        self.optimizer = make_optimizer(self.model, opts, device)
        self.step, self.best = 0, math.inf
        if resume:
            self._resume()
        # self.model keeps the bare weights (saved, resumed); self.net is what steps run through.
        self.net: torch.nn.Module = torch.compile(self.model) if opts.compile else self.model
        if self.launch.spread:
            ids = [torch.device(device).index] if device.startswith("cuda") else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)

    def build_model(self) -> torch.nn.Module:
        """The model this run trains (subclasses train others on the same loop)."""
        return VabModel(self.cfg)

    def dataset(self, clips: list[LatentClip]) -> CropDataset:
        """Training or validation windows of `clips` (subclasses add what their loss needs)."""
        return CropDataset(clips, self.window, self.opts.seed)

    def on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`batch` on the run's device; on CUDA copied from pinned memory, so the copy does not
        make the host wait for the steps queued before it."""
        if not self.device.startswith("cuda"):
            return batch
        return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}

    def autocast(self) -> torch.autocast:
        """bf16 on CUDA (the model trains in it), full precision on CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda"))

    def run(self, on_step: StepFn | None = None) -> dict[str, float]:
        """Train until `opts.steps`; returns the last metrics. Ctrl-C or SIGTERM saves `last`
        after the step in progress (with several processes: at the next log step), then raises
        KeyboardInterrupt. `on_step` hears every step's number and learning rate, and on log
        steps the metrics of the steps since the last one."""
        accum = self.opts.grad_accum
        sampler = EpochBatches(
            len(self.train_clips),
            self.opts.batch_size,
            self.opts.seed,
            self.step * accum,  # the sampler counts micro-batches
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
        tally = _Tally(self.device)
        with _stop_between_steps() as stop:
            while self.step < self.opts.steps:
                lr = self._train_step([next(batches) for _ in range(accum)], tally)
                self.step += 1
                metrics, stopped = self._after_step(tally, lr, stop.is_set())
                if on_step:
                    on_step(metrics)
                # One process alone stops right after the step it was asked at (several agree
                # at a log step): the steps since the last line get theirs first.
                if stop.is_set() and not self.launch.spread and not stopped:
                    if tally.steps:
                        self._log(self._settle(tally, True, lr)[0])
                    stopped = True
                if stopped:
                    self._save("last")
                    raise KeyboardInterrupt
        return metrics

    def _after_step(self, tally: _Tally, lr: float, stop: bool) -> tuple[dict[str, float], bool]:
        """On log steps, validation steps and save steps: gather the metrics (and whether any
        rank asked to stop), validate, log, save. Otherwise only the step and its rate."""
        validate = self.step % self.opts.val_every == 0 or self.step == self.opts.steps
        save = self.opts.save_every > 0 and self.step % self.opts.save_every == 0
        if not (validate or save or self.step % self.opts.log_every == 0):
            return {"step": self.step, "lr": lr}, False
        metrics, stopped = self._settle(tally, stop, lr)
        if validate:
            metrics.update(self._validate())
        # Logged before the checkpoint is saved: a run killed in between resumes from the
        # previous checkpoint and drops this line, rather than miss it for good.
        self._log(metrics)
        if validate:
            self._save_checkpoints(metrics)
        elif save:
            self._save("last")
        return metrics, stopped

    def _train_step(self, micro_batches: list[dict[str, torch.Tensor]], tally: _Tally) -> float:
        """One optimizer step over `micro_batches` (their gradients averaged), queued on the
        device without waiting for it; the loss goes into `tally`. Returns the learning rate."""
        lr = lr_at(self.step, self.opts)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        generator = _generator(self.opts.seed, self.step, self.launch.rank)
        torch.manual_seed(generator.initial_seed())  # dropout draws from the global generator
        self.optimizer.zero_grad(set_to_none=True)
        losses, hits = [], []
        for index, batch in enumerate(micro_batches):
            last = index == len(micro_batches) - 1
            # Gradients are summed across ranks once, after the last micro-batch.
            with nullcontext() if last or not self.launch.spread else self.net.no_sync():
                result = self._loss(batch, generator)
                (result.loss / len(micro_batches)).backward()
            losses.append(result.loss.detach())
            hits.append(result.accuracy.detach())
        # A non-finite loss poisons the weights from here on, but is caught at the next log
        # step, before anything is validated or saved: the checkpoints on disk stay good.
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        self.optimizer.step()
        tokens = sum(int(b["audio_keep"].sum()) for b in micro_batches) * self.cfg.n_codebooks
        tally.add(torch.stack(losses).mean(), torch.stack(hits).mean(), tokens)
        return lr

    def _settle(self, tally: _Tally, stop: bool, lr: float) -> tuple[dict[str, float], bool]:
        """The steps since the last log step, agreed by every rank in one collective: their
        mean metrics, and whether to stop. A non-finite loss on any rank stops the run."""
        first = self.step - tally.steps + 1
        summary = tally.gather(stop, self.launch)
        if summary["non_finite"]:
            when = f"at step {self.step}" if first == self.step else f"at steps {first}-{self.step}"
            raise TrainingStopped(
                f"loss became non-finite {when}; stopped, and the last good checkpoint in "
                f"{self.out / 'last'} is kept"
            )
        metrics = {
            "step": self.step,
            "loss": summary["loss"],
            "accuracy": summary["accuracy"],
            "lr": lr,
            "tokens_per_s": summary["tokens_per_s"],
        }
        return metrics, summary["stop"] > 0

    def _loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> LossResult:
        # The masks are drawn on the host, where the loader left the batch, and travel with it.
        masking = self.opts.masking
        masked = mask_tokens(
            batch["codes"], self.cfg.mask_id, masking, batch["audio_keep"], generator
        )
        corrupted = {"inputs": masked.inputs, "targets": masked.targets, "null": masked.null}
        batch = self.on_device({**batch, **corrupted})
        with self.autocast():
            return scored_token_loss(
                self.net,
                batch["visual"],
                batch["codes"],
                MaskedCodes(batch["inputs"], batch["targets"], batch["null"]),
                batch["visual_keep"],
                batch["audio_keep"],
                masking.label_smoothing,
            )

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Masked-token loss and accuracy over every val clip (each rank scores its share)."""
        if not self.val_clips:
            return {}
        wide = _sum_dtype(self.device)
        sums = torch.zeros(3, dtype=wide, device=self.device)  # loss, correct, count
        for first, batch in self.val_batches(shard=True):
            result = self._loss(batch, _generator(self.opts.seed, -1 - first, 0))
            count = torch.as_tensor(result.n_masked, dtype=wide, device=self.device)
            sums += torch.stack([result.loss.detach() * count, result.accuracy * count, count])
        loss, correct, count = all_ranks_sum(sums, self.launch).tolist()
        count = max(count, 1.0)
        return {"val_loss": loss / count, "val_accuracy": correct / count}

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


class _Tally:
    """Loss and accuracy of the steps since the last log step, summed on the device, so that
    no step waits for the host to read them."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._reset()

    def _reset(self) -> None:
        # loss, accuracy, non-finite losses
        self.sums = torch.zeros(3, dtype=_sum_dtype(self.device), device=self.device)
        self.steps, self.tokens, self.started = 0, 0, time.perf_counter()

    def add(self, loss: torch.Tensor, accuracy: torch.Tensor, tokens: int) -> None:
        bad = ~torch.isfinite(loss)
        self.sums += torch.stack([loss, accuracy, bad]).to(self.sums.dtype)
        self.steps, self.tokens = self.steps + 1, self.tokens + tokens

    def gather(self, stop: bool, launch: Launch) -> dict[str, float]:
        """Mean loss and accuracy over the steps and ranks, non-finite losses, stop votes and
        tokens per second (this rank's tokens x ranks); then start counting again."""
        flags = torch.tensor([float(stop)], dtype=self.sums.dtype, device=self.device)
        loss, accuracy, bad, votes = all_ranks_sum(torch.cat([self.sums, flags]), launch).tolist()
        seconds = max(time.perf_counter() - self.started, 1e-9)
        share = max(self.steps, 1) * launch.world_size
        summary = {
            "loss": loss / share,
            "accuracy": accuracy / share,
            "non_finite": bad,
            "stop": votes,
            "tokens_per_s": self.tokens * launch.world_size / seconds,
        }
        self._reset()
        return summary


def _sum_dtype(device: str) -> torch.dtype:
    """Sums of many losses in float64, but where the device has none (Apple's MPS)."""
    return torch.float32 if device.startswith("mps") else torch.float64


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
