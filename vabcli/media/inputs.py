"""Turning command-line INPUT arguments (files, folders, globs) into a list of videos.

Invariant: an item without an error names an existing regular file (or a symlink to one). A FIFO
would block the first open() forever and a device (/dev/zero) never ends, so such inputs are
stopped here, as error items, before anything opens them.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vabcli.config import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class InputItem:
    """A path to process, or (when `error` is set) an argument that named nothing usable."""

    path: Path
    error: str | None = None
    # Where its outputs go under an output folder: the path below the folder or glob base it was
    # found in, or just the file name for a file named on its own.
    relative: Path | None = None


_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an input file (missing, not a regular file), or None.

    Only stat() is used (following symlinks): it never opens, so it cannot block on a FIFO.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        return f"cannot read ({getattr(exc, 'strerror', None) or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _is_hidden_or_temp(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def videos_in(folder: Path, extensions: frozenset[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Files under `folder` (recursive) with one of `extensions`, sorted; hidden ones skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions and _is_file_like(p) and not _is_hidden_or_temp(p, folder)
    )


def _is_file_like(path: Path) -> bool:
    # Not a folder: FIFOs and devices named like videos are kept, so the batch reports them
    # rather than skipping them without a word.
    return path.exists() and not path.is_dir()


def expand_inputs(args: Iterable[str]) -> list[InputItem]:
    """Files as given, folders searched recursively by video extension, globs expanded.

    Order follows the arguments; duplicates (same resolved path) are kept once. An argument
    that matches nothing becomes an error item, so a batch reports it and goes on.
    """
    items: list[InputItem] = []
    seen: set[Path] = set()

    def add(path: Path, base: Path | None = None, arg: str | None = None) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            relative = path.relative_to(base) if base is not None else Path(path.name)
            problem = file_problem(path)
            error = f"{arg or path}: {problem}" if problem else None
            items.append(InputItem(path, error, relative=relative))

    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            found = videos_in(path)
            if not found:
                items.append(InputItem(path, f"{arg}: no video files in this folder"))
            for video in found:
                add(video, path)
        elif path.exists():
            add(path, arg=arg)
        elif any(ch in arg for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if _is_file_like(m)]
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
