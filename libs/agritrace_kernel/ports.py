"""Ports that a parent picks for the child processes it starts (servers, their metrics)."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

# Where Linux hands out ephemeral ports: to bind(port 0) and to every outgoing connection.
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_START = 32768
LOWEST = 20000  # above the ports well-known services use
ATTEMPTS = 200

_given: set[int] = set()
_lock = threading.Lock()


def ephemeral_start(range_file: Path = EPHEMERAL_RANGE) -> int:
    """The first port of the kernel's ephemeral range (Linux's default when unknown)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return LINUX_EPHEMERAL_START


def free_port(host: str = "127.0.0.1", *, range_file: Path = EPHEMERAL_RANGE) -> int:
    """A port nothing listens on now, for a child to bind a moment later, and never the same
    twice in this process. Chosen below the ephemeral range: a port from bind(0) is an
    ephemeral one, which any outgoing connection may take as its source port before the
    child binds it - a server then fails with "address already in use" (seen with the
    integration tests, which open hundreds of connections while servers start)."""
    top = ephemeral_start(range_file)
    with _lock:
        if top - LOWEST >= 1000:
            for _ in range(ATTEMPTS):
                port = random.randrange(LOWEST, top)
                if port not in _given and _bindable(host, port):
                    _given.add(port)
                    return port
        while True:  # no room below the ephemeral range (or none free): the kernel's choice
            with socket.socket() as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _given:
                _given.add(port)
                return port


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
