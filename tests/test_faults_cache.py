"""The cache on bad days: read-only, full, unreachable, damaged in every file, killed mid-write.

Each case must end in one of two ways: correct output (a read-only cache that holds what is
needed, a damaged file that is recomputed), or one `error:` line that names the cache folder and
says what to do, exit 1, and nothing left behind. The faults are real (a read-only bind mount, a
small tmpfs filled up, SIGKILL); see tests/faults.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import VAB, run_vab, start_vab, tmp_entries
from tests.faults import fill_up, name_of_a_dead_writer, read_only, small_disk
from vabcli.config import ExtractOptions
from vabcli.core.cache import Cache
from vabcli.encoders.tokenize import ClipTokenizer, TokenizeOptions
from vabcli.media.extract import extract_clip

DEBUG = ["--codec", "debug", "--image-encoder", "debug"]
FPS = "4"


@pytest.fixture
def video(clip) -> Path:
    return clip("a.mp4", duration=2.0, fps="25")


@pytest.fixture
def other_video(clip) -> Path:
    return clip("b.mkv", duration=1.3, fps="30000/1001")


def tree(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of its bytes ("dir" for folders): a cache's whole content."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def tokenize(cache: Path, *inputs: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    args = ["tokenize", *map(str, inputs), "--cache", str(cache), "--fps", FPS, *DEBUG, "--json"]
    return run_vab(*args, env=env)


def extract(cache: Path, *inputs: Path) -> subprocess.CompletedProcess:
    return run_vab("extract", *map(str, inputs), "--cache", str(cache), "--json")


def records(done: subprocess.CompletedProcess) -> list[dict]:
    """The JSON lines, without what differs between a hit and a miss."""
    drop = {"cache_hit", "timings"}
    return [
        {k: v for k, v in json.loads(line).items() if k not in drop}
        for line in done.stdout.splitlines()
    ]


def assert_one_cache_line(done: subprocess.CompletedProcess, folder: Path, why: str) -> None:
    """Exit 1 with exactly one `error:` line naming `folder`, the reason and the way out."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1, done.stderr
    assert f"cache {folder} " in errors[0] and why in errors[0], errors[0]
    assert "--cache DIR" in errors[0] and "VAB_CACHE" in errors[0]
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


# Read-only ------------------------------------------------------------------------------------


def test_read_only_cache_holding_every_entry_serves_and_changes_nothing(video, tmp_path):
    cache = tmp_path / "ro-cache"
    first_tok, first_ext = tokenize(cache, video), extract(cache, video)
    assert first_tok.returncode == 0 and first_ext.returncode == 0, first_tok.stderr
    before = tree(cache)
    with read_only(cache):
        again_tok, again_ext = tokenize(cache, video), extract(cache, video)
    assert again_tok.returncode == 0, again_tok.stderr
    assert again_ext.returncode == 0, again_ext.stderr
    assert json.loads(again_tok.stdout)["cache_hit"] and json.loads(again_ext.stdout)["cache_hit"]
    assert records(again_tok) == records(first_tok) and records(again_ext) == records(first_ext)
    assert tree(cache) == before


def test_remembered_facts_that_are_right_are_not_rewritten(video, other_video, tmp_path):
    """Encoder ids and input digests already remembered are read, never written again, even by
    a run that loads the encoders for a new clip: that is what lets a full cache be read-only."""
    cache = tmp_path / "cache"
    _tokenize_in_process(cache, video, [])
    memos = [*cache.glob("encoders/**/*.json"), *cache.glob("digests/**/*.json")]
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in memos}
    assert len(stamps) == 3
    _tokenize_in_process(cache, video, [])
    _tokenize_in_process(cache, other_video, [])  # loads the encoders: ids are known again
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in memos} == stamps


@pytest.mark.parametrize("command", ["tokenize", "extract"])
def test_read_only_cache_missing_entries_is_one_line(command, video, tmp_path):
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    with read_only(cache):
        done = (tokenize if command == "tokenize" else extract)(cache, video)
    assert_one_cache_line(done, cache, "not writable (Read-only file system)")
    assert list(cache.iterdir()) == []


def test_home_that_cannot_be_created_is_one_line(video, tmp_path):
    """cron as a user whose HOME does not exist (and cannot be made): the default cache fails."""
    locked = tmp_path / "locked"
    locked.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VAB_CACHE", "XDG_CACHE_HOME")}
    env["HOME"] = str(locked / "home")
    with read_only(locked):
        for command in ("tokenize", "extract"):
            args = [command, str(video), *(DEBUG if command == "tokenize" else [])]
            done = subprocess.run([*VAB, *args], capture_output=True, text=True, env=env)
            assert_one_cache_line(done, locked / "home" / ".cache" / "vab", "cannot be created")


