"""Shares of a list of clips for processes that work on it side by side (`--shard I/N`, the
ranks of a torchrun, the tasks of a Slurm array): every clip in exactly one share.

A clip's share follows from its own name alone (a hash), not from its place in the list: adding
clips to a folder never moves the others to another share, and so to another machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def name_hash(key: str) -> int:
    """A 64-bit number from a clip's name, the same on every machine and in every run (what
    shares and manifest splits follow from)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class Shard:
    """Share `number` of `count`, counted from 1 as people count machines (and as a Slurm
    array `--array=1-N` numbers its tasks)."""

    number: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.number <= self.count:
            raise ValueError(f"shard must be I/N with 1 <= I <= N, got {self.number}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`2/4`: the second of four shares."""
        number, slash, count = text.partition("/")
        try:
            if not slash:
                raise ValueError
            return cls(int(number), int(count))
        except ValueError:
            raise ValueError(f"shard must be I/N with 1 <= I <= N, got {text!r}") from None

    def takes(self, key: str) -> bool:
        """Whether the clip named `key` is in this share."""
        return name_hash(key) % self.count == self.number - 1

    def of(self, items: Iterable[T], key: Callable[[T], str]) -> list[T]:
        """This share's items, in their order; `key` names each item."""
        return [item for item in items if self.count == 1 or self.takes(key(item))]

    def within(self, part: Shard) -> Shard:
        """Share `part` of this share, as one share of the whole list (hash mod N W splits
        each share of hash mod N in W): share r of W of share i of N is i + N (r - 1) of N W."""
        return Shard(self.number + self.count * (part.number - 1), self.count * part.count)
