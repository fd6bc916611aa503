"""Where a dubbing run writes each clip, which clips it may skip, and who may write them.

Outputs mirror the inputs' tree under the output folder: `clips/a/b.mov` given as `clips/` ->
`OUT/a/b.mp4`, `OUT/a/b.wav`, `OUT/a/b.json`. The sidecar JSON is written last, so it marks a
clip as done: a clip whose sidecar names outputs that exist whole (the sizes it recorded, an
MP4 with its index) is skipped; anything else is redone. Outputs without a sidecar are
leftovers of an interrupted run and are replaced. An advisory lock per clip keeps two runs
(cron overlapping itself, several machines on one share) from writing the same clip; its
holder sweeps the temporaries killed runs left for that clip.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vabcli.core.atomic import sweep_temps
from vabcli.core.errors import VabError
from vabcli.data.clips import ClipItem
from vabcli.media.extract import WHOLE
from vabcli.media.mux import incomplete_media


@dataclass(frozen=True)
class DubTarget:
    item: ClipItem
    audio: Path
    video: Path | None  # None with --no-mux
    sidecar: Path
    problem: str | None = None  # why this clip cannot run (reported as its error)

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.audio, self.video, self.sidecar) if p is not None]

    def complete(self) -> bool:
        """True when an earlier run finished this clip: its sidecar names outputs that exist,
        none empty, each of the size the sidecar recorded (older sidecars recorded none), and
        the video with its index, so a file cut short by a full disk is redone, not skipped."""
        try:
            sidecar = json.loads(self.sidecar.read_text(encoding="utf-8"))
            written = set(sidecar.get("outputs", {}).values())
            sizes = dict(sidecar.get("output_bytes") or {})
        except (OSError, ValueError, TypeError, AttributeError):
            return False
        made = [p for p in self.outputs if p != self.sidecar]
        if not {p.name for p in made} <= written:
            return False
        for path in made:
            try:
                size = path.stat().st_size
            except OSError:
                return False
            if size == 0 or sizes.get(path.name, size) != size:
                return False
        return self.video is None or incomplete_media(self.video) is None


def plan_targets(items: list[ClipItem], out: Path, audio_format: str, mux: bool) -> list[DubTarget]:
    """One target per item; a second item that would write the same files gets a problem."""
    claimed: dict[Path, ClipItem] = {}
    targets = []
    for item in items:
        stem = out / output_stem(item)
        first = claimed.setdefault(stem, item)
        problem = item.error
        if problem is None and first is not item:
            problem = f"{item.name()}: same output name as {first.name()} ({stem}.*); rename one"
        if problem is None and mux and item.segment != WHOLE:  # known before any work is done
            problem = f"{item.name()}: muxing part of a video is not supported; use --no-mux"
        targets.append(
            DubTarget(
                item=item,
                audio=stem.with_name(f"{stem.name}.{audio_format}"),
                video=stem.with_name(f"{stem.name}.mp4") if mux else None,
                sidecar=stem.with_name(f"{stem.name}.json"),
                problem=problem,
            )
        )
    return targets


def output_stem(item: ClipItem) -> Path:
    """Where `item`'s outputs go below an output folder, without suffix."""
    relative = item.relative or Path(item.path.name)
    stem = relative.with_suffix("")
    if item.segment != WHOLE:  # several segments of one video: one output each
        end = "end" if item.segment.end is None else f"{item.segment.end:g}"
        stem = stem.with_name(f"{stem.name}_{item.segment.start:g}-{end}s")
    return stem


def shard_key(target: DubTarget) -> str:
    """The name a clip's shard follows from: its outputs' (relative) name, the same on every
    machine wherever the inputs are mounted."""
    return output_stem(target.item).as_posix()


class ClipBusyError(VabError):
    """Another run holds this clip's lock."""


class OutputLock:
    """An exclusive, non-blocking advisory lock on a clip's outputs (`.<name>.lock` beside them).

    flock locks die with their process, so a killed run never leaves a clip locked for good.
    The lock file is removed on release; a waiter that locked a file which was removed meanwhile
    notices (different inode) and tries again. While the lock is held nobody else writes the
    clip, so on acquiring it every temporary of the clip's name is a killed run's: swept.
    """

    def __init__(self, sidecar: Path) -> None:
        self.sidecar = sidecar
        self.path = sidecar.with_name(f".{sidecar.stem}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise ClipBusyError("another vab run is writing this clip") from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                sweep_temps(self.sidecar, only_stale=False)
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
