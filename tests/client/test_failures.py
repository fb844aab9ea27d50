"""One failure, one exception class, whichever client.

Every row of :data:`FAILURES` sets up one failure for real (a refused or unanswered connect, a
peer that closes, resets, never answers, an ICMP error, a datagram too big ...) or, where the
kernel cannot be made to fail on loopback (its own ``ETIMEDOUT``), injects the very ``OSError``
it raises into the socket; then every client that can meet it -- ``Client``, ``Client.pipeline``,
``AsyncClient`` (``request``, with a ``trace`` hook, ``pipeline``) and ``FifoClient`` -- must
raise the same class, with a message that names no
meaningless ``[Errno 0]`` and no ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import socket
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import binrpc.client._async as async_mod
import binrpc.client._link as sync_mod
from binrpc import (
    ConnectError,
    ConnectionClosed,
    DecodeError,
    TransportError,
    TransportTimeout,
)
from binrpc._framing import StreamFramer
from binrpc.client import AsyncClient, Client, Timeouts
from binrpc.client._core import MAX_TIMEOUT
from binrpc.client._errors import BindError, ReceiveError, ResolveError, SendError
from binrpc.client._fifo_client import FifoClient

KINDS = ("Client", "Pipeline", "AsyncClient", "AsyncPipeline", "AsyncTrace", "FifoClient")
ALL = frozenset(KINDS)
BINRPC = ALL - {"FifoClient"}  # TLS, params lists


async def _async_call(kind: str, address: str, params: Any, kw: dict[str, Any]) -> None:
    """One call by ``AsyncClient``: ``request``, ``request`` with a trace hook, or a one-request
    ``pipeline`` (raising what it yields)."""
    async with AsyncClient(address, **kw) as c:
        if kind == "AsyncPipeline":
            results = [r async for r in c.pipeline([("core.version", params)])]
            if isinstance(results[0], BaseException):
                raise results[0]
        elif kind == "AsyncTrace":
            await c.request("core.version", list(params), trace=lambda data, offset: None)
        else:
            await c.request("core.version", list(params))


def call(kind: str, address: str, params: tuple[Any, ...], **kw: Any) -> None:
    """One ``core.version`` call by the client ``kind``; raises what it raises (the pipeline:
    the error it yields for that request)."""
    if kind == "Client":
        with Client(address, **kw) as c:
            c.request("core.version", list(params))
    elif kind == "Pipeline":
        with Client(address, **kw) as c:
            [result] = list(c.pipeline([("core.version", params)]))
            if isinstance(result, BaseException):
                raise result
    elif kind.startswith("Async"):
        asyncio.run(_async_call(kind, address, params, kw))
    else:
        kw.setdefault("reply_dir", "/tmp")
        kw.pop("tls", None)
        FifoClient(address, **kw).call("core.version", *params)


# -- peers ------------------------------------------------------------------------------------
def _request_read(conn: socket.socket) -> None:
    """Read one request: a binrpc packet, or FIFO text up to the client's end-of-file."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
        framer = StreamFramer(1 << 24)
        framer.feed(data)
        try:
            if framer.next_packet() is not None:
                return
        except DecodeError:
            continue  # FIFO text: it ends where the client shuts its side down


