"""Fixtures: a binrpc server running in a background thread (so tests can use plain
blocking sockets), on 127.0.0.1 / ::1 with free ports and on /tmp paths."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from binrpc import Packet, encode_request, parse_packet
from binrpc._codec import MsgType, decode_values
from binrpc._registry import Registry
from binrpc.server import Server, ServerOptions, serve
from tests.loops import LOOPS, loop_factory, require_loop


def free_port(kind: str = "tcp", host: str = "127.0.0.1") -> int:
    """A port free for both tcp and udp right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


@dataclass
class Endpoints:
    unixs: str
    unixd: str
    udp: str
    tcp: str
    workdir: str

    def by_transport(self, transport: str) -> str:
        return str(getattr(self, transport))


class ServerThread:
    """Run ``serve(registry, *addresses, **options)`` in its own thread and loop."""

    def __init__(
        self,
        registry: Registry | None,
        *addresses: str,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Any,
    ) -> None:
        self.registry = registry
        self.addresses = addresses
        self.options = options
        self.loop = (loop_factory or asyncio.new_event_loop)()
        self.server: Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        try:
            self.server = serve(self.registry, *self.addresses, **self.options)
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self.server.serve_forever()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self._thread.join(5)
            raise self._error
        return self

    def stop(self) -> None:
        if self.server is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.close)
        self._thread.join(10)
        assert not self._thread.is_alive(), "server thread did not stop"

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.loop.close()

    def call_in_loop(self, fn: Any) -> Any:
        """Run fn() in the server loop and return its result."""
        fut: Any = asyncio.run_coroutine_threadsafe(_acall(fn), self.loop)
        return fut.result(5)


async def _acall(fn: Any) -> Any:
    return fn()


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="binrpc-srv-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_endpoints(workdir: str) -> Endpoints:
    return Endpoints(
        unixs=f"unixs:{workdir}/ctl.sock",
        unixd=f"unixd:{workdir}/ctl.dgram",
        udp=f"udp:127.0.0.1:{free_port()}",
        tcp=f"tcp:127.0.0.1:{free_port()}",
        workdir=workdir,
    )


@pytest.fixture
def endpoints(workdir: str) -> Endpoints:
    return make_endpoints(workdir)


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    """Each event loop in turn (``tests.loops``)."""
    name: str = request.param
    require_loop(name)
    return name


@pytest.fixture
def server(endpoints: Endpoints, loop_name: str) -> Iterator[ServerThread]:
    """A default server on the four transports, on each event loop."""
    ep = endpoints
    with ServerThread(
        None, ep.unixs, ep.unixd, ep.udp, ep.tcp, loop_factory=loop_factory(loop_name)
    ) as st:
        yield st


# ------------------------------------------------------------------------------------------
# raw clients


class RawClient:
    """A blocking raw binrpc client for one address (stream or datagram)."""

    def __init__(self, address: str, workdir: str | None = None, timeout: float = 3.0) -> None:
        proto, _, rest = address.partition(":")
        self.proto = proto
        self.timeout = timeout
        self.bound_path: str | None = None
        if proto in ("unixs", "unixd"):
            kind = socket.SOCK_STREAM if proto == "unixs" else socket.SOCK_DGRAM
            self.sock = socket.socket(socket.AF_UNIX, kind)
            if proto == "unixd":
                fd, path = tempfile.mkstemp(prefix="cli-", dir=workdir or "/tmp")
                os.close(fd)
                os.unlink(path)
                self.sock.bind(path)
                self.bound_path = path
            self.target: Any = rest
        else:
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
            self.sock = socket.socket(family, kind)
            self.target = (host, int(port))
        self.sock.settimeout(timeout)
        self.sock.connect(self.target)
        self.buf = b""

    @property
    def is_stream(self) -> bool:
        return self.proto in ("unixs", "tcp")

    def send(self, data: bytes) -> None:
        if self.is_stream:
            self.sock.sendall(data)
        else:
            self.sock.send(data)

    def recv_packet(self, timeout: float | None = None) -> Packet | None:
        """The next packet, or None on timeout / EOF."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        if not self.is_stream:
            try:
                data = self.sock.recv(1 << 17)
            except TimeoutError:
                return None
            return parse_packet(data)
        while True:
            try:
                p = parse_packet(self.buf)
            except Exception:
                raise
            if p is not None:
                from binrpc import parse_header

                h = parse_header(self.buf)
                assert h is not None
                self.buf = self.buf[h.size + h.body_len :]
                return p
            try:
                data = self.sock.recv(1 << 17)
            except TimeoutError:
                return None
            if not data:
                return None
            self.buf += data

    def closed_by_server(self, timeout: float = 1.0) -> bool:
        """True if the server closed the stream (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        self.buf += data
        return data == b""

    def call(self, method: str, params: Any = (), cookie: int = 0x1234) -> tuple[str, Any]:
        self.send(encode_request(method, params, cookie))
        p = self.recv_packet()
        assert p is not None, f"no reply to {method}"
        assert p.cookie == cookie
        values = decode_values(p.body)
        if p.type == MsgType.FAULT:
            return "fault", (values[0], values[1])
        return "reply", values

    def close(self) -> None:
        self.sock.close()
        if self.bound_path:
            with contextlib.suppress(OSError):
                os.unlink(self.bound_path)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Endpoints", "RawClient", "ServerOptions", "ServerThread", "free_port"]
