"""Probing with ffmpeg alone: streams, rates, sizes, rotation, exact stream durations, bad files."""

from __future__ import annotations

import pytest

from vabcli.core.errors import MediaError
from vabcli.media.probe import packet_stats, probe


@pytest.mark.parametrize("name", ["a.mp4", "a.mkv", "a.mov", "a.webm", "a.avi"])
def test_containers(clip, name):
    info = probe(clip(name, duration=2.0, fps="25"))
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.fps == pytest.approx(25)
    assert info.n_video_packets == 50
    assert (info.width, info.height) == (160, 120)
    assert info.has_audio and info.audio_sample_rate in (44100, 48000)  # opus is always 48 kHz


@pytest.mark.parametrize(
    "rate, expected",
    [("12", 12), ("24000/1001", 23.976), ("25", 25), ("30000/1001", 29.97), ("30", 30), ("60", 60)],
)
def test_frame_rates(clip, rate, expected):
    info = probe(clip("r.mp4", duration=1.0, fps=rate))
    assert info.fps == pytest.approx(expected, abs=0.01)
    assert info.duration == pytest.approx(1.0, abs=1.5 / expected)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata(clip, degrees):
    info = probe(clip("rot.mp4", duration=0.5, width=160, height=96, rotation=degrees))
    assert info.rotation == degrees
    assert info.display_size == ((96, 160) if degrees % 180 else (160, 96))


def test_no_audio_stream(clip):
    info = probe(clip("silent.mp4", audio=False))
    assert not info.has_audio and info.audio_codec is None


def test_variable_frame_rate_duration_comes_from_packets(clip):
    info = probe(clip("vfr.mp4", duration=3.0, fps="30", variable_frame_rate=True))
    # 30 frames in the first second, then every third frame of 60: 50 frames over 3 s.
    assert info.n_video_packets == 50
    assert info.duration == pytest.approx(3.0, abs=0.1)


def test_audio_stream_span_excludes_encoder_priming(clip):
    stats = packet_stats(clip("a.mp4", duration=2.0, fps="25"), "0:a:0")
    assert stats.duration == pytest.approx(2.0, abs=0.03)


def test_bad_files_raise_one_line_errors_naming_the_file(tmp_path, clip):
    good = clip("a.mp4", duration=2.0, fps="25").read_bytes()
    cases = {
        "missing.mp4": None,
        "empty.mp4": b"",
        "text.mp4": b"this is not a video\n" * 10,
        "half.mp4": good[: len(good) // 2],
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(MediaError) as err:
            probe(path)
        message = str(err.value)
        assert str(path) in message and "\n" not in message


def test_audio_only_file_has_no_video_stream(tmp_path):
    from vabcli.media.testing import write_tone

    with pytest.raises(MediaError, match="no video stream"):
        probe(write_tone(tmp_path / "tone.m4a", 1.0))