# Full disk ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["tokenize", "extract"])
def test_full_disk_is_one_line_leaves_nothing_and_recovers(command, video, tmp_path):
    run = tokenize if command == "tokenize" else extract
    clean = tmp_path / "clean"
    assert run(clean, video).returncode == 0
    with small_disk(tmp_path / "disk", "3m") as disk:
        cache = disk / "cache"
        cache.mkdir()
        fill_up(disk)
        done = run(cache, video)
        assert_one_cache_line(done, cache, "no space left")
        assert tmp_entries(disk) == []
        (disk / "filler.bin").unlink()
        again = run(cache, video)
        assert again.returncode == 0, again.stderr
        assert tree(cache) == tree(clean)


# Damage of every kind -------------------------------------------------------------------------


def _edit_json(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, indent=1, sort_keys=True))


def _set_duration(meta: dict) -> None:
    meta["duration"] = 3.0


def _set_digest(memo: dict) -> None:
    memo["digest"] = hashlib.sha256(b"another file").hexdigest()


def _set_id(memo: dict) -> None:
    memo["id"] = "debug-0000000000000000"


def _to_folder(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


DAMAGES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "emptied": lambda p: p.write_bytes(b""),
    "folder": _to_folder,
    "garbage": lambda p: p.write_text('{"files": {"x": '),
}
EDIT_DURATION = {"duration": lambda p: _edit_json(p, _set_duration)}
# (file kind, where it lies under the cache, damages beyond DAMAGES)
FILES = {
    "extract data": ("extract/v*/*/*/frames.npy", {}),
    "visual data": ("visual/v*/*/*/features.npy", {}),
    "token data": ("audio_tokens/v*/*/*/codes.npy", {}),
    "extract meta": ("extract/v*/*/*/meta.json", EDIT_DURATION),
    "visual meta": ("visual/v*/*/*/meta.json", EDIT_DURATION),
    "token meta": ("audio_tokens/v*/*/*/meta.json", EDIT_DURATION),
    "digest memo": ("digests/**/*.json", {"value": lambda p: _edit_json(p, _set_digest)}),
    "encoder memo": ("encoders/**/*.json", {"value": lambda p: _edit_json(p, _set_id)}),
}
CASES = [
    (kind, damage)
    for kind, (_, extra) in FILES.items()
    for damage in [*DAMAGES, *extra]
    if not (kind.endswith("data") and damage == "garbage")  # a garbage .npy is a truncated one
]


@pytest.fixture(scope="module")
def clean_cache(tmp_path_factory, clip) -> tuple[Path, list[dict]]:
    """A cache holding every kind of file (frames kept), and the figures a clean run gives."""
    root = tmp_path_factory.mktemp("clean") / "cache"
    video = clip("a.mp4", duration=2.0, fps="25")
    return root, _tokenize_in_process(root, video, [])


def _tokenize_in_process(root: Path, video: Path, reports: list[str]) -> list[dict]:
    opts = TokenizeOptions(
        extract=ExtractOptions(fps=float(FPS)),
        codec="debug",
        image_encoder="debug",
        keep_frames=True,
    )
    cache = Cache(root, on_damage=reports.append)
    with ClipTokenizer(opts, cache) as tokenizer:
        tokens = tokenizer.tokenize(video)
        tokenizer.load()
        frames = extract_clip(video, tokenizer.extract_opts, cache).figures()
    drop = ("cache_hit", "timings")
    return [{k: v for k, v in figures.items() if k not in drop} for figures in (tokens, frames)]


@pytest.mark.parametrize(("kind", "damage"), CASES, ids=[f"{k}-{d}" for k, d in CASES])
def test_every_damaged_cache_file_is_warned_and_recomputed(
    kind, damage, clean_cache, video, tmp_path
):
    clean, figures = clean_cache
    cache = tmp_path / "cache"
    shutil.copytree(clean, cache)
    pattern, extra = FILES[kind]
    (target,) = cache.glob(pattern) if kind != "encoder memo" else sorted(cache.glob(pattern))[:1]
    {**DAMAGES, **extra}[damage](target)
    reports: list[str] = []
    assert _tokenize_in_process(cache, video, reports) == figures
    assert len(reports) == 1 and "damaged" in reports[0] and str(cache) in reports[0], reports
    assert tree(cache) == tree(clean)
    reports.clear()
    assert _tokenize_in_process(cache, video, reports) == figures and reports == []


