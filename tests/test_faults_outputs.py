"""Faults at the output folder of `vab generate` and `vab mux`: a disk that fills while writing, an
ffmpeg that reports a failed write yet exits 0 (as ffmpeg 5.1 does after "Error writing
trailer"), damaged outputs an earlier run left under final names, and the temporaries of a
SIGKILLed run.

Whatever happens, a final name holds a whole file or nothing, the failure is one `error:` line
and exit 1, and a later run with space does the clip.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import VAB, generate_args, run_vab
from tests.faults import fill_up, small_disk
from tests.tiny_models import informative_codec, make_checkpoint
from vabcli.cli.main import app
from vabcli.core.atomic import atomic_output, output_group
from vabcli.core.errors import VabError
from vabcli.core.temps import temp_name
from vabcli.media import ffmpeg
from vabcli.media.testing import write_tone

FAST = ["--steps", "2", "--workers", "2"]
PAGE = 4096


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    informative_codec(root / "codec")
    return make_checkpoint(root / "ckpt", codec=root / "codec")


@pytest.fixture
def video(clip) -> Path:
    return clip("disk.mp4", duration=2.0)


@pytest.fixture
def real_ffmpeg(monkeypatch):
    """Lets a test point VAB_FFMPEG at a fake for in-process runs; the real one comes back after."""
    monkeypatch.delenv("VAB_FFMPEG", raising=False)
    ffmpeg.ffmpeg_binary.cache_clear()
    real = ffmpeg.ffmpeg_binary()
    yield real
    ffmpeg.ffmpeg_binary.cache_clear()


def generate(video: Path, out: Path, checkpoint: Path, cache: Path) -> tuple[int, list, list]:
    """`vab generate --json` in this process: exit code, JSON records, `error:` lines."""
    result = CliRunner().invoke(
        app, generate_args([video], out, checkpoint, cache, "--json", *FAST)
    )
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    return result.exit_code, records, errors


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or p.suffix == ".lock")


def decodes(path: Path) -> bool:
    done = ffmpeg.run(["-i", str(path), "-f", "null", "-"])
    return done.returncode == 0 and done.stderr.strip() == ""


def fake_ffmpeg(folder: Path, real: str, after_mux: str) -> Path:
    """An ffmpeg that runs the real one, then, when it wrote a (temporary) MP4, runs `after_mux`
    with `$out` set to that file's path."""
    script = folder / "fake-ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        "for out; do :; done\n"  # the last argument: the output file
        f'"{real}" "$@" || exit $?\n'
        'case "$out" in *.tmp-*.mp4) ;; *) exit 0 ;; esac\n'
        f"{after_mux}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


# ffmpeg 5.1 on a disk that fills before the trailer: a cut file, the error, and exit code 0.
FULL_DISK_51 = (
    'truncate -s 24000 "$out"\n'
    'echo "[mp4 @ 0x55d0c8a4e040] Error writing trailer of $out: No space left on device" >&2\n'
    "exit 0"
)


def test_disk_full_while_writing_fails_the_clip_in_one_line_and_a_rerun_does_it(
    video, checkpoint, tmp_path, cache_dir
):
    out = tmp_path / "out"
    with small_disk(out, "1m"):
        # Nothing fits: the WAV fails. Then room for the WAV (24 pages) but not the MP4.
        for leave, name in ((0, "disk.wav"), (26 * PAGE, "disk.mp4")):
            (out / "filler.bin").unlink(missing_ok=True)
            fill_up(out, leave=leave)
            code, records, errors = generate(video, out, checkpoint, cache_dir)
            assert code == 1 and records[0]["status"] == "error", (name, records)
            assert errors == [f"error: {out}: no space left on device writing {name}"]
            assert sorted(p.name for p in out.iterdir()) == ["filler.bin"], name
        (out / "filler.bin").unlink()
        code, records, errors = generate(video, out, checkpoint, cache_dir)
        assert code == 0 and records[0]["status"] == "ok", errors
        assert leftovers(out) == []
        assert decodes(out / "disk.mp4") and decodes(out / "disk.wav")
        sizes = json.loads((out / "disk.json").read_text())["output_bytes"]
        assert sizes == {n: (out / n).stat().st_size for n in ("disk.wav", "disk.mp4")}


