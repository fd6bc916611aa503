"""vab sets its threading by itself: OpenMP waits passively unless the user chose otherwise, and
torch's thread teams are sized against vab's own threads and the usable cores."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VAB
from vabcli.core import threads
from vabcli.core.threads import MAX_TORCH_THREADS, cgroup_cpu_quota, torch_threads

CONSOLE_SCRIPT = [str(Path(sys.executable).with_name("vab"))]


def openmp_settings(entry: list[str], tmp_path: Path, **env: str) -> dict[str, str]:
    """The settings torch's OpenMP runtime (libgomp) started with in a real `vab` run, as it
    reports them itself (OMP_DISPLAY_ENV). The run imports torch, then fails on a missing
    manifest."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run(
        [
            *entry,
            "train",
            "--data",
            str(tmp_path / "missing.jsonl"),
            "--out",
            str(tmp_path / "r"),
            "--codec",
            "debug",
            "--image-encoder",
            "debug",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "OMP_DISPLAY_ENV": "VERBOSE", **env},
    )
    assert "cannot read manifest" in done.stderr, done.stderr
    return dict(re.findall(r"^\s+(\w+) = '([^']*)'$", done.stderr, re.MULTILINE))


@pytest.mark.parametrize("entry", [VAB, CONSOLE_SCRIPT], ids=["python -m vabcli", "vab"])
def test_openmp_spins_briefly_then_waits_passively_unless_told(entry, tmp_path):
    settings = openmp_settings(entry, tmp_path)
    # GOMP_SPINCOUNT tells a short spin from PASSIVE (0) and from unset (300000).
    expected = ("PASSIVE", str(threads.SPIN_COUNT))
    assert (settings["OMP_WAIT_POLICY"], settings["GOMP_SPINCOUNT"]) == expected


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", "30000000000")),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", "0")),
        ({"GOMP_SPINCOUNT": "42"}, ("PASSIVE", "42")),
    ],
    ids=["ACTIVE", "PASSIVE", "a spin count"],
)
def test_the_users_wait_settings_are_kept(users, expected, tmp_path):
    settings = openmp_settings(VAB, tmp_path, **users)
    assert (settings["OMP_WAIT_POLICY"], settings["GOMP_SPINCOUNT"]) == expected


@pytest.mark.parametrize(
    ("cores", "concurrent", "expected"),
    [
        (2, 1, 2),  # sampling or training alone: both cores
        (2, 2, 1),  # two encoders at once: one each
        (1, 3, 1),  # never below one
        (64, 1, MAX_TORCH_THREADS),  # big machines: teams past the cap only synchronise
        (64, 8, 8),
    ],
)
def test_torch_teams_share_the_cores(cores, concurrent, expected):
    assert torch_threads(cores, concurrent) == expected


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("50000 100000", 1), (None, None), ("", None)],
)
def test_a_cgroup_quota_bounds_the_cores(cpu_max, expected):
    assert cgroup_cpu_quota(cpu_max) == expected


@pytest.fixture
def torch_thread_count():
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_sizing_sets_torch_unless_the_user_chose(torch_thread_count, monkeypatch):
    torch = torch_thread_count
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "torch_default_threads", lambda: 8)
    assert threads.size_torch_threads(concurrent=2) == 2 == torch.get_num_threads()
    # torch's own default (physical cores) bounds the cores counted, e.g. SMT siblings
    monkeypatch.setattr(threads, "torch_default_threads", lambda: 3)
    assert threads.size_torch_threads(concurrent=1) == 3 == torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)
    assert threads.size_torch_threads(concurrent=2) is None
    assert torch.get_num_threads() == 3
