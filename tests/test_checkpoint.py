"""Checkpoints: safetensors + JSON round trips, wrapper stripping, atomic replace, no pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch

from tests.faults import name_of_a_dead_writer
from vabcli.config import CLIP_SECONDS, ModelConfig
from vabcli.model import checkpoint
from vabcli.model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    check_encoders,
    load_checkpoint,
    load_model,
    read_meta,
    save_checkpoint,
    unwrap,
)
from vabcli.model.checkpoint_meta import CheckpointMeta

CONFIG = ModelConfig(d_model=16, n_heads=2, n_multiway=1, n_shared=1, codebook_size=32)
META = {"step": 120, "codec_id": "encodec_24khz@3.0", "visual_id": "ViT-B-32:openai", "lr": 3e-4}


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(33, 16)
        self.proj = torch.nn.Linear(16, 8)
        self.head = torch.nn.Linear(16, 33, bias=False)
        self.head.weight = self.embed.weight  # tied: shared storage that safetensors refuses
        self.norm = torch.nn.LayerNorm(8)
        self.register_buffer("steps", torch.arange(6, dtype=torch.int64).reshape(2, 3).t())


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


@pytest.fixture(autouse=True)
def _no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must never be called on a checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name]


def assert_one_line_error(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_round_trip_is_exact(tmp_path):
    model = tiny()
    out = save_checkpoint(tmp_path / "runs" / "ckpt", model, CONFIG, META)
    assert out == tmp_path / "runs" / "ckpt"
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]

    config, state, meta = load_checkpoint(out)
    assert config == CONFIG
    assert meta.to_dict() == META
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    for key, tensor in expected.items():
        assert state[key].dtype == tensor.dtype and state[key].device.type == "cpu"
        assert torch.equal(state[key], tensor), key
    assert state["steps"].is_contiguous()  # saved from a transposed (strided) buffer
    fresh = tiny(seed=1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.proj.weight, model.proj.weight)


def test_config_json_layout(tmp_path):
    out = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    data = json.loads((out / CONFIG_FILE).read_text())
    assert data["format"] == "vab-checkpoint" and data["version"] == 1
    assert data["model"]["d_model"] == 16 and data["model"]["visual_fps"] == CONFIG.visual_fps
    assert {k: data[k] for k in META} == META


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE])
def test_load_from_either_file(tmp_path, name):
    out = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    config, state, meta = load_checkpoint(out / name)
    assert config == CONFIG and meta.to_dict() == META and "proj.weight" in state


def test_data_parallel_keys_are_unwrapped(tmp_path):
    model = tiny()
    wrapped = torch.nn.DataParallel(model)
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    assert unwrap(wrapped) is model
    _, state, _ = load_checkpoint(save_checkpoint(tmp_path / "ckpt", wrapped, CONFIG, {}))
    assert state.keys() == model.state_dict().keys()


def test_compiled_and_nested_wrappers_are_unwrapped(tmp_path):
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available in this torch")
    model = tiny()
    try:
        compiled = torch.compile(model)  # wraps only; nothing is compiled until it is called
    except Exception as exc:  # e.g. a platform without dynamo support
        pytest.skip(f"torch.compile cannot wrap here: {exc}")
    nested = torch.nn.DataParallel(compiled)
    assert unwrap(nested) is model
    _, state, _ = load_checkpoint(save_checkpoint(tmp_path / "ckpt", nested, CONFIG, {}))
    assert state.keys() == model.state_dict().keys()
    assert not any("module." in k or "_orig_mod." in k for k in state)


def test_overwrite_replaces_whole_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, tiny(0), CONFIG, {**META, "step": 1})
    new = tiny(5)
    save_checkpoint(folder, new, CONFIG, {"step": 2})
    _, state, meta = load_checkpoint(folder)
    assert meta.to_dict() == {"step": 2}
    assert torch.equal(state["proj.weight"], new.proj.weight)
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def assert_old_intact(folder: Path, old: torch.nn.Module) -> None:
    _, state, meta = load_checkpoint(folder)
    assert meta.to_dict() == META
    assert torch.equal(state["proj.weight"], old.proj.weight)
    assert leftovers(folder.parent) == []


def test_unserialisable_meta_is_value_error_and_keeps_old(tmp_path):
    folder = tmp_path / "ckpt"
    old = tiny()
    save_checkpoint(folder, old, CONFIG, META)
    for bad in ({"when": object()}, {"loss": float("nan")}, {"format": "x"}):
        with pytest.raises(ValueError):
            save_checkpoint(folder, tiny(3), CONFIG, bad)
    assert_old_intact(folder, old)


def test_failed_weight_write_keeps_old(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    old = tiny()
    save_checkpoint(folder, old, CONFIG, META)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder, tiny(3), CONFIG, {"step": 9})
    assert_old_intact(folder, old)


def test_failed_swap_restores_old(tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    old = tiny()
    save_checkpoint(folder, old, CONFIG, META)
    real_rename = os.rename

    def rename(src, dst):
        # Fail only moving the new folder in (the swap's second rename), not the restore.
        if Path(dst) == folder and ".old." not in Path(src).name:
            raise OSError("interrupted")
        real_rename(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", rename)
    with pytest.raises(OSError, match="interrupted"):
        save_checkpoint(folder, tiny(3), CONFIG, {"step": 9})
    monkeypatch.undo()
    assert_old_intact(folder, old)


def test_refuses_to_replace_a_folder_with_other_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(CheckpointError, match="metrics.jsonl"):
        save_checkpoint(run, tiny(), CONFIG, META)
    assert (run / "metrics.jsonl").read_text() == "{}\n"
    assert leftovers(tmp_path) == []


def test_pickle_named_safetensors_is_rejected(tmp_path):
    folder = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    torch.save(tiny().state_dict(), folder / WEIGHTS_FILE)
    assert_one_line_error(folder, "cannot read weights")


def test_truncated_safetensors_is_rejected(tmp_path):
    folder = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    data = (folder / WEIGHTS_FILE).read_bytes()
    for size in (len(data) - 7, 40, 3, 0):
        (folder / WEIGHTS_FILE).write_bytes(data[:size])
        assert str(folder) in assert_one_line_error(folder, "cannot read weights")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"model_type": "bert", "hidden_size": 768}, "not a vab checkpoint"),
        ({"format": "other-format", "version": 1, "model": {}}, "not a vab checkpoint"),
        ({"format": "vab-checkpoint", "version": 99, "model": {}}, "version 99 is newer"),
        ({"format": "vab-checkpoint", "version": "1", "model": {}}, "bad checkpoint version"),
        ({"format": "vab-checkpoint", "version": 1, "model": {"wings": 2}}, "unknown .*wings"),
        ({"format": "vab-checkpoint", "version": 1, "model": {"d_model": 15}}, "bad model dim"),
        ({"format": "vab-checkpoint", "version": 1}, "'model' is not"),
        ([1, 2, 3], "not a vab checkpoint"),
    ],
)
def test_foreign_config_is_rejected(tmp_path, body, match):
    folder = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    (folder / CONFIG_FILE).write_text(json.dumps(body))
    assert str(folder / CONFIG_FILE) in assert_one_line_error(folder, match)


def test_corrupt_config_json_is_rejected(tmp_path):
    folder = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    (folder / CONFIG_FILE).write_text('{"format": "vab-checkpoint",\n "version": ')
    assert_one_line_error(folder, "cannot read checkpoint config")


def test_missing_things_are_rejected(tmp_path):
    assert_one_line_error(tmp_path / "nowhere", "no checkpoint at")
    assert_one_line_error(tmp_path / "nowhere" / CONFIG_FILE, "no checkpoint at")
    folder = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    (folder / WEIGHTS_FILE).unlink()
    assert_one_line_error(folder, f"has no {WEIGHTS_FILE}")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(tmp_path / "empty", f"has no {CONFIG_FILE}")
    (tmp_path / "notes.txt").write_text("hi")
    assert_one_line_error(tmp_path / "notes.txt", "not a checkpoint")


def test_check_encoders(tmp_path):
    path = tmp_path / "ckpt"
    meta = CheckpointMeta.from_dict(META)
    check_encoders(meta, META["codec_id"], META["visual_id"], path)

    with pytest.raises(CheckpointError) as info:
        check_encoders(meta, "trained_tiny:abc", META["visual_id"], path)
    message = str(info.value)
    assert "encodec_24khz@3.0" in message and "trained_tiny:abc" in message
    assert "\n" not in message and str(path) in message

    with pytest.raises(CheckpointError) as info:
        check_encoders(meta, META["codec_id"], "debug", path)
    assert "ViT-B-32:openai" in str(info.value) and "debug" in str(info.value)

    with pytest.raises(CheckpointError, match="visual_id"):
        check_encoders(CheckpointMeta(codec_id=META["codec_id"]), META["codec_id"], "debug", path)


def test_the_bundled_checkpoint_reads_and_writes_back_byte_for_byte():
    """Typed meta changes nothing on disk: config.json written again from what was read is
    the very file (keys, values and their order)."""
    from vabcli.core.builtin import CHECKPOINT

    text = (CHECKPOINT.folder / CONFIG_FILE).read_text(encoding="utf-8")
    config, _, meta = load_checkpoint(CHECKPOINT.folder)
    assert checkpoint._config_text(config, meta) == text
    assert meta.step == 6000 and meta.window_seconds == 4.0 and meta.task is None
    assert meta.encoders["codec"] == "builtin" and meta.validation["val_loss"] > 0


def test_meta_an_older_checkpoint_lacks_reads_as_not_said():
    meta = CheckpointMeta.from_dict({"step": 3, "encoders": None, "labels": ["a", "b"]})
    assert meta.encoders == {} and meta.options == {} and meta.task is None
    assert meta.window_seconds == CLIP_SECONDS and meta.labels == ("a", "b")
    assert meta.to_dict() == {"step": 3, "labels": ["a", "b"]}


def test_meta_keeps_keys_it_does_not_know():
    data = {"step": 1, "val_map": 0.5, "note": "x", "val_note": "not a number"}
    meta = CheckpointMeta.from_dict(data)
    assert meta.validation == {"val_map": 0.5}
    assert meta.extra == {"note": "x", "val_note": "not a number"}
    assert meta.to_dict() == data


@pytest.mark.parametrize(
    "key, value",
    [
        ("step", "6"),
        ("step", True),
        ("labels", ["a", 1]),
        ("task", 3),
        ("best_val_loss", "low"),
        ("encoders", []),
    ],
)
def test_meta_of_the_wrong_type_is_one_line_error(tmp_path, key, value):
    folder = save_checkpoint(tmp_path / "ckpt", tiny(), CONFIG, META)
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, key: value}))
    message = assert_one_line_error(folder, f"bad meta: meta {key} must be")
    assert str(folder) in message
    with pytest.raises(CheckpointError, match=f"meta {key} must be"):
        read_meta(folder)


def _vab_checkpoint(tmp_path: Path) -> Path:
    from vabcli.model.transformer import VabModel

    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "ck", VabModel(CONFIG), CONFIG, META)


def _edit_dimensions(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model"].update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_config_sizes_are_checked_against_the_weights_header_before_allocating(
    tmp_path, monkeypatch
):
    """A config.json saying d_model 8192 beside small weights allocated gigabytes first."""
    from vabcli.model import transformer as model_module

    folder = _vab_checkpoint(tmp_path)
    _edit_dimensions(folder, d_model=8192)
    real_init = model_module.VabModel.__init__

    def only_on_meta(self, cfg):  # any real allocation at the claimed size fails the test
        assert torch.empty(0).device.type == "meta", "VabModel built for real before the check"
        real_init(self, cfg)

    monkeypatch.setattr(model_module.VabModel, "__init__", only_on_meta)
    message = assert_one_line_error(folder, r"does not match its config.json: .* is \[16\]")
    assert str(folder / "model.safetensors") in message and "8192" in message


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"n_heads": 0}, "n_heads must be a whole number"),
        ({"d_model": 15}, "n_heads"),
        ({"dropout": 1.5}, "dropout"),
        ({"visual_fps": -1}, "visual_fps"),
        ({"codebook_size": 2.5}, "codebook_size must be a whole number"),
        ({"n_multiway": True}, "n_multiway"),
        ({"d_model": 10**9}, "d_model must be a whole number in"),
    ],
)
def test_bad_config_values_are_one_line_errors(tmp_path, changes, match):
    folder = _vab_checkpoint(tmp_path)
    _edit_dimensions(folder, **changes)
    assert_one_line_error(folder, match)


def test_weights_missing_a_backbone_tensor_fail_before_the_model_is_built(tmp_path):
    folder = _vab_checkpoint(tmp_path)
    state = safetensors.torch.load_file(str(folder / "model.safetensors"))
    del state["heads.bias"]
    safetensors.torch.save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"lacks heads.bias \(1 missing"):
        load_model(folder)


def test_a_save_killed_between_its_renames_gets_its_old_checkpoint_back(tmp_path):
    """SIGKILL between moving the old `last` aside and renaming the new one in: no `last`,
    the old one whole under `.last.old.tmp-*`. The next save or resume puts it back first."""
    from vabcli.model.checkpoint import tidy_checkpoint

    last = tmp_path / "last"
    save_checkpoint(last, tiny(1), CONFIG, META)
    aside = tmp_path / f".{name_of_a_dead_writer('last.old')}"
    half_new = tmp_path / f".{name_of_a_dead_writer('last')}"
    os.rename(last, aside)
    half_new.mkdir()
    (half_new / WEIGHTS_FILE).write_bytes(b"cut short")
    tidy_checkpoint(last)
    assert load_checkpoint(last)[2].step == META["step"]
    assert leftovers(tmp_path) == []


def test_temporaries_of_a_save_still_running_are_left_alone(tmp_path):
    from vabcli.core.temps import temp_name
    from vabcli.model.checkpoint import tidy_checkpoint

    live = tmp_path / f".{temp_name('last')}"  # named as this very process names one
    live.mkdir()
    tidy_checkpoint(tmp_path / "last")
    assert live.exists()
