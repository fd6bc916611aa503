"""Manifests written from what users have: a folder tree of clips, or a CSV listing them.

Folder tree: every video under the root is a clip; its label is the name of the folder it is
in (none for clips directly in the root). CSV: one clip per row, with the columns `video`,
`label`, `split`, `start`, `end` (all but a way to the video optional) and any others, which
only `video_pattern` uses: VGGSound's rows (YouTube id, start second, label, split) become
paths with `video_pattern="clips/{id}_{second:06d}.mp4"` and `columns=["id", "second", "label",
"split"]`. Clips without a split get one from a stable hash of their path, so the same clip
lands in the same split on every machine and every rerun, whatever else the folder holds.
"""

from __future__ import annotations

import csv
import json
import math
import os
import string
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vabcli.core.atomic import atomic_output
from vabcli.data.manifest import SPLITS, ManifestError
from vabcli.data.shards import name_hash
from vabcli.media.inputs import videos_in

# The manifest fields a CSV column can fill; other columns are for video_pattern only.
_MANIFEST_COLUMNS = ("video", "label", "split", "start", "end")


@dataclass(frozen=True)
class SplitShares:
    """How clips without a split are shared out: train:val:test, as in `8:1:1`."""

    train: float = 8.0
    val: float = 1.0
    test: float = 1.0

    @classmethod
    def parse(cls, text: str) -> SplitShares:
        """`8:1:1` (any non-negative numbers, not all zero), or one split name for all clips."""
        if text in SPLITS:
            return cls(**{name: float(name == text) for name in SPLITS})
        parts = text.split(":")
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            numbers = []
        if len(numbers) != 3 or not all(math.isfinite(n) and n >= 0 for n in numbers):
            raise ValueError(f"split {text!r}: expected TRAIN:VAL:TEST shares such as 8:1:1")
        if sum(numbers) == 0:
            raise ValueError(f"split {text!r}: the shares add up to zero")
        return cls(*numbers)

    def of(self, key: str) -> str:
        """The split of the clip named `key`: the same key always gets the same split."""
        point = name_hash(key) / 2**64 * (self.train + self.val + self.test)
        if point < self.train:
            return "train"
        return "val" if point < self.train + self.val else "test"


@dataclass
class ManifestSummary:
    """What a written manifest holds, and which listed videos were left out as missing."""

    clips: int = 0
    splits: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    missing: list[Path] = field(default_factory=list)
    unusable: list[Path] = field(default_factory=list)


def records_from_folder(root: Path, shares: SplitShares) -> Iterator[dict[str, object]]:
    """One record per video under `root` (hidden files skipped), in path order."""
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    videos = videos_in(root)
    if not videos:
        raise ManifestError(f"{root}: no videos in this folder or below")
    for video in videos:
        key = video.relative_to(root).as_posix()
        record: dict[str, object] = {"video": video}
        if video.parent != root:
            record["label"] = video.parent.name
        record["split"] = shares.of(key)
        yield record


def records_from_csv(
    table: Path,
    shares: SplitShares,
    columns: list[str] | None = None,
    video_pattern: str | None = None,
) -> Iterator[dict[str, object]]:
    """One record per row of `table`. Its first row names the columns unless `columns` does.

    Relative video paths (from the `video` column or `video_pattern`) are taken from the CSV's
    folder. A row that cannot be a clip raises ManifestError naming `file:line`."""
    if not table.exists():
        raise ManifestError(f"{table}: no such file or folder")
    try:
        with table.open(newline="", encoding="utf-8-sig") as file:
            rows = csv.reader(file)
            names = columns or next(rows, None)
            if not names:
                raise ManifestError(f"{table}: empty CSV, no header row naming its columns")
            names = [name.strip() for name in names]
            _check_columns(table, names, video_pattern)
            for row in rows:
                if not any(cell.strip() for cell in row):
                    continue
                try:
                    yield _record(row, names, table.parent, shares, video_pattern)
                except ValueError as exc:
                    raise ManifestError(f"{table}:{rows.line_num}: {exc}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{table}: cannot read CSV ({exc})") from None


