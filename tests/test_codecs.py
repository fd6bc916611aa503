"""Audio codecs: shapes, stable ids, every weights source, fast offline failure, codec folders."""

from __future__ import annotations

import json
import math
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from encodec import EncodecModel

from vabcli.core.errors import CodecError, CodecWeightsMissingError, VabError
from vabcli.encoders import audio_codec as codecs
from vabcli.encoders.audio_codec import (
    ENCODEC_24KHZ_FILE,
    AudioCodec,
    CodecConfig,
    EncodecAudioCodec,
    build_model,
    load_codec,
    read_codec_config,
    save_codec_dir,
)

PARAM = "encoder.model.0.conv.conv.weight_v"


@pytest.fixture(autouse=True)
def _offline_and_empty_hub(tmp_path, monkeypatch) -> Path:
    """No test may reach the network or the user's real torch hub cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    return tmp_path / "empty_torch_home"


@pytest.fixture(scope="module")
def hub_state(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random-init 24 kHz EnCodec saved where encodec's download would put it."""
    torch_home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(1)
    with pytest.warns(FutureWarning, match="weight_norm"):  # encodec's deprecated weight_norm
        state = EncodecModel.encodec_model_24khz(pretrained=False).state_dict()
    file = torch_home / "hub" / "checkpoints" / ENCODEC_24KHZ_FILE
    file.parent.mkdir(parents=True)
    torch.save(state, file)
    return torch_home, state


def test_debug_codec_shapes():
    codec = load_codec("debug")
    assert isinstance(codec, AudioCodec)
    assert (codec.sample_rate, codec.frame_rate, codec.n_codebooks) == (24000, 75.0, 4)
    codes = codec.encode(torch.randn(2, 1, 24000))
    assert codes.shape == (2, 4, 75)
    assert codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < codec.codebook_size == 1024
    wav = codec.synthesize(codes)
    assert wav.shape == (2, 1, 24000) and wav.dtype == torch.float32
    assert not any(p.requires_grad for p in codec.model.parameters())
    assert not codec.model.training


@pytest.mark.parametrize("n_samples", [1, 319, 320, 321, 24001])
def test_token_count_is_ceil_of_samples_over_hop(n_samples):
    codec = load_codec("debug")
    codes = codec.encode(torch.randn(1, 1, n_samples))
    assert codes.shape[-1] == math.ceil(n_samples / codec.hop_length)
    assert codec.synthesize(codes).shape[-1] == codes.shape[-1] * codec.hop_length


def test_debug_id_is_stable_across_loads_and_processes():
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    first = load_codec("debug").id
    # The debug codec's fixed seed must not reset the caller's random stream.
    assert torch.equal(torch.rand(3), expected_draw)
    assert re.fullmatch(r"debug@3kbps-[0-9a-f]{8}", first)
    assert load_codec("debug").id == first
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vabcli.encoders.audio_codec import load_codec; print(load_codec('debug').id)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == first
    assert load_codec("debug", bandwidth=1.5).id != first


