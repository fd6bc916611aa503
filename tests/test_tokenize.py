"""`vab tokenize`: shapes, errors, cache hits without decoding or loading, damage, manifests."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from tests.conftest import run_vab, tmp_entries
from vabcli.config import ExtractOptions
from vabcli.core.batcher import BatchingService
from vabcli.core.cache import Cache
from vabcli.encoders.tokenize import (
    AUDIO_STAGE,
    CODES_FILE,
    FEATURES_FILE,
    VISUAL_STAGE,
    ClipTokenizer,
    TokenizeOptions,
    audio_chunks,
)

DEBUG = ["--codec", "debug", "--image-encoder", "debug"]
FPS = 4.0


@pytest.fixture
def clip_folder(clip, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    specs = {
        "a.mp4": dict(duration=2.0, fps="25"),
        "b.mkv": dict(duration=1.3, fps="30000/1001"),
        "silent.mp4": dict(duration=1.0, fps="25", audio=False),
    }
    for name, spec in specs.items():
        (folder / name).write_bytes(clip(name, **spec).read_bytes())
    data = (folder / "a.mp4").read_bytes()
    (folder / "corrupt.mov").write_bytes(data[: len(data) // 3])
    return folder


def tokenize(folder, cache_dir, *extra, env=None):
    done = run_vab(
        "tokenize",
        str(folder),
        "--cache",
        str(cache_dir),
        "--fps",
        str(FPS),
        *DEBUG,
        "--json",
        *extra,
        env=env,
    )
    return done, {json.loads(line)["input"]: json.loads(line) for line in done.stdout.splitlines()}


def test_folder_shapes_errors_and_cache_hits(clip_folder, cache_dir):
    done, records = tokenize(clip_folder, cache_dir)
    assert done.returncode == 1 and len(records) == 4
    bad = records[str(clip_folder / "corrupt.mov")]
    assert bad["status"] == "error" and "corrupt.mov" in bad["error"]
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: {bad['error']}"
    ]
    for name in ["a.mp4", "b.mkv", "silent.mp4"]:
        rec = records[str(clip_folder / name)]
        assert rec["status"] == "ok" and not rec["cache_hit"]
        assert rec["n_visual"] == round(rec["duration"] * FPS) and rec["visual_dim"] == 32
        if name == "silent.mp4":
            assert not rec["has_audio"] and rec["n_codebooks"] is None
        else:
            assert rec["n_codebooks"] == 4
            assert abs(rec["n_audio_frames"] - math.ceil(rec["duration"] * 75)) <= 1
    # Second run: every good clip is a hit, and nothing is decoded (no ffmpeg at all).
    again, hits = tokenize(clip_folder, cache_dir, env={"VAB_FFMPEG": "/nonexistent/ffmpeg"})
    assert again.returncode == 1
    assert all(r["cache_hit"] for r in hits.values() if r["status"] == "ok")
    assert sum(r["status"] == "ok" for r in hits.values()) == 3
    assert not list(cache_dir.glob("extract/*/*/*"))  # frames are dropped unless --keep-frames


def test_cached_run_loads_no_model(clip_folder, cache_dir):
    good = clip_folder / "a.mp4"
    tokenize(good, cache_dir)
    # vab leaves through os._exit after its atexit handlers: one of them reports
    check = (
        "import atexit, runpy, sys; sys.argv = ['vab'] + sys.argv[1:]\n"
        "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'))\n"
        "runpy.run_module('vabcli', run_name='__main__')\n"
    )
    import subprocess
    import sys

    args = ["tokenize", str(good), "--cache", str(cache_dir), "--fps", str(FPS), *DEBUG, "-q"]
    out = subprocess.run([sys.executable, "-c", check, *args], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[-1:] == ["NO-TORCH"], out


def test_the_codec_loads_alone_and_the_image_encoder_only_for_a_clip_not_cached(
    clip_folder, cache_dir
):
    # Generation decodes every clip with the codec; with features cached it needs no image
    # encoder (open_clip's import and the tower cost seconds of each run).
    tokenize(clip_folder / "a.mp4", cache_dir)
    opts = TokenizeOptions(extract=ExtractOptions(fps=FPS), codec="debug", image_encoder="debug")
    with ClipTokenizer(opts, Cache(cache_dir)) as tokenizer:
        tokenizer.load_codec()
        assert hasattr(tokenizer, "codec") and not hasattr(tokenizer, "visual")
        assert tokenizer.tokenize(clip_folder / "a.mp4")["cache_hit"]
        assert not hasattr(tokenizer, "visual")
        assert not tokenizer.tokenize(clip_folder / "b.mkv")["cache_hit"]
        assert hasattr(tokenizer, "visual")
    assert not hasattr(tokenizer, "codec") and not hasattr(tokenizer, "visual")  # freed


def test_arrays_and_damage_recovery(clip, cache_dir):
    path = clip("a.mp4", duration=2.0, fps="25")
    reports = []
    cache = Cache(cache_dir, on_damage=reports.append)
    opts = TokenizeOptions(extract=ExtractOptions(fps=FPS), codec="debug", image_encoder="debug")
    with ClipTokenizer(opts, cache) as tokenizer:
        first = tokenizer.tokenize(path)
        vkey, akey = first["visual_key"], first["audio_key"]
        features = np.load(cache.entry_dir(VISUAL_STAGE, vkey) / FEATURES_FILE)
        codes = np.load(cache.entry_dir(AUDIO_STAGE, akey) / CODES_FILE)
        assert features.shape == (8, 32) and np.allclose(np.linalg.norm(features, axis=1), 1)
        assert codes.shape == (4, first["n_audio_frames"]) and codes.min() >= 0
        # Flip bytes in the features, truncate the codes: both found, reported, recomputed.
        feature_file = cache.entry_dir(VISUAL_STAGE, vkey) / FEATURES_FILE
        raw = bytearray(feature_file.read_bytes())
        raw[-5] ^= 0xFF
        feature_file.write_bytes(bytes(raw))
        code_file = cache.entry_dir(AUDIO_STAGE, akey) / CODES_FILE
        code_file.write_bytes(code_file.read_bytes()[:-10])
        second = tokenizer.tokenize(path)
    assert not second["cache_hit"] and len(reports) == 2
    assert np.array_equal(np.load(feature_file), features)
    assert np.array_equal(np.load(code_file), codes)


def test_manifest_segments_labels_and_bad_line(clip, tmp_path, cache_dir):
    video = clip("a.mp4", duration=2.0, fps="25")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        json.dumps({"video": str(video), "label": ["dog", "bark"], "split": "train"})
        + "\n"
        + json.dumps({"video": str(video), "start": 0.5, "end": 1.5, "split": "val"})
        + "\n"
    )
    done = run_vab(
        "tokenize",
        "--data",
        str(manifest),
        "--cache",
        str(cache_dir),
        *DEBUG,
        "--fps",
        str(FPS),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    by_line = {r["manifest_line"]: r for r in map(json.loads, done.stdout.splitlines())}
    whole, part = by_line[1], by_line[2]
    assert whole["label"] == ["dog", "bark"] and whole["manifest_line"] == 1
    assert part["split"] == "val" and part["duration"] == pytest.approx(1.0)
    assert part["n_visual"] == 4 and part["visual_key"] != whole["visual_key"]
    manifest.write_text('{"video": "a.mp4"}\n{"video": 3}\n')
    bad = run_vab("tokenize", "--data", str(manifest), "--cache", str(cache_dir), *DEBUG)
    assert bad.returncode == 1 and f"{manifest}:2:" in bad.stderr


def test_two_processes_at_once_leave_a_consistent_cache(clip_folder, cache_dir):
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "vabcli",
        "tokenize",
        str(clip_folder),
        "--cache",
        str(cache_dir),
        "--fps",
        str(FPS),
        *DEBUG,
        "--json",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [1, 1]  # the corrupt clip, in both
    cache = Cache(cache_dir)
    for out in outputs:
        for rec in map(json.loads, out.splitlines()):
            if rec["status"] == "ok":
                assert cache.lookup(VISUAL_STAGE, rec["visual_key"]) is not None
                if rec["has_audio"]:
                    assert cache.lookup(AUDIO_STAGE, rec["audio_key"]) is not None
    assert not tmp_entries(cache_dir)


def test_batching_service_groups_requests_across_threads():
    calls = []

    def process(items):
        calls.append(len(items))
        return [item * 10 for item in items]

    gate = threading.Event()
    service = BatchingService(lambda items: (gate.wait(), process(items))[1], 100, "test")
    futures = [service.submit(i, 1) for i in range(5)]  # queued while the first batch waits
    gate.set()
    assert [f.result(timeout=5) for f in futures] == [0, 10, 20, 30, 40]
    service.close()
    assert sum(calls) == 5 and len(calls) <= 2  # grouped, not one call per request
    failing = BatchingService(lambda items: 1 / 0, 10, "failing")
    with pytest.raises(ZeroDivisionError):
        failing.submit(1, 1).result(timeout=5)
    failing.close()


def test_audio_windows_cover_every_sample_once():
    wav = np.arange(24_000 * 65, dtype=np.float32)
    windows = audio_chunks(wav, 24_000, 320)
    assert sum(keep for _, keep in windows) == len(wav)
    for window, keep in windows:
        assert len(window) - keep in (0, 24_000) and keep % 320 == 0 or window is windows[-1][0]
    assert windows[1][0][0] == wav[30 * 24_000 - 24_000]  # one second of left context


def test_missing_weights_stop_the_run_at_once_with_one_line(clip_folder, cache_dir, tmp_path):
    import time

    start = time.monotonic()
    offline = {"TORCH_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    args = ["tokenize", str(clip_folder), "--cache", str(cache_dir)]
    done = run_vab(*args, "--image-encoder", "debug", env=offline)
    elapsed = time.monotonic() - start
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "encodec_24khz-d7cc33bc.th" in lines[0]
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in lines[0]
    assert elapsed < 2.0, f"offline failure took {elapsed:.1f} s"
    only_vision = ["--codec", "debug", "--image-encoder", "ViT-B-32:openai"]
    vision = run_vab(*args, *only_vision, env={"HF_HUB_CACHE": str(tmp_path)})
    assert vision.returncode == 1 and vision.stdout == ""
    assert len(vision.stderr.strip().splitlines()) == 1 and "ViT-B-32:openai" in vision.stderr


@pytest.mark.parametrize("from_encoder, expected", [(True, 224), (False, 64)])
def test_frames_are_decoded_at_the_encoder_input_size(cache_dir, from_encoder, expected):
    opts = TokenizeOptions(
        extract=ExtractOptions(width=64, height=64),
        frame_size_from_encoder=from_encoder,
        codec="debug",
        image_encoder="debug",
    )
    with ClipTokenizer(opts, Cache(cache_dir)) as tokenizer:
        assert (tokenizer.extract_opts.width, tokenizer.extract_opts.height) == (expected, expected)
        assert tokenizer.extract_opts.sample_rate == 24_000


def test_interrupted_tokenize_leaves_no_partial_entry(long_clip, cache_dir):
    import signal

    from tests.conftest import start_vab, wait_until_writing

    proc = start_vab("tokenize", str(long_clip), "--cache", str(cache_dir), *DEBUG)
    wait_until_writing(proc, cache_dir)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert not tmp_entries(cache_dir)
    for meta in cache_dir.glob("*/v*/*/*/meta.json"):  # whatever was committed is whole
        stage, key = meta.parts[-5], meta.parent.name
        assert Cache(cache_dir).lookup(stage, key) is not None


def test_an_interrupt_releases_callers_waiting_on_queued_requests():
    from vabcli.core import cancel
    from vabcli.core.errors import CancelledError

    gate = threading.Event()
    service = BatchingService(lambda items: (gate.wait(), items)[1], 1, "slow")
    running = service.submit("first", 1)  # taken by the service, blocked on the gate
    time.sleep(0.1)
    queued = service.submit("second", 1)
    cancel.request()
    with pytest.raises(CancelledError):
        queued.result(timeout=5)
    gate.set()
    assert running.result(timeout=5) == "first"
    service.close()
