"""Deciding quickly whether a download can work, so offline runs fail in a moment, not a minute."""

from __future__ import annotations

import os
import socket
import threading

from vabcli.core.errors import one_line

_TRUE = {"1", "true", "yes", "on"}
# A reachable host answers a TCP connect in well under a second; offline we must fail fast.
PROBE_TIMEOUT_S = 1.0


def offline_flag() -> str | None:
    """The environment variable that declares this process offline, if one is set."""
    for var in ("HF_HUB_OFFLINE", "VAB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """TCP connect within `timeout` s; in a thread because DNS lookups ignore socket timeouts."""
    reached: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                reached.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reached)


PICKLE_REFUSED = (
    "it is a pickle holding more than plain tensors, and vab never unpickles such files "
    "(unpickling can run any code hidden in them): convert the weights to .safetensors"
)


def first_line(exc: BaseException) -> str:
    """Why a library could not load weights, on one line: the first line of its message, as
    torch's state-dict errors run to dozens (the rest lists every key).

    A weights file refused by torch's `weights_only` loader is said plainly: torch's own message
    advises turning the protection off, which vab never does.
    """
    if _refused_pickle(exc):
        return PICKLE_REFUSED
    lines = str(exc).strip().splitlines()
    return one_line(lines[0]) if lines else type(exc).__name__


def _refused_pickle(exc: BaseException | None) -> bool:
    import pickle

    seen = 0
    while exc is not None and seen < 8:  # the cause chain, as open_clip may wrap torch's error
        if isinstance(exc, pickle.UnpicklingError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
