"""Turning command-line INPUT arguments (files, folders, globs) into a list of videos."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class InputItem:
    """A path to process, or (when `error` is set) an argument that named nothing usable."""

    path: Path
    error: str | None = None
    # Where its outputs go under an output folder: the path below the folder or glob base it was
    # found in, or just the file name for a file named on its own.
    relative: Path | None = None


def _is_hidden_or_temp(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def videos_in(folder: Path, extensions: frozenset[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Files under `folder` (recursive) with one of `extensions`, sorted; hidden ones skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions and p.is_file() and not _is_hidden_or_temp(p, folder)
    )


def expand_inputs(args: Iterable[str]) -> list[InputItem]:
    """Files as given, folders searched recursively by video extension, globs expanded.

    Order follows the arguments; duplicates (same resolved path) are kept once. An argument
    that matches nothing becomes an error item, so a batch reports it and goes on.
    """
    items: list[InputItem] = []
    seen: set[Path] = set()

    def add(path: Path, base: Path | None = None) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            relative = path.relative_to(base) if base is not None else Path(path.name)
            items.append(InputItem(path, relative=relative))

    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            found = videos_in(path)
            if not found:
                items.append(InputItem(path, f"{arg}: no video files in this folder"))
            for video in found:
                add(video, path)
        elif path.exists():
            add(path)
        elif any(ch in arg for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file()]
            files += [v for m in matches if m.is_dir() for v in videos_in(m)]
            if not files:
                items.append(InputItem(path, f"{arg}: no file matches this pattern"))
            base = _glob_base(path)
            for video in files:
                add(video, base if video.is_relative_to(base) else None)
        else:
            items.append(InputItem(path, f"{arg}: no such file or folder"))
    return items


def _glob_base(pattern: Path) -> Path:
    """The folder a glob searches from: its leading parts without wildcards (`a/b/*/c*` -> a/b)."""
    parts = []
    for part in pattern.parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")
