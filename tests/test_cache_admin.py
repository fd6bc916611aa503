"""`vab cache info` / `vab cache prune`: sizes per stage, LRU pruning, old formats removed."""

from __future__ import annotations

import os

import pytest

from vabcli.cache import Cache
from vabcli.cache_admin import parse_size, prune, usage
from vabcli.cli import app


def fill(cache: Cache, stage: str, key: str, size: int, last_used: float) -> None:
    with cache.writing(stage, key, {}) as tmp:
        (tmp / "data.bin").write_bytes(b"x" * size)
    os.utime(cache.entry_dir(stage, key) / "meta.json", (last_used, last_used))


def test_parse_size():
    assert parse_size("0") == 0 and parse_size("500M") == 500 << 20
    assert parse_size("1.5G") == 3 << 29 and parse_size("2TiB") == 2 << 40
    with pytest.raises(ValueError):
        parse_size("lots")


def test_prune_least_recently_used_first(tmp_path):
    cache = Cache(tmp_path)
    for i, stage in enumerate(["visual", "visual", "audio_tokens", "audio_tokens"]):
        fill(cache, stage, f"{i:032d}", 1000, last_used=1_000_000 + i)
    old_format = tmp_path / "visual" / "v1" / "ab" / ("ab" * 16)
    old_format.mkdir(parents=True)
    (old_format / "meta.json").write_text("{}")
    sizes = {u.stage: (u.entries, u.stale_entries) for u in usage(cache)}
    assert sizes == {"visual": (3, 1), "audio_tokens": (2, 0)}
    report = prune(cache, max_size=2500)
    assert not old_format.exists()
    assert not cache.entry_dir("visual", f"{0:032d}").exists()  # least recently used
    assert not cache.entry_dir("visual", f"{1:032d}").exists()
    assert cache.lookup("audio_tokens", f"{3:032d}") is not None
    assert report.removed == 3 and report.remaining <= 2500


def test_cli_info_and_prune(tmp_path, runner):
    cache = Cache(tmp_path)
    fill(cache, "visual", "1" * 32, 4096, last_used=1_000_000)
    info = runner.invoke(app, ["cache", "info", "--cache", str(tmp_path)])
    assert info.exit_code == 0 and "visual" in info.stdout and "1 entries" in info.stdout
    dry = runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path), "--max-size", "0",
                              "--dry-run"])  # fmt: skip
    assert "would remove 1 entries" in dry.stdout and cache.entry_dir("visual", "1" * 32).exists()
    done = runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path), "--unused-days", "1"])
    assert done.exit_code == 0 and "removed 1 entries" in done.stdout
    assert cache.lookup("visual", "1" * 32) is None
    bad = runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path), "--max-size", "big"])
    assert bad.exit_code == 2
