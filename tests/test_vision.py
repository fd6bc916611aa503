"""Image encoders: the debug model, local files and folders, cached and missing pretrained tags."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import safetensors.torch
import torch
from huggingface_hub import constants as hf_constants

from vabcli.encoders import image as vision
from vabcli.encoders.image import (
    DEBUG_MODEL_CFG,
    OpenClipVisualEncoder,
    VisualEncoder,
    VisualEncoderError,
    VisualWeightsMissingError,
    create_debug_model,
    load_visual_encoder,
    save_local_dir,
)

# The hub repo and file open_clip reads for ViT-B-32:openai (see open_clip/pretrained.py).
OPENAI_B32_REPO = "timm/vit_base_patch32_clip_224.openai"
OPENAI_B32_FILE = "open_clip_model.safetensors"


def _frames(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _hash_part(encoder_id: str) -> str:
    return encoder_id.rsplit("-", 1)[1]


@pytest.fixture(scope="module")
def debug_encoder() -> OpenClipVisualEncoder:
    return load_visual_encoder("debug")


@pytest.fixture(scope="module")
def vitb32(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A random-init ViT-B-32 (the default architecture) and its weights saved as safetensors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        model = open_clip.create_model("ViT-B-32")
    path = tmp_path_factory.mktemp("vitb32") / "weights.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path))
    return model, path


def test_debug_encoder_gives_unit_rows_of_dim_32(debug_encoder):
    frames = _frames(5)
    frames.setflags(write=False)  # as the cache's memory-mapped frames arrive
    out = debug_encoder.encode(frames)
    assert isinstance(debug_encoder, VisualEncoder)
    assert debug_encoder.dim == 32
    assert out.shape == (5, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert debug_encoder.encode(frames[:0]).shape == (0, 32)


def test_other_frame_sizes_are_resized(debug_encoder):
    assert debug_encoder.encode(_frames(3, size=96)).shape == (3, 32)
    # A flat colour stays flat under resizing, so 96 px and 224 px must encode alike.
    small = np.full((1, 96, 96, 3), (200, 30, 90), dtype=np.uint8)
    large = np.full((1, 224, 224, 3), (200, 30, 90), dtype=np.uint8)
    np.testing.assert_allclose(debug_encoder.encode(small), debug_encoder.encode(large), atol=1e-5)


def test_batch_size_does_not_change_features(debug_encoder):
    frames = _frames(5, seed=1)
    small_batches = load_visual_encoder("debug", batch_size=2)
    np.testing.assert_allclose(
        small_batches.encode(frames), debug_encoder.encode(frames), atol=1e-6
    )


def test_different_frames_give_different_features(debug_encoder):
    a, b = debug_encoder.encode(_frames(2, seed=2))
    assert not np.allclose(a, b, atol=1e-3)


def test_encoder_is_frozen_and_in_eval_mode(debug_encoder):
    assert not debug_encoder.visual.training
    assert not any(p.requires_grad for p in debug_encoder.visual.parameters())


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 224, 224, 3), dtype=np.float32),
        np.zeros((224, 224, 3), dtype=np.uint8),
        np.zeros((2, 224, 224, 4), dtype=np.uint8),
    ],
)
def test_encode_rejects_wrong_dtype_or_shape(debug_encoder, bad):
    with pytest.raises(ValueError, match="frames must be"):
        debug_encoder.encode(bad)


def test_debug_id_is_stable_and_follows_the_weights(debug_encoder):
    assert debug_encoder.id.startswith("debug-")
    assert load_visual_encoder("debug").id == debug_encoder.id
    reseeded = OpenClipVisualEncoder(create_debug_model(seed=1), "debug")
    assert reseeded.id != debug_encoder.id


def test_debug_id_is_the_same_in_another_process(debug_encoder):
    code = (
        "from vabcli.encoders.image import load_visual_encoder; "
        "print(load_visual_encoder('debug').id)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == debug_encoder.id
    assert "WARNING" not in done.stderr  # open_clip's log lines must not reach the terminal


def test_local_dir_round_trip(tmp_path, debug_encoder):
    model = create_debug_model(seed=7)
    save_local_dir(model, DEBUG_MODEL_CFG, tmp_path / "enc")
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == [
        "open_clip_config.json",
        "open_clip_model.safetensors",
    ]
    loaded = load_visual_encoder(f"local-dir:{tmp_path / 'enc'}")
    in_memory = OpenClipVisualEncoder(model, "memory")
    frames = _frames(4, seed=3)
    np.testing.assert_allclose(loaded.encode(frames), in_memory.encode(frames), atol=1e-6)
    assert loaded.id.startswith("local-dir-")
    assert _hash_part(loaded.id) == _hash_part(in_memory.id)
    assert _hash_part(loaded.id) != _hash_part(debug_encoder.id)


def test_local_dir_without_weights_is_refused(tmp_path):
    save_local_dir(create_debug_model(), DEBUG_MODEL_CFG, tmp_path)
    (tmp_path / "open_clip_model.safetensors").unlink()
    # open_clip itself would random-initialise here and only log it.
    with pytest.raises(VisualEncoderError, match="has no weights"):
        load_visual_encoder(f"local-dir:{tmp_path}")


def test_local_dir_with_mismatched_weights_is_one_line_error(tmp_path):
    bigger = {**DEBUG_MODEL_CFG, "vision_cfg": {**DEBUG_MODEL_CFG["vision_cfg"], "layers": 3}}
    save_local_dir(create_debug_model(), bigger, tmp_path)
    with pytest.raises(VisualEncoderError, match="cannot load image encoder folder") as info:
        load_visual_encoder(f"local-dir:{tmp_path}")
    assert "\n" not in str(info.value)


def test_weights_file_loads_through_open_clip(vitb32):
    model, path = vitb32
    loaded = load_visual_encoder(f"ViT-B-32:{path}")
    in_memory = OpenClipVisualEncoder(model, "memory")
    frames = _frames(3, seed=4)
    np.testing.assert_allclose(loaded.encode(frames), in_memory.encode(frames), atol=1e-5)
    assert loaded.dim == 512
    assert loaded.id.startswith("ViT-B-32:file-")
    assert _hash_part(loaded.id) == _hash_part(in_memory.id)


def test_weights_file_that_does_not_fit_is_one_line_error(tmp_path):
    path = tmp_path / "debug.safetensors"
    safetensors.torch.save_file(create_debug_model().state_dict(), str(path))
    with pytest.raises(VisualEncoderError, match="cannot load .* as ViT-S-32-alt weights") as info:
        load_visual_encoder(f"ViT-S-32-alt:{path}")
    assert "\n" not in str(info.value)


def _fake_hub_cache(root: Path, weights: Path) -> Path:
    """The layout huggingface_hub leaves after downloading `OPENAI_B32_FILE` (files symlinked)."""
    commit = "0" * 40
    repo = root / ("models--" + OPENAI_B32_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / OPENAI_B32_FILE).symlink_to(weights)
    return root


def test_cached_tag_loads_without_network(vitb32, tmp_path, monkeypatch):
    model, path = vitb32
    monkeypatch.setenv("HF_HUB_CACHE", str(_fake_hub_cache(tmp_path / "hub", path)))
    # Not flagged offline: the loader itself must keep huggingface_hub off the network.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VAB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    lookups: list[tuple] = []

    def no_dns(*args, **kwargs):
        lookups.append(args)
        raise OSError("network used in a test")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    loaded = load_visual_encoder("ViT-B-32:openai")
    assert lookups == []
    assert hf_constants.HF_HUB_OFFLINE is False  # offline only while loading
    assert loaded.id.startswith("ViT-B-32:openai-")
    loaded_state = loaded.visual.state_dict()
    assert all(torch.equal(v, loaded_state[k]) for k, v in model.visual.state_dict().items())
    # The openai weights were trained with QuickGELU; the plain ViT-B-32 config is GELU.
    assert any(isinstance(m, open_clip.transformer.QuickGELU) for m in loaded.visual.modules())
    in_memory = OpenClipVisualEncoder(model, "memory")
    assert _hash_part(loaded.id) != _hash_part(in_memory.id)


def test_missing_tag_offline_fails_fast_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(VisualWeightsMissingError) as info:
        load_visual_encoder("ViT-B-32:openai")
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "\n" not in message
    assert "ViT-B-32:openai" in message and OPENAI_B32_REPO in message
    assert str(tmp_path / "hf" / "hub") in message
    assert "local-dir:PATH" in message and "MODEL:/path/to/weights.safetensors" in message


def test_unreachable_hub_fails_fast_and_switches_hub_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VAB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(vision, "host_reachable", lambda *a: False)
    with pytest.raises(VisualWeightsMissingError, match="huggingface.co is unreachable"):
        load_visual_encoder("ViT-B-32:openai")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert hf_constants.HF_HUB_OFFLINE is True


def test_vab_offline_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("VAB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(vision, "host_reachable", lambda *a: pytest.fail("probed: VAB_OFFLINE"))
    with pytest.raises(VisualWeightsMissingError, match="VAB_OFFLINE is set"):
        load_visual_encoder("ViT-B-32:openai")


def test_hub_cache_dir_follows_hf_home_set_after_import(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert vision.hub_cache_dir() == tmp_path / "hub"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ViT-B-33:openai", "did you mean ViT-B-32"),
        ("ViT-B-32", "is not MODEL:TAG"),
        ("ViT-B-32:nosuchtag", "known tags: openai"),
        ("ViT-B-32:/no/such/weights.pt", "weights file not found"),
        ("local-dir:", "no folder"),
        ("local-dir:/no/such/folder", "folder not found"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, expected):
    with pytest.raises(VisualEncoderError, match=expected) as info:
        load_visual_encoder(spec)
    assert "\n" not in str(info.value)


def test_a_folder_given_as_weights_file_points_to_local_dir(tmp_path):
    with pytest.raises(VisualEncoderError, match="use local-dir:"):
        load_visual_encoder(f"ViT-B-32:{tmp_path}")
