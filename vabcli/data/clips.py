"""Clips to work on: whole videos named on the command line, or manifest lines (maybe segments).

Invariant (as for INPUT arguments): a clip without an error names an existing regular file; a
manifest line naming a missing file, a FIFO or a device is an error item naming `file:line`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vabcli.data.manifest import read_manifest
from vabcli.media.extract import WHOLE, Segment
from vabcli.media.inputs import expand_inputs, file_problem


@dataclass(frozen=True)
class ClipItem:
    """One clip to tokenize: a whole video from INPUT, or a manifest line (maybe a segment)."""

    path: Path
    segment: Segment = WHOLE
    error: str | None = None
    line: int | None = None
    label: str | tuple[str, ...] | None = None
    split: str | None = None
    relative: Path | None = None  # where its outputs go below an output folder (see InputItem)

    def name(self) -> str:
        if self.segment == WHOLE:
            return str(self.path)
        end = "end" if self.segment.end is None else f"{self.segment.end:g}"
        return f"{self.path} [{self.segment.start:g}-{end} s]"

    def share_key(self) -> str:
        """The name a clip's share (`data/shards.py`) follows from: its manifest line, the same on
        every machine wherever the files are mounted; else its path as given."""
        return f"manifest line {self.line}" if self.line is not None else self.name()

    def labels(self) -> dict[str, Any]:
        """Manifest fields echoed in the JSON line, so results join back to the data set."""
        if self.line is None:
            return {}
        label = list(self.label) if isinstance(self.label, tuple) else self.label
        return {"manifest_line": self.line, "label": label, "split": self.split}


def clip_items(inputs: list[str] | None, data: Path | None) -> list[ClipItem]:
    items = [
        ClipItem(i.path, error=i.error, relative=i.relative) for i in expand_inputs(inputs or [])
    ]
    if data is not None:
        folder = data.parent
        items += [
            ClipItem(
                e.video,
                Segment(e.start or 0.0, e.end),
                _line_problem(data, e.line, e.video),
                e.line,
                e.label,
                e.split,
                _below(e.video, folder),
            )
            for e in read_manifest(data)
        ]
    return items


def _line_problem(data: Path, line: int, video: Path) -> str | None:
    problem = file_problem(video)
    return f"{data}:{line}: {video}: {problem}" if problem else None


def _below(video: Path, folder: Path) -> Path:
    """A manifest video's path below the manifest's folder, or its name if it lies elsewhere."""
    try:
        return video.resolve().relative_to(folder.resolve())
    except ValueError:
        return Path(video.name)