def test_shapes_are_checked_at_the_boundary():
    codec = load_codec("debug")
    with pytest.raises(ValueError, match=r"\[B, 1, S\]"):
        codec.encode(torch.randn(1, 24000))
    with pytest.raises(ValueError, match=r"\[B, 1, S\]"):
        codec.encode(torch.randn(1, 2, 24000))
    with pytest.raises(ValueError, match=r"\[B, K, T\]"):
        codec.synthesize(torch.zeros(1, 3, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="lie in"):
        codec.synthesize(torch.full((1, 4, 10), 1024))


def test_outputs_can_feed_training():
    """Tensors made under inference_mode cannot be saved for backward; ours are plain."""
    codec = load_codec("debug")
    codes = codec.encode(torch.randn(1, 1, 2400))
    wav = codec.synthesize(codes)
    embedding = torch.nn.Embedding(codec.codebook_size, 3)
    scale = torch.ones(1, requires_grad=True)
    (embedding(codes).sum() + (scale * wav).sum()).backward()
    assert embedding.weight.grad is not None and scale.grad is not None


def test_bandwidth_levels_survive_float_error():
    # 22050 / 320 frames/s: 3 codebooks are 2.067 kbps, and floor(2.067 / 0.689...) is 2.
    config = CodecConfig(name="odd", sample_rate=22050, n_q=8)
    levels = [config.codebooks_for(b) for b in config.target_bandwidths()]
    assert levels == list(range(1, 9))
    assert config.listed_bandwidth(2.0670001) == 2.067
    with pytest.raises(CodecError, match="no 1 kbps setting"):
        config.codebooks_for(1.0)
    with pytest.raises(CodecError, match=r"no 0.75 kbps setting \(one of 1.5, 3, 6, 12, 24\)"):
        load_codec("encodec_24khz", bandwidth=0.75)


def test_flush_denormal_is_on_after_load():
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        pytest.skip("flush-to-zero is an x86 SSE3 feature")
    load_codec("debug")
    assert (torch.tensor([1e-40]) * 1.0).item() == 0.0


def test_hub_cache_weights(hub_state, monkeypatch):
    torch_home, state = hub_state
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    assert codecs.hub_weights_path() == torch_home / "hub" / "checkpoints" / ENCODEC_24KHZ_FILE
    codec = load_codec("encodec_24khz")
    assert torch.equal(codec.model.state_dict()[PARAM], state[PARAM])
    assert re.fullmatch(r"encodec_24khz@3kbps-[0-9a-f]{8}", codec.id)
    wav = torch.randn(1, 1, 24000)
    assert codec.encode(wav).shape == (1, 4, 75)
    wide = load_codec("encodec_24khz", bandwidth=6.0)
    assert wide.encode(wav).shape == (1, 8, 75)
    assert wide.id != codec.id
    assert wide.id.split("-")[-1] == codec.id.split("-")[-1]  # same weights, same digest


def test_codec_weights_file_th_and_safetensors(hub_state, tmp_path):
    _, state = hub_state
    changed = {k: v.clone() for k, v in state.items()}
    changed[PARAM] += 0.5
    torch.save(changed, tmp_path / "w.th")
    safetensors.torch.save_file(changed, str(tmp_path / "w.safetensors"))
    from_th = load_codec("encodec_24khz", weights=tmp_path / "w.th")
    from_st = load_codec("encodec_24khz", weights=tmp_path / "w.safetensors")
    for codec in (from_th, from_st):
        assert torch.equal(codec.model.state_dict()[PARAM], changed[PARAM])
    assert from_th.id == from_st.id  # the id hashes tensors, not files
    assert from_th.encode(torch.randn(1, 1, 3200)).shape == (1, 4, 10)
    original = build_model(codecs.ENCODEC_24KHZ)
    original.load_state_dict(state)
    assert codecs.weights_digest(original, codecs.ENCODEC_24KHZ)[:8] not in from_th.id


def test_weights_that_do_not_fit_are_one_line_errors(tmp_path):
    wrong = tmp_path / "debug.safetensors"
    safetensors.torch.save_file(load_codec("debug").model.state_dict(), str(wrong))
    with pytest.raises(CodecError, match="do not fit the encodec_24khz") as err:
        load_codec("encodec_24khz", weights=wrong)
    assert "\n" not in str(err.value)
    garbage = tmp_path / "garbage.th"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CodecError, match="cannot read codec weights") as err:
        load_codec("encodec_24khz", weights=garbage)
    assert "\n" not in str(err.value)
    with pytest.raises(CodecWeightsMissingError, match="does not exist"):
        load_codec("encodec_24khz", weights=tmp_path / "absent.th")


@pytest.mark.parametrize("env", ["HF_HUB_OFFLINE", "VAB_OFFLINE"])
def test_offline_failure_is_fast_and_says_what_to_do(env, monkeypatch, _offline_and_empty_hub):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(env, "1")
    start = time.monotonic()
    with pytest.raises(CodecWeightsMissingError) as err:
        load_codec("encodec_24khz")
    assert time.monotonic() - start < 2.0
    message = str(err.value)
    assert "\n" not in message
    assert ENCODEC_24KHZ_FILE in message and "--codec-weights FILE" in message
    assert str(_offline_and_empty_hub / "hub" / "checkpoints") in message
    assert isinstance(err.value, VabError)


