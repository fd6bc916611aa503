"""Fault injection for tests: a small full disk and read-only folders, real where the machine lets
us (a tmpfs mount, a read-only bind mount; both need root, which CI and the dev VM have), and a
faithful fallback elsewhere (chmod for read-only; a full disk is then skipped with the reason).

Use the context managers: they always undo their mounts, even when the test fails.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """`folder` becomes a tmpfs of `size` bytes: writes past it fail with ENOSPC, as a full disk.

    Skips the test when the machine cannot mount (not root, no mount namespace rights).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if not _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        pytest.skip("cannot mount a tmpfs here (needs root) to make a full disk")
    try:
        yield folder
    finally:
        _run("umount", "-l", str(folder))


def fill_up(folder: Path, leave: int = 0) -> None:
    """Fill the file system under `folder` until at most `leave` bytes are free."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free - leave
    with open(filler, "wb") as f:
        while free > 0:
            chunk = min(free, 1 << 20)
            try:
                f.write(b"\0" * chunk)
                f.flush()
            except OSError:
                break
            free -= chunk


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` (and everything under it) becomes read-only, even for root.

    As root, permission bits are ignored, so the folder is bind-mounted onto itself read-only;
    as another user, chmod does it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if not _run("mount", "--bind", str(folder), str(folder)):
            pytest.skip("cannot bind-mount here to make a read-only folder")
        try:
            if not _run("mount", "-o", "remount,bind,ro", str(folder)):
                pytest.skip("cannot remount read-only here")
            yield folder
        finally:
            _run("umount", "-l", str(folder))
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    try:
        for p, mode in modes.items():
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        yield folder
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def make_fifo(path: Path) -> Path:
    """A named pipe at `path` that nobody writes to: opening it for reading blocks forever."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def name_of_a_dead_writer(name: str) -> str:
    """`name`'s temporary name (temps.temp_name) as a process of this host that has exited
    would have written it: what SIGKILL leaves behind."""
    from vabcli.core.temps import temp_name

    exited = subprocess.Popen(["true"])
    exited.wait()
    head, _, tail = temp_name(name).rpartition(".tmp-")
    host, _, random_part = tail.split("-")
    return f"{head}.tmp-{host}-{exited.pid}-{random_part}"
