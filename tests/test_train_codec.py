"""Training the bundled codec: its data stream and a few steps through to a loadable codec."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vabcli.encoders.audio_codec import load_codec
from vabcli.world.train_codec import WORLD_CODEC, CodecTrainOptions, WorldAudio, train_codec


def test_world_audio_batches_are_repeatable_and_hold_sound():
    first = WorldAudio(seed=3, crop_seconds=0.25, batch_size=4).batch()
    again = WorldAudio(seed=3, crop_seconds=0.25, batch_size=4).batch()
    other = WorldAudio(seed=3, crop_seconds=0.25, batch_size=4, stream=1).batch()
    assert first.shape == (4, 1, 4000)
    assert torch.equal(first, again) and not torch.equal(first, other)
    # Crops are centred on sounds nine times in ten: most rows are not silent.
    assert (first.abs().amax(dim=-1) > 0.05).float().mean() >= 0.5


def test_a_few_steps_write_a_codec_that_loads_and_codes(tmp_path):
    small = dataclasses.replace(WORLD_CODEC, n_filters=2, dimension=8, lstm=0, n_q=2, bins=16)
    opts = CodecTrainOptions(
        steps=3, batch_size=2, crop_seconds=0.25, warmup_steps=1, init_seconds=2.0
    )
    lines: list[str] = []
    train_codec(tmp_path / "codec", opts, small, log=lines.append)
    assert lines[-1].startswith("codec step 3/3") and "codes used [" in lines[-1]
    codec = load_codec(str(tmp_path / "codec"))
    assert codec.sample_rate == WORLD_CODEC.sample_rate
    wav = torch.from_numpy(np.sin(np.linspace(0, 900, 3200, dtype=np.float32)))[None, None]
    codes = codec.encode(wav)
    assert codes.shape[-2] == 2 and 0 <= int(codes.min()) and int(codes.max()) < 16
    assert codec.synthesize(codes).shape[-1] >= 3200