def test_download_route_when_the_host_answers(hub_state, monkeypatch):
    """Online and not cached: encodec's URL through torch.hub, with its hash check."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("VAB_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(codecs, "host_reachable", lambda *a: True)

    def fake_download(url, **kwargs):
        calls.append((url, kwargs))
        return hub_state[1]

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    load_codec("encodec_24khz")
    assert calls[0][0] == "https://dl.fbaipublicfiles.com/encodec/v0/" + ENCODEC_24KHZ_FILE
    assert calls[0][1]["check_hash"] is True
    monkeypatch.setattr(codecs, "host_reachable", lambda *a: False)
    with pytest.raises(CodecWeightsMissingError):
        load_codec("encodec_24khz")
    assert len(calls) == 1


def test_unknown_names_and_misused_options(tmp_path):
    with pytest.raises(CodecError, match="unknown codec 'nope': use builtin, encodec_24khz, debug"):
        load_codec("nope")
    with pytest.raises(CodecError, match="no codec folder at"):
        load_codec(str(tmp_path / "missing"))
    with pytest.raises(CodecError, match="applies to encodec_24khz only"):
        load_codec("debug", weights=tmp_path / "w.th")
    with pytest.raises(CodecError, match="has no 2 kbps"):
        load_codec("debug", bandwidth=2.0)


SMALL = CodecConfig(
    name="tiny16k",
    sample_rate=16000,
    n_filters=4,
    dimension=8,
    ratios=(4, 4, 2),
    lstm=1,
    n_q=3,
    bins=64,
)


def _model_with_spread_codebooks(config: CodecConfig, wav: torch.Tensor) -> EncodecModel:
    """Random-init codebooks emit only code 0; seed them from encoder frames so codes vary."""
    torch.manual_seed(2)
    model = build_model(config).eval()
    with torch.no_grad():
        frames = model.encoder(wav).transpose(1, 2).reshape(-1, config.dimension)
        for layer in model.quantizer.vq.layers:
            picks = frames[torch.randint(0, len(frames), (config.bins,))]
            layer._codebook.embed.copy_(picks + 0.01 * torch.randn_like(picks))
            layer._codebook.inited.fill_(1)
    return model


def test_codec_folder_round_trip(tmp_path):
    wav = torch.randn(2, 1, 8000)
    model = _model_with_spread_codebooks(SMALL, wav)
    save_codec_dir(model, SMALL, tmp_path / "codec")
    on_disk = json.loads((tmp_path / "codec" / "config.json").read_text())
    assert on_disk["format_version"] == 1 and on_disk["ratios"] == [4, 4, 2]
    assert read_codec_config(tmp_path / "codec" / "config.json") == SMALL

    loaded = load_codec(str(tmp_path / "codec"), bandwidth=SMALL.target_bandwidths()[-1])
    in_memory = EncodecAudioCodec(model, SMALL, SMALL.target_bandwidths()[-1])
    saved, reread = in_memory.model.state_dict(), loaded.model.state_dict()
    assert saved.keys() == reread.keys() and any(k.endswith("weight_g") for k in saved)
    assert all(torch.equal(saved[k], reread[k]) for k in saved)
    codes = loaded.encode(wav)
    assert codes.shape == (2, 3, 250)
    assert codes.unique().numel() > 10  # a meaningful round trip, not all zeros
    assert torch.equal(codes, in_memory.encode(wav))
    assert torch.equal(loaded.synthesize(codes), in_memory.synthesize(codes))
    assert loaded.id == in_memory.id and loaded.id.startswith("tiny16k@")


def test_codec_folder_errors(tmp_path):
    folder = tmp_path / "codec"
    save_codec_dir(build_model(SMALL), SMALL, folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(CodecError, match="has no weights.safetensors"):
        load_codec(str(folder))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_filter": 4}))
    with pytest.raises(CodecError, match="unknown keys n_filter"):
        read_codec_config(folder / "config.json")
    (folder / "config.json").write_text(json.dumps({**config, "bins": 100}))
    with pytest.raises(CodecError, match="power of 2"):
        read_codec_config(folder / "config.json")
    (folder / "config.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(CodecError, match="not a vab codec config"):
        read_codec_config(folder / "config.json")


@pytest.mark.parametrize("env", [{}, {"TORCH_HOME": "/somewhere/th"}, {"XDG_CACHE_HOME": "/x"}])
def test_hub_path_without_torch_agrees_with_torch(monkeypatch, env):
    from vabcli.encoders.ids import torch_hub_dir

    for var in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert torch_hub_dir() == Path(torch.hub.get_dir())


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("unpickled: this could have been any code",))


def test_a_pickle_holding_code_is_refused_plainly(tmp_path):
    evil = tmp_path / "evil.th"
    torch.save({"weight": _RunsCodeWhenUnpickled()}, evil)
    with pytest.raises(CodecError) as err:
        load_codec("encodec_24khz", weights=evil)
    message = str(err.value)
    assert "\n" not in message and "evil.th" in message
    assert "never unpickles" in message and ".safetensors" in message
    assert "weights_only" not in message  # torch's advice to turn the protection off
