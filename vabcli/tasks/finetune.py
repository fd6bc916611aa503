"""What every fine-tune trainer shares: `Trainer`'s loop on a task's model, built from the
task's spec and started from pre-trained backbone weights, run on a batch's aligned windows."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import torch

from vabcli.training.trainer import Trainer

Spec = TypeVar("Spec")


class FineTuneTrainer(Trainer, Generic[Spec]):
    """A fine-tune's trainer: `spec` says what the task's model is (and goes into every
    checkpoint's meta), `init` holds the backbone weights it starts from."""

    def __init__(
        self, *args: Any, spec: Spec, init: dict[str, torch.Tensor], **kwargs: Any
    ) -> None:
        self.spec, self.init = spec, init
        super().__init__(*args, **kwargs)

    def run_net(self, batch: dict[str, torch.Tensor]) -> tuple[Any, dict[str, torch.Tensor]]:
        """The task's model on a batch's aligned windows, on the run's device and under its
        autocast; and the batch, moved there."""
        batch = self.on_device(batch)
        with self.autocast():
            out = self.net(batch)
        return out, batch
