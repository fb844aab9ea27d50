"""Issue #7, part 2: hostile clients of the FIFO text protocol (spec 8) on every FIFO listener.

A FIFO file, and the protocol over TCP, UDP, unix stream and unix datagram sockets, next to a
binrpc socket. After each case every listener still answers a fresh client correctly in under
2 s. (Reply-FIFO symlink attacks belong to the FIFO tests: tests/fifo.)
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from binrpc.server import ListenerError, ServerOptions

from .conftest import ServerThread, assert_healthy, connect, free_port, read_all

pytestmark = pytest.mark.skipif(
    "fifo" not in ServerOptions.field_names(), reason="the server has no FIFO listeners yet"
)


@dataclass
class FifoEndpoints:
    fifo: str
    tcp: str
    udp: str
    unixs: str
    unixd: str
    binrpc: str
    workdir: str


@pytest.fixture
def fifo_server(workdir: str) -> Iterator[tuple[ServerThread, FifoEndpoints]]:
    ep = FifoEndpoints(
        fifo=f"{workdir}/ctl.fifo",
        tcp=f"tcp:127.0.0.1:{free_port()}",
        udp=f"udp:127.0.0.1:{free_port()}",
        unixs=f"unixs:{workdir}/fifo.sock",
        unixd=f"unixd:{workdir}/fifo.dgram",
        binrpc=f"unixs:{workdir}/ctl.sock",
        workdir=workdir,
    )
    try:
        st = ServerThread(
            None,
            ep.binrpc,
            fifo=[ep.fifo, ep.tcp, ep.udp, ep.unixs, ep.unixd],
            fifo_reply_dir=workdir,
            fifo_partial_timeout=0.5,
            fifo_reply_timeout=0.5,
            write_timeout=1.0,
        )
        st.__enter__()
    except ListenerError as exc:
        if "not yet supported" in str(exc) or "not supported" in str(exc):
            pytest.skip(f"FIFO listeners refused by the server: {exc}")
        raise
    try:
        yield st, ep
    finally:
        st.__exit__(None, None, None)


def stream_call(address: str, data: bytes, timeout: float = 2.0) -> tuple[bytes, bool]:
    """Send, half-close, read until the server closes: (reply bytes, closed)."""
    with connect(address, timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return read_all(s, timeout)


def dgram_call(address: str, data: bytes, workdir: str, timeout: float = 2.0) -> bytes | None:
    proto, _, rest = address.partition(":")
    if proto == "unixd":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = tempfile.mktemp(prefix="c-", dir=workdir)
        s.bind(path)
        target: object = rest
    else:
        host, _, port = rest.rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = (host, int(port))
        path = None
    try:
        s.settimeout(timeout)
        s.sendto(data, target)  # type: ignore[call-overload]
        try:
            return s.recv(1 << 17)
        except TimeoutError:
            return None
    finally:
        s.close()
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def fifo_file_call(ep: FifoEndpoints, data: bytes, timeout: float = 2.0) -> bytes:
    """Write a request naming a fresh reply FIFO to the FIFO file, read the reply."""
    name = f"r{random.randrange(1 << 30)}"
    reply = os.path.join(ep.workdir, name)
    os.mkfifo(reply, 0o600)
    try:
        rfd = os.open(reply, os.O_RDONLY | os.O_NONBLOCK)
        try:
            payload = data.replace(b":REPLY\n", f":{name}\n".encode(), 1)
            wfd = os.open(ep.fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(wfd, payload)
            finally:
                os.close(wfd)
            out = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = os.read(rfd, 65536)
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                if not chunk and out:
                    break
                out += chunk
                if not chunk:
                    time.sleep(0.01)
            return out
        finally:
            os.close(rfd)
    finally:
        os.unlink(reply)


def assert_fifo_healthy(ep: FifoEndpoints) -> None:
    start = time.monotonic()
    token = f"alive{random.randrange(1 << 30)}"
    request = f":core.echo:\n{token}\n\n".encode()
    expected = f"200 OK\n{token}\n".encode()
    for address in (ep.tcp, ep.unixs):
        assert stream_call(address, request) == (expected, True), address
    for address in (ep.udp, ep.unixd):
        assert dgram_call(address, request, ep.workdir) == expected, address
    assert fifo_file_call(ep, f":core.echo:REPLY\n{token}\n\n".encode()) == expected
    assert_healthy(ep.binrpc)
    assert time.monotonic() - start < 2.0 * 2, "the FIFO listeners answer slowly"


BAD_FIRST_LINES = [
    b"core.version:\n\n",
    b":core.version\n\n",
    b":core.version:../x\n\n",
    b":core.version:a/b\n\n",
    b":core.version:a\\b\n\n",
    b"::x\n\n",
    b":\n\n\n",
    b"\x00\x00\x00\n\n",
    b"\xff\xfe:\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("transport", ["tcp", "unixs", "udp", "unixd"])
def test_malformed_requests_on_sockets(
    fifo_server: tuple[ServerThread, FifoEndpoints], transport: str
) -> None:
    _, ep = fifo_server
    address = getattr(ep, transport)
    cases = [
        *[(b, b"400 ") for b in BAD_FIRST_LINES],
        (b":no.such:\n\n", b"500 Command 'no.such' not found\n"),
        (b":core.echo:\nbad\\escape\n\n", b"500 "),
        (b":core.printi:\n\n", b"200 OK\n"),
        (b":core.echo:\n\xff\xfe\x00z\n\n", b"200 OK\n\xff\xfe\\0z\n"),  # NUL escaped back
        (b":core.echo:\r\nab\r\n\r\n", b"200 OK\nab\n"),
        (b":core.echo:\n" + b"y" * 60000 + b"\n\n", b"200 OK\n" + b"y" * 60000 + b"\n"),
        (b":system.methodHelp:\n" + b"\\" * 1001 + b"\n\n", b"400 "),
        (b":\xed\xa0\x80:\n\n", b"500 Command '"),
    ]
    good = b":core.echo:\nafter\n\n"
    for data, expected in cases:
        if transport in ("tcp", "unixs"):
            # the bad request, then a good one on the same connection: both answered
            reply, closed = stream_call(address, data + good)
            assert closed
            assert reply.startswith(expected), (data[:40], reply[:80])
            assert reply.endswith(b"200 OK\nafter\n"), (data[:40], reply[-80:])
        else:
            answer = dgram_call(address, data, ep.workdir)
            assert answer is not None and answer.startswith(expected), (data[:40], answer)
    assert_fifo_healthy(ep)


@pytest.mark.parametrize("transport", ["tcp", "unixs"])
def test_stream_buffer_overflow_without_a_request_closes(
    fifo_server: tuple[ServerThread, FifoEndpoints], transport: str
) -> None:
    _, ep = fifo_server
    address = getattr(ep, transport)
    for filler in (b"x" * 70_000, b"a\n" * 35_000, b":core.echo:\n" + b"z" * 70_000):
        with connect(address) as s:
            with contextlib.suppress(OSError):
                s.sendall(filler)
            data, closed = read_all(s, 3.0)
        assert closed and data == b"", data[:80]
    assert_fifo_healthy(ep)


def test_trickled_lines_do_not_stall_the_server(
    fifo_server: tuple[ServerThread, FifoEndpoints],
) -> None:
    """2-byte writes of 'a\\n' (the framer used to rescan its whole buffer on each one)."""
    _, ep = fifo_server
    stop = threading.Event()

    def trickle() -> None:
        with connect(ep.tcp) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b":core.echo:\n")
            for _ in range(20_000):
                if stop.is_set():
                    return
                try:
                    s.sendall(b"a\n")
                except OSError:
                    return

    worker = threading.Thread(target=trickle)
    worker.start()
    try:
        time.sleep(0.2)
        for _ in range(3):
            assert_fifo_healthy(ep)
    finally:
        stop.set()
        worker.join()


def test_fifo_file_garbage_partial_and_unknown_reply_fifos(
    fifo_server: tuple[ServerThread, FifoEndpoints],
) -> None:
    _, ep = fifo_server
    rng = random.Random(99)
    fd = os.open(ep.fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        for data in BAD_FIRST_LINES:
            os.write(fd, data)
        # replies to reply FIFOs that do not exist, are regular files, or escape the dir
        (open(os.path.join(ep.workdir, "plainfile"), "w")).close()
        for name in ("nosuchfifo", "plainfile", "..", "a.b"):
            os.write(fd, f":core.version:{name}\n\n".encode())
        for _ in range(50):
            os.write(fd, bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
        os.write(fd, b"\n\n")  # end whatever the garbage left open
        # a writer that dies half-way: discarded after fifo_partial_timeout (0.5 s)
        os.write(fd, b":core.echo:REPLY\nhalf")
    finally:
        os.close(fd)
    time.sleep(1.0)
    with open(os.path.join(ep.workdir, "plainfile"), "rb") as fh:
        assert fh.read() == b""  # never written to
    assert_fifo_healthy(ep)


def test_fifo_file_overflow_is_dropped_and_recovers(
    fifo_server: tuple[ServerThread, FifoEndpoints],
) -> None:
    _, ep = fifo_server
    fd = os.open(ep.fifo, os.O_WRONLY)
    try:
        for _ in range(40):  # 160 KB of one line, no empty line
            os.write(fd, b"q" * 4096)
        os.write(fd, b"\n\n")
    finally:
        os.close(fd)
    time.sleep(0.3)
    assert_fifo_healthy(ep)


def test_pipelined_fifo_requests_without_reading(
    fifo_server: tuple[ServerThread, FifoEndpoints],
) -> None:
    """Thousands of requests whose replies are never read: write_timeout closes the stream."""
    _, ep = fifo_server
    with connect(ep.tcp) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = b":core.echo:\n" + b"r" * 1000 + b"\n\n"
        closed = False
        start = time.monotonic()
        while time.monotonic() - start < 8:
            try:
                s.sendall(request * 50)
            except OSError:
                closed = True
                break
            if time.monotonic() - start > 1:
                assert_fifo_healthy(ep)
        assert closed, "a FIFO stream that never reads was kept"
    assert_fifo_healthy(ep)
