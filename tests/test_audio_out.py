"""Tokens to an audio file: exact length, chunked synthesis that matches one-pass synthesis."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import soundfile
import torch

from tests.faults import small_disk
from tests.tiny_models import informative_codec
from vabcli.encoders.audio_codec import load_codec
from vabcli.generation import audio_file as audio_out
from vabcli.media.testing import write_tone


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec")
    informative_codec(folder)
    return load_codec(str(folder))


@pytest.mark.parametrize("fmt, n_samples", [("wav", 24_000 * 3 - 7), ("flac", 24_000 * 4 + 11)])
def test_exactly_n_samples_whatever_the_tokens_cover(codec, tmp_path, monkeypatch, fmt, n_samples):
    monkeypatch.setattr(audio_out, "SYNTHESIS_CHUNK_SECONDS", 0.5)  # many chunks, short test
    codes = torch.randint(0, codec.codebook_size, (codec.n_codebooks, 263))  # 3.51 s of tokens
    path = tmp_path / f"out.{fmt}"
    audio_out.write_tokens_as_audio(codec, audio_out.AudioOutput(codes, n_samples), path, fmt)
    info = soundfile.info(str(path))
    assert info.frames == n_samples and info.samplerate == 24_000 and info.channels == 1
    chunked, _ = soundfile.read(str(path), dtype="float32")
    whole = codec.synthesize(codes[None])[0, 0].numpy()
    n = min(len(whole), n_samples)
    # one second of left context per chunk makes the seams match one-pass synthesis closely
    error = np.abs(chunked[:n] - np.clip(whole[:n], -1, 1)).max()
    assert error < 0.02 * np.abs(whole).max() + 2 / 32768, error
    assert not chunked[n:].any()  # past the tokens: silence


def test_a_full_disk_is_the_system_error_it_was_and_a_cut_file_is_caught(codec, tmp_path):
    codes = torch.randint(0, codec.codebook_size, (codec.n_codebooks, 150))  # 2 s: 96 KB of WAV
    disk = tmp_path / "disk"
    with small_disk(disk, "64k"):
        with pytest.raises(OSError) as caught:
            audio_out.write_tokens_as_audio(
                codec, audio_out.AudioOutput(codes, 48_000), disk / "a.wav"
            )
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(disk / "a.wav")
    check = audio_out.samples_short(48_000)
    whole = tmp_path / "whole.wav"
    audio_out.write_tokens_as_audio(codec, audio_out.AudioOutput(codes, 48_000), whole)
    assert check(whole) is None
    assert check(write_tone(tmp_path / "short.wav", 1.0)) == "24000 of 48000 samples"
