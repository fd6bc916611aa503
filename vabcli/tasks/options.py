"""Options of running a checkpoint over clips (embed, retrieve, classify, evaluate it): every
default defined here once, the commands' defaults taken from these. Plain dataclasses, so the
command line imports them without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# What `vab embed` writes and `vab retrieve` searches unless told otherwise.
EMBEDDING_FILE = Path("embeddings.npz")
MODALITY_NAMES = {"v": "visual", "a": "audio"}
DIRECTIONS = ("v2a", "a2v")  # query modality, then the modality searched


@dataclass(frozen=True)
class ClipOptions:
    """How clips are tokenized with the checkpoint's own encoders and run through it."""

    device: str = "auto"  # auto: cuda, then mps, then cpu
    workers: int = 2  # clips tokenized at the same time


@dataclass(frozen=True)
class EmbedOptions(ClipOptions):
    modality: str = "v"  # embed the pictures (v) or the sound (a)

    def __post_init__(self) -> None:
        if self.modality not in MODALITY_NAMES:
            raise ValueError(f"modality must be v (visual) or a (audio), got {self.modality!r}")


@dataclass(frozen=True)
class RetrieveOptions(ClipOptions):
    direction: str = "v2a"  # pictures find sounds (v2a) or sounds find pictures (a2v)
    top_k: int = 5  # matches per query

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be v2a or a2v, got {self.direction!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")

    @property
    def query_modality(self) -> str:
        return self.direction[0]

    @property
    def index_modality(self) -> str:
        return self.direction[2]


@dataclass(frozen=True)
class ClassifyOptions(ClipOptions):
    top_k: int = 3  # labels kept per clip, most likely first

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
