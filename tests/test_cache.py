"""The cache: where it lives, atomic entries, damage detection, concurrent writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vabcli.core.cache import Cache, default_cache_dir, make_key


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv("VAB_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("VAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "vab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "vab"
    assert Path.cwd() not in default_cache_dir().parents


def test_key_covers_stage_content_and_params():
    base = make_key("extract", "abc", {"fps": 8.0})
    assert base == make_key("extract", "abc", {"fps": 8.0})
    assert (
        len(
            {
                base,
                make_key("extract", "abd", {"fps": 8.0}),
                make_key("extract", "abc", {"fps": 4.0}),
                make_key("tokens", "abc", {"fps": 8.0}),
            }
        )
        == 4
    )


def test_failed_write_leaves_nothing(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError), cache.writing("s", "k" * 32, {}) as tmp:
        (tmp / "data.bin").write_bytes(b"123")
        raise RuntimeError("disk full")
    assert cache.lookup("s", "k" * 32) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_entry_round_trip_and_damage_detection(tmp_path):
    reports = []
    cache = Cache(tmp_path, on_damage=reports.append)
    key = "f" * 32
    for damage in ("truncate", "flip"):
        with cache.writing("s", key, {"answer": 42}) as tmp:
            (tmp / "data.bin").write_bytes(b"x" * 100)
        meta = cache.lookup("s", key)
        assert meta["answer"] == 42 and meta["files"]["data.bin"]["size"] == 100
        data = cache.entry_dir("s", key) / "data.bin"
        data.write_bytes(b"x" * 99 if damage == "truncate" else b"x" * 50 + b"y" + b"x" * 49)
        assert cache.lookup("s", key) is None
        assert not cache.entry_dir("s", key).exists()
        assert "damaged (data.bin)" in reports[-1]
    assert len(reports) == 2


def test_lookup_records_last_use(tmp_path):
    cache = Cache(tmp_path)
    with cache.writing("s", "a" * 32, {}) as tmp:
        (tmp / "x").write_bytes(b"1")
    meta = cache.entry_dir("s", "a" * 32) / "meta.json"
    os.utime(meta, (1_000_000, 1_000_000))
    cache.lookup("s", "a" * 32)
    assert meta.stat().st_mtime > 1_000_000


WRITER = """
import sys, time
from pathlib import Path
from vabcli.core.cache import Cache
cache = Cache(Path(sys.argv[1]))
for i in range(40):
    with cache.writing("s", f"{i:032d}", {"writer": sys.argv[2]}) as tmp:
        (tmp / "data.bin").write_bytes(sys.argv[2].encode() * 1000)
        time.sleep(0.002)
"""


def test_concurrent_writers_leave_a_consistent_cache(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name])
        for name in ("A", "B", "C")
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    cache = Cache(tmp_path)
    for i in range(40):
        meta = cache.lookup("s", f"{i:032d}")
        assert meta is not None
        data = (cache.entry_dir("s", f"{i:032d}") / "data.bin").read_bytes()
        assert data == meta["writer"].encode() * 1000  # one writer's whole entry, never a mix
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert all(json.loads(p.read_text())["files"] for p in tmp_path.rglob("meta.json"))


def test_content_digest_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    import vabcli.core.cache as cache_module

    cache = Cache(tmp_path / "cache")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"first version")
    first = cache.content_digest(video)
    assert first == cache_module.file_digest(video)

    def must_not_read(path):
        raise AssertionError("an unchanged file was hashed again")

    monkeypatch.setattr(cache_module, "file_digest", must_not_read)
    assert cache.content_digest(video) == first
    monkeypatch.undo()
    video.write_bytes(b"second version, longer")
    assert cache.content_digest(video) not in (first, None)
    assert cache.content_digest(video) == cache_module.file_digest(video)


def test_hashing_refuses_what_is_not_a_regular_file_at_once(tmp_path):
    """/dev/zero was read forever at 100% CPU; a FIFO blocked in open() forever."""
    import threading

    from tests.faults import make_fifo
    from vabcli.core import cancel
    from vabcli.core.errors import InputError

    fifo = make_fifo(tmp_path / "pipe.mp4")
    for path in (Path("/dev/zero"), fifo, tmp_path):
        outcome: list = []
        worker = threading.Thread(
            target=lambda p=path, out=outcome: out.append(_digest_or_error(p)), daemon=True
        )
        worker.start()
        worker.join(timeout=5)
        if worker.is_alive():  # unblock a reader stuck on the FIFO (or stop the endless read)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            cancel.request()
            worker.join(timeout=30)
            pytest.fail(f"hashing {path} did not return at once")
        assert isinstance(outcome[0], InputError) and "not a regular file" in str(outcome[0])
    with pytest.raises(InputError):
        Cache(tmp_path / "cache").content_digest(fifo)


def _digest_or_error(path: Path):
    from vabcli.core.cache import file_digest

    try:
        return file_digest(path)
    except Exception as exc:
        return exc


def test_hashing_stops_between_chunks_when_the_run_is_interrupted(tmp_path, monkeypatch):
    from vabcli.core import cancel
    from vabcli.core.cache import file_digest
    from vabcli.core.errors import CancelledError

    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 4096)
    checks = []
    check = cancel.check

    def interrupted_after_one_chunk() -> None:
        checks.append(1)
        if len(checks) == 2:
            cancel.request()  # as SIGTERM does, from the main thread
        check()

    monkeypatch.setattr(cancel, "check", interrupted_after_one_chunk)
    with pytest.raises(CancelledError):
        file_digest(big, chunk_size=1024)
    assert len(checks) == 2  # stopped after one chunk of four


def test_edited_meta_is_damage(tmp_path):
    """meta.json is sealed by a checksum over the rest of it: an edited value is not believed."""
    reports = []
    cache = Cache(tmp_path, on_damage=reports.append)
    with cache.writing("s", "e" * 32, {"duration": 2.0}) as tmp:
        (tmp / "data.bin").write_bytes(b"x")
    meta_path = cache.entry_dir("s", "e" * 32) / "meta.json"
    meta_path.write_text(meta_path.read_text().replace("2.0", "3.0"))
    assert cache.lookup("s", "e" * 32) is None
    assert "damaged (meta.json)" in reports[-1] and not meta_path.exists()


def test_an_entry_path_taken_by_a_file_is_replaced(tmp_path):
    reports = []
    cache = Cache(tmp_path, on_damage=reports.append)
    final = cache.entry_dir("s", "d" * 32)
    final.parent.mkdir(parents=True)
    final.write_text("not an entry")
    with cache.writing("s", "d" * 32, {"n": 1}) as tmp:
        (tmp / "data.bin").write_bytes(b"x")
    assert cache.lookup("s", "d" * 32)["n"] == 1 and len(reports) == 1


def test_a_failed_small_write_leaves_no_temporary(tmp_path):
    from tests.faults import fill_up, small_disk
    from vabcli.core.cache import write_text_atomic

    with small_disk(tmp_path / "disk", "1m") as disk:
        fill_up(disk)
        with pytest.raises(OSError):
            write_text_atomic(disk / "memo.json", "x" * 100_000)
        assert [p.name for p in disk.iterdir()] == ["filler.bin"]
