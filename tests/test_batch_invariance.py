"""A clip's audio does not depend on the other clips of its batch: through the real `vab
generate`, a clip alone and the same clip batched with clips of other lengths and frame rates give
byte-identical audio files, also when part of its tokens are kept (`--keep-audio`, `--fill-gaps`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import generate_args, run_vab
from tests.tiny_models import informative_codec, make_checkpoint
from vabcli.config import ModelConfig, SamplingOptions
from vabcli.generation.maskgit import Fill, sample_autoregressive, sample_maskgit
from vabcli.media import ffmpeg
from vabcli.model.transformer import VabModel

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


def tone_with_gap(
    folder: Path, name: str, seconds: float, fps: str, gap: tuple[float, float], hz: float
) -> Path:
    """A test-pattern clip whose tone is silent during `gap` (seconds)."""
    out = folder / name
    ffmpeg.run_checked(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=96x64:rate={fps}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={hz}:sample_rate=48000",
            "-af",
            f"volume=enable='between(t,{gap[0]},{gap[1]})':volume=0",
            "-t",
            str(seconds),
            "-c:v",
            "mjpeg",
            "-c:a",
            "pcm_s16le",
            str(out),
        ],
        out,
    )
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
    done = run_vab(*generate_args(inputs, out, checkpoint, cache, *FAST, *extra))
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


def table_logits(k: int, t: int, v: int):
    """A logits function of position only (row-local, blind to padding and to other rows)."""
    table = torch.randn(k, t, v, generator=torch.Generator().manual_seed(3))

    def fn(codes: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        return table[:, : codes.shape[2]].expand(codes.shape[0], -1, -1, -1)

    return fn


@pytest.mark.parametrize("sampler", [sample_maskgit, sample_autoregressive])
def test_a_row_draws_what_it_draws_alone_when_padded_or_beside_rows_with_more_to_do(sampler):
    k, v, mask, t = 2, 16, 16, 12
    logits = table_logits(k, 20, v)
    row = torch.full((k, t), mask)
    row[:, :3] = 5  # a prompt
    known = torch.full((k, 20), 7)  # nothing to decide
    longer = torch.full((k, 20), mask)
    padded = torch.stack([longer, known, torch.cat([row, torch.zeros(k, 8, dtype=torch.long)], 1)])
    opts = SamplingOptions(steps=5)

    def generators() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(s) for s in (1, 2, 3)]

    alone_gen, batch_gen = generators(), generators()
    alone = sampler(Fill(logits, row[None], mask, alone_gen[2:]), opts)
    batched = sampler(Fill(logits, padded, mask, batch_gen, lengths=[20, 20, t]), opts)
    assert torch.equal(batched[2, :, :t], alone[0])
    # The streams go on where they would alone (the next window of each clip draws from them).
    assert torch.equal(batch_gen[2].get_state(), alone_gen[2].get_state())
    assert torch.equal(batch_gen[1].get_state(), generators()[1].get_state())  # drew nothing


def test_a_padded_row_gets_the_logits_it_gets_alone():
    """At the bundled model's size, where masked attention over padding rounded differently."""
    cfg = ModelConfig(
        visual_dim=64,
        n_codebooks=4,
        codebook_size=1024,
        d_model=192,
        n_heads=4,
        n_multiway=2,
        n_shared=2,
        visual_fps=8.0,
        audio_frame_rate=50.0,
    )
    torch.manual_seed(0)
    model = VabModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    sizes = [(32, 200), (16, 100), (10, 65)]  # longer, the row under test, shorter
    rows = [
        (torch.randn(n_v, 64, generator=g), torch.randint(0, 1025, (4, n_a), generator=g))
        for n_v, n_a in sizes
    ]
    visual, codes = torch.zeros(3, 32, 64), torch.zeros(3, 4, 200, dtype=torch.long)
    visual_keep, audio_keep = torch.zeros(3, 32, dtype=torch.bool), torch.zeros(3, 200).bool()
    for i, ((v, c), (n_v, n_a)) in enumerate(zip(rows, sizes, strict=True)):
        visual[i, :n_v], codes[i, :, :n_a] = v, c
        visual_keep[i, :n_v], audio_keep[i, :n_a] = True, True
    with torch.inference_mode():
        batched = model(visual, codes, None, visual_keep, audio_keep)
        for i, ((v, c), (_, n_a)) in enumerate(zip(rows, sizes, strict=True)):
            assert torch.equal(batched[i, :, :n_a], model(v[None], c[None])[0]), sizes[i]
