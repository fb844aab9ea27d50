"""Hardening tests (issue #7): helpers shared by the hostile-client, file and soak tests.

Servers run on 127.0.0.1 / ::1 and under /tmp only, on ports chosen free at run time. The
in-process server is ``tests.server.conftest.ServerThread`` (its own thread and loop, so the
tests use plain blocking sockets); binrpcd runs as a subprocess (``tests.server.test_daemon.
Daemon``) and is always stopped by its pid.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
from collections.abc import Iterator

import pytest

from binrpc import Packet, decode_values, encode_request, parse_header, parse_packet
from binrpc._codec import MsgType
from tests.server.conftest import (
    Endpoints,
    RawClient,
    ServerThread,
    free_port,
    make_endpoints,
    workdir,
)

__all__ = [
    "STREAMS",
    "TRANSPORTS",
    "Endpoints",
    "RawClient",
    "ServerThread",
    "assert_healthy",
    "connect",
    "fd_count",
    "free_port",
    "make_endpoints",
    "read_all",
    "read_packets",
    "wait_for",
    "workdir",
]

TRANSPORTS = ("unixs", "unixd", "udp", "tcp")
STREAMS = ("unixs", "tcp")


def fd_count(pid: int | str = "self") -> int:
    """Open file descriptors of a process (``/proc/<pid>/fd``)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(predicate: object, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` expires; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def connect(address: str, timeout: float = 3.0) -> socket.socket:
    """A plain connected stream socket to ``unixs:/path`` or ``tcp:host:port``."""
    proto, _, rest = address.partition(":")
    if proto == "unixs":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = rest
    else:
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        target = (host, int(port))
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(target)  # type: ignore[arg-type]
            return sock
        except BlockingIOError:  # a unix listener's backlog is full: the server is busy
            if time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.005)
        except BaseException:
            sock.close()
            raise


def read_all(sock: socket.socket, timeout: float = 2.0, limit: int = 1 << 22) -> tuple[bytes, bool]:
    """Read until the peer closes (or ``timeout`` of silence): ``(bytes, closed)``."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def read_packets(data: bytes) -> list[Packet]:
    """Every whole packet in a received byte string."""
    out = []
    while (p := parse_packet(data)) is not None:
        out.append(p)
        h = parse_header(data)
        assert h is not None
        data = data[h.size + h.body_len :]
    return out


def fault_of(packet: Packet) -> tuple[int, str]:
    assert packet.type == MsgType.FAULT, packet
    values = decode_values(packet.body)
    return values[0], values[1]  # type: ignore[return-value]


def assert_healthy(address: str, workdir: str | None = None, within: float = 2.0) -> None:
    """A fresh client gets a correct answer (right cookie, right content) within ``within`` s."""
    cookie = random.randrange(1, 1 << 31)
    token = f"alive-{cookie}"
    start = time.monotonic()
    with RawClient(address, workdir, timeout=within) as c:
        c.send(encode_request("core.echo", [token], cookie))
        p = c.recv_packet(within)
    elapsed = time.monotonic() - start
    assert p is not None, f"no answer from {address} within {within} s"
    assert (p.type, p.cookie) == (MsgType.REPLY, cookie), p
    assert decode_values(p.body) == [token]
    assert elapsed < within, f"answer took {elapsed:.2f} s"


@pytest.fixture
def endpoints(workdir: str) -> Endpoints:
    return make_endpoints(workdir)


@pytest.fixture
def server(endpoints: Endpoints) -> Iterator[ServerThread]:
    """A default server (ctl defaults) on the four transports."""
    ep = endpoints
    with ServerThread(None, ep.unixs, ep.unixd, ep.udp, ep.tcp) as st:
        yield st


@contextlib.contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
