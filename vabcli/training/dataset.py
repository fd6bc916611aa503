"""Training data: aligned random windows of cached features and tokens, in a resumable order.

Every random choice is a function of (seed, epoch, position), never of the history of a random
generator, so a run resumed at step s sees exactly the batches an uninterrupted run would, in
any number of loader workers and on any number of data-parallel ranks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

Label = str | tuple[str, ...]  # a manifest's `label`: one class, or a list of them


@dataclass(frozen=True)
class LatentClip:
    """One clip's cached arrays: features `[T_v, D]` float32, codes `[K, T_a]` integers; and its
    manifest label, if any (classification trains on it)."""

    features: Path
    codes: Path
    label: Label | None = None


@dataclass(frozen=True)
class WindowLength:
    """Crop lengths for one training example: `seconds` of video at both rates."""

    seconds: float
    visual_fps: float
    audio_frame_rate: float

    @property
    def n_visual(self) -> int:
        return max(1, round(self.seconds * self.visual_fps))

    @property
    def n_audio(self) -> int:
        return max(1, round(self.seconds * self.audio_frame_rate))


@dataclass(frozen=True)
class Example:
    visual: torch.Tensor  # [n_visual, D], zero-padded
    codes: torch.Tensor  # [K, n_audio], padded with 0
    visual_keep: torch.Tensor  # [n_visual] bool
    audio_keep: torch.Tensor  # [n_audio] bool
    target: torch.Tensor | None = None  # [n_labels] multi-hot float, when training a classifier


def _rng(*seeds: int) -> np.random.Generator:
    return np.random.default_rng([s & 0xFFFFFFFF for s in seeds])


class CropDataset(Dataset):
    """Item (index, epoch) -> a random aligned window of that clip, padded to fixed lengths
    (with the clip's row of `targets`, when given)."""

    def __init__(
        self,
        clips: list[LatentClip],
        window: WindowLength,
        seed: int,
        targets: torch.Tensor | None = None,
    ) -> None:
        self.clips, self.window, self.seed, self.targets = clips, window, seed, targets

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: tuple[int, int]) -> Example:
        index, epoch = item
        clip = self.clips[index]
        features = np.load(clip.features, mmap_mode="r")
        codes = np.load(clip.codes, mmap_mode="r")
        w = self.window
        # The window starts on a visual frame; the audio start is the nearest token frame.
        spare = max(0, features.shape[0] - w.n_visual)
        start_v = int(_rng(self.seed, epoch, index).integers(0, spare + 1))
        start_a = min(round(start_v / w.visual_fps * w.audio_frame_rate), codes.shape[1])
        # np.array copies out of the read-only memory map (torch will not wrap read-only memory).
        visual = np.array(features[start_v : start_v + w.n_visual], dtype=np.float32)
        tokens = np.array(codes[:, start_a : start_a + w.n_audio], dtype=np.int64)
        target = None if self.targets is None else self.targets[index]
        return Example(*_padded(visual, tokens, w), target=target)


def _padded(visual: np.ndarray, tokens: np.ndarray, w: WindowLength) -> tuple[torch.Tensor, ...]:
    v = torch.zeros(w.n_visual, visual.shape[1])
    v[: len(visual)] = torch.from_numpy(visual)
    c = torch.zeros(tokens.shape[0], w.n_audio, dtype=torch.int64)
    c[:, : tokens.shape[1]] = torch.from_numpy(tokens)
    v_keep = torch.arange(w.n_visual) < len(visual)
    a_keep = torch.arange(w.n_audio) < tokens.shape[1]
    return v, c, v_keep, a_keep


def collate(examples: list[Example]) -> dict[str, torch.Tensor]:
    batch = {
        "visual": torch.stack([e.visual for e in examples]),
        "codes": torch.stack([e.codes for e in examples]),
        "visual_keep": torch.stack([e.visual_keep for e in examples]),
        "audio_keep": torch.stack([e.audio_keep for e in examples]),
    }
    if examples[0].target is not None:
        batch["target"] = torch.stack([e.target for e in examples])
    return batch


class EpochBatches(Sampler):
    """Batches of (index, epoch) for steps `start_step`, `start_step + 1`, ... forever.

    Each epoch is a fresh permutation from (seed, epoch). A global batch of
    `batch_size * world_size` items is cut into `world_size` slices; this rank takes its own.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        if n == 0:
            raise ValueError("no training clips")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self._order: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        global_batch = self.batch_size * self.world
        while True:
            first = step * global_batch + self.rank * self.batch_size
            yield [self._item(first + i) for i in range(self.batch_size)]
            step += 1

    def _item(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.n)
        if self._order[0] != epoch:
            self._order = (epoch, _rng(self.seed, epoch).permutation(self.n))
        return int(self._order[1][offset]), epoch

    def __len__(self) -> int:  # endless: DataLoader only needs it to exist
        return 2**62