def _check_columns(table: Path, names: list[str], video_pattern: str | None) -> None:
    if len(set(names)) != len(names):
        raise ManifestError(f"{table}: a column name appears twice in {', '.join(names)}")
    if video_pattern is None:
        if "video" not in names:
            raise ManifestError(
                f"{table}: no 'video' column (columns: {', '.join(names)}); name one, "
                "or build paths from the columns with --video-pattern"
            )
        return
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(video_pattern) if name}
    except ValueError as exc:
        raise ManifestError(f"video pattern {video_pattern!r}: {exc}") from None
    unknown = sorted(fields - set(names))
    if unknown or not fields:
        raise ManifestError(
            f"video pattern {video_pattern!r}: "
            + (f"no column {unknown[0]!r}" if unknown else "names no column, as in {id}.mp4")
            + f" (columns: {', '.join(names)})"
        )


class _Cell(str):
    """A CSV cell that a pattern can format as text or, with a numeric spec, as a number."""

    def __format__(self, spec: str) -> str:
        number: type[int] | type[float] | None = None
        if spec and spec[-1] in "bdoxXn":
            number = int
        elif spec and spec[-1] in "eEfFgG%":
            number = float
        if number is None:
            return format(str(self), spec)
        try:
            return format(number(self.strip()), spec)
        except ValueError:
            kind = "a whole number" if number is int else "a number"
            raise ValueError(f"{str(self)!r} is not {kind} (format {spec!r})") from None


def _record(
    row: list[str],
    names: list[str],
    folder: Path,
    shares: SplitShares,
    video_pattern: str | None,
) -> dict[str, object]:
    if len(row) != len(names):
        raise ValueError(f"{len(row)} cells, expected {len(names)} ({', '.join(names)})")
    cells = {name: cell.strip() for name, cell in zip(names, row, strict=True)}
    if video_pattern is None:
        where = cells["video"]
    else:
        try:
            where = video_pattern.format_map({k: _Cell(v) for k, v in cells.items()})
        except ValueError as exc:
            raise ValueError(f"video pattern: {exc}") from None
    if not where:
        raise ValueError("no video path")
    video = Path(where).expanduser()
    record: dict[str, object] = {"video": video if video.is_absolute() else folder / video}
    if cells.get("label"):
        record["label"] = cells["label"]
    start, end = (_seconds(name, cells.get(name, "")) for name in ("start", "end"))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    record.update({k: v for k, v in (("start", start), ("end", end)) if v is not None})
    split = cells.get("split") or shares.of(where)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    record["split"] = split
    return record


def _seconds(name: str, text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {text!r}")
    return value


def write_manifest(
    records: Iterable[dict[str, object]],
    out: Path | None,
    *,
    overwrite: bool = False,
    keep_missing: bool = False,
) -> ManifestSummary:
    """Write `records` as a manifest at `out` (None: to stdout), video paths relative to its
    folder. Videos that do not exist are left out (listed in the summary) unless
    `keep_missing`, as are paths no manifest can hold (not UTF-8). The file appears whole or
    not at all; no clip left is a ManifestError."""
    summary = ManifestSummary()
    base = Path.cwd() if out is None else out.absolute().parent
    lines = []
    for record in records:
        video = record["video"]
        assert isinstance(video, Path)
        if not keep_missing and not video.exists():
            summary.missing.append(video)
            continue
        line = json.dumps({**record, "video": _relative(video, base)}, ensure_ascii=False)
        try:
            lines.append(line.encode("utf-8"))
        except UnicodeEncodeError:  # a file name that is not UTF-8: no manifest can name it
            summary.unusable.append(video)
            continue
        summary.clips += 1
        summary.splits[str(record["split"])] += 1
        if "label" in record:
            summary.labels[str(record["label"])] += 1
    if not lines:
        raise ManifestError(_nothing_left(summary))
    if out is None:
        sys.stdout.buffer.write(b"\n".join(lines) + b"\n")
        sys.stdout.flush()
        return summary
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.write_bytes(b"\n".join(lines) + b"\n")
    return summary


def _nothing_left(summary: ManifestSummary) -> str:
    if summary.missing:
        return (
            f"none of the {len(summary.missing)} videos listed exists (first: {summary.missing[0]})"
        )
    if summary.unusable:
        return f"no video has a UTF-8 name (first: {summary.unusable[0]!r})"
    return "no videos found"


def _relative(video: Path, base: Path) -> str:
    """`video` from `base` (the manifest's folder; `../` where needed), or absolute where there
    is no relative way (another drive)."""
    try:
        return Path(os.path.relpath(video.absolute(), base)).as_posix()
    except ValueError:
        return video.absolute().as_posix()
