"""Ending a process at once, without interpreter teardown.

Two kinds of vab process cannot trust a normal exit: a torchrun rank (gloo's threads, met by
teardown while still joinable, abort it: see `vabcli.training.distributed.exit_process`) and an
interrupted run on CPython 3.11 (which can end by SIGINT after a clean exit 130). Both leave
through `exit_now`, once their outputs are closed.

Every other finished `vab` process leaves through `exit_quickly`: the interpreter's teardown
(freeing every module and object torch made) took 0.25-0.3 s of a 5 s `vab generate` on two
cores, after the outputs were already closed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
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


def exit_quickly(code: int) -> NoReturn:
    """End a process whose work is done with `code`, doing what interpreter exit does that
    matters (non-daemon threads joined, atexit handlers run, stdout and stderr flushed) and
    skipping the teardown. Under a profiler, tracer or debugger the exit is the usual one: they
    write their results as the interpreter exits (`python -m cProfile -o ... -m vabcli`)."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    # Interpreter exit's own first step (threading's exit hooks, e.g. concurrent.futures telling
    # idle workers to stop, then joining the non-daemon threads); it has no public name.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    exit_now(code)
