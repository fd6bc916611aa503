"""Manifests: JSON Lines, one clip per line, describing a data set for tokenize and train.

    {"video": "clips/dog.mp4", "label": "dog", "split": "train"}
    {"video": "/data/cat.mkv", "label": ["cat", "meow"], "split": "val", "start": 2.5, "end": 12.5}

`video` is relative to the manifest's folder or absolute; `label` (a string or a list of strings),
`split` (train, val or test) and `start`/`end` (seconds) are optional. Blank lines and lines
starting with `#` are skipped. A malformed line is an error naming `file:line`: whatever the
line holds (deep nesting, NaN, huge numbers, lone surrogates, NUL), reading a manifest gives
entries with finite times and usable paths, or a ManifestError, never another exception.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vabcli.core.errors import VabError

SPLITS = ("train", "val", "test")
_KNOWN_KEYS = {"video", "label", "split", "start", "end", "events", "sources"}


class ManifestError(VabError):
    """A manifest line that cannot be used; the message starts with `file:line:`."""


@dataclass(frozen=True)
class ManifestEntry:
    video: Path
    line: int
    label: str | tuple[str, ...] | None = None
    split: str | None = None
    start: float | None = None
    end: float | None = None
    # Ground truth of synthetic clips (`vab synth`): when sounds start, seconds from the start,
    # and per visible object its label and events.
    events: tuple[float, ...] | None = None
    sources: tuple[tuple[str, tuple[float, ...]], ...] | None = None


def read_manifest(path: Path | str) -> list[ManifestEntry]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from None
    entries = []
    # Lines end at \n only (JSON Lines): splitlines() would also cut at U+2028 inside a string.
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw.strip() and not raw.lstrip().startswith("#"):
            try:
                entries.append(_parse_line(raw, number, path.parent))
            except ValueError as exc:
                raise ManifestError(f"{path}:{number}: {exc}") from None
    return entries


def _parse_line(raw: str, number: int, folder: Path) -> ManifestEntry:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError("nested too deeply to be a clip") from None
    if not isinstance(record, dict):
        raise ValueError("each line must be a JSON object")
    unknown = set(record) - _KNOWN_KEYS
    if unknown:
        # JSON quoting: a field name may hold a newline or a control character
        raise ValueError(f"unknown field(s) {', '.join(json.dumps(k) for k in sorted(unknown))}")
    video = record.get("video")
    if not isinstance(video, str) or not video or not _usable_text(video) or "\0" in video:
        raise ValueError('"video" must be a non-empty path string')
    start, end = _seconds(record, "start"), _seconds(record, "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f'"end" ({end}) must be after "start" ({start})')
    split = record.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f'"split" must be one of {", ".join(SPLITS)}, got {_short(split)}')
    video_path = Path(video).expanduser()
    return ManifestEntry(
        video=video_path if video_path.is_absolute() else folder / video_path,
        line=number,
        label=_label(record.get("label")),
        split=split,
        start=start,
        end=end,
        events=_events(record.get("events"), '"events"'),
        sources=_sources(record.get("sources")),
    )


def _seconds(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if not _is_time(value):
        raise ValueError(f'"{key}" must be a number of seconds >= 0, got {_short(value)}')
    return float(value)


def _is_time(value: Any) -> bool:
    """A finite number of seconds >= 0 that fits a float (JSON allows NaN, 1e999, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def _usable_text(text: str) -> bool:
    # JSON can spell lone surrogates (\ud800): no file name or printed label can hold them.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _label(value: Any) -> str | tuple[str, ...] | None:
    if value is None or (isinstance(value, str) and _usable_text(value)):
        return value
    if isinstance(value, list) and all(isinstance(v, str) and _usable_text(v) for v in value):
        return tuple(value)
    raise ValueError('"label" must be a string or a list of strings')


def _events(value: Any, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and all(_is_time(v) for v in value)
    if not ok:
        raise ValueError(f"{what} must be a list of times in seconds >= 0")
    return tuple(sorted(float(v) for v in value))


def _sources(value: Any) -> tuple[tuple[str, tuple[float, ...]], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError('"sources" must be a list of {"label": ..., "events": [...]} objects')
    sources = []
    for source in value:
        label = source.get("label") if isinstance(source, dict) else None
        if not isinstance(label, str) or not _usable_text(label):
            raise ValueError('each of "sources" needs a string "label"')
        sources.append((source["label"], _events(source.get("events", []), '"sources" events')))
    return tuple(sources)
