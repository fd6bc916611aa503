"""Odd inputs a production run meets (issue 13): FIFOs and device files, missing manifest videos,
an unwritable output folder, control characters in names, odd but valid videos.

Each case must end in one `error:` line for that input (the rest of the batch runs) or in the
right output, never a hang, a traceback or an "internal error".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faults import make_fifo, read_only

from vabcli.data.clips import clip_items
from vabcli.media import ffmpeg
from vabcli.media.inputs import expand_inputs

VAB = [sys.executable, "-m", "vabcli"]


def run_vab(
    *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, killed (and the test failed) if it hangs."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(
        [*VAB, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- FIFOs and device files ---------------------------------------------------------------


def test_fifo_and_device_arguments_are_error_items(tmp_path):
    fifo = make_fifo(tmp_path / "pipe.mp4")
    link = tmp_path / "zero.mp4"
    link.symlink_to("/dev/zero")
    real = tmp_path / "real.mp4"
    real.write_bytes(b"x")
    good_link = tmp_path / "link.mp4"
    good_link.symlink_to(real)
    items = expand_inputs([str(fifo), "/dev/null", str(link), str(good_link)])
    errors = [i.error for i in items]
    assert "not a regular file (a named pipe)" in errors[0]
    assert "not a regular file (a character device)" in errors[1]
    assert "not a regular file" in errors[2]
    assert errors[3] is None  # a symlink to a regular file is a regular input


def test_fifo_in_a_folder_is_reported_not_opened(tmp_path):
    make_fifo(tmp_path / "in" / "pipe.mp4")
    (tmp_path / "in" / "ok.mp4").write_bytes(b"x")
    items = expand_inputs([str(tmp_path / "in")])
    assert [(i.path.name, i.error is None) for i in items] == [
        ("ok.mp4", True),
        ("pipe.mp4", False),
    ]
    assert "not a regular file" in items[1].error


def test_manifest_lines_naming_fifos_devices_or_nothing_are_error_items(tmp_path):
    make_fifo(tmp_path / "pipe.mp4")
    (tmp_path / "ok.mp4").write_bytes(b"x")
    lines = ["pipe.mp4", "/dev/zero", "missing.mp4", "sub/missing.mp4", "ok.mp4"]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"video": v}) + "\n" for v in lines))
    items = clip_items(None, manifest)
    assert f"{manifest}:1:" in items[0].error and "not a regular file" in items[0].error
    assert f"{manifest}:2:" in items[1].error and "not a regular file" in items[1].error
    assert f"{manifest}:3:" in items[2].error and "no such file" in items[2].error
    assert "no such file" in items[3].error
    assert items[4].error is None


def test_tokenize_with_a_fifo_finishes_the_batch(clip, tmp_path):
    """It used to block in open() on the FIFO forever (SIGTERM ignored)."""
    fifo = make_fifo(tmp_path / "pipe.mp4")
    good = clip("fifo-neighbour.mp4", duration=1.0)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(fifo)}) + "\n")
    done = run_vab(
        "tokenize",
        str(fifo),
        "/dev/zero",
        str(good),
        "--data",
        str(manifest),
        "--codec",
        "debug",
        "--image-encoder",
        "debug",
        "--size",
        "32",
        "--cache",
        str(tmp_path / "cache"),
        "-q",
        timeout=90,
    )
    assert done.returncode == 1, done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 3 and all("not a regular file" in e for e in errors), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert done.stdout.count("ok ") == 1


def test_missing_relative_manifest_video_is_one_line_not_internal(clip, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"video": "sub/nope.mp4"}\n')
    done = run_vab(
        "tokenize",
        "--data",
        "m.jsonl",
        "--codec",
        "debug",
        "--image-encoder",
        "debug",
        "--cache",
        str(tmp_path / "cache"),
        "-q",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert error_lines(done.stderr) == ["error: m.jsonl:1: sub/nope.mp4: no such file"]


def test_missing_manifest_is_one_line(tmp_path):
    for args in (["generate", "--out", "out"], ["tokenize", "-q"]):
        done = run_vab(*args, "--data", "nope/m.jsonl", cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "nope/m.jsonl" in done.stderr and "internal" not in done.stderr


# --- the output folder --------------------------------------------------------------------


def test_unwritable_output_folder_fails_before_the_model_loads(clip, tmp_path):
    video = clip("ro-out.mp4", duration=1.0)
    out = tmp_path / "ro"
    with read_only(out):
        done = run_vab(
            "generate",
            str(video),
            "--out",
            str(out / "sub"),
            "--model",
            str(tmp_path / "no-such-model-needed"),
            timeout=60,
        )
        assert done.returncode == 2  # the model path is checked first: a usage error
        done = run_vab("generate", str(video), "--out", str(out / "sub"), "-q", timeout=60)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot write" in done.stderr and str(out / "sub") in done.stderr
    assert "internal error" not in done.stderr


# --- names with control characters ---------------------------------------------------------


def test_a_newline_in_a_name_keeps_one_line_per_input(clip, tmp_path):
    source = clip("nl.mp4", duration=1.0)
    odd = tmp_path / "two\nlines.mp4"
    odd.write_bytes(source.read_bytes())
    broken = tmp_path / "bad\rname.mp4"
    broken.write_bytes(b"not a video")
    done = run_vab(
        "extract", str(odd), str(broken), "--size", "32", "--cache", str(tmp_path / "cache"), "-q"
    )
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1 and "two\\nlines.mp4" in done.stdout
    assert len(done.stderr.splitlines()) == 1 and "name.mp4: truncated" in done.stderr
    as_json = run_vab(
        "extract", str(odd), "--json", "--size", "32", "--cache", str(tmp_path / "cache"), "-q"
    )
    assert json.loads(as_json.stdout)["input"] == str(odd)  # JSON keeps the real name


# --- odd but valid videos ------------------------------------------------------------------


def _encode(out: Path, *args: str) -> Path:
    ffmpeg.run_checked(["-y", *args, str(out)], out)
    return out


@pytest.mark.parametrize("size", ["1x1", "2x9", "9x2"])
def test_tiny_frames_are_a_valid_video(tmp_path, size):
    from vabcli.media.probe import probe

    video = _encode(
        tmp_path / f"v{size}.mkv",
        "-f",
        "lavfi",
        "-i",
        f"color=c=red:s={size}:r=4:d=1",
        "-c:v",
        "png",
    )
    info = probe(video)
    assert (info.width, info.height) == tuple(int(v) for v in size.split("x"))


def test_a_clip_starting_at_ten_hours_is_its_frames_span(tmp_path):
    """The clip is its frames' span; an offset clock must not make it a 10-hour video."""
    from vabcli.media.probe import probe

    video = _encode(
        tmp_path / "late.mkv",
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=32x32:r=4:d=0.5",
        "-c:v",
        "png",
        "-output_ts_offset",
        "36000",
    )
    info = probe(video)
    assert info.duration == pytest.approx(0.5, abs=0.01)


def test_a_lone_frame_ten_hours_after_the_rest_is_refused_in_one_line(tmp_path, clip):
    """Believed, it made a 10-hour video of 5 frames (5.5 GB of scratch in 40 s)."""
    from vabcli.core.errors import MediaError
    from vabcli.media.probe import probe

    video = _encode(
        tmp_path / "gap.mkv",
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=32x32:r=4:d=1",
        "-vf",
        "setpts='if(eq(N,3),36000/TB,PTS)'",
        "-c:v",
        "png",
    )
    with pytest.raises(MediaError, match=r"jump.*frames") as caught:
        probe(video)
    assert "\n" not in str(caught.value)
    done = run_vab("extract", str(video), "--size", "32", "--cache", str(tmp_path / "c"), "-q")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
