"""Writing outputs under temporary names and renaming them into place only when they are whole.

Invariant: a final name holds a whole file or nothing. Each output is written to a hidden
temporary beside it (`.STEM.tmp-HOST-PID-HEX.SUFFIX`, see temps.py), checked (not empty, plus
the writer's own check, such as an MP4's index being there), flushed to disk, and only then
renamed; the folder is flushed after the rename. Outputs written together (a clip's audio,
video and sidecar) are renamed together, in order, and on any failure none of them stays. A disk
that fills, a quota, a read-only file system: one `OutputWriteError` line naming the folder and
the file. Temporaries a killed process left behind are found by `leftover_temps` and swept
by whoever owns the name (the holder of a clip's lock, or a run that sees their writer is gone).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vabcli.core.errors import OutputExistsError, VabError
from vabcli.core.temps import TMP_MARK, abandoned, temp_name

# Returns why a written file is not whole (cut short, index missing), or None when it is.
Check = Callable[[Path], "str | None"]

# Errors that mean the output could not be written (as opposed to a bug or a bad input).
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
)
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class OutputWriteError(VabError):
    """An output could not be written whole (disk full, quota, read-only, cut short)."""


def write_error(final: Path, exc: OSError) -> OutputWriteError:
    """The one-line error for failing to write `final`."""
    if exc.errno in _NO_SPACE:
        what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return OutputWriteError(f"{final.parent}: {what} writing {final.name}")
    reason = exc.strerror or os.strerror(exc.errno or errno.EIO)
    return OutputWriteError(f"{final.parent}: cannot write {final.name} ({reason})")


def check_writable(final: Path, overwrite: bool) -> None:
    if final.exists() and not overwrite:
        raise OutputExistsError(f"{final} exists (use --overwrite to replace it)")


def temp_path(final: Path) -> Path:
    """Hidden and keeping the suffix, so tools that pick a format from it (ffmpeg) still work."""
    return final.with_name(f".{temp_name(final.stem)}{final.suffix}")


class OutputGroup:
    """Outputs being written together; see `output_group`."""

    def __init__(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path, Check | None]] = []  # (final, temporary, check)
        self._renamed: list[Path] = []

    def add(self, final: Path, check: Check | None = None) -> Path:
        """Start writing `final`: returns the temporary path to write it to."""
        check_writable(final, self.overwrite)
        with _writing(final):
            final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(final)
        self._pending.append((final, tmp, check))
        return tmp

    def final_of(self, exc: OSError) -> Path | None:
        """The output a write error belongs to: the one it names, else the latest begun; None
        when it names some other file (then it is not about writing an output)."""
        if not self._pending:
            return None
        if exc.filename is None:
            return self._pending[-1][0]
        named = Path(os.fsdecode(exc.filename))
        return next((final for final, tmp, _ in self._pending if named in (tmp, final)), None)

    def commit(self) -> None:
        for final, tmp, check in self._pending:
            _settle(final, tmp, check)
        for final, tmp, _ in self._pending:
            check_writable(final, self.overwrite)  # another process may have written it meanwhile
            with _writing(final):
                os.replace(tmp, final)
            self._renamed.append(final)
        last_in = {final.parent: final for final, _, _ in self._pending}
        for folder, final in last_in.items():
            with _writing(final):
                _sync_folder(folder)
        self._pending.clear()

    def discard(self) -> None:
        for final in self._renamed:
            final.unlink(missing_ok=True)
        for _, tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)


@contextmanager
def output_group(overwrite: bool = False) -> Iterator[OutputGroup]:
    """Write several outputs under temporary names; on success check, flush and rename them in
    the order they were added (put the one that marks the set done last); on any failure or
    interrupt remove every temporary, and any output of the group already renamed."""
    group = OutputGroup(overwrite)
    try:
        try:
            yield group
            group.commit()
        except OSError as exc:  # raised by the caller's writing
            final = group.final_of(exc)
            if final is None or exc.errno not in _WRITE_ERRNOS:
                raise
            raise write_error(final, exc) from exc
    except BaseException:
        group.discard()
        raise


@contextmanager
def atomic_output(
    final: Path, overwrite: bool = False, check: Check | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `final`; it replaces `final` once written whole."""
    with output_group(overwrite) as group:
        yield group.add(final, check)


def _settle(final: Path, tmp: Path, check: Check | None) -> None:
    """Make sure the temporary is whole and on disk before it may take the final name."""
    try:
        size = tmp.stat().st_size
    except FileNotFoundError:
        raise OutputWriteError(f"{final.parent}: {final.name} was not written") from None
    problem = "it is empty" if size == 0 else (check(tmp) if check else None)
    if problem:
        raise OutputWriteError(f"{final.parent}: {final.name} came out incomplete ({problem})")
    # Some file systems (delayed allocation, NFS) report a full disk only here.
    with _writing(final):
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make the renames durable (a crash right after could otherwise lose the new names)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # folders some file systems cannot sync
            raise
    finally:
        os.close(fd)


@contextmanager
def _writing(final: Path) -> Iterator[None]:
    """Errors of the system refusing a write of `final` become its OutputWriteError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        raise write_error(final, exc) from exc


def leftover_temps(final: Path) -> list[Path]:
    """Temporaries of outputs with `final`'s stem in its folder, any suffix; also those of older
    versions (no host in the name, or a temporary nested in a temporary)."""
    mark = re.escape(TMP_MARK)
    tmp = rf"{mark}(?:[0-9a-f]{{8}}-)?\d+-[0-9a-f]{{8}}"
    pattern = re.compile(rf"\.\.?{re.escape(final.stem)}{tmp}(?:{tmp})?(?:\.[^.]+)?")
    try:
        names = os.listdir(final.parent)
    except FileNotFoundError:
        return []
    return [final.parent / name for name in names if pattern.fullmatch(name)]


def sweep_temps(final: Path, only_stale: bool) -> None:
    """Remove temporaries of `final`'s stem left by killed runs. With `only_stale` (no lock says
    who writes), only abandoned ones (temps.abandoned); otherwise all of them (the caller holds
    the name's lock, so no live process writes them)."""
    for path in leftover_temps(final):
        if only_stale and not abandoned(path):
            continue
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError):
            pass