def test_edited_duration_in_meta_is_not_believed(video, tmp_path):
    """The reported case: a clip's duration edited in its meta.json changed what vab believed."""
    cache = tmp_path / "cache"
    first = extract(cache, video)
    (meta,) = cache.glob("extract/v*/*/*/meta.json")
    _edit_json(meta, _set_duration)
    again = extract(cache, video)
    assert again.returncode == 0, again.stderr
    assert records(again) == records(first) and json.loads(again.stdout)["duration"] == 2.0
    assert "warning:" in again.stderr and "damaged" in again.stderr


# SIGKILL leftovers ----------------------------------------------------------------------------


def cache_info(cache: Path) -> str:
    done = run_vab("cache", "info", "--cache", str(cache))
    assert done.returncode == 0, done.stderr
    return done.stdout


def kill_once_written(args: list[str], cache: Path, scratch: bool) -> None:
    """Start `vab ARGS` and SIGKILL it once its temporary (scratch folder or entry) holds bytes."""
    proc = start_vab(*args)
    deadline = time.monotonic() + 120
    while not written(cache, scratch):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "nothing written in time"
        time.sleep(0.02)
    proc.kill()
    proc.wait()  # reaped: a zombie would still count as a live process


def written(cache: Path, scratch: bool) -> int:
    temps = [p for p in tmp_entries(cache) if p.name.startswith(".frames.tmp-") == scratch]
    return sum(f.stat().st_size for p in temps for f in p.rglob("*") if f.is_file())


def test_sigkilled_runs_leave_temporaries_that_info_shows_and_runs_sweep(
    long_clip, video, tmp_path
):
    cache = tmp_path / "cache"
    # extract decodes into a temporary entry; tokenize into a scratch folder at the cache root.
    extract_args = ["extract", str(long_clip), "--size", "32", "--fps", "2", "--cache", str(cache)]
    kill_once_written(extract_args, cache, scratch=False)
    kill_once_written(["tokenize", str(long_clip), *DEBUG, "--cache", str(cache)], cache, True)
    left = sorted(tmp_entries(cache))
    scratch = [p for p in left if p.parent == cache]
    entry = [p for p in left if p.parent.parent.parent == cache / "extract"]
    assert len(scratch) == 1 and len(entry) == 1 and scratch[0].name.startswith(".frames"), left
    info = cache_info(cache)
    assert "leftover temporaries of killed runs: 2 " in info, info
    dry = run_vab("cache", "prune", "--cache", str(cache), "--dry-run")
    assert "would remove 0 entries (0 B) and 2 leftover temporaries" in dry.stdout, dry.stdout
    assert sorted(tmp_entries(cache)) == left
    # A later run sweeps what dead runs left in the folders it writes to (the root here).
    assert tokenize(cache, video).returncode == 0
    assert tmp_entries(cache) == entry
    done = run_vab("cache", "prune", "--cache", str(cache))
    assert "removed 0 entries (0 B) and 1 leftover temporaries" in done.stdout, done.stdout
    assert tmp_entries(cache) == [] and "leftover temporaries" not in cache_info(cache)


def test_a_run_that_writes_nothing_still_sweeps_the_root(video, tmp_path):
    """A killed tokenize's scratch frames at the cache root, and a re-run that finds every entry
    cached (so writes nothing): the root is swept when the cache is opened, not only on writes."""
    cache = tmp_path / "cache"
    assert extract(cache, video).returncode == 0
    dead = cache / name_of_a_dead_writer(".frames")
    dead.mkdir()
    (dead / "frames.npy").write_bytes(b"\0" * 1000)
    again = extract(cache, video)
    assert again.returncode == 0 and json.loads(again.stdout)["cache_hit"], again.stderr
    assert tmp_entries(cache) == []


def test_temporaries_of_live_runs_are_left_alone(tmp_path):
    """A temporary whose process still runs on this host is work in progress, not a leftover."""
    from vabcli.core.temps import temp_name

    cache = tmp_path / "cache"
    live = cache / temp_name(".frames")  # named as this very process (alive) names one
    live.mkdir(parents=True)
    assert "leftover temporaries" not in cache_info(cache)
    run_vab("cache", "prune", "--cache", str(cache))
    assert live.exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
