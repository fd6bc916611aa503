"""Seeing and bounding the cache: `vab cache info` and `vab cache prune`.

Besides entries, both see the temporaries that killed runs left (at any depth): a temporary is a
leftover once its process is gone from this host, or after six hours (`temps.abandoned`); one
that a live run is still filling is never counted or removed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vabcli.core.cache import FORMAT_VERSION, META_FILE, Cache, remove
from vabcli.core.temps import TMP_MARK, abandoned

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Entry:
    stage: str
    path: Path
    size: int
    last_used: float  # seconds since the epoch
    current: bool  # written in the current format (older formats are never read)


@dataclass(frozen=True)
class StageUsage:
    stage: str
    entries: int
    size: int
    stale_entries: int  # older format versions: dead weight until pruned


@dataclass(frozen=True)
class Leftovers:
    """Temporaries of runs that are gone: how many, and their bytes."""

    paths: list[Path]
    size: int


@dataclass(frozen=True)
class PruneReport:
    removed: int
    freed: int
    remaining: int
    leftovers: int = 0
    leftover_size: int = 0


def parse_byte_count(text: str) -> int:
    """A byte count: `500M`, `10G`, `1.5T`, `0` -> bytes (binary units; a trailing B or iB is
    allowed)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.I)
    if not match:
        raise ValueError(f"size must look like 500M, 10G or 0, got {text!r}")
    return int(float(match[1]) * _SIZE_UNITS[match[2].upper()])


def entries(cache: Cache) -> Iterator[Entry]:
    """Every complete entry of every stage and format version under the cache root."""
    if not cache.root.is_dir():
        return
    stage_dirs = (p for p in cache.root.iterdir() if p.is_dir() and TMP_MARK not in p.name)
    for stage_dir in sorted(p for p in stage_dirs if p.name not in ("digests", "encoders")):
        for version_dir in sorted(stage_dir.glob("v*")):
            current = version_dir.name == f"v{FORMAT_VERSION}"
            for meta in version_dir.glob(f"*/*/{META_FILE}"):
                entry = meta.parent
                if TMP_MARK in entry.name:
                    continue
                size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
                yield Entry(stage_dir.name, entry, size, meta.stat().st_mtime, current)


def leftovers(cache: Cache) -> Leftovers:
    """Temporaries that killed runs left anywhere under the cache root."""
    found: list[Path] = []
    if cache.root.is_dir():
        for folder, dirs, files in os.walk(cache.root):
            found += [p for p in (Path(folder) / n for n in [*dirs, *files]) if abandoned(p)]
            dirs[:] = [d for d in dirs if TMP_MARK not in d]  # a temporary's inside is its own
    return Leftovers(found, sum(_bytes(p) for p in found))


def _bytes(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
        return path.lstat().st_size
    except OSError:
        return 0


def usage(cache: Cache) -> list[StageUsage]:
    totals: dict[str, list[int]] = {}
    for entry in entries(cache):
        counts = totals.setdefault(entry.stage, [0, 0, 0])
        counts[0] += 1
        counts[1] += entry.size
        counts[2] += not entry.current
    return [StageUsage(stage, n, size, stale) for stage, (n, size, stale) in totals.items()]


def prune(
    cache: Cache,
    max_size: int | None = None,
    unused_days: float | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Remove leftover temporaries, old-format entries, entries unused for `unused_days`, then
    least recently used entries until the total is at most `max_size` bytes."""
    left = leftovers(cache)
    if not dry_run:
        for path in left.paths:
            remove(path)
    all_entries = sorted(entries(cache), key=lambda e: e.last_used)
    cutoff = time.time() - unused_days * 86400 if unused_days is not None else None
    total = sum(e.size for e in all_entries)
    removed = freed = 0
    for entry in all_entries:
        too_old = cutoff is not None and entry.last_used < cutoff
        too_big = max_size is not None and total - freed > max_size
        if not entry.current or too_old or too_big:
            if not dry_run:
                shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
            freed += entry.size
    return PruneReport(removed, freed, total - freed, len(left.paths), left.size)


def human_size(n: int) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    size, i = float(n), 0
    while size >= 1024 and i < len(units) - 1:
        size, i = size / 1024, i + 1
    return f"{n} B" if i == 0 else f"{size:.1f} {units[i]}"
