"""Temporary names, and telling the leftovers of killed runs from the files of live ones.

Every file or folder vab writes is first written under a temporary name that says which host
and process writes it: `NAME.tmp-<host>-<pid>-<random>`. A temporary is *abandoned* when its
writer is a process of this host that no longer runs, or (another host's, or an older name that
carries no host) when it has not been touched for six hours. Cache writes and output writes
both sweep abandoned temporaries; nothing else ever removes a temporary of a live writer.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from pathlib import Path

TMP_MARK = ".tmp-"
# A writer on another host may still be writing: it touches the file all along, so its age stays
# small; six hours untouched means it is gone.
STALE_SECONDS = 6 * 3600


def _host_mark() -> str:
    """A short hash of the host name and pid namespace: a temporary's pid means something only
    where it was written (containers sharing a host name each have their own pids)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    host = f"{socket.gethostname()}:{namespace}"
    return hashlib.blake2b(host.encode(), digest_size=4).hexdigest()


_HOST = _host_mark()
# `.tmp-<host>-<pid>-<random>`, or `.tmp-<pid>-<random>` (older names, no host).
_TMP_NAME = re.compile(r"\.tmp-(?:(?P<host>[0-9a-f]{8})-)?(?P<pid>\d+)-[0-9a-f]+")


def temp_name(name: str) -> str:
    """A temporary name for `name` that says which host and process writes it."""
    return f"{name}{TMP_MARK}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def abandoned(path: Path) -> bool:
    """Whether `path` is a temporary whose writer is gone (see the module's docstring)."""
    if TMP_MARK not in path.name:
        return False
    match = _TMP_NAME.search(path.name)
    if match and match["host"] == _HOST:
        return not _running(int(match["pid"]))
    try:
        return time.time() - path.lstat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def sweep_abandoned(folder: Path, prefix: str) -> None:
    """Remove the abandoned temporaries in `folder` whose names start with `prefix`."""
    import shutil

    try:
        children = list(folder.iterdir())
    except OSError:
        return
    for path in children:
        if path.name.startswith(prefix) and abandoned(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
