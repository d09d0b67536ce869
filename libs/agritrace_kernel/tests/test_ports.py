"""Ports for child processes: clear of the ephemeral range, free, never handed out twice."""

from __future__ import annotations

import socket
from pathlib import Path

from agritrace_kernel.ports import LOWEST, ephemeral_start, free_port


def test_ports_are_below_the_ephemeral_range_free_and_distinct() -> None:
    ports = [free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= port < ephemeral_start() for port in ports)
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it


def test_a_port_in_use_is_not_given(tmp_path: Path) -> None:
    narrow = tmp_path / "range"
    narrow.write_text(f"{LOWEST + 1000}\t60999\n")  # leaves LOWEST..LOWEST+999
    held = []
    try:
        for port in range(LOWEST, LOWEST + 1000):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
            except OSError:
                sock.close()
                continue
            held.append(sock)
        found = free_port(range_file=narrow)
        assert not LOWEST <= found < LOWEST + 1000  # all taken: the kernel's choice instead
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", found))
    finally:
        for sock in held:
            sock.close()


def test_without_room_below_the_ephemeral_range_the_kernel_chooses(tmp_path: Path) -> None:
    wide = tmp_path / "range"
    wide.write_text("1024\t65535\n")

    port = free_port(range_file=wide)

    assert port >= 1024
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_an_unreadable_range_is_linuxs_default(tmp_path: Path) -> None:
    assert ephemeral_start(tmp_path / "missing") == 32768
