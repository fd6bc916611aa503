"""The run-wide interrupt: set once on Ctrl-C or SIGTERM, seen by every worker and service.

Whatever holds something to stop (ffmpeg children, queued encoder requests) registers a hook;
`request()` runs them all, so nothing keeps working, or keeps others waiting, after an interrupt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vabcli.core.errors import CancelledError

_event = threading.Event()
_hooks: list[Callable[[], None]] = []
_lock = threading.Lock()


def request() -> None:
    """Cancel the run: later `check()` calls raise, and every hook runs (once per request)."""
    with _lock:
        _event.set()
        hooks = list(_hooks)
    for hook in hooks:
        hook()


def check() -> None:
    """Raise CancelledError if the run has been cancelled."""
    if _event.is_set():
        raise CancelledError("interrupted")


def on_cancel(hook: Callable[[], None]) -> Callable[[], None]:
    """Run `hook` on every cancellation; returns a function that unregisters it."""
    with _lock:
        _hooks.append(hook)

    def remove() -> None:
        with _lock:
            if hook in _hooks:
                _hooks.remove(hook)

    return remove


def reset() -> None:
    """Allow new work after a cancelled run (tests and long-lived library users)."""
    _event.clear()
