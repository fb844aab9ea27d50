"""A scriptable binrpc server for client tests (threads and plain sockets, loopback and /tmp).

The handler gets each request ``(method, params, cookie)`` and returns a list of *actions*:
``bytes`` are sent (one datagram each on datagram transports), a ``float`` sleeps that many
seconds, ``None`` closes the connection (stream only), a callable is called (to tell a test
that what came before it was sent). Helpers build common replies, including
ones Kamailio never sends (arrays, split delivery, wrong cookies).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

from binrpc import Struct, encode_fault, encode_reply
from binrpc._codec import parse_request
from binrpc._framing import StreamFramer

Action = bytes | float | Callable[[], object] | None
Handler = Callable[[str, list[Any], int], Sequence[Action]]


def reply(values: Sequence[Any], cookie: int) -> bytes:
    return encode_reply(list(values), cookie)


def fault(code: int, message: str, cookie: int) -> bytes:
    return encode_fault(code, message, cookie)


def raw_reply(body: bytes, cookie: int, msg_type: int = 1) -> bytes:
    """A packet with a hand-made body (records the codec would refuse to build)."""
    ll = max(1, (len(body).bit_length() + 7) // 8)
    return (
        bytes([0xA1, (msg_type << 4) | ((ll - 1) << 2) | 3])
        + len(body).to_bytes(ll, "big")
        + cookie.to_bytes(4, "big")
        + body
    )


def default_handler(method: str, params: list[Any], cookie: int) -> Sequence[Action]:
    """core.echo echoes, system.listMethods lists a few, core.version answers, others fault."""
    if method == "core.echo":
        return [reply(params, cookie)]
    if method == "system.listMethods":
        return [reply(["core.echo", "core.version", "core.uptime", "system.listMethods"], cookie)]
    if method == "core.version":
        return [reply(["fake 1.0"], cookie)]
    if method == "core.uptime":
        return [reply([Struct(now="now", uptime=7)], cookie)]
    return [fault(500, f"command {method} not found", cookie)]


class Gate:
    """A method ``slow`` whose reply waits for the test: :attr:`arrived` is set when the
    request came, the reply goes out once :attr:`release` is set, then :attr:`sent` is set.
    Other methods: ``fallback``."""

    def __init__(self, fallback: Handler = default_handler) -> None:
        self.fallback = fallback
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.sent = threading.Event()

    def __call__(self, method: str, params: list[Any], cookie: int) -> Sequence[Action]:
        if method != "slow":
            return self.fallback(method, params, cookie)
        self.arrived.set()
        self.release.wait(60)
        return [reply(["late"], cookie), self.sent.set]


class FakeServer:
    """Run with ``with FakeServer("tcp", handler) as srv: ... srv.address ...``."""

    def __init__(self, proto: str, handler: Handler = default_handler) -> None:
        self.proto = proto
        self.handler = handler
        self.requests: list[tuple[str, list[Any]]] = []
        self.bodies: list[bytes] = []  # request bodies (method + params), as received
        self.connections = 0
        self._dir = tempfile.mkdtemp(prefix="binrpc-fake-", dir="/tmp")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        if proto in ("unixs", "unixd"):
            path = os.path.join(self._dir, "ctl")
            kind = socket.SOCK_STREAM if proto == "unixs" else socket.SOCK_DGRAM
            self.sock = socket.socket(socket.AF_UNIX, kind)
            self.sock.bind(path)
            self.address = f"{proto}:{path}"
        else:
            family = socket.AF_INET6 if proto.endswith("6") else socket.AF_INET
            host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
            base = proto.rstrip("6")
            kind = socket.SOCK_STREAM if base == "tcp" else socket.SOCK_DGRAM
            self.sock = socket.socket(family, kind)
            self.sock.bind((host, 0))
            port = self.sock.getsockname()[1]
            shown = f"[{host}]" if family == socket.AF_INET6 else host
            self.address = f"{base}:{shown}:{port}"
        self.stream = self.sock.type == socket.SOCK_STREAM
        if self.stream:
            self.sock.listen(64)
        self.sock.settimeout(0.1)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FakeServer:
        target = self._accept_loop if self.stream else self._dgram_loop
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.sock.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def close_clients(self) -> None:
        """Close every accepted connection (the server side of a restart)."""
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    # -- loops -------------------------------------------------------------------------------
    def _handle(self, data: bytes) -> tuple[Sequence[Action], int]:
        framer = StreamFramer(1 << 24)
        framer.feed(data)
        packet = framer.next_packet()
        assert packet is not None
        method, reader = parse_request(packet.body)
        reader.strict = False
        params = reader.read_all()
        self.requests.append((method, params))
        self.bodies.append(packet.body)
        return self.handler(method, params, packet.cookie), packet.cookie

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._socks.append(conn)
            t = threading.Thread(target=self._serve_stream, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve_stream(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        framer = StreamFramer(1 << 24)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                framer.feed(data)
                while (packet := framer.next_packet()) is not None:
                    self.bodies.append(packet.body)
                    method, reader = parse_request(packet.body)
                    reader.strict = False
                    params = reader.read_all()
                    self.requests.append((method, params))
                    actions = self.handler(method, params, packet.cookie)
                    for k, action in enumerate(actions):
                        if action is None:
                            with contextlib.suppress(OSError):
                                conn.shutdown(socket.SHUT_RDWR)
                            return
                        if isinstance(action, float):
                            self._stop.wait(action)
                            continue
                        if callable(action):
                            action()
                            continue
                        try:
                            self._send_stream(conn, action)
                        except OSError:  # the client is gone: tell who waits for the send
                            for after in actions[k + 1 :]:
                                if callable(after):
                                    after()
                            return

    def _dgram_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                actions, _cookie = self._handle(data)
            except Exception:
                continue
            for action in actions:
                if action is None:
                    continue
                if isinstance(action, float):
                    self._stop.wait(action)
                    continue
                if callable(action):
                    action()
                    continue
                self._send_datagram(action, peer)

    def _send_stream(self, conn: socket.socket, data: bytes) -> None:
        """Send all of ``data``, waiting while the client is slow to read: the socket's 0.1 s
        timeout bounds a whole ``sendall`` (a 20 MiB reply to a client on a loaded machine
        would fail), but must only let the loop notice ``stop``."""
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                view = view[conn.send(view) :]
            except TimeoutError:
                continue

    def _send_datagram(self, data: bytes, peer: Any) -> None:
        """Send one reply, waiting while the peer's queue is full: a reply this fake server
        dropped would make a test depend on the machine's load (tests drop replies on
        purpose, by their handler's actions). A peer gone is not waited for."""
        while not self._stop.is_set():
            try:
                self.sock.sendto(data, peer)
            except TimeoutError:
                continue  # the peer's queue is full (busy reader): wait for room
            except OSError:
                return
            return
