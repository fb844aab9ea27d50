"""Fixtures for the FIFO-protocol tests: our server with FIFO listeners on every transport
(a FIFO file, UDP, TCP, unix stream, unix datagram; 127.0.0.1 and /tmp only, ports free at
run time), and raw blocking peers that speak the FIFO text protocol byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import select
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from binrpc import Struct
from binrpc._context import RpcContext
from binrpc._registry import Registry
from tests.server.conftest import ServerThread, free_port

TRANSPORTS = ("fifo", "udp", "tcp", "unixs", "unixd")
SOCKETS = ("udp", "tcp", "unixs", "unixd")


def make_registry() -> Registry:
    """RPCs that show parameter typing, struct lines, faults, big and slow replies."""
    reg = Registry()

    @reg.rpc("t.add")
    def add(a: int, b: int = 0) -> int:
        return a + b

    @reg.rpc("t.types")
    def types(i: int, f: float, s: str, b: bool) -> tuple[str, ...]:
        return (f"{type(i).__name__}={i}", f"{type(f).__name__}={f}", f"str={s}", f"bool={b}")

    @reg.rpc("t.echo")
    def echo(*words: str) -> tuple[str, ...]:
        return words

    @reg.rpc("t.scan", context=True)
    def scan(ctx: RpcContext) -> None:
        # C-style conversions: strtol with base auto, strtod, unescaped strings
        r = ctx.scan("dfs")
        if r == 3:
            ctx.add("dfs", *r.values)

    @reg.rpc("t.struct", context=True)
    def struct(ctx: RpcContext) -> None:
        r = ctx.scan("{")
        if r > 0:
            handle = ctx.add("{")
            for name, value in r.values[0].items():
                ctx.struct_add(handle, "s", name, value)

    @reg.rpc("t.structs")
    def structs(first: Struct, second: Struct) -> tuple[int, int]:
        return len(first), len(second)

    @reg.rpc("t.fault", context=True)
    def fault(ctx: RpcContext) -> None:
        ctx.add("s", "kept")
        ctx.fault(404, "no %s here", "thing")

    @reg.rpc("t.printf", context=True)
    def printf(ctx: RpcContext) -> None:
        ctx.rpl_printf("a=%d", 1)
        ctx.rpl_printf(" b=%s", "two")

    @reg.rpc("t.big")
    def big(n: int) -> tuple[str, ...]:
        return tuple(f"{i:07d}" + "x" * 90 for i in range(n))

    @reg.rpc("t.slow")
    async def slow(seconds: float, tag: str) -> str:
        await asyncio.sleep(seconds)
        return tag

    calls: list[str] = []

    @reg.rpc("t.mark")
    def mark(tag: str) -> str:
        calls.append(tag)
        return tag

    @reg.rpc("t.marks")
    def marks() -> tuple[str, ...]:
        return tuple(calls)

    return reg


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="binrpc-fifo-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class FifoServer:
    thread: ServerThread
    workdir: str
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def fifo_path(self) -> str:
        return self.addresses["fifo"].split(":", 1)[1]

    def peer(self, transport: str, **kw: float) -> Peer:
        return Peer(transport, self.addresses[transport], self.workdir, **kw)


def fifo_addresses(workdir: str) -> dict[str, str]:
    return {
        "fifo": f"fifo:{workdir}/ctl.fifo",
        "udp": f"udp:127.0.0.1:{free_port()}",
        "tcp": f"tcp:127.0.0.1:{free_port()}",
        "unixs": f"unixs:{workdir}/fifo.sock",
        "unixd": f"unixd:{workdir}/fifo.dgram",
    }


@pytest.fixture
def fifo_server(workdir: str) -> Iterator[FifoServer]:
    addresses = fifo_addresses(workdir)
    with ServerThread(
        make_registry(),
        fifo=tuple(addresses.values()),
        fifo_reply_dir=workdir,
        fifo_reply_timeout=1.0,
    ) as thread:
        yield FifoServer(thread, workdir, addresses)


# ------------------------------------------------------------------------------------------
# raw peers


def reply_name() -> str:
    return f"t{os.getpid()}_{secrets.token_hex(4)}"


def make_reply_fifo(directory: str, name: str | None = None) -> tuple[str, int]:
    """mkfifo + open for reading (non-blocking), as a FIFO client does first."""
    path = os.path.join(directory, name or reply_name())
    os.mkfifo(path, 0o600)
    return path, os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def read_fifo_to_eof(fd: int, timeout: float) -> bytes | None:
    """Read a reply FIFO until the writer closes it; None if nothing came within timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data or None
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if chunk:
            data += chunk
        elif data:
            return data
        else:
            time.sleep(0.01)


