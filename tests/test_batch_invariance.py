"""A clip's audio does not depend on the other clips of its batch: through the real `vab
generate`, a clip alone and the same clip batched with clips of other lengths and frame rates give
byte-identical audio files, also when part of its tokens are kept (`--keep-audio`, `--fill-gaps`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_vab
from tests.tiny_models import informative_codec, make_checkpoint
from vabcli import ffmpeg

FAST = ["--steps", "4", "--workers", "2", "--no-mux"]
# The checkpoint's window is 2 s (1 s of context); `--window 4` makes each clip one window, so the
# clip under test is padded to the longer one's length. Under --fill-gaps the 2 s windows leave
# its first window without a gap (nothing to sample) while its batch-mates sample theirs.
MODES = {
    "plain": ["--window", "4"],
    "keep-audio": ["--window", "4", "--keep-audio", "0.5"],
    "fill-gaps": ["--fill-gaps"],
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    informative_codec(root / "codec")
    return make_checkpoint(root / "ckpt", window=2.0, codec=root / "codec")


def tone_with_gap(folder: Path, name: str, seconds: float, fps: str, gap: tuple[float, float],
                  hz: float) -> Path:  # fmt: skip
    """A test-pattern clip whose tone is silent during `gap` (seconds)."""
    out = folder / name
    ffmpeg.run_checked(["-f", "lavfi", "-i", f"testsrc2=size=96x64:rate={fps}",
                        "-f", "lavfi", "-i", f"sine=frequency={hz}:sample_rate=48000",
                        "-af", f"volume=enable='between(t,{gap[0]},{gap[1]})':volume=0",
                        "-t", str(seconds), "-c:v", "mjpeg", "-c:a", "pcm_s16le", str(out)],
                       out)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Longer (4.2 s at 30 fps), the clip under test (3 s at 25 fps), shorter (1.3 s at 12 fps)."""
    folder = tmp_path_factory.mktemp("clips")
    return [
        tone_with_gap(folder, "longer.mov", 4.2, "30", (0.5, 1.1), 660.0),
        tone_with_gap(folder, "middle.mov", 3.0, "25", (2.2, 2.8), 440.0),
        tone_with_gap(folder, "shorter.mov", 1.3, "12", (0.3, 0.9), 330.0),
    ]


def wavs(inputs: list[Path], out: Path, checkpoint: Path, cache: Path, *extra: str) -> list:
    done = run_vab("generate", *map(str, inputs), "--out", str(out), "--model", str(checkpoint),
                   "--cache", str(cache), *FAST, *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [(out / f"{p.stem}.wav").read_bytes() for p in inputs]


def test_a_clip_alone_sounds_as_in_a_batch_of_other_lengths(clips, checkpoint, tmp_path, cache_dir):
    """The issue's case: one clip alone, then batched with a longer and a shorter one."""
    (alone,) = wavs([clips[1]], tmp_path / "alone", checkpoint, cache_dir, *MODES["plain"])
    batched = wavs(clips, tmp_path / "batched", checkpoint, cache_dir, "-b", "3", *MODES["plain"])
    assert batched[1] == alone


@pytest.mark.parametrize("mode", MODES)
def test_every_clip_sounds_the_same_whatever_its_batch(
    mode, clips, checkpoint, tmp_path, cache_dir
):
    """`-b 1` gives every clip a batch of its own: the three-clip batch must not change a byte."""
    one_by_one = wavs(clips, tmp_path / "one", checkpoint, cache_dir, "-b", "1", *MODES[mode])
    batched = wavs(clips, tmp_path / "batched", checkpoint, cache_dir, "-b", "3", *MODES[mode])
    assert batched == one_by_one
    assert len(set(batched)) == 3  # three clips, three sounds: the comparison means something
