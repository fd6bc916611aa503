"""The content-addressed cache: one directory per (input content, stage, parameters).

Layout: `<root>/<stage>/v<FORMAT_VERSION>/<key[:2]>/<key>/` holding the stage's files and a
`meta.json` listing each file's size and SHA-256, sealed by a checksum over the rest of its
contents. An entry is built in a temporary sibling directory and renamed into place, so readers
see a whole entry or none. Every read checks the seal, sizes and checksums: a damaged entry
(flipped bytes, truncation, an edited value) is reported, removed and recomputed, never used.
Small remembered facts (input digests, encoder ids) are sealed the same way and are best
effort: a cache that cannot be written forgets them, it does not fail. A cache that already
holds what a run needs is only read (read-only mounts work); a write that cannot happen is one
`CacheError` naming the folder. Temporary names carry the writer's host and pid, so a later run
sweeps what a killed one left (`vab cache prune` too). The mtime of `meta.json` records the
entry's last use, for pruning least recently used first.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from vabcli.core import cancel
from vabcli.core.errors import CacheError, InputError
from vabcli.core.temps import abandoned, temp_name

# 2: per-file SHA-256 in meta.json; 3: meta.json and memos sealed by a checksum. Older formats
# are never read (their keys differ), so their values cannot be trusted unchecked.
FORMAT_VERSION = 3
META_FILE = "meta.json"
CHECKSUM = "checksum"


# Errors that mean "this folder cannot take a write"; others are bugs or bad input.
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOENT}
_FULL = {errno.ENOSPC, errno.EDQUOT}


def default_cache_dir() -> Path:
    """`$VAB_CACHE`, else `$XDG_CACHE_HOME/vab`, else `~/.cache/vab`; never the cwd."""
    if os.environ.get("VAB_CACHE"):
        return Path(os.environ["VAB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vab"


def file_digest(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a regular file's bytes: the identity of an input, whatever its name or place.

    Anything else (a FIFO, a device such as /dev/zero, a folder) is refused, not read: it may
    never end. The open does not block on a FIFO, and an interrupt stops a long read between
    chunks. SHA-256 rather than BLAKE2b: with the SHA instructions of current CPUs it is the
    faster of the two here (0.76 s against 1.25 s per GB on the development VM).
    """
    f = _open_regular(path)
    if f is None:
        raise not_regular(path)
    with f:
        h = hashlib.sha256()
        while True:
            cancel.check()
            block = f.read(chunk_size)
            if not block:
                return h.hexdigest()
            h.update(block)


def not_regular(path: Path) -> InputError:
    return InputError(f"{path}: not a regular file (a FIFO, device or folder cannot be read)")


def seal(record: dict[str, Any]) -> str:
    """`record` as JSON with a checksum over the rest of it, for `unseal` to verify."""
    return json.dumps({**record, CHECKSUM: _checksum(record)}, indent=1, sort_keys=True)


def unseal(text: str) -> dict[str, Any]:
    """The record `seal` wrote; ValueError if `text` is not one or does not match its checksum."""
    record = json.loads(text)
    if not isinstance(record, dict) or record.pop(CHECKSUM, None) != _checksum(record):
        raise ValueError("checksum does not match")
    return record


def _checksum(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _read_text(path: Path) -> str:
    """A small regular file's text; a FIFO or folder in its place is refused, never waited on."""
    f = _open_regular(path)
    if f is None:
        raise ValueError(f"{path} is not a regular file")
    with f:
        return f.read().decode()


def _open_regular(path: Path) -> BinaryIO | None:
    """`path` open for reading if it is a regular file, else None; never blocks on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return open(fd, "rb")


def remove(path: Path) -> None:
    """Remove a file or a folder tree, as far as it can be removed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def sweep(folder: Path) -> None:
    """Remove the temporaries that killed runs (SIGKILL, power loss) left in `folder`."""
    with contextlib.suppress(OSError):
        for child in folder.iterdir():
            if abandoned(child):
                remove(child)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file under a temporary name and rename it: readers never see half of it,
    and a failed write (full disk) leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name))
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def unwritable(root: Path, exc: OSError) -> CacheError:
    """The one-line error for a cache folder that cannot take a write, saying what to do."""
    reason = exc.strerror or type(exc).__name__
    way_out = "pass --cache DIR or set VAB_CACHE"
    if exc.errno in _FULL:
        return CacheError(
            f"cache {root} is full (no space left on device); free space there "
            f"(vab cache prune --max-size SIZE) or {way_out}"
        )
    if not root.exists():
        return CacheError(f"cache {root} cannot be created ({reason}); {way_out}")
    return CacheError(f"cache {root} is not writable ({reason}); {way_out}")


def make_key(stage: str, content_digest: str, params: dict[str, Any]) -> str:
    """Key over input content, stage, format version and every result-changing parameter."""
    blob = json.dumps(
        {"stage": stage, "format": FORMAT_VERSION, "content": content_digest, "params": params},
        sort_keys=True,
    )
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


