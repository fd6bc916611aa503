"""Finding and running the ffmpeg binary.

Every ffmpeg process vab starts goes through `spawn`, so an interrupted run (`cancel.request`)
kills them all and no child keeps writing after vab has cleaned up its temporary files.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from vabcli.core import cancel
from vabcli.core.errors import FFmpegNotFoundError, MediaError

_running: set[subprocess.Popen] = set()
_lock = threading.Lock()


@lru_cache(maxsize=1)
def ffmpeg_binary() -> str:
    """The ffmpeg to use: `$VAB_FFMPEG`, else `ffmpeg` on PATH, else the imageio-ffmpeg wheel's.

    Looked up lazily, so commands that never decode (a fully cached run) work without one.
    """
    override = os.environ.get("VAB_FFMPEG")
    if override:
        if shutil.which(override) is None:
            raise FFmpegNotFoundError(f"VAB_FFMPEG={override} is not an executable file")
        return override
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise FFmpegNotFoundError(
            "no ffmpeg found: install ffmpeg on PATH, `pip install imageio-ffmpeg`, "
            "or set VAB_FFMPEG to an ffmpeg binary"
        ) from exc


def _kill_running() -> None:
    with _lock:
        for proc in _running:
            if proc.poll() is None:
                proc.kill()


cancel.on_cancel(_kill_running)


def spawn(args: Sequence[str], loglevel: str = "error", **popen_kwargs) -> subprocess.Popen:
    """Start `ffmpeg -nostdin -hide_banner -v LOGLEVEL ARGS...`, tracked for cancellation."""
    cmd = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-v", loglevel, *args]
    # Under the lock, so a cancellation cannot slip between the check and the registration.
    with _lock:
        cancel.check()
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)  # a caller may pipe frames in
        proc = subprocess.Popen(cmd, **popen_kwargs)
        _running.add(proc)
    return proc


def release(proc: subprocess.Popen) -> None:
    """Forget a finished (or killed) process; kills it first if it is still running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    with _lock:
        _running.discard(proc)


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: str


def run(args: Sequence[str], loglevel: str = "error") -> Completed:
    """Run ffmpeg to completion and return its exit code and output, whatever the exit code.

    Callers decide what a non-zero exit means: `ffmpeg -i FILE` alone always exits 1.
    """
    proc = spawn(args, loglevel, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate()
    finally:
        release(proc)
    cancel.check()
    return Completed(proc.returncode, out, err.decode("utf-8", errors="replace"))


def run_checked(args: Sequence[str], what: str | Path) -> Completed:
    """Run ffmpeg; a failure raises MediaError naming `what` with ffmpeg's own error line.

    A failed write counts even when ffmpeg exits 0 (see `write_failure`).
    """
    done = run(args)
    failed_write = write_failure(done.stderr, what)
    if done.returncode != 0 or failed_write is not None:
        line = failed_write.strerror if failed_write else last_error_line(done.stderr)
        raise MediaError(f"{what}: {line}")
    return done


# How ffmpeg says it could not write its output. ffmpeg 5.1 exits 0 after some of them (an
# "Error writing trailer ...: No space left on device" leaves a cut file and exit code 0), so
# the exit code alone cannot be trusted.
_WRITE_FAILURES = (
    "Error writing trailer",
    "Error closing file",
    "Could not write header",
    "Error writing",
    "Error muxing",
    "av_interleaved_write_frame",
    "No space left on device",
    "Disk quota exceeded",
    "File too large",
    "Read-only file system",
)
_ERRNO_OF = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
}


def write_failure(stderr: str, output: str | Path) -> OSError | None:
    """The OSError ffmpeg's stderr reports for writing `output`, or None if it reports none.

    Its errno comes from the system's message in the line (ENOSPC for "No space left on
    device"), else EIO; its text is ffmpeg's line.
    """
    for line in stderr.splitlines():
        if any(mark in line for mark in _WRITE_FAILURES):
            code = next((e for text, e in _ERRNO_OF.items() if text in line), errno.EIO)
            return OSError(code, _strip_component(line.strip()), str(output))
    return None


def last_error_line(stderr: str) -> str:
    """The most telling line of ffmpeg's stderr, stripped of its `[component @ 0x...]` prefix."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "ffmpeg failed with no message"
    for ln in reversed(lines):
        if "Invalid data" in ln or "No such file" in ln or "does not contain" in ln:
            return _strip_component(ln)
    return _strip_component(lines[-1])


def _strip_component(line: str) -> str:
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return line
