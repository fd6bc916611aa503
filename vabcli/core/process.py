"""Ending a process at once, without interpreter teardown.

Two kinds of vab process cannot trust a normal exit: a torchrun rank (gloo's threads, met by
teardown while still joinable, abort it: see `vabcli.training.distributed.exit_process`) and an
interrupted run on CPython 3.11 (which can end by SIGINT after a clean exit 130). Both leave
through `exit_now`, once their outputs are closed.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Flush what Python still buffers for stdout and stderr, then end the process with `code`
    by os._exit, which runs no destructors, atexit handlers or interpreter teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone or a stream closed: nothing more to say
            pass
    os._exit(code)
