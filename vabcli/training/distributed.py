"""Data-parallel plumbing under torchrun: joining and leaving the process group, sums and
gathers across processes, and the one way out of a process that joined.

Which process is which comes from `vabcli.core.device.launch` (the one reader of torchrun's
environment); this module turns that into a process group. A process that never imports it
never joined one (`vabcli.cli.main` relies on that to choose how to exit).
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist

from vabcli.core.device import Launch, launch, rank_device, resolve_device
from vabcli.core.errors import VabError, one_line
from vabcli.core.process import exit_now
from vabcli.data.clips import ClipItem
from vabcli.data.shards import Shard

# Set once this process joins a torchrun group: it must then leave through `exit_process`.
_joined_group = False


def join_process_group(device: str) -> Launch:
    """This process's place in the run, joining torchrun's process group first when launched
    by torchrun with several processes (gloo on CPU, nccl on CUDA); a process alone is
    `Launch()`.

    On CUDA each process takes the GPU of its local rank (see `rank_device`). A process that
    joins must end with `exit_process`.
    """
    global _joined_group
    run = launch()
    if not run.spread:
        return Launch()
    _joined_group = True
    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(rank_device(device, run)))
        # Long timeout: ranks wait at a barrier until the slowest has tokenized its share.
        backend = "nccl" if device.startswith("cuda") else "gloo"
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(hours=24))
        except ValueError as exc:  # e.g. WORLD_SIZE set by hand, without torchrun's MASTER_ADDR
            raise VabError(f"cannot join the torchrun processes: {one_line(exc)}") from None
    return Launch(dist.get_rank(), dist.get_world_size(), run.local_rank, run.local_world_size)


def end_distributed() -> None:
    """Tear the process group down (once a run is over, finished or not)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int, leave: Callable[[int], NoReturn] = sys.exit) -> NoReturn:
    """End this process with `code`: the one way out for a process that may have joined a
    torchrun group (`vab train`, `vab finetune`, scripts that run a Trainer under torchrun).

    Gloo's worker threads are C++ std::threads; met by interpreter teardown while still
    joinable they call std::terminate, so a rank whose work is done can die with SIGABRT
    ("terminate called without an active exception") and torchrun reports the whole job
    failed. Destroying the group is not enough on every path: a DDP wrapper, pending work or an
    exception's traceback can hold the threads past it, and the order of teardown is not ours.
    So a rank destroys the group and leaves through `exit_now` (flush, then os._exit, which
    runs no destructors): checkpoints and metrics are closed (written in `with` blocks and
    renamed into place) before any caller gets here. Other processes leave by `leave(code)`.
    """
    end_distributed()
    if not _joined_group:
        leave(code)
    exit_now(code)


def all_ranks_sum(t: torch.Tensor, run: Launch) -> torch.Tensor:
    """`t` summed over every process of `run`, in place (a CUDA tensor under nccl); `t` itself
    for one process alone."""
    if run.world_size > 1:
        dist.all_reduce(t)
    return t


def tokenizing_share(
    items: Sequence[ClipItem], shard: Shard, cache_root: Path, device: str
) -> list[ClipItem]:
    """The clips `vab tokenize` tokenizes in this process under torchrun: its share of those of
    `shard` (joining the process group to find out whether all processes share the cache,
    `tokenizing_shard`)."""
    join_process_group(rank_device(resolve_device(device)))
    return shard.within(tokenizing_shard(cache_root)).of(items, ClipItem.share_key)


def wait_for_all_processes() -> None:
    """Under torchrun, return once every process got here: a process that left first with
    status 1 (some clip failed) would have torchrun stop the others mid-work."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def tokenizing_shard(cache_root: Path) -> Shard:
    """This process's share of the clips to tokenize: of all of them among every process of the
    run when they all see one cache (a shared file system), else among the processes of its
    machine (each machine then fills its own cache). A process alone: the whole list."""
    run = launch()
    if not run.spread:
        return Shard()
    if _seen_by_all(cache_root):
        return Shard(run.rank + 1, run.world_size)
    return Shard(run.local_rank + 1, run.local_world_size)


def _seen_by_all(folder: Path, grace: float = 3.0) -> bool:
    """Whether every process sees the same `folder`: the first leaves a probe file in it and
    the others look (for up to `grace` seconds, as a network file system may show it late).
    One machine's processes share their folder; a false "no" only costs repeated work."""
    token = [uuid.uuid4().hex if dist.get_rank() == 0 else ""]
    dist.broadcast_object_list(token, src=0)
    probe = folder / f".vab-probe-{token[0]}"
    if dist.get_rank() == 0:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text(token[0])
    dist.barrier()
    deadline = time.monotonic() + grace
    while not _listed(probe) and time.monotonic() < deadline:
        time.sleep(0.2)
    on = (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    )
    seen = torch.tensor([float(_listed(probe))], device=on)
    dist.all_reduce(seen)
    dist.barrier()  # everyone has looked
    if dist.get_rank() == 0:
        probe.unlink(missing_ok=True)
    return int(seen.item()) == dist.get_world_size()


def _listed(path: Path) -> bool:
    # Listing the folder, rather than asking for the file, reads a network folder afresh.
    try:
        return path.name in os.listdir(path.parent)
    except OSError:
        return False


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """`x` from every rank, concatenated in rank order, gradients flowing back to each rank's
    own rows; `x` itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)
