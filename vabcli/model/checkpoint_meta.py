"""What a checkpoint remembers beyond its weights and dimensions: how it was trained, on which
encoders, and for which task (the `meta` of its config.json), as one typed record.

config.json keeps these keys at its top level, beside `format`, `version` and `model`.
`CheckpointMeta.from_dict` is the one place they are read, `to_dict` the one place they are
written back. A key missing from an older checkpoint reads as None (or empty); a key this
version does not know is kept as it was (`extra`); so every checkpoint loads, and saves again,
unchanged. Values are data a stranger may hand us: a known key of the wrong type is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vabcli.config import CLIP_SECONDS

# Keys of the validation metrics a training run saved the checkpoint after (`val_loss`, ...).
VALIDATION_PREFIX = "val_"


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's meta. None (or an empty mapping) means the checkpoint does not say."""

    step: int | None = None  # optimizer steps taken
    seed: int | None = None
    codec_id: str | None = None  # the audio codec it was trained on: others' tokens mean nothing
    visual_id: str | None = None  # the image encoder it was trained on, likewise
    best_val_loss: float | None = None  # lowest validation loss of its run so far
    options: dict[str, Any] = field(default_factory=dict)  # its run's TrainOptions, as saved
    preset: str | None = None  # pre-training: the model preset
    train_clips: int | None = None
    init: str | None = None  # a fine-tune: the checkpoint it started from
    encoders: dict[str, Any] = field(default_factory=dict)  # how to load its encoders again
    task: str | None = None  # a fine-tune: "contrastive" or "classify"; None: pre-trained
    n_layers: int | None = None  # a fine-tune: multiway layers its towers keep (N1)
    proj_dim: int | None = None  # contrastive: size of the embeddings
    modality: str | None = None  # classify: "av", "v" or "a"
    labels: tuple[str, ...] | None = None  # classify: the head's outputs, in order
    multi_label: bool | None = None  # classify: label lists (BCE per label)
    frozen: bool | None = None  # classify: a linear probe (the backbone was not trained)
    validation: dict[str, float] = field(default_factory=dict)  # `val_*` metrics at the save
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def window_seconds(self) -> float:
        """The window length the model was trained on (its `--clip-seconds`), by which it
        generates and embeds; checkpoints that do not say were trained on CLIP_SECONDS."""
        return float(self.options.get("clip_seconds", CLIP_SECONDS))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointMeta:
        """The meta of config.json's top-level keys (format/version/model left out by the
        caller). ValueError naming the key of a value of the wrong type."""
        known: dict[str, Any] = {}
        validation: dict[str, float] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise ValueError("meta keys must be strings")
            if key in _KINDS:
                known[key] = _checked(key, value)
            elif key.startswith(VALIDATION_PREFIX) and _is_number(value):
                validation[key] = value
            else:
                extra[key] = value
        return cls(**known, validation=validation, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """config.json's meta keys: what the checkpoint says, nothing for what it does not."""
        said: dict[str, Any] = {}
        for name in _KINDS:
            value = getattr(self, name)
            if value is not None and value != {}:
                said[name] = list(value) if isinstance(value, tuple) else value
        return {**said, **self.validation, **self.extra}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_object(value: object) -> bool:
    return isinstance(value, dict)


def _is_flag(value: object) -> bool:
    return isinstance(value, bool)


def _is_labels(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_finite(value: object) -> bool:
    return _is_number(value) and math.isfinite(value)  # type: ignore[arg-type]


_WHOLE, _TEXT, _OBJECT, _FLAG = (
    (_is_whole, "a whole number"),
    (_is_text, "a string"),
    (_is_object, "an object"),
    (_is_flag, "true or false"),
)
# Each field config.json may hold (in the order it lists them) and the test its value must pass.
_KINDS = {
    "step": _WHOLE,
    "seed": _WHOLE,
    "codec_id": _TEXT,
    "visual_id": _TEXT,
    "best_val_loss": (_is_finite, "a finite number"),
    "options": _OBJECT,
    "preset": _TEXT,
    "train_clips": _WHOLE,
    "init": _TEXT,
    "encoders": _OBJECT,
    "task": _TEXT,
    "n_layers": _WHOLE,
    "proj_dim": _WHOLE,
    "modality": _TEXT,
    "labels": (_is_labels, "a list of strings"),
    "multi_label": _FLAG,
    "frozen": _FLAG,
}


def _checked(key: str, value: Any) -> Any:
    """`value` as the field holds it: JSON null as the field's "does not say", labels as a
    tuple. ValueError for a value of the wrong type."""
    is_kind, kind = _KINDS[key]
    if value is None:
        return {} if is_kind is _is_object else None
    if not is_kind(value):
        raise ValueError(f"meta {key} must be {kind}, got {value!r}")
    return tuple(value) if key == "labels" else value