def write_fifo(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


class Peer:
    """A raw FIFO-protocol client for one listener.

    ``ask(request)``: ``{R}`` in the request is replaced by a fresh reply-FIFO name (for a
    FIFO file the reply FIFO is created in the reply directory first; sockets ignore the
    name). Returns the reply bytes, or None when nothing came within ``timeout``. Streams
    half-close after sending, so the reply is everything up to the server's close.
    """

    def __init__(self, transport: str, address: str, reply_dir: str, timeout: float = 3.0):
        self.transport = transport
        self.address = address
        self.reply_dir = reply_dir
        self.timeout = timeout

    def _sockaddr(self) -> tuple[int, int, object]:
        proto, _, rest = self.address.partition(":")
        kind = socket.SOCK_STREAM if proto in ("tcp", "unixs") else socket.SOCK_DGRAM
        if proto in ("unixs", "unixd"):
            return socket.AF_UNIX, kind, rest
        host, _, port = rest.rpartition(":")
        return socket.AF_INET, kind, (host, int(port))

    def connect(self) -> socket.socket:
        family, kind, target = self._sockaddr()
        sock = socket.socket(family, kind)
        sock.settimeout(self.timeout)
        sock.connect(target)  # type: ignore[arg-type]
        return sock

    def ask(self, request: bytes, timeout: float | None = None) -> bytes | None:
        timeout = self.timeout if timeout is None else timeout
        if self.transport == "fifo":
            if b"{R}" not in request:
                write_fifo(self.address.split(":", 1)[1], request)
                return None
            name = reply_name()
            path, fd = make_reply_fifo(self.reply_dir, name)
            try:
                write_fifo(self.address.split(":", 1)[1], request.replace(b"{R}", name.encode()))
                return read_fifo_to_eof(fd, timeout)
            finally:
                os.close(fd)
                os.unlink(path)
        request = request.replace(b"{R}", b"r")
        if self.transport in ("tcp", "unixs"):
            with self.connect() as sock:
                sock.settimeout(timeout)
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                return recv_to_eof(sock)
        return self.ask_datagram(request, timeout)

    def ask_datagram(self, request: bytes, timeout: float) -> bytes | None:
        family, kind, target = self._sockaddr()
        with socket.socket(family, kind) as sock:
            bound = None
            if family == socket.AF_UNIX:
                bound = os.path.join(self.reply_dir, reply_name() + ".sock")
                sock.bind(bound)
            try:
                sock.settimeout(timeout)
                sock.sendto(request, target)  # type: ignore[call-overload]
                try:
                    return sock.recv(1 << 17)
                except TimeoutError:
                    return None
            finally:
                if bound:
                    with contextlib.suppress(OSError):
                        os.unlink(bound)


def recv_to_eof(sock: socket.socket) -> bytes | None:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data or None
        if not chunk:
            return data
        data += chunk


def recv_for(sock: socket.socket, seconds: float) -> bytes:
    """Everything a stream delivers within ``seconds`` (no EOF needed)."""
    data = b""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


__all__ = [
    "SOCKETS",
    "TRANSPORTS",
    "FifoServer",
    "Peer",
    "ServerThread",
    "fifo_addresses",
    "free_port",
    "make_registry",
    "make_reply_fifo",
    "read_fifo_to_eof",
    "recv_for",
    "recv_to_eof",
    "reply_name",
    "write_fifo",
]
