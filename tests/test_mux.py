"""`mux`: video copied untouched, one AAC track exactly as long as the video, batch pairing."""

from __future__ import annotations

import errno
import json

import pytest

from tests.conftest import run_vab
from vabcli.media import ffmpeg
from vabcli.media.mux import MuxOptions, incomplete_media, mux, plan_batch
from vabcli.media.probe import packet_stats, probe
from vabcli.media.testing import write_tone


def track_seconds(path, stream: str = "0:a:0") -> float:
    """A track's duration as the container declares it (what ffprobe reports), priming excluded.

    Not the decoded length: AAC decoders differ by up to one frame at the end (ffmpeg 5.1 keeps
    the padding of the last 1024-sample frame, ffmpeg 9 trims it).
    """
    return packet_stats(path, stream).duration


def plays_without_errors(path) -> bool:
    done = ffmpeg.run(["-i", str(path), "-f", "null", "-"])
    return done.returncode == 0 and done.stderr.strip() == ""


def audio_streams(path) -> list[str]:
    header = ffmpeg.run(["-i", str(path)], loglevel="info").stderr
    return [line for line in header.splitlines() if "Audio:" in line]


@pytest.mark.parametrize(
    "source, audio_seconds", [("v.mp4", 1.2), ("v.mkv", 4.0), ("v.mov", 2.5), ("v.webm", 2.0)]
)
def test_video_copied_and_audio_fitted(clip, tmp_path, source, audio_seconds):
    video = clip(source, duration=2.5, fps="30000/1001")
    audio = write_tone(tmp_path / "gen.wav", audio_seconds)
    out = tmp_path / "out.mp4"
    figures = mux(video, audio, out, MuxOptions())
    src, dst = probe(video), probe(out)
    assert dst.video_codec == src.video_codec
    assert packet_stats(out, "0:v:0").count == packet_stats(video, "0:v:0").count
    assert figures["duration"] == pytest.approx(src.duration)
    streams = audio_streams(out)
    assert len(streams) == 1 and "aac" in streams[0]  # the original audio is replaced
    # The audio ends where the source picture ends (ffmpeg 5.1 shortens the copied last
    # frame's own duration in the output, so the source is the reference).
    assert track_seconds(out) == pytest.approx(src.start + src.duration, abs=1 / src.fps)
    assert plays_without_errors(out)


def test_video_packets_are_bit_identical(clip, tmp_path):
    video = clip("v.mp4", duration=2.0, fps="25")
    out = tmp_path / "out.mp4"
    mux(video, write_tone(tmp_path / "a.flac", 2.0), out, MuxOptions())
    crc = ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    hashes = [
        [
            line.split(",")[-1]
            for line in ffmpeg.run(["-i", str(p), *crc]).stdout.decode().splitlines()
            if not line.startswith("#")
        ]
        for p in (video, out)
    ]
    assert hashes[0] == hashes[1] and len(hashes[0]) == 50


def test_keep_original_audio_as_second_track(clip, tmp_path):
    video = clip("v.mp4", duration=2.0, fps="25")
    out = tmp_path / "both.mp4"
    mux(video, write_tone(tmp_path / "a.wav", 1.0), out, MuxOptions(keep_original_audio=True))
    assert len(audio_streams(out)) == 2
    assert track_seconds(out, "0:a:0") == pytest.approx(2.0, abs=0.04)
    assert track_seconds(out, "0:a:1") == pytest.approx(2.0, abs=0.04)


def test_matroska_output(clip, tmp_path):
    video = clip("v.mp4", duration=2.0, fps="25")
    out = tmp_path / "out.mkv"
    mux(video, write_tone(tmp_path / "a.wav", 3.0), out, MuxOptions())
    assert packet_stats(out, "0:v:0").count == 50
    # Matroska cannot mark the padding of the last AAC frame (MP4's edit list can), so older
    # ffmpeg builds declare up to one AAC frame (1024 samples) more.
    assert track_seconds(out) == pytest.approx(2.0, abs=1 / 25 + 1024 / 24_000)
    assert plays_without_errors(out)


def test_rotation_survives(clip, tmp_path):
    video = clip("rot.mov", duration=1.0, rotation=90)
    out = tmp_path / "rot.mp4"
    mux(video, write_tone(tmp_path / "a.wav", 1.0), out, MuxOptions())
    assert probe(out).rotation == 90


def test_codec_the_container_cannot_hold_needs_reencode(clip, tmp_path):
    from vabcli.media.testing import ClipSpec, make_clip

    vp8 = make_clip(tmp_path / "vp8.webm", ClipSpec(duration=1.0))
    old = tmp_path / "old.webm"
    ffmpeg.run_checked(["-i", str(vp8), "-c:v", "libvpx", "-c:a", "copy", str(old)], vp8)
    audio = write_tone(tmp_path / "a.wav", 1.0)
    with pytest.raises(Exception, match="--reencode"):
        mux(tmp_path / "old.webm", audio, tmp_path / "o.mp4", MuxOptions())
    assert not (tmp_path / "o.mp4").exists() and not list(tmp_path.glob(".o.*"))
    mux(tmp_path / "old.webm", audio, tmp_path / "o.mp4", MuxOptions(reencode=True))
    assert probe(tmp_path / "o.mp4").video_codec == "h264"
    assert packet_stats(tmp_path / "o.mp4", "0:v:0").count == 25


