"""`vab generate` as users run it: folders of clips in, dubbed MP4s + audio + sidecars out."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import VAB, generate_args, run_vab, start_vab
from tests.test_exit import torchrun, torchrun_env
from tests.tiny_models import informative_codec, make_checkpoint
from vabcli.media.probe import packet_stats, probe

FAST = ["--steps", "2", "--workers", "2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    informative_codec(root / "codec")  # the debug codec decodes every token to one sound
    return make_checkpoint(root / "ckpt", codec=root / "codec")


def generate(inputs, out, checkpoint, cache, *extra, **kwargs):
    return run_vab(*generate_args(inputs, out, checkpoint, cache, *FAST, *extra), **kwargs)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


RATES = [("12", 0.5), ("24000/1001", 3.3), ("25", 1.0), ("30", 2.7), ("60", 1.9)]


def test_every_rate_and_length_gets_audio_exactly_as_long_as_its_video(
    clip, checkpoint, tmp_path, cache_dir
):
    folder = tmp_path / "in"
    for i, (fps, seconds) in enumerate(RATES):
        source = clip(f"r{i}.mp4", fps=fps, duration=seconds, tone_hz=300.0 + 40 * i)
        (folder / "sub").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / "sub" / source.name)
    vfr = clip("vfr.mkv", fps="30", duration=3.0, variable_frame_rate=True)
    shutil.copy(vfr, folder / vfr.name)
    done = generate([folder], tmp_path / "out", checkpoint, cache_dir, "--json", "-b", "3")
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    assert len(lines) == 6 and all(line["status"] == "ok" for line in lines)
    for line in lines:
        source = Path(line["input"])
        info = probe(source)
        relative = source.relative_to(folder).with_suffix("")
        audio, video = Path(line["audio"]), Path(line["video"])
        assert audio == tmp_path / "out" / relative.with_suffix(".wav")  # the tree is mirrored
        assert soundfile.info(str(audio)).frames == round(info.duration * 24_000)
        assert soundfile.info(str(audio)).samplerate == 24_000
        out_info = probe(video)
        assert out_info.video_codec == info.video_codec
        assert packet_stats(video, "0:v:0").count == packet_stats(source, "0:v:0").count
        muxed_audio, muxed_video = packet_stats(video, "0:a:0"), packet_stats(video, "0:v:0")
        assert abs(muxed_audio.duration - muxed_video.duration) < 0.05  # under one AAC frame
        sidecar = json.loads(video.with_suffix(".json").read_text())
        assert sidecar["n_samples"] == round(info.duration * 24_000)
        assert sidecar["sampling"]["steps"] == 2 and sidecar["seed"] == 0
        assert sidecar["codec_id"].startswith("debug@") and sidecar["model"]["weights_sha256"]


def test_same_seed_same_bytes_other_seed_other_audio(clip, checkpoint, tmp_path, cache_dir):
    a = clip("seeded.mp4", duration=2.5)
    b = clip("seeded2.mp4", duration=2.5, tone_hz=600.0)

    def wavs(out: Path, seed: str) -> list[bytes]:
        done = generate([a, b], out, checkpoint, cache_dir, "--no-mux", "--seed", seed)
        assert done.returncode == 0, done.stderr
        return [(out / f"{p.stem}.wav").read_bytes() for p in (a, b)]

    first, again, other = (
        wavs(tmp_path / "1", "7"),
        wavs(tmp_path / "2", "7"),
        wavs(tmp_path / "3", "8"),
    )
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]
    assert first[0] != first[1]  # two clips of one run do not share their noise
    assert not (tmp_path / "1" / "seeded.mp4").exists()  # --no-mux


def test_bad_clip_fails_alone_and_a_rerun_skips_everything(clip, checkpoint, tmp_path, cache_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        shutil.copy(clip(f"good{i}.mp4", duration=1.0 + i / 2), folder / f"good{i}.mp4")
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    out = tmp_path / "out"
    done = generate([folder], out, checkpoint, cache_dir)
    assert done.returncode == 1
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "corrupt.mp4" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"good{i}{ext}" for i in range(3) for ext in (".json", ".mp4", ".wav")
    )
    (folder / "corrupt.mp4").unlink()
    # The re-run must not even load the model: prove it by taking its weights away.
    gone = tmp_path / "gone"
    shutil.copytree(checkpoint, gone)
    (gone / "model.safetensors").unlink()
    again = generate([folder], out, gone, cache_dir, "--json")
    assert again.returncode == 0, again.stderr
    assert [line["status"] for line in json_lines(again.stdout)] == ["skipped"] * 3


def test_ten_minutes_in_bounded_memory(long_clip, clip, checkpoint, tmp_path, cache_dir):
    short = clip("ten.mp4", duration=10.0, fps="12", width=64, height=48, sample_rate=8000)
    peaks = {}
    for name, source in (("short", short), ("long", long_clip)):
        cmd = [
            sys.executable,
            "-c",
            MEASURE_PEAK_RSS,
            *VAB,
            "generate",
            str(source),
            "--out",
            str(tmp_path / name),
            "--model",
            str(checkpoint),
            "--cache",
            str(cache_dir),
            "--steps",
            "1",
            "--guidance",
            "1",
        ]
        peaks[name] = int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    wav = tmp_path / "long" / "long.wav"
    assert soundfile.info(str(wav)).frames == round(probe(long_clip).duration * 24_000)
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    assert sidecar["n_windows"] >= 400
    muxed = wav.with_suffix(".mp4")
    assert packet_stats(muxed, "0:v:0").count == packet_stats(long_clip, "0:v:0").count == 7200
    assert peaks["long"] < 2 * peaks["short"], peaks


MEASURE_PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


@pytest.fixture
def gappy_clip(clip, tmp_path) -> Path:
    """A tone with a silent stretch from 1.0 to 1.6 s."""
    from vabcli.media import ffmpeg

    picture = clip("gappy_picture.mp4", duration=2.5, audio=False)
    out = tmp_path / "gappy.mp4"
    tone = "sine=frequency=440:sample_rate=48000"
    ffmpeg.run_checked(
        [
            "-i",
            str(picture),
            "-f",
            "lavfi",
            "-i",
            tone,
            "-af",
            "volume=enable='between(t,1.0,1.6)':volume=0",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "copy",
            "-c:a",
            "pcm_s16le",
            "-t",
            "2.5",
            str(out.with_suffix(".mov")),
        ],
        out,
    )
    return out.with_suffix(".mov")


def test_keep_audio_keeps_the_prompt(gappy_clip, checkpoint, tmp_path, cache_dir):
    kept = generate([gappy_clip], tmp_path / "keep", checkpoint, cache_dir, "--keep-audio", "1")
    assert kept.returncode == 0, kept.stderr
    sidecar = json.loads((tmp_path / "keep" / "gappy.json").read_text())
    n_frames = math.ceil(sidecar["duration"] * 75)
    assert sidecar["generated_token_frames"] == n_frames - 75


def test_fill_gaps_regenerates_the_silence_only(gappy_clip, checkpoint, tmp_path, cache_dir):
    from vabcli.media.decode import decode_audio

    filled = generate([gappy_clip], tmp_path / "fill", checkpoint, cache_dir, "--fill-gaps")
    assert filled.returncode == 0, filled.stderr
    sidecar = json.loads((tmp_path / "fill" / "gappy.json").read_text())
    assert sidecar["fill_gaps"] and abs(sidecar["generated_token_frames"] - 45) <= 3  # 0.6 s
    out, _ = soundfile.read(str(tmp_path / "fill" / "gappy.wav"), dtype="float32")
    original = decode_audio(probe(gappy_clip), 24_000)
    assert len(out) == len(original)
    # Outside the gap and its one-frame fades, the original sound is kept (to 16-bit precision);
    # inside, the model's sound replaces the silence.
    outside = np.r_[0 : int(0.97 * 24_000), int(1.63 * 24_000) : len(original)]
    assert np.abs(out[outside] - original[outside]).max() < 1e-3
    inside = slice(int(1.05 * 24_000), int(1.55 * 24_000))
    assert np.abs(original[inside]).max() < 1e-3 and np.abs(out[inside]).max() > 1e-3


def test_clip_without_audio_cannot_keep_audio(clip, checkpoint, tmp_path, cache_dir):
    silent = clip("mute.mp4", duration=1.0, audio=False)
    done = generate([silent], tmp_path / "o", checkpoint, cache_dir, "--keep-audio", "0.5")
    assert done.returncode == 1 and "no audio to keep" in done.stderr


def test_checkpoint_of_other_encoders_fails_fast(clip, tmp_path, cache_dir):
    other = make_checkpoint(tmp_path / "other", codec_id="encodec_24khz@3kbps-deadbeef")
    done = generate([clip("a.mp4", duration=1.0)], tmp_path / "o", other, cache_dir)
    assert done.returncode == 1
    assert "trained with codec encoder 'encodec_24khz@3kbps-deadbeef'" in done.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_usage_errors(clip, checkpoint, tmp_path):
    source = str(clip("a.mp4", duration=1.0))
    for extra in (["--shard", "3/2"], ["--format", "mp3"], ["--sampler", "beam"]):
        done = run_vab("generate", source, "--model", str(checkpoint), *extra)
        assert done.returncode == 2, (extra, done.stderr)
    done = run_vab("generate", source, "--model", str(tmp_path / "nope"))
    assert done.returncode == 2 and "no such checkpoint" in done.stderr


def test_ctrl_c_leaves_no_partial_files(long_clip, checkpoint, tmp_path, cache_dir):
    out = tmp_path / "out"
    proc = start_vab(
        "generate",
        str(long_clip),
        "--out",
        str(out),
        "--model",
        str(checkpoint),
        "--cache",
        str(cache_dir),
        "--steps",
        "4",
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(cache_dir.rglob("features.npy")):
        time.sleep(0.2)
    time.sleep(1.0)  # sampling is under way
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not out.exists() or list(out.rglob("*")) == []


def test_shards_and_manifests(clip, checkpoint, tmp_path, cache_dir):
    lines = []
    for i in range(4):
        path = clip(f"s{i}.mp4", duration=2.0, tone_hz=200.0 + 100 * i)
        lines.append(json.dumps({"video": str(path), "start": 0.5, "end": 1.5}))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    run_dir = tmp_path / "run"
    shutil.copytree(checkpoint, run_dir / "last")  # a run folder names its checkpoint
    # Under torchrun each process dubs its share, and all wait for each other before leaving.
    args = generate_args([], out, run_dir, cache_dir, *FAST, "--data", str(manifest), "--json")
    together = torchrun("-m", "vabcli", *args, "--no-mux", env=torchrun_env(tmp_path))
    assert together.returncode == 0, together.stderr[-3000:]
    names = sorted(line["input"] for line in json_lines(together.stdout))
    assert len(names) == 4 and len(set(names)) == 4  # every clip, once
    wavs = sorted(out.glob("*.wav"))
    assert [p.name for p in wavs] == [f"s{i}_0.5-1.5s.wav" for i in range(4)]
    assert all(soundfile.info(str(p)).frames == 24_000 for p in wavs)  # the 1 s segment
    shares = []
    for shard in ("1/2", "2/2"):
        again = generate(
            [],
            out,
            run_dir,
            cache_dir,
            "--data",
            str(manifest),
            "--no-mux",
            "--shard",
            shard,
            "--json",
        )
        assert {line["status"] for line in json_lines(again.stdout)} == {"skipped"}
        shares.append({line["input"] for line in json_lines(again.stdout)})
    assert shares[0].isdisjoint(shares[1]) and len(shares[0] | shares[1]) == 4


def test_missing_encoder_weights_offline_fail_at_once_with_one_line(clip, tmp_path, cache_dir):
    from vabcli.encoders.tokenize import TokenizeOptions, encoder_spec

    ckpt = make_checkpoint(tmp_path / "pretrained-codec")
    config = json.loads((ckpt / "config.json").read_text())
    config["encoders"] = encoder_spec(TokenizeOptions(image_encoder="debug"))  # encodec_24khz
    (ckpt / "config.json").write_text(json.dumps(config))
    offline = {"TORCH_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    done = generate([clip("a.mp4", duration=1.0)], tmp_path / "o", ckpt, cache_dir, env=offline)
    assert done.returncode == 1 and done.stdout == ""
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "encodec_24khz-d7cc33bc.th" in errors[0]
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in errors[0]