class Cache:
    """The cache under `root`; `on_damage` hears about every damaged entry found (and removed)."""

    def __init__(
        self,
        root: Path | str | None = None,
        on_damage: Callable[[str], None] | None = None,
        digests: Path | None = None,
        shown: Path | None = None,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.on_damage = on_damage
        # Where remembered input digests live; a scratch cache shares its parent's.
        self.digests = digests or self.root / "digests"
        # The folder errors name: a scratch cache's trouble is its parent cache's.
        self.shown = shown or self.root

    @contextmanager
    def scratch(self) -> Iterator[Cache]:
        """A throw-away cache in a private folder at the root (the same disk), removed on exit;
        it reuses this cache's remembered input digests."""
        with self._writes():
            self.root.mkdir(parents=True, exist_ok=True)
            sweep(self.root)
            folder = self.root / temp_name(".frames")
            folder.mkdir()
        try:
            yield Cache(folder, self.on_damage, self.digests, self.shown)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def content_digest(self, path: Path) -> str:
        """`file_digest(path)`, remembered per file while its size, mtime and inode stay the same.

        A rerun over large unchanged inputs then reads none of their bytes.
        """
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]
        resolved = str(path.resolve())
        name = hashlib.sha256(resolved.encode()).hexdigest()[:32]
        memo = self.digests / f"v{FORMAT_VERSION}" / name[:2] / f"{name}.json"
        known = self.recall(memo)
        if known and known.get("path") == resolved and known.get("stamp") == stamp:
            return known["digest"]
        digest = file_digest(path)
        self.remember(memo, {"path": resolved, "stamp": stamp, "digest": digest})
        return digest

    def recall(self, path: Path) -> dict[str, Any] | None:
        """A fact `remember` wrote at `path`, or None; a damaged one is reported and removed."""
        try:
            return unseal(_read_text(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._damaged(path, f"cache file {path} was damaged; recomputing it")
            return None

    def remember(self, path: Path, record: dict[str, Any]) -> None:
        """Write a fact at `path`. Best effort: a cache that cannot be written only forgets."""
        with contextlib.suppress(OSError):
            sweep(path.parent)
            write_text_atomic(path, seal(record))

    def entry_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / f"v{FORMAT_VERSION}" / key[:2] / key

    def lookup(self, stage: str, key: str) -> dict[str, Any] | None:
        """The entry's metadata if it is complete, its seal holds and every file matches its
        size and checksum. A damaged entry is reported through `on_damage` and removed, so the
        caller recomputes it. Reading writes nothing that must succeed."""
        entry = self.entry_dir(stage, key)
        meta_path = entry / META_FILE
        if not meta_path.exists():
            return None
        try:
            meta = unseal(_read_text(meta_path))
            damaged = _first_damaged_file(entry, meta["files"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            damaged = META_FILE
        if damaged is None:
            with contextlib.suppress(OSError):  # last use, for pruning; not on a read-only cache
                os.utime(meta_path)
            return meta
        self._damaged(entry, f"cache entry {entry} was damaged ({damaged}); recomputing it")
        return None

    @contextmanager
    def writing(self, stage: str, key: str, meta: dict[str, Any]) -> Iterator[Path]:
        """Yield a private directory to fill; on success it becomes the entry, atomically.

        `meta` may be updated inside the block; on exit it gets each file's size and checksum,
        and is sealed. If another process committed the same entry first, theirs is kept (same
        key, same content). A cache that cannot take the entry raises CacheError; the private
        directory is removed whatever happens.
        """
        final = self.entry_dir(stage, key)
        with self._writes():
            final.parent.mkdir(parents=True, exist_ok=True)
            sweep(final.parent)
            sweep(self.root)
            tmp = final.parent / temp_name(key)
            tmp.mkdir()
        try:
            with self._writes(_FULL | {errno.EROFS}):  # the caller's writes: only disk faults
                yield tmp
            with self._writes():
                meta["files"] = {
                    p.name: {"size": p.stat().st_size, "sha256": file_digest(p)}
                    for p in sorted(tmp.iterdir())
                }
                (tmp / META_FILE).write_text(seal(meta))
                self._commit(tmp, final, stage, key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _commit(self, tmp: Path, final: Path, stage: str, key: str) -> None:
        try:
            os.rename(tmp, final)
            return
        except OSError:
            if self.lookup(stage, key) is not None:
                return  # another process committed the same entry first
        if os.path.lexists(final):  # not an entry at all (a file, a folder without meta.json)
            self._damaged(final, f"cache entry {final} was damaged (no {META_FILE}); rewriting it")
        os.rename(tmp, final)

    @contextmanager
    def _writes(self, errnos: set[int] = _UNWRITABLE) -> Iterator[None]:
        """Turn an OSError that means the cache cannot take a write into one CacheError."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in errnos:
                raise
            raise unwritable(self.shown, exc) from exc

    def _damaged(self, path: Path, message: str) -> None:
        remove(path)
        if self.on_damage:
            self.on_damage(message)


def _first_damaged_file(entry: Path, files: dict[str, dict[str, Any]]) -> str | None:
    """Name of the first file that is missing or differs from its record; None if all match."""
    for name, record in files.items():
        path = entry / name
        if Path(name).name != name or not path.is_file() or path.stat().st_size != record["size"]:
            return name
    for name, record in files.items():  # sizes first: cheap, and catch truncation
        if file_digest(entry / name) != record["sha256"]:
            return name
    return None
