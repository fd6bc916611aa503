"""`extract`: exact frame and sample counts across containers, rates, sizes, rotations, lengths."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import VAB, run_vab
from vabcli.config import ExtractOptions
from vabcli.core.cache import Cache
from vabcli.media.extract import extract_clip

OPTS = ExtractOptions(fps=8.0, width=64, height=64, sample_rate=24_000)


def check_contract(result, true_duration: float, source_fps: float, opts: ExtractOptions = OPTS):
    """The counts users rely on, and the arrays on disk agreeing with them."""
    assert result.duration == pytest.approx(true_duration, abs=1.0 / source_fps + 1e-6)
    assert result.n_frames == round(result.duration * opts.fps)
    meta = json.loads((result.entry / "meta.json").read_text())
    # ffmpeg itself delivered the right count; padding/trimming only evens out the last frame.
    assert abs(meta["n_decoded_frames"] - result.n_frames) <= 1
    frames = result.frames()
    assert (
        frames.shape == (result.n_frames, opts.height, opts.width, 3) and frames.dtype == np.uint8
    )
    assert frames.std() > 1  # real picture content, not padding
    if result.has_audio:
        assert result.n_samples == round(result.duration * opts.sample_rate)
        assert result.audio().shape == (result.n_samples,)


@pytest.mark.parametrize("name", ["c.mp4", "c.mkv", "c.mov", "c.webm", "c.avi"])
def test_containers(clip, cache_dir, name):
    result = extract_clip(clip(name, duration=2.0, fps="25"), OPTS, Cache(cache_dir))
    check_contract(result, 2.0, 25)
    assert result.has_audio


@pytest.mark.parametrize(
    "rate, fps",
    [("12", 12), ("24000/1001", 23.976), ("25", 25), ("30000/1001", 29.97), ("30", 30), ("60", 60)],
)
def test_frame_rates(clip, cache_dir, rate, fps):
    result = extract_clip(clip("r.mp4", duration=1.0, fps=rate), OPTS, Cache(cache_dir))
    check_contract(result, 1.0, fps)


def test_variable_frame_rate(clip, cache_dir):
    result = extract_clip(
        clip("vfr.mp4", duration=3.0, fps="30", variable_frame_rate=True), OPTS, Cache(cache_dir)
    )
    check_contract(result, 3.0, 10)


@pytest.mark.parametrize(
    "width, height, duration", [(64, 48, 0.5), (1920, 1080, 1.0), (176, 144, 0.5)]
)
def test_sizes_and_short_durations(clip, cache_dir, width, height, duration):
    path = clip("s.mp4", duration=duration, fps="25", width=width, height=height)
    check_contract(extract_clip(path, OPTS, Cache(cache_dir)), duration, 25)


def test_no_audio_stream(clip, cache_dir):
    result = extract_clip(clip("silent.mkv", audio=False), OPTS, Cache(cache_dir))
    check_contract(result, 2.0, 25)
    assert not result.has_audio and result.n_samples is None and result.audio() is None


def test_rotation_is_applied_to_frames(clip, cache_dir):
    # Left half white, right half black; stored rotated 90 degrees, so displayed upright it is
    # split top/bottom: the extracted frames must show the display orientation.
    halves = "color=c=white:size=80x120:rate=25,pad=160:120:0:0:black"
    path = clip("halves.mp4", duration=1.0, video_source=halves, rotation=90)
    frame = extract_clip(path, OPTS, Cache(cache_dir)).frames()[0].mean(axis=2)
    rows, cols = frame.mean(axis=1), frame.mean(axis=0)
    assert abs(rows[:16].mean() - rows[-16:].mean()) > 150  # one of top/bottom white
    assert abs(cols[:16].mean() - cols[-16:].mean()) < 30  # left and right alike


def test_frame_k_shows_the_picture_at_time_k_over_fps(clip, cache_dir):
    # A white box on screen from 0.95 s to 1.1 s (source at 50 fps): at 4 fps only the frame
    # for t = 1.0 s may show it. Half-frame rounding would show it at no frame at all.
    flash = (
        "color=c=black:size=64x64:rate=50,drawbox=w=64:h=64:color=white:t=fill:"
        "enable='between(t,0.95,1.1)'"
    )
    path = clip("flash.mp4", duration=2.0, video_source=flash, audio=False)
    frames = extract_clip(path, ExtractOptions(fps=4, width=64, height=64), Cache(cache_dir))
    brightness = np.asarray(frames.frames()).mean(axis=(1, 2, 3))
    assert list(np.nonzero(brightness > 128)[0]) == [4]


def test_audio_is_the_source_tone_at_the_target_rate(clip, cache_dir):
    result = extract_clip(clip("tone.mp4", duration=2.0, tone_hz=440.0), OPTS, Cache(cache_dir))
    audio = result.audio()
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * result.sample_rate / audio.size
    assert peak_hz == pytest.approx(440, abs=2)
    assert 0.05 < np.abs(audio).max() <= 1.0


def test_parameters_and_content_change_the_key(clip, cache_dir):
    cache = Cache(cache_dir)
    a = extract_clip(clip("c.mp4", duration=2.0, fps="25"), OPTS, cache)
    b = extract_clip(
        clip("c.mp4", duration=2.0, fps="25"), ExtractOptions(fps=4.0, width=64, height=64), cache
    )
    c = extract_clip(clip("c.mp4", duration=2.5, fps="25"), OPTS, cache)
    assert len({a.cache_key, b.cache_key, c.cache_key}) == 3
    assert b.n_frames == 8 and a.n_frames == 16


def test_same_content_under_another_name_is_a_cache_hit(clip, cache_dir, tmp_path):
    source = clip("c.mp4", duration=2.0, fps="25")
    copy = tmp_path / "renamed copy.mp4"
    copy.write_bytes(source.read_bytes())
    first = extract_clip(source, OPTS, Cache(cache_dir))
    second = extract_clip(copy, OPTS, Cache(cache_dir))
    assert not first.cache_hit and second.cache_hit and first.cache_key == second.cache_key


def test_damaged_cache_entry_is_recomputed(clip, cache_dir):
    path = clip("c.mp4", duration=2.0, fps="25")
    first = extract_clip(path, OPTS, Cache(cache_dir))
    frames_file = first.entry / "frames.npy"
    frames_file.write_bytes(frames_file.read_bytes()[:1000])  # truncated by a full disk, say
    again = extract_clip(path, OPTS, Cache(cache_dir))
    assert not again.cache_hit
    check_contract(again, 2.0, 25)


def test_second_run_is_a_cache_hit_without_ffmpeg(clip, cache_dir):
    path = clip("c.mp4", duration=2.0, fps="25")
    first = run_vab("extract", str(path), "--cache", str(cache_dir), "--json")
    assert first.returncode == 0, first.stderr
    # With no ffmpeg at all, the second run can only succeed if it decodes nothing.
    second = run_vab(
        "extract",
        str(path),
        "--cache",
        str(cache_dir),
        "--json",
        env={"VAB_FFMPEG": "/nonexistent/ffmpeg"},
    )
    assert second.returncode == 0, second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert not one["cache_hit"] and two["cache_hit"]
    assert {k: v for k, v in one.items() if k != "cache_hit"} == {
        k: v for k, v in two.items() if k != "cache_hit"
    }


MEASURE_PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def test_ten_minute_video_with_bounded_memory(long_clip, cache_dir):
    size = 96
    args = ["--cache", str(cache_dir), "--fps", "25", "--size", str(size), "--json"]
    cmd = [sys.executable, "-c", MEASURE_PEAK_RSS, *VAB, "extract", str(long_clip), *args]
    peak_mib = int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    result = extract_clip(
        long_clip, ExtractOptions(fps=25, width=size, height=size), Cache(cache_dir)
    )
    assert result.cache_hit and result.n_frames == 15_000 and result.n_samples == 600 * 24_000
    frames_mib = result.frames().nbytes / 2**20
    assert frames_mib > 350
    assert peak_mib < 200, f"peak RSS {peak_mib} MiB while writing {frames_mib:.0f} MiB of frames"


def test_picture_starting_late_keeps_sound_and_picture_together(late_video, cache_dir):
    from vabcli.media.probe import probe

    assert probe(late_video).start == pytest.approx(0.5, abs=0.01)
    result = extract_clip(late_video, OPTS, Cache(cache_dir))
    assert result.duration == pytest.approx(2.5, abs=0.05)
    frames = np.asarray(result.frames()).astype(int)
    assert np.abs(frames[1] - frames[0]).mean() > 1  # the picture moves from frame 0 on
    audio = result.audio()
    assert np.abs(audio[: OPTS.sample_rate // 20]).max() > 0.05  # the tone, from sample 0


def test_a_fifo_or_device_is_refused_without_reading_it(tmp_path, cache_dir):
    """A FIFO blocked in open() forever and /dev/zero was hashed forever; both are refused."""
    from pathlib import Path

    from tests.faults import make_fifo
    from vabcli.core.errors import VabError

    for path in (make_fifo(tmp_path / "pipe.mp4"), Path("/dev/zero")):
        with pytest.raises(VabError, match="not a regular file"):
            extract_clip(path, OPTS, Cache(cache_dir))
