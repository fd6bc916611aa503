"""Shared fixtures: synthetic clips (made once per session), an isolated cache, the CLI runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vabcli.core import cancel
from vabcli.media import ffmpeg
from vabcli.media.testing import ClipSpec, make_clip

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Never touch the user's cache; every test starts with no pending cancellation."""
    monkeypatch.setenv("VAB_CACHE", str(tmp_path / "default-cache"))
    cancel.reset()
    yield
    cancel.reset()


@pytest.fixture(autouse=True)
def _subnormal_floats_for_hypothesis(request):
    """Loading a codec turns on torch's flush-to-zero of denormal floats (for speed), and
    hypothesis's float strategies refuse to run in that state (they see 5e-324 as zero): off
    for a property-based test, back on after it, as the codec left it."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(request.function, "hypothesis"):
        yield
        return
    torch.set_flush_denormal(False)
    yield
    codec = sys.modules.get("vabcli.encoders.audio_codec")
    if getattr(codec, "_denormals_flushed", False):
        torch.set_flush_denormal(True)


class ClipFactory:
    """Makes each distinct (name, spec) clip once per session and returns its path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[tuple[str, ClipSpec], Path] = {}

    def __call__(self, name: str, **spec_fields) -> Path:
        spec = ClipSpec(**spec_fields)
        key = (name, spec)
        if key not in self.made:
            folder = self.root / f"clip{len(self.made)}"
            self.made[key] = make_clip(folder / name, spec)
        return self.made[key]


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> ClipFactory:
    return ClipFactory(tmp_path_factory.mktemp("clips"))


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


VAB = [sys.executable, "-m", "vabcli"]


@pytest.fixture
def long_clip(clip) -> Path:
    """A ten-minute clip (tiny frames, so it is quick to make and to decode)."""
    return clip("long.mp4", duration=600.0, fps="12", width=64, height=48, sample_rate=8000)


def start_vab(*args: str) -> subprocess.Popen:
    """Start the real `vab` in the background (for interrupting it).

    SIGINT is reset to its default in the child: a test run started as a background job
    inherits SIGINT ignored (the shell's rule), and Python keeps an ignored SIGINT ignored.
    """
    return subprocess.Popen(
        [*VAB, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def tmp_entries(root: Path) -> list[Path]:
    """Everything under `root` still under a temporary (".tmp-") name."""
    return [p for p in root.rglob("*") if ".tmp-" in p.name] if root.exists() else []


def wait_until_writing(proc: subprocess.Popen, root: Path, timeout: float = 90) -> None:
    """Wait until `proc` has a temporary entry under `root` (so an interrupt lands mid-write).

    Fails at once, with the process's stderr, if it exits first: a loaded CI machine once ran
    out the clock here with no clue whether the process had died, finished or was just slow.
    """
    deadline = time.monotonic() + timeout
    while not tmp_entries(root):
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"exited ({proc.returncode}) before writing under {root}:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"nothing written under {root} in {timeout:.0f} s; stderr:\n{err}")
        time.sleep(0.05)


def generate_args(inputs, out: Path, checkpoint: Path, cache: Path, *extra: str) -> list[str]:
    """`generate INPUT... --out OUT --model CKPT --cache CACHE EXTRA...`, as arguments."""
    paths = ["--out", str(out), "--model", str(checkpoint), "--cache", str(cache)]
    return ["generate", *map(str, inputs), *paths, *extra]


def run_vab(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real `vab` entry point in a subprocess (as a shell or cron job would)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*VAB, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def late_video(tmp_path, clip):
    """Picture starting 0.5 s after the sound (as in some camera and editor exports): sound is
    silent until the picture starts, then a tone."""
    picture = clip("picture.mp4", duration=2.5, audio=False)
    sound = tmp_path / "sound.m4a"
    ffmpeg.run_checked(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-af",
            "volume=enable='lt(t,0.5)':volume=0",
            "-t",
            "3",
            "-c:a",
            "aac",
            str(sound),
        ],
        sound,
    )
    late = tmp_path / "late.mp4"
    ffmpeg.run_checked(
        [
            "-itsoffset",
            "0.5",
            "-i",
            str(picture),
            "-i",
            str(sound),
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c",
            "copy",
            str(late),
        ],
        late,
    )
    return late
