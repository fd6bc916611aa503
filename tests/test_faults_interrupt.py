"""Interrupts anywhere: SIGTERM or SIGKILL at a random moment of `vab generate`, `vab tokenize` and
`vab train`, then the same command again (as cron runs it) must give byte-identical results to a
run that was never interrupted, and leave no temporary file, lock or scratch folder behind.

The moments are drawn from a seeded generator as fractions of an uninterrupted run's wall time,
so each test run hits the same spread of points (startup, model load, decoding, sampling,
writing) however fast the machine is; wherever it lands the property must hold.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_vab, start_vab
from tests.tiny_models import informative_codec, make_checkpoint

DEBUG = ["--codec", "debug", "--image-encoder", "debug"]
# (signal, fraction of the uninterrupted run's wall time at which it lands)
_draw = random.Random(13)
KILLS = [(signal.SIGTERM, _draw.uniform(0.2, 0.9)), (signal.SIGKILL, _draw.uniform(0.2, 0.9))]
# Generate also gets one during start-up (parsing, imports, model loading), before any batch.
GENERATE_KILLS = [*KILLS, (signal.SIGTERM, 0.1)]


def kill_ids(kills: list[tuple[signal.Signals, float]]) -> list[str]:
    return [f"{sig.name}@{fraction:.2f}" for sig, fraction in kills]


def timed_run(*args: str) -> float:
    began = time.monotonic()
    done = run_vab(*args)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - began


def interrupt(args: list[str], sig: signal.Signals, after: float) -> tuple[int, str]:
    """Start `vab ARGS`, send `sig` after `after` seconds (if it is still running); exit code
    and what it said on stderr."""
    proc = start_vab(*args)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def run_interrupt_rerun(
    make_args, tmp_path: Path, sig: signal.Signals, fraction: float, *rerun_extra: str
) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """`vab make_args(tmp_path/"reference")` uninterrupted; then `vab make_args(tmp_path/"hit")`
    given `sig` at `fraction` of the reference's wall time, and the same again (plus
    `rerun_extra`) to the end, as cron would. Returns both folders and the re-run."""
    reference, hit = tmp_path / "reference", tmp_path / "hit"
    seconds = timed_run(*make_args(reference))
    code, stderr = interrupt(make_args(hit), sig, seconds * fraction)
    # 130: vab's own ending; -SIGTERM: it landed while Python was still starting, before vab
    # set its handler (nothing written yet); -SIGKILL: killed outright.
    assert code in (0, 130, -signal.SIGTERM, -signal.SIGKILL), (code, stderr)
    rerun = run_vab(*make_args(hit), *rerun_extra)
    assert rerun.returncode == 0, rerun.stderr
    return reference, hit, rerun


def leftovers(root: Path) -> list[Path]:
    """Temporaries, scratch folders and locks anywhere under `root`."""
    marks = (".tmp-", ".lock")
    return [p for p in root.rglob("*") if any(m in p.name for m in marks)]


def file_bytes(root: Path, pattern: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root` matching `pattern`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob(pattern))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    informative_codec(root / "codec")
    return make_checkpoint(root / "ckpt", codec=root / "codec")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, clip) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for i, (seconds, fps) in enumerate([(3.0, "25"), (2.0, "30"), (4.0, "24000/1001")]):
        source = clip(f"k{i}.mp4", duration=seconds, fps=fps, tone_hz=300.0 + 150 * i)
        (folder / source.name).write_bytes(source.read_bytes())
    return folder


@pytest.mark.parametrize("sig, fraction", GENERATE_KILLS, ids=kill_ids(GENERATE_KILLS))
def test_generate_interrupted_anywhere_then_rerun_gives_the_same_bytes(
    clips, checkpoint, tmp_path, sig, fraction
):
    def args(folder: Path) -> list[str]:
        return [
            "generate",
            str(clips),
            "--out",
            str(folder / "out"),
            "--model",
            str(checkpoint),
            "--cache",
            str(folder / "cache"),
            "--steps",
            "3",
            "--seed",
            "4",
        ]

    reference, hit, _ = run_interrupt_rerun(args, tmp_path, sig, fraction)
    reference, out, cache = reference / "out", hit / "out", hit / "cache"
    for pattern in ("*.wav", "*.mp4"):
        expected = file_bytes(reference, pattern)
        assert len(expected) == 3 and file_bytes(out, pattern) == expected, pattern
    assert sorted(p.name for p in out.glob("*.json")) == ["k0.json", "k1.json", "k2.json"]
    assert leftovers(out) == [] and leftovers(cache) == []


@pytest.mark.parametrize("sig, fraction", KILLS, ids=kill_ids(KILLS))
def test_tokenize_interrupted_anywhere_then_rerun_fills_the_same_cache(
    clips, tmp_path, sig, fraction
):
    def args(cache: Path) -> list[str]:
        return ["tokenize", str(clips), "--cache", str(cache), *DEBUG, "--keep-frames"]

    reference, cache, rerun = run_interrupt_rerun(args, tmp_path, sig, fraction, "--json")
    assert [json.loads(line)["status"] for line in rerun.stdout.splitlines()] == ["ok"] * 3
    expected = file_bytes(reference, "*.npy")
    assert len(expected) == 12  # frames, audio, features and codes of three clips
    assert file_bytes(cache, "*.npy") == expected
    assert leftovers(cache) == []


@pytest.fixture(scope="module")
def manifest(clips, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "manifest.jsonl"
    splits = ["train", "train", "val"]
    lines = [
        json.dumps({"video": str(clips / f"k{i}.mp4"), "split": s}) for i, s in enumerate(splits)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("sig, fraction", KILLS, ids=kill_ids(KILLS))
def test_train_interrupted_anywhere_then_resumed_gives_the_same_weights(
    manifest, tmp_path, sig, fraction
):
    cache = tmp_path / "cache-shared"  # the tokenizing is not what is interrupted here

    def args(out: Path) -> list[str]:
        return [
            "train",
            "--data",
            str(manifest),
            "--out",
            str(out),
            "--cache",
            str(cache),
            *DEBUG,
            "--batch-size",
            "2",
            "--clip-seconds",
            "1",
            "--steps",
            "8",
            "--val-every",
            "2",
            "--workers",
            "1",
            "--seed",
            "3",
        ]

    assert run_vab(*args(tmp_path / "warm"), "--steps", "1").returncode == 0  # fills the cache
    reference, out, _ = run_interrupt_rerun(args, tmp_path, sig, fraction, "--resume")

    def losses(run: Path) -> list[tuple[int, float]]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [(m["step"], m["loss"]) for m in map(json.loads, lines)]

    assert losses(out) == losses(reference)
    for name in ("last/model.safetensors", "best/model.safetensors"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert leftovers(out) == [] and leftovers(cache) == []
