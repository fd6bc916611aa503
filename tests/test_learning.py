"""Learning, not just running: the whole chain on clips whose sound follows from their picture.

The codec is the debug EnCodec architecture made *informative* without training: each encoder
convolution rescaled to unit output spread on real audio (LSUV; with default init the encoder
output barely depends on its input) and the quantizer's codebooks k-means-initialised from the
encoder output, as EnCodec training itself starts. Its tokens are then a deterministic function
of the sound (different tones, different token sequences), which is all this test needs. It is
saved as a codec folder and used through `--codec FOLDER`, like any codec trained here.
"""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import run_vab
from tests.tiny_models import COLOURS_AND_TONES, informative_codec
from vabcli.core.cache import Cache
from vabcli.encoders.tokenize import latent_files


def test_tiny_model_learns_tokens_of_sounds_that_follow_pictures(clip, tmp_path, cache_dir):
    codec = tmp_path / "codec"
    informative_codec(codec)
    lines, videos = [], []
    for colour, hz in COLOURS_AND_TONES:
        source = f"color=c={colour}:size=64x64:rate=25"
        video = clip(f"{colour}.mp4", duration=1.0, video_source=source, tone_hz=hz)
        videos.append(str(video))
        lines += [json.dumps({"video": str(video), "split": s}) for s in ("train", "val")]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    schedule = ["--steps", "150", "--val-every", "150", "--lr", "2e-3", "--warmup-steps", "10"]
    done = run_vab(
        "train",
        "--data",
        str(manifest),
        "--out",
        str(tmp_path / "run"),
        "--cache",
        str(cache_dir),
        "--codec",
        str(codec),
        "--image-encoder",
        "debug",
        "--batch-size",
        "8",
        "--clip-seconds",
        "1",
        *schedule,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    print(f"val masked-token accuracy {result['val_accuracy']:.3f} after 150 steps")
    assert result["val_accuracy"] > 0.3, done.stdout  # chance: 1 in 1024
    # The tokens carry the sound: each tone its own sequence, with many codes in use.
    listed = run_vab(
        "tokenize",
        *videos,
        "--cache",
        str(cache_dir),
        "--codec",
        str(codec),
        "--image-encoder",
        "debug",
        "--json",
    )
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert all(r["cache_hit"] for r in records)
    codes = [np.load(latent_files(Cache(cache_dir), r)[1]) for r in records]
    assert all(len(np.unique(c[0])) > 10 for c in codes)
    assert all(not np.array_equal(codes[0], other) for other in codes[1:])