def test_ffmpeg_exiting_0_after_a_write_error_is_a_failure(
    video, checkpoint, tmp_path, cache_dir, real_ffmpeg, monkeypatch
):
    fake = fake_ffmpeg(tmp_path, real_ffmpeg, FULL_DISK_51)
    out = tmp_path / "out"
    monkeypatch.setenv("VAB_FFMPEG", str(fake))
    ffmpeg.ffmpeg_binary.cache_clear()
    code, records, errors = generate(video, out, checkpoint, cache_dir)
    assert code == 1 and records[0]["status"] == "error", records
    assert errors == [f"error: {out}: no space left on device writing disk.mp4"]
    assert list(out.iterdir()) == []  # no WAV or sidecar either: the clip is not half done
    # `vab mux` itself, through the real entry point
    audio = write_tone(tmp_path / "a.wav", 2.0)
    done = run_vab(
        "mux", str(video), str(audio), "-o", str(out / "m.mp4"), env={"VAB_FFMPEG": str(fake)}
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"error: {out}: no space left on device writing m.mp4"
    assert list(out.iterdir()) == []
    # with a working ffmpeg the clip is done (not skipped as finished)
    monkeypatch.delenv("VAB_FFMPEG")
    ffmpeg.ffmpeg_binary.cache_clear()
    code, records, errors = generate(video, out, checkpoint, cache_dir)
    assert code == 0 and records[0]["status"] == "ok", errors
    assert decodes(out / "disk.mp4")


@pytest.mark.parametrize("damage", ["empty", "truncated", "old sidecar, truncated"])
def test_a_finished_clip_with_a_damaged_mp4_is_redone(
    damage, video, checkpoint, tmp_path, cache_dir
):
    out = tmp_path / "out"
    assert generate(video, out, checkpoint, cache_dir)[0] == 0
    mp4 = out / "disk.mp4"
    size = 0 if damage == "empty" else 24_000
    with open(mp4, "r+b") as f:
        f.truncate(size)
    if damage.startswith("old sidecar"):  # written before sizes were recorded
        sidecar = json.loads((out / "disk.json").read_text())
        del sidecar["output_bytes"]
        (out / "disk.json").write_text(json.dumps(sidecar))
    code, records, errors = generate(video, out, checkpoint, cache_dir)
    assert code == 0 and records[0]["status"] == "ok", (records, errors)
    assert decodes(mp4)


SLOW_MUX = "sleep 60"  # the kill lands while the MP4 is under its temporary name


def start_killable(*args: str, env: dict) -> subprocess.Popen:
    """`vab ARGS` in its own process group, so one SIGKILL takes it and its ffmpeg (as the OOM
    killer or a scheduler's kill of the job would)."""
    return subprocess.Popen(
        [*VAB, *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_when_muxing(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not [p for p in out.glob(".*.tmp-*.mp4") if p.stat().st_size > 0]:
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before muxing:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("never started muxing")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()


def test_temporaries_of_a_sigkilled_generate_are_swept_by_the_next_run(
    video, checkpoint, tmp_path, cache_dir, real_ffmpeg
):
    out = tmp_path / "out"
    slow = fake_ffmpeg(tmp_path, real_ffmpeg, SLOW_MUX)
    args = generate_args([video], out, checkpoint, cache_dir, *FAST)
    proc = start_killable(*args, env={"VAB_FFMPEG": str(slow)})
    kill_when_muxing(proc, out)
    assert {Path(n).suffix for n in leftovers(out)} >= {".wav", ".mp4"}  # what a kill leaves
    code, records, errors = generate(video, out, checkpoint, cache_dir)
    assert code == 0 and records[0]["status"] == "ok", errors
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["disk.json", "disk.mp4", "disk.wav"]


def test_mux_sweeps_temporaries_of_dead_runs_only(video, tmp_path, real_ffmpeg):
    out = tmp_path / "out"
    audio = write_tone(tmp_path / "a.wav", 2.0)
    slow = fake_ffmpeg(tmp_path, real_ffmpeg, SLOW_MUX)
    target = out / "m.mp4"
    proc = start_killable(
        "mux", str(video), str(audio), "-o", str(target), env={"VAB_FFMPEG": str(slow)}
    )
    kill_when_muxing(proc, out)
    dead = leftovers(out)
    assert len(dead) == 1
    live = out / f".{temp_name('m')}.mp4"  # a run still writing (this process)
    live.write_bytes(b"partial")
    other = out / f".other.tmp-{proc.pid}-0123abcd.mp4"  # another output's: not ours to judge
    other.write_bytes(b"partial")
    done = run_vab("mux", str(video), str(audio), "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert leftovers(out) == sorted([live.name, other.name])
    assert decodes(target)


def test_a_text_output_on_a_full_disk_is_a_one_line_error_naming_folder_and_file(tmp_path):
    """How the sidecar JSON is written: plain text, renamed into place."""
    disk = tmp_path / "disk"
    with small_disk(disk, "64k"):
        fill_up(disk)
        message = f"{disk}: no space left on device writing x.json"
        with pytest.raises(VabError, match=f"^{re.escape(message)}$"):
            with atomic_output(disk / "x.json") as tmp:
                tmp.write_text("{}" * 100_000)
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"]


# --- the writer itself --------------------------------------------------------------------


@pytest.mark.parametrize("written, problem", [(b"", None), (b"half", "cut short")])
def test_an_empty_or_unchecked_output_never_takes_its_name(tmp_path, written, problem):
    final = tmp_path / "x.mp4"
    checked = {} if problem is None else {"check": lambda path: problem}
    with pytest.raises(VabError, match="x.mp4 came out incomplete"):
        with atomic_output(final, **checked) as tmp:
            tmp.write_bytes(written)
    assert list(tmp_path.iterdir()) == []


def test_outputs_written_together_are_all_or_none(tmp_path, monkeypatch):
    names = ["x.wav", "x.mp4", "x.json"]
    real_replace = os.replace

    def replace_failing_on_the_sidecar(src, dst):
        if Path(dst).name == "x.json":  # a full folder cannot take one more name (ext4)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_failing_on_the_sidecar)
    with pytest.raises(VabError, match=f"{tmp_path}: no space left on device writing x.json"):
        with output_group() as group:
            for name in names:
                group.add(tmp_path / name).write_text(name)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "replace", real_replace)
    with output_group() as group:
        for name in names:
            group.add(tmp_path / name).write_text(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_an_output_is_on_disk_before_its_name_and_its_name_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_output(tmp_path / "x.json") as tmp:
        tmp.write_text("{}")
        temporary = tmp.name
    assert events == [("fsync", temporary), ("rename", "x.json"), ("fsync", tmp_path.name)]