def test_batch_pairs_by_relative_stem(clip, tmp_path):
    videos, audios = tmp_path / "videos", tmp_path / "audio"
    for rel in ["a.mp4", "sub/b.mkv", "sub/c.v2.mov", "orphan.mp4"]:
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        (videos / rel).write_bytes(clip("v.mp4", duration=1.0, fps="25").read_bytes())
    for rel in ["a.wav", "sub/b.flac", "sub/c.v2.wav", "unrelated.wav"]:
        write_tone(audios / rel, 1.0)
    jobs = {
        j.video.relative_to(videos).as_posix(): j
        for j in plan_batch(videos, audios, tmp_path / "o")
    }
    assert jobs["sub/b.mkv"].audio == audios / "sub/b.flac"
    assert jobs["sub/c.v2.mov"].output == tmp_path / "o/sub/c.v2.mp4"
    assert jobs["orphan.mp4"].audio is None and "no audio file" in jobs["orphan.mp4"].problem
    assert all(j.problem is None for name, j in jobs.items() if name != "orphan.mp4")


def test_batch_refuses_ambiguous_names(clip, tmp_path):
    videos, audios = tmp_path / "videos", tmp_path / "audio"
    for name in ["same.mp4", "same.mkv", "solo.mp4"]:
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(clip("v.mp4", duration=1.0, fps="25").read_bytes())
    for name in ["same.wav", "solo.wav", "solo.flac"]:
        write_tone(audios / name, 1.0)
    jobs = {j.video.name: j for j in plan_batch(videos, audios, tmp_path / "o")}
    assert jobs["same.mkv"].problem is None  # first in sorted order claims same.mp4
    assert "same output name" in jobs["same.mp4"].problem
    assert "several audio files" in jobs["solo.mp4"].problem


def test_batch_cli_reports_each_item_and_continues(clip, tmp_path):
    videos, audios, out = tmp_path / "v", tmp_path / "a", tmp_path / "dubbed out"
    for name in ["one", "two", "no audio for me"]:
        (videos / f"{name}.mp4").parent.mkdir(parents=True, exist_ok=True)
        (videos / f"{name}.mp4").write_bytes(clip("v.mp4", duration=1.0, fps="25").read_bytes())
    write_tone(audios / "one.wav", 1.0)
    write_tone(audios / "two.wav", 3.0)
    done = run_vab("mux", str(videos), str(audios), "--out", str(out), "--json")
    assert done.returncode == 1
    records = {json.loads(line)["input"]: json.loads(line) for line in done.stdout.splitlines()}
    assert len(records) == 3
    bad = records[str(videos / "no audio for me.mp4")]
    assert bad["status"] == "error" and "no audio file" in bad["error"]
    for name in ["one", "two"]:
        rec = records[str(videos / f"{name}.mp4")]
        assert rec["status"] == "ok" and rec["output"] == str(out / f"{name}.mp4")
        assert track_seconds(rec["output"]) == pytest.approx(1.0, abs=0.04)
    again = run_vab(
        "mux",
        str(videos / "one.mp4"),
        str(audios / "one.wav"),
        "-o",
        str(out / "one.mp4"),
        "--json",
    )
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "skipped"
    forced = run_vab(
        "mux",
        str(videos / "one.mp4"),
        str(audios / "two.wav"),
        "-o",
        str(out / "one.mp4"),
        "--overwrite",
        "--json",
    )
    assert json.loads(forced.stdout)["status"] == "ok"


def test_audio_starts_and_ends_with_a_late_picture(tmp_path, late_video):
    out = tmp_path / "out.mp4"
    mux(late_video, write_tone(tmp_path / "a.wav", 2.5), out, MuxOptions())
    dubbed = probe(out)
    assert dubbed.start == pytest.approx(0.5, abs=0.01)
    assert track_seconds(out) == pytest.approx(dubbed.start + dubbed.duration, abs=1 / 25)


@pytest.mark.parametrize(
    "stderr, code",
    [  # ffmpeg 5.1 (exits 0 after this one), ffmpeg 9, and other failed writes
        ("[mp4 @ 0x55] Error writing trailer of o.mp4: No space left on device", errno.ENOSPC),
        ("[out#0/mp4 @ 0x56] Error closing file: Disk quota exceeded", errno.EDQUOT),
        ("av_interleaved_write_frame(): Invalid argument", errno.EIO),
        ("[out#0/mp4 @ 0x5] Could not write header: Invalid argument", errno.EIO),
    ],
)
def test_write_failures_are_read_from_stderr_whatever_the_exit_code(stderr, code, tmp_path):
    failure = ffmpeg.write_failure(f"[h264 @ 0x1] some decoder noise\n{stderr}\n", "o.mp4")
    assert failure.errno == code and failure.filename == "o.mp4"
    assert not failure.strerror.startswith("[")
    assert ffmpeg.write_failure("[h264 @ 0x1] error while decoding MB 3 4\n", "o.mp4") is None


def test_a_cut_or_indexless_mp4_is_incomplete(clip, tmp_path):
    whole = tmp_path / "whole.mp4"
    mux(
        clip("v.mp4", duration=2.0, fps="25"),
        write_tone(tmp_path / "a.wav", 2.0),
        whole,
        MuxOptions(),
    )
    assert incomplete_media(whole) is None
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:24_000])
    assert "past the end" in incomplete_media(cut)
    header_only = tmp_path / "header.mp4"
    header_only.write_bytes(whole.read_bytes()[:32])  # ftyp, then nothing: no index
    assert incomplete_media(header_only) in ("no moov index", "a box header is cut at byte 32")
    mkv = tmp_path / "whole.mkv"
    ffmpeg.run_checked(["-i", str(whole), "-c", "copy", str(mkv)], mkv)
    assert incomplete_media(mkv) is None
    (tmp_path / "cut.mkv").write_bytes(mkv.read_bytes()[:100])
    assert incomplete_media(tmp_path / "cut.mkv") is not None
