"""Where a process runs: torchrun's environment read in one place, and the device each process
takes (unchanged on CPU, the local rank's GPU under torchrun)."""

import subprocess
import sys

import pytest

from vabcli.core.device import Launch, launch, rank_device, resolve_device

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def test_a_plain_process_is_alone_and_leads(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    run = launch()
    assert run == Launch(rank=0, world_size=1, local_rank=0)
    assert run.leader and not run.spread


def test_torchrun_environment_is_read_when_asked(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    run = launch()
    assert (run.rank, run.world_size, run.local_rank) == (3, 4, 1)
    assert run.spread and not run.leader
    monkeypatch.setenv("RANK", "0")
    assert launch().leader  # read again, not remembered


@pytest.mark.parametrize("device", ["cpu", "cuda:1", "mps", "auto", "cuda"])
def test_a_process_alone_keeps_its_device(device):
    assert rank_device(device, Launch()) == device


def test_ranks_without_gpus_keep_their_device(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spread = Launch(rank=1, world_size=2, local_rank=1)
    assert [rank_device(d, spread) for d in ("cpu", "auto", "cuda")] == ["cpu", "auto", "cuda"]


def test_ranks_with_gpus_take_their_local_rank_in_turn(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    third = Launch(rank=3, world_size=4, local_rank=3)
    assert rank_device("cuda", third) == rank_device("auto", third) == "cuda:1"
    assert rank_device("cpu", third) == "cpu" and rank_device("cuda:0", third) == "cuda:0"


def test_named_devices_are_kept_and_auto_picks_one():
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("auto") in ("cuda", "mps", "cpu")


def test_importing_the_module_loads_no_torch():
    code = "import sys, vabcli.core.device; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
