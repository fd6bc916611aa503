"""Embedding files (`vab embed` writes them, `vab retrieve` searches them): one `.npz` with
`embeddings` `[N, D]` float32 unit vectors, `ids` (a string per row), `model` (the id of the
model that made them) and `modality` ("v" or "a"). numpy reads it as is (`np.load(path)`), with
no pickled objects, so other tools can too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vabcli.core.atomic import atomic_output
from vabcli.core.errors import VabError

MODALITIES = ("v", "a")


@dataclass(frozen=True)
class EmbeddingIndex:
    embeddings: np.ndarray  # [N, D] float32
    ids: list[str]
    model: str
    modality: str


def save_index(path: Path, index: EmbeddingIndex, overwrite: bool = False) -> None:
    """Write `index` to `path` (.npz) atomically: a reader never sees half a file."""
    if index.modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {index.modality!r}")
    if len(index.ids) != len(index.embeddings):
        raise ValueError(f"{len(index.ids)} ids for {len(index.embeddings)} embeddings")
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            embeddings=np.asarray(index.embeddings, dtype=np.float32),
            ids=np.asarray(index.ids, dtype=np.str_),
            model=np.asarray(index.model, dtype=np.str_),
            modality=np.asarray(index.modality, dtype=np.str_),
        )


def load_index(path: Path, model: str | None = None) -> EmbeddingIndex:
    """Read an embedding file; with `model`, refuse one that another model made (its vectors
    live in another space, and searching it would rank nonsense)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            index = EmbeddingIndex(
                embeddings=data["embeddings"].astype(np.float32, copy=False),
                ids=[str(i) for i in data["ids"]],
                model=str(data["model"]),
                modality=str(data["modality"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise VabError(f"{path}: not a vab embedding file ({exc})") from None
    if model is not None and index.model != model:
        raise VabError(
            f"{path} was built by model {index.model}, not {model}: "
            "embed the clips again with this model (vab embed)"
        )
    return index
