"""The transport of every datagram listener (udp, unixd; binrpc or FIFO protocol).

Our own, on every event loop, instead of ``loop.create_datagram_endpoint``:

* the request size limit is checked on the datagram as received, before anything decodes it
  (ctl reads a datagram into a 65535-byte buffer and ignores what does not fit: no reply);
* a reply goes to whatever address the datagram came from: a unix path, an abstract name of
  any length (uvloop refuses a 108-byte abstract name, the binrpc client's default), an
  IPv4/IPv6 address. A datagram from an unbound unix socket has no address: it is run, and
  its reply is dropped (the protocol's ``_send``), as in ctl;
* optionally, the kernel's credentials of each unix datagram (``SCM_CREDENTIALS``, read with
  ``recvmsg``) are checked by a :class:`CredsGate` before the protocol sees it.

Replies that do not fit the socket's send buffer wait in a bounded queue (a client that does
not read loses replies, never the server its memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from ._access import RefusalLog

__all__ = ["CredsGate", "DatagramListenerTransport"]

_READS_PER_WAKEUP: Final = 64
"""Datagrams read per readiness callback before the loop gets to run other callbacks."""


class CredsGate(Protocol):
    """Checks the sender of a unix datagram from the ancillary data of ``recvmsg``."""

    ancsize: int

    def prepare(self, sock: socket.socket) -> None:
        """Ask the kernel for the credentials (``SO_PASSCRED``)."""

    def admits(self, ancdata: list[tuple[int, int, bytes]], addr: Any) -> bool:
        """True to hand the datagram to the protocol; False: dropped (the gate logs it)."""


class DatagramListenerTransport(asyncio.DatagramTransport):
    """A datagram listener's socket driven by ``add_reader``: one datagram, one
    ``datagram_received`` call; datagrams over ``max_request_size`` bytes are dropped
    unanswered (logged through ``refusals``, rate-limited)."""

    _MAX_QUEUE: Final = 256  # replies waiting for room in the send buffer

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
        *,
        max_request_size: int,
        refusals: RefusalLog,
        gate: CredsGate | None = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._limit = max_request_size
        self._refusals = refusals
        self._gate = gate
        self._closing = False
        self._queue: deque[tuple[bytes, Any]] = deque()
        if gate is not None:
            gate.prepare(sock)
        loop.add_reader(self._fd, self._read)
        loop.call_soon(protocol.connection_made, self)

    def _read(self) -> None:
        sock = self._sock
        gate = self._gate
        # one byte more than the limit: a longer datagram arrives cut to limit + 1 bytes
        size = self._limit + 1
        for _ in range(_READS_PER_WAKEUP):
            if self._closing:
                return
            try:
                if gate is None:
                    data, addr = sock.recvfrom(size)
                else:
                    data, anc, _flags, addr = sock.recvmsg(size, gate.ancsize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            if gate is not None and not gate.admits(anc, addr):
                continue
            if len(data) > self._limit:
                self._refusals.refused(
                    _peer(addr), f"request over {self._limit} bytes, not read", "datagram"
                )
                continue
            self._protocol.datagram_received(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        if self._queue:
            if len(self._queue) < self._MAX_QUEUE:
                self._queue.append((bytes(data), addr))
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue.append((bytes(data), addr))
            self._loop.add_writer(self._fd, self._write_queued)
        except OSError as exc:
            self._protocol.error_received(exc)

    def _write_queued(self) -> None:
        while self._queue:
            data, addr = self._queue[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
            self._queue.popleft()
        self._loop.remove_writer(self._fd)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._queue.clear()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default


def _peer(addr: Any) -> str:
    """A datagram's source address for a log line."""
    if isinstance(addr, tuple):
        return f"{addr[0]} port {addr[1]}"
    if isinstance(addr, bytes):  # an abstract unix name
        return repr(addr.rstrip(b"\0"))
    return str(addr) if addr else "<unbound unix socket>"
