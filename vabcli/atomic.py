"""Writing an output under a temporary name and renaming it into place when it is complete."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError


def check_writable(final: Path, overwrite: bool) -> None:
    if final.exists() and not overwrite:
        raise OutputExistsError(f"{final} exists (use --overwrite to replace it)")


@contextmanager
def atomic_output(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final` (same folder, same suffix); rename on success.

    The temporary name is hidden and keeps the suffix, so tools that pick a format from the
    extension (ffmpeg) still work. On any failure or interrupt the temporary file is removed.
    """
    check_writable(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{final.suffix}")
    try:
        yield tmp
        check_writable(final, overwrite)  # another process may have written it meanwhile
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
