"""The reachability probe: yes for a listening port, no within its timeout otherwise.

Only loopback is ever contacted; a host that never answers is simulated.
"""

from __future__ import annotations

import socket
import time

from vabcli.encoders import network


def test_listening_port_is_reachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert network.host_reachable("127.0.0.1", server.getsockname()[1], timeout=2.0)


def test_silent_host_gives_up_after_the_timeout(monkeypatch):
    def never_answers(*args, **kwargs):
        time.sleep(2)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", never_answers)
    start = time.monotonic()
    assert network.host_reachable("example.invalid", timeout=0.2) is False
    assert time.monotonic() - start < 1.0


def test_offline_flags(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VAB_OFFLINE", raising=False)
    assert network.offline_flag() is None
    monkeypatch.setenv("VAB_OFFLINE", "yes")
    assert network.offline_flag() == "VAB_OFFLINE"
