"""`vab cache info` / `vab cache prune`: sizes per stage, LRU pruning, old formats removed."""

from __future__ import annotations

import os

import pytest

from vabcli.cli.main import app
from vabcli.core.cache import Cache
from vabcli.core.cache_admin import parse_byte_count, prune, usage


def fill(cache: Cache, stage: str, key: str, size: int, last_used: float) -> None:
    with cache.writing(stage, key, {}) as tmp:
        (tmp / "data.bin").write_bytes(b"x" * size)
    os.utime(cache.entry_dir(stage, key) / "meta.json", (last_used, last_used))


def test_parse_byte_count():
    assert parse_byte_count("0") == 0 and parse_byte_count("500M") == 500 << 20
    assert parse_byte_count("1.5G") == 3 << 29 and parse_byte_count("2TiB") == 2 << 40
    with pytest.raises(ValueError):
        parse_byte_count("lots")


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
    dry = runner.invoke(
        app, ["cache", "prune", "--cache", str(tmp_path), "--max-size", "0", "--dry-run"]
    )
    assert "would remove 1 entries" in dry.stdout and cache.entry_dir("visual", "1" * 32).exists()
    done = runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path), "--unused-days", "1"])
    assert done.exit_code == 0 and "removed 1 entries" in done.stdout
    assert cache.lookup("visual", "1" * 32) is None
    bad = runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path), "--max-size", "big"])
    assert bad.exit_code == 2


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_leftover_temporaries_at_any_depth_are_seen_and_pruned(tmp_path, runner):
    from vabcli.core.temps import temp_name

    cache = Cache(tmp_path)
    fill(cache, "visual", "1" * 32, 10, last_used=1e9)
    host_mark = temp_name("x").split(".tmp-")[1].split("-")[0]
    dead = f".tmp-{host_mark}-{dead_pid()}-abcd1234"
    frames = tmp_path / f".frames{dead}"  # a killed tokenize's scratch folder
    (frames / "extract").mkdir(parents=True)
    (frames / "extract" / "frames.npy").write_bytes(b"f" * 3000)
    memo = tmp_path / "digests" / "v3" / "ab" / f"ab12.json{dead}"  # a zero-byte memo
    memo.parent.mkdir(parents=True)
    memo.touch()
    old = tmp_path / "visual" / "v3" / "22" / f"{'2' * 32}.tmp-{os.getpid()}-00ff00ff"
    old.mkdir(parents=True)  # an older name, no host: only its age tells
    os.utime(old, (1e9, 1e9))
    live = tmp_path / "visual" / "v3" / "33" / temp_name("3" * 32)
    live.mkdir(parents=True)  # this process, alive: work in progress
    info = runner.invoke(app, ["cache", "info", "--cache", str(tmp_path)])
    assert "leftover temporaries of killed runs: 3 (2.9 KiB)" in info.stdout, info.stdout
    dry = runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path), "--dry-run"])
    assert "would remove 0 entries (0 B) and 3 leftover temporaries" in dry.stdout, dry.stdout
    assert frames.exists() and memo.exists() and old.exists()
    done = runner.invoke(app, ["cache", "prune", "--cache", str(tmp_path)])
    assert "removed 0 entries (0 B) and 3 leftover temporaries" in done.stdout, done.stdout
    assert not frames.exists() and not memo.exists() and not old.exists() and live.exists()
    assert cache.lookup("visual", "1" * 32) is not None
    again = runner.invoke(app, ["cache", "info", "--cache", str(tmp_path)])
    assert "leftover temporaries" not in again.stdout


def test_a_write_sweeps_leftovers_of_dead_runs_beside_it(tmp_path):
    from vabcli.core.temps import temp_name

    cache = Cache(tmp_path)
    host_mark = temp_name("x").split(".tmp-")[1].split("-")[0]
    dead = f".tmp-{host_mark}-{dead_pid()}-abcd1234"
    beside = cache.entry_dir("s", "4" * 32).parent / f"{'5' * 32}{dead}"
    beside.mkdir(parents=True)
    at_root = tmp_path / f".frames{dead}"
    at_root.mkdir()
    fill(cache, "s", "4" * 32, 10, last_used=1e9)
    assert not beside.exists() and not at_root.exists()