class StreamPeer:
    """Accepts one TCP or unix stream connection and does ``action`` with it in a thread."""

    def __init__(self, family: int, where: Any, action: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(where)
        self.sock.listen(8)
        self.action = action
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.sock.accept()
            with conn:
                self.action(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() up
        self.sock.close()
        self.thread.join(10)


def close_after_request(conn: socket.socket) -> None:
    _request_read(conn)


def reset_after_request(conn: socket.socket) -> None:
    _request_read(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")


def close_during_request(conn: socket.socket) -> None:
    conn.recv(1024)  # the header has come; the rest of a 4 MB request never will be read


def hold_after_one_byte(conn: socket.socket) -> None:
    conn.sendall(b"\xa1")  # readable (asyncio reads only then); held until the test ends
    with contextlib.suppress(OSError):
        conn.recv(1 << 24)
        conn.recv(1 << 24)


def _loopback(kind: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    return s


def _free_udp_port() -> int:
    s = _loopback(socket.SOCK_DGRAM)
    port: int = s.getsockname()[1]
    s.close()
    return port


class Kernel(types.SimpleNamespace):
    """A stand-in for the ``_socket`` module whose sockets fail at ``step`` with ``exc``."""


def _failing_socket_class(base: type, step: str, exc: OSError) -> type:
    def fail(self: Any, *args: Any) -> Any:
        raise exc

    names = ("connect",) if step == "connect" else ("recv", "recv_into", "recvfrom")
    return type("FailingSocket", (base,), dict.fromkeys(names, fail))


def kernel_etimedout(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """The kernel gives up on the connection (``ETIMEDOUT``): what TCP does after its
    retransmissions, which loopback never needs."""
    exc = OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
    assert isinstance(exc, TimeoutError)  # what Python makes of it
    import _socket

    shim = Kernel(**vars(_socket))
    shim.socket = _failing_socket_class(_socket.socket, step, exc)
    monkeypatch.setattr(sync_mod, "_socket", shim)
    shim2 = types.SimpleNamespace(**vars(socket))
    shim2.socket = _failing_socket_class(socket.socket, step, exc)
    monkeypatch.setattr(async_mod, "socket", shim2)


@dataclass
class Setup:
    address: str
    kw: dict[str, Any] = field(default_factory=dict)
    params: tuple[Any, ...] = ()


@contextlib.contextmanager
def no_such_host(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    yield Setup("tcp:no-such-host.invalid:2049")


@contextlib.contextmanager
def port_closed(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    with _loopback(socket.SOCK_STREAM) as s:  # bound, not listening: RST, and the port is ours
        yield Setup(f"tcp:127.0.0.1:{s.getsockname()[1]}")


@contextlib.contextmanager
def no_socket_file(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    yield Setup(f"unixs:{tmp}/missing.sock")


@contextlib.contextmanager
def unixd_reply_dir_missing(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(f"{tmp}/ctl")
        yield Setup(f"unixd:{tmp}/ctl", {"reply_dir": f"{tmp}/missing"})


@contextlib.contextmanager
def connect_timeout(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    with _loopback(socket.SOCK_STREAM) as lst:
        lst.listen(0)
        with socket.create_connection(lst.getsockname()):  # the accept queue is full now:
            port = lst.getsockname()[1]  # Linux drops the next SYNs
            yield Setup(f"tcp:127.0.0.1:{port}", {"timeout": 0.3})


@contextlib.contextmanager
def tls_handshake_timeout(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    with _loopback(socket.SOCK_STREAM) as lst:
        lst.listen(8)  # connected in the backlog; nobody ever answers the ClientHello
        port = lst.getsockname()[1]
        yield Setup(f"tcp:127.0.0.1:{port}", {"timeout": 0.3, "tls": True})


@contextlib.contextmanager
def stream_never_answers(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    with _loopback(socket.SOCK_STREAM) as lst:
        lst.listen(8)
        yield Setup(f"tcp:127.0.0.1:{lst.getsockname()[1]}", {"timeout": 0.3})


@contextlib.contextmanager
def datagram_never_answered(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    with _loopback(socket.SOCK_DGRAM) as s:
        yield Setup(f"udp:127.0.0.1:{s.getsockname()[1]}", {"timeout": 0.3})


@contextlib.contextmanager
def tcp_peer(action: Callable[[socket.socket], None], **kw: Any) -> Iterator[Setup]:
    peer = StreamPeer(socket.AF_INET, ("127.0.0.1", 0), action)
    try:
        yield Setup(f"tcp:127.0.0.1:{peer.sock.getsockname()[1]}", kw)
    finally:
        peer.close()


def closed_before_replying(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    return tcp_peer(close_after_request)


def reset_before_replying(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    return tcp_peer(reset_after_request)


@contextlib.contextmanager
def icmp_port_unreachable(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    yield Setup(f"udp:127.0.0.1:{_free_udp_port()}", {"timeout": 30})


@contextlib.contextmanager
def datagram_too_big(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    with _loopback(socket.SOCK_DGRAM) as s:  # > 65507 bytes: EMSGSIZE
        yield Setup(f"udp:127.0.0.1:{s.getsockname()[1]}", params=("x" * 70000,))


@contextlib.contextmanager
def stream_stops_reading(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    path = f"{tmp}/ctl"
    peer = StreamPeer(socket.AF_UNIX, path, close_during_request)
    try:
        yield Setup(f"unixs:{path}", params=("x" * (4 << 20),))
    finally:
        peer.close()


@contextlib.contextmanager
def kernel_timeout_on_connect(tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Setup]:
    kernel_etimedout(mp, "connect")
    with _loopback(socket.SOCK_STREAM) as s:
        yield Setup(f"tcp:127.0.0.1:{s.getsockname()[1]}", {"timeout": None})


def kernel_timeout_on_receive(tmp: Path, mp: pytest.MonkeyPatch) -> Any:
    kernel_etimedout(mp, "receive")
    return tcp_peer(hold_after_one_byte, timeout=None)


FAILURES: list[tuple[Callable[..., Any], type[TransportError], frozenset[str]]] = [
    # (how the failure is set up, the class every client raises, the clients that can meet it)
    (no_such_host, ResolveError, ALL),
    (port_closed, ConnectError, ALL),
    (no_socket_file, ConnectError, ALL),
    (unixd_reply_dir_missing, BindError, ALL),
    (connect_timeout, TransportTimeout, ALL),
    (tls_handshake_timeout, TransportTimeout, BINRPC),
    (stream_never_answers, TransportTimeout, ALL),
    (datagram_never_answered, TransportTimeout, ALL),
    (closed_before_replying, ConnectionClosed, ALL),
    (reset_before_replying, ReceiveError, ALL),
    (icmp_port_unreachable, ReceiveError, ALL),
    (datagram_too_big, SendError, ALL),
    (stream_stops_reading, SendError, BINRPC),
    (kernel_timeout_on_connect, TransportTimeout, ALL),
    (kernel_timeout_on_receive, TransportTimeout, ALL),
]


CASES = [
    pytest.param(setup, expected, kind, id=f"{setup.__name__}-{kind}")
    for setup, expected, clients in FAILURES
    for kind in KINDS
    if kind in clients
]


@pytest.mark.parametrize(("setup", "expected", "kind"), CASES)
def test_one_failure_one_exception_class(
    setup: Callable[..., Any],
    expected: type[TransportError],
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with setup(tmp_path, monkeypatch) as s, pytest.raises(TransportError) as info:
        call(kind, s.address, s.params, **s.kw)
    exc = info.value
    assert type(exc) is expected, f"{kind}: {type(exc).__name__}: {exc}"
    text = str(exc)
    assert "[Errno 0]" not in text and "None" not in text, text


# -- arguments of the wrong type or out of range ----------------------------------------------
def bad_call(kind: str, address: str, method: Any, params: Any, **kw: Any) -> None:
    """Construct the client ``kind`` with ``kw`` and call ``method`` with ``params``."""
    if kind == "Client":
        with Client(address, **kw) as c:
            if isinstance(params, tuple):
                c.call_one(method, *params)
            else:
                c.request(method, params)
    elif kind == "Pipeline":
        with Client(address, **kw) as c:
            list(c.pipeline([(method, params)]))
    elif kind == "AsyncClient":

        async def main() -> None:
            async with AsyncClient(address, **kw) as c:
                if isinstance(params, tuple):
                    await c.call_one(method, *params)
                else:
                    await c.request(method, params)

        asyncio.run(main())
    elif kind == "AsyncPipeline":

        async def pipeline() -> None:
            async with AsyncClient(address, **kw) as c:
                [r async for r in c.pipeline([(method, params)])]

        asyncio.run(pipeline())
    elif kind == "AsyncTrace":

        async def traced() -> None:
            async with AsyncClient(address, **kw) as c:
                await c.request(method, params, trace=lambda data, offset: None)

        asyncio.run(traced())
    else:
        FifoClient(address, reply_dir="/tmp", **kw).call(method, *params)


NOT_A_TIMEOUT = [0, 0.0, -1, -0.5, math.inf, -math.inf, math.nan, MAX_TIMEOUT + 1, 10**400]

BAD_ARGUMENTS: list[tuple[str, dict[str, Any], type[Exception], str, frozenset[str]]] = [
    # (id, the call's arguments, the exception, what its message says, the clients)
    ("method-None", {"method": None}, TypeError, "method must be a str, not NoneType", ALL),
    ("method-bytes", {"method": b"core.version"}, TypeError, "method must be a str", ALL),
    ("params-str", {"params": "abc"}, TypeError, "params must be a list or tuple", BINRPC),
    ("params-None", {"params": None}, TypeError, "params must be a list or tuple", BINRPC),
    ("address-int", {"address": 2049}, TypeError, "address must be a str", ALL),
    ("timeout-str", {"timeout": "5"}, TypeError, "timeout must be a number of seconds", ALL),
    ("timeout-bool", {"timeout": True}, TypeError, "timeout must be a number of seconds", ALL),
    *(
        (f"timeout-{t!r}"[:20], {"timeout": t}, ValueError, "timeout must be a number of s", ALL)
        for t in NOT_A_TIMEOUT
    ),
    ("max-reply-str", {"max_reply_size": "1"}, TypeError, "max_reply_size must be a num", ALL),
    ("max-reply-0", {"max_reply_size": 0}, ValueError, "max_reply_size must be > 0", ALL),
]


@pytest.mark.parametrize(
    ("args", "expected", "message", "kind"),
    [
        pytest.param(args, expected, message, kind, id=f"{name}-{kind}")
        for name, args, expected, message, clients in BAD_ARGUMENTS
        for kind in KINDS
        if kind in clients
    ],
)
def test_wrong_arguments_are_named(
    args: dict[str, Any], expected: type[Exception], message: str, kind: str, tmp_path: Path
) -> None:
    # nothing listens there: an argument that is not checked fails later, as a ConnectError
    call_args: dict[str, Any] = {
        "address": f"unixs:{tmp_path}/missing",
        "method": "core.version",
        "params": (),
    }
    kw = {k: v for k, v in args.items() if k not in call_args}
    call_args.update((k, v) for k, v in args.items() if k in call_args)
    with pytest.raises(Exception) as info:
        bad_call(kind, call_args["address"], call_args["method"], call_args["params"], **kw)
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
    assert message in str(info.value)


@pytest.mark.parametrize("bad", NOT_A_TIMEOUT, ids=lambda t: repr(t)[:12])
def test_timeouts_refuse_what_is_not_a_timeout(bad: float) -> None:
    for make in (Timeouts.of, lambda t: Timeouts(t, 1), lambda t: Timeouts(1, t)):
        with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
            make(bad)
    assert Timeouts.of(MAX_TIMEOUT) == Timeouts(MAX_TIMEOUT, MAX_TIMEOUT)
    assert Timeouts.of(0.001).read == 0.001
