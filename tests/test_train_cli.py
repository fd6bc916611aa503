"""`vab train` as users run it: manifest in, run folder out, clear errors, resume."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_vab

DEBUG = ["--codec", "debug", "--image-encoder", "debug"]
SHORT = ["--batch-size", "2", "--clip-seconds", "1", "--val-every", "2", "--workers", "1"]


@pytest.fixture
def manifest(clip, tmp_path):
    lines = []
    for i, (split, audio) in enumerate([("train", True), ("train", True), ("train", False),
                                         ("val", True), ("test", True)]):  # fmt: skip
        path = clip(f"c{i}.mp4", duration=1.5, tone_hz=300.0 + 50 * i, audio=audio)
        lines.append(json.dumps({"video": str(path), "split": split, "label": f"l{i}"}))
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    lines.append(json.dumps({"video": "broken.mp4", "split": "train"}))
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def train(manifest, out, cache, *extra):
    return run_vab("train", "--data", str(manifest), "--out", str(out), "--cache", str(cache),
                   *DEBUG, *SHORT, *extra)  # fmt: skip


def test_train_writes_a_run_and_reports_what_it_skipped(manifest, tmp_path, cache_dir):
    done = train(manifest, tmp_path / "run", cache_dir, "--steps", "2", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["step"] == 2 and "val_loss" in summary
    assert "2 train and 1 val clips; skipped 1 without audio and 1 that failed" in done.stderr
    assert "M parameters" in done.stderr
    for name in ["last/model.safetensors", "last/config.json", "best/config.json"]:
        assert (tmp_path / "run" / name).is_file()
    resumed = train(manifest, tmp_path / "run", cache_dir, "--steps", "4", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4]


def test_unusable_data_stops_with_one_line(tmp_path, cache_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = train(empty, tmp_path / "run", cache_dir)
    assert done.returncode == 1 and "no train or val clips" in done.stderr
    (tmp_path / "bad.mp4").write_bytes(b"x")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"video": "bad.mp4"}\n')
    done = train(broken, tmp_path / "run", cache_dir)
    assert done.returncode == 1 and "no usable training clips: 1 failed" in done.stderr
    assert not (tmp_path / "run").exists()


def test_bad_model_override_is_a_usage_error(manifest, tmp_path, cache_dir):
    done = train(
        manifest, tmp_path / "run", cache_dir, "--set", "d_model=100", "--set", "n_heads=3"
    )
    assert done.returncode == 2
