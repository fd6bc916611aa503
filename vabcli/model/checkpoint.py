"""Checkpoints: a folder with `model.safetensors` (weights) and `config.json` (dimensions + meta,
the latter a `CheckpointMeta`).

Never pickle: a checkpoint is data a stranger may hand you, and unpickling runs their code.
A save swaps a complete folder into place, so readers see the old checkpoint or the new one.
For the same reason config.json is not trusted on load: its values are checked, and every
tensor shape it implies is compared with the safetensors header before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from vabcli.config import ModelConfig, dataclass_from_dict
from vabcli.core.builtin import BUILTIN, CHECKPOINT
from vabcli.core.errors import VabError, one_line
from vabcli.core.temps import TMP_MARK, abandoned, temp_name
from vabcli.model.checkpoint_meta import CheckpointMeta
from vabcli.model.shapes_only import shapes_only
from vabcli.model.transformer import VabModel

CHECKPOINT_FORMAT = "vab-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Optional: optimizer moments etc. for `vab train --resume`, saved in the same atomic swap so
# weights and training state always match.
TRAINING_FILE = "training.safetensors"
_FILES = (WEIGHTS_FILE, CONFIG_FILE, TRAINING_FILE)
_RESERVED = ("format", "version", "model")


class CheckpointError(VabError):
    """A checkpoint that cannot be written or read: missing, foreign, corrupt, or too new."""


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under any DDP/DataParallel and torch.compile wrappers, in any nesting."""
    parallel = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while True:
        if isinstance(model, parallel):
            model = model.module
        # Duck-typed so unwrapping never imports torch._dynamo (seconds of import time).
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def _config_text(config: ModelConfig, meta: CheckpointMeta | Mapping[str, Any]) -> str:
    if not isinstance(meta, CheckpointMeta):
        meta = CheckpointMeta.from_dict(meta)
    clash = [k for k in _RESERVED if k in meta.extra]
    if clash:
        raise ValueError(f"meta may not use the reserved keys {', '.join(clash)}")
    body = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}
    body["model"] = dataclasses.asdict(config)
    try:
        # allow_nan=False: NaN/Infinity are not JSON, and other readers (jq, browsers) reject them.
        return json.dumps({**body, **meta.to_dict()}, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta is not JSON-serialisable: {exc}") from exc


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in unwrap(model).state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state dict entry {key!r} is not a tensor; safetensors holds tensors")
        state[key] = _dense_cpu(value)
    return state


def _dense_cpu(value: torch.Tensor) -> torch.Tensor:
    # safetensors refuses shared or strided storage: each tensor gets its own dense CPU copy.
    return value.detach().to("cpu").clone(memory_format=torch.contiguous_format)


def _check_replaceable(folder: Path) -> None:
    # The swap deletes the old folder, so refuse one that holds anything but a checkpoint
    # (saving into a run dir by mistake must not wipe its logs).
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CheckpointError(f"cannot save checkpoint: {folder} exists and is not a folder")
    other = sorted(p.name for p in folder.iterdir() if p.name not in _FILES)
    if other:
        shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        raise CheckpointError(
            f"cannot save checkpoint: {folder} holds other files ({shown}); refusing to replace it"
        )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_OLD = ".old"  # the replaced checkpoint while a new one is swapped in: `.NAME.old.tmp-...`


def tidy_checkpoint(folder: Path) -> None:
    """Clear what a save killed outright (SIGKILL, power loss) left beside `folder`: a swap cut
    between its two renames left the previous checkpoint, whole, as `.NAME.old.tmp-*` and no
    `folder`, so it is put back; any other temporary of that save is removed. Temporaries of a
    save still running are never touched (temps.abandoned)."""
    if not folder.parent.is_dir():
        return
    new, old = f".{folder.name}{TMP_MARK}", f".{folder.name}{_OLD}{TMP_MARK}"
    for path in sorted(folder.parent.iterdir()):
        if not path.name.startswith((new, old)) or not abandoned(path):
            continue
        if path.name.startswith(old) and not folder.exists():
            os.rename(path, folder)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _swap_in(new: Path, folder: Path) -> None:
    """Rename `new` to `folder`, replacing any old folder, restoring it if the rename fails."""
    if not folder.exists():
        os.rename(new, folder)
        return
    old = folder.with_name("." + temp_name(f"{folder.name}{_OLD}"))
    os.rename(folder, old)
    # Between these two renames `folder` is briefly absent (plain rename cannot swap two
    # non-empty folders); a crash here leaves the old checkpoint complete in `old`.
    try:
        os.rename(new, folder)
    except BaseException:
        os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    config: ModelConfig,
    meta: CheckpointMeta | Mapping[str, Any],
    training_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write `folder/model.safetensors` and `folder/config.json` (and `training.safetensors` if
    `training_state` is given) as one atomic replacement.

    `meta` (step, encoder ids, options, ...; or a mapping of config.json's keys, read by
    `CheckpointMeta.from_dict`) goes into config.json at the top level; it must be
    JSON-serialisable and must not use the keys format/version/model (ValueError otherwise).
    """
    folder = Path(folder)
    text = _config_text(config, meta)
    state = _cpu_state(model)
    files = {WEIGHTS_FILE: state}
    if training_state is not None:
        files[TRAINING_FILE] = {k: _dense_cpu(v) for k, v in training_state.items()}
    tidy_checkpoint(folder)
    _check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name("." + temp_name(folder.name))
    tmp.mkdir()
    try:
        for name, tensors in files.items():
            safetensors.torch.save_file(tensors, str(tmp / name))
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
        # Data on disk before the rename, or a power cut can leave a renamed but empty file.
        for name in (*files, CONFIG_FILE):
            _fsync(tmp / name)
        _swap_in(tmp, folder)
        try:
            _fsync(folder.parent)  # makes the rename durable; not possible on every OS
        except OSError:
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _checkpoint_folder(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.is_dir():
        return path
    if path.name in (CONFIG_FILE, WEIGHTS_FILE):
        return path.parent
    raise CheckpointError(
        f"{path} is not a checkpoint: give its folder, {CONFIG_FILE} or {WEIGHTS_FILE}"
    )


def _read_header(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path.parent} has no {CONFIG_FILE}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint config {path}: {one_line(exc)}") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise CheckpointError(f"{path} is not a vab checkpoint config (format {found!r})")
    version = data.get("version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path}: bad checkpoint version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {version} is newer than this vab reads "
            f"({CHECKPOINT_VERSION}); upgrade vab"
        )
    return data


def _model_config(data: Any, path: Path) -> ModelConfig:
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: 'model' is not an object of model dimensions")
    try:
        return dataclass_from_dict(ModelConfig, data)
    except ValueError as exc:
        raise CheckpointError(f"{path}: bad model dimensions: {one_line(exc)}") from exc


def resolve_checkpoint(path: Path) -> Path:
    """The checkpoint folder `path` names: a checkpoint folder or one of its files, or a run
    folder (its `best`, else its `last`), or `builtin`: the bundled model."""
    if str(path) == BUILTIN:
        return CHECKPOINT.require()
    path = Path(path)
    if path.is_dir() and not (path / CONFIG_FILE).exists():
        for name in ("best", "last"):
            if (path / name / CONFIG_FILE).exists():
                return path / name
        raise CheckpointError(
            f"{path} is neither a checkpoint nor a run folder with best/ or last/"
        )
    return _checkpoint_folder(path)


def _meta(header: dict[str, Any], path: Path) -> CheckpointMeta:
    try:
        return CheckpointMeta.from_dict({k: v for k, v in header.items() if k not in _RESERVED})
    except ValueError as exc:
        raise CheckpointError(f"{path}: bad meta: {one_line(exc)}") from exc


def read_model_config(path: Path) -> ModelConfig:
    """A checkpoint's model dimensions without reading its weights."""
    folder = _checkpoint_folder(Path(path))
    return _model_config(_read_header(folder / CONFIG_FILE).get("model"), folder / CONFIG_FILE)


def read_meta(path: Path) -> CheckpointMeta:
    """A checkpoint's meta (step, encoder ids, options, ...) without reading its weights."""
    folder = _checkpoint_folder(Path(path))
    header = _read_header(folder / CONFIG_FILE)
    _model_config(header.get("model"), folder / CONFIG_FILE)
    return _meta(header, folder / CONFIG_FILE)


def load_checkpoint(
    path: Path, device: str = "cpu"
) -> tuple[ModelConfig, dict[str, torch.Tensor], CheckpointMeta]:
    """(config, state dict on `device`, meta) from a checkpoint folder or either of its files."""
    folder = _checkpoint_folder(Path(path))
    header = _read_header(folder / CONFIG_FILE)
    config = _model_config(header.get("model"), folder / CONFIG_FILE)
    meta = _meta(header, folder / CONFIG_FILE)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {WEIGHTS_FILE}")
    check_shapes(weights, config)
    try:
        state = safetensors.torch.load_file(str(weights), device=device)
    except (safetensors.SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {weights}: {one_line(exc)}") from exc
    return config, state, meta


def _header_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, read from the safetensors header alone (no tensor data)."""
    try:
        with safetensors.safe_open(str(weights), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {weights}: {one_line(exc)}") from exc


def _implied_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    with shapes_only():  # shapes without memory, whatever the dimensions say
        model = VabModel(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_shapes(weights: Path, config: ModelConfig) -> None:
    """CheckpointError naming the first tensor whose shape in `weights` differs from what
    `config` implies. Fine-tunes nest the backbone under a prefix (found by its input layer)
    and may leave parts of it out; only tensors present are compared (load_model checks that
    none is missing)."""
    found = _header_shapes(weights)
    anchor = next((k for k in found if k == _ANCHOR or k.endswith("." + _ANCHOR)), None)
    if anchor is None:
        return  # no backbone in it: nothing the config sizes
    prefix = anchor[: -len(_ANCHOR)]
    for key, shape in _implied_shapes(config).items():
        have = found.get(prefix + key)
        if have is not None and have != shape:
            raise CheckpointError(
                f"{weights} does not match its {CONFIG_FILE}: {prefix + key} is "
                f"{list(have)} in the weights but the config implies {list(shape)}"
            )


_ANCHOR = "visual_in.weight"  # the backbone's first layer: every checkpoint holds it


def load_model(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, CheckpointMeta]:
    """The VabModel a checkpoint describes, rebuilt from its own config, in eval mode; and meta."""
    config, state, meta = load_checkpoint(path, device)
    if meta.task:  # a fine-tune keeps only what its task needs in a useful state
        raise CheckpointError(
            f"{path} is a {meta.task} fine-tune (for vab embed/retrieve), not a model that "
            "generates audio: give its --init checkpoint instead"
        )
    implied = _implied_shapes(config)
    missing, extra = sorted(set(implied) - set(state)), sorted(set(state) - set(implied))
    if missing or extra:  # before the model is allocated at the config's size
        what = f"lacks {missing[0]}" if missing else f"holds an unexpected {extra[0]}"
        raise CheckpointError(
            f"{path}: weights do not fit the model: {WEIGHTS_FILE} {what} "
            f"({len(missing)} missing, {len(extra)} unexpected)"
        )
    model = VabModel(config).to(device)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {one_line(exc)}") from exc
    return model.eval(), meta


def load_training_state(path: Path) -> dict[str, torch.Tensor]:
    """The `training.safetensors` of a checkpoint (CheckpointError if it has none)."""
    file = _checkpoint_folder(Path(path)) / TRAINING_FILE
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file.parent} holds no training state to resume from")
    try:
        return safetensors.torch.load_file(str(file))
    except (safetensors.SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read training state {file}: {one_line(exc)}") from exc


def check_encoders(meta: CheckpointMeta, codec_id: str, visual_id: str, path: Path) -> None:
    """Refuse a checkpoint trained on other encoders: its tokens/features would be garbage here."""
    problems = []
    for key, role, current in (("codec_id", "codec", codec_id), ("visual_id", "visual", visual_id)):
        recorded = getattr(meta, key)
        if recorded is None:
            problems.append(f"it does not record its {role} encoder ({key}; now {current!r})")
        elif recorded != current:
            problems.append(f"trained with {role} encoder {recorded!r} but {current!r} is in use")
    if problems:
        raise CheckpointError(f"checkpoint {path}: {'; '.join(problems)}")
