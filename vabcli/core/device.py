"""Where a process runs: how it was launched (torchrun's RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE) and the
device it computes on.

The one module that reads torchrun's environment. torch is imported only inside the functions
that need it, so importing this module costs nothing (`vab --help` loads no torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    """This process's place in a run: one process alone, or one of torchrun's."""

    rank: int = 0  # among all processes of the run
    world_size: int = 1  # processes in the run
    local_rank: int = 0  # among the processes on this machine
    local_world_size: int = 1  # processes on this machine

    @property
    def leader(self) -> bool:
        """The process that speaks and writes for the whole run."""
        return self.rank == 0

    @property
    def spread(self) -> bool:
        """The run is shared among several processes."""
        return self.world_size > 1


def launch() -> Launch:
    """This process's launch as torchrun's environment describes it, read now (each variable
    defaults to a process alone: torchrun sets all of them, a plain run none)."""
    return Launch(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def resolve_device(device: str) -> str:
    """`auto` picks cuda, then mps, then cpu; any other name is kept."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def rank_device(device: str, run: Launch | None = None) -> str:
    """The device of this process: under torchrun with GPUs, `cuda` or `auto` means the GPU of
    its local rank (processes on one machine share its GPUs in turn); any other device, and
    every device of a process alone or without GPUs, is kept as given."""
    run = launch() if run is None else run
    if device in ("auto", "cuda") and run.spread:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{run.local_rank % torch.cuda.device_count()}"
    return device
