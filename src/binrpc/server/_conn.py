"""asyncio shells: one per stream connection, one per datagram listener.

They move bytes and run timers; every decision is the sans-I/O connection's
(:mod:`binrpc.server._protocol`, :mod:`binrpc.server._fifo_protocol`): which requests run,
in which order the replies leave, when to stop reading, when to close. Handlers run through
``call_method``: synchronous ones inline in ``data_received``, async ones as server tasks
(:func:`~binrpc.server._calls.spawn_call`, which also applies ``call_timeout``).

The replies of one ``data_received`` call are gathered and written at its end (64 pipelined
requests: one send() instead of 64), unless the connection says ``write_due`` (a large reply,
or much gathered output): then at once, so that a client that does not read pauses the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any, cast

from .._dispatch import call_method
from ._access import ListenerPolicy, peer_creds
from ._calls import run_call, spawn_call
from ._context import ListenerView, ServerContext
from ._fifo_protocol import FifoConnection, FifoDatagram
from ._protocol import CLOSED, OPEN, BinrpcConnection, BinrpcDatagram, Call, ServerConnection
from ._routing import Routing

__all__ = ["DatagramEndpoint", "StreamConnection", "binrpc_stream", "fifo_stream"]

log = logging.getLogger("binrpc.server")

StreamFactory = Callable[[ServerContext, ListenerView, object], ServerConnection]
"""Makes a connection's sans-I/O object: (server, listener, the shell as ``ctx.connection``)."""


def listener_routing(server: ServerContext, listener: ListenerView) -> Routing:
    """What ``listener`` serves (its own method table, or the server's)."""
    methods = server.methods if listener.methods is None else listener.methods
    return Routing(methods, listener.method_filter, str(listener.address))


def binrpc_stream(
    server: ServerContext, listener: ListenerView, handle: object
) -> ServerConnection:
    options = server.options
    return BinrpcConnection(
        listener_routing(server, listener),
        server.limits,
        server.info,
        max_request_size=options.max_request_size,
        max_pending=options.max_pending_per_connection,
        handle=handle,
    )


def fifo_stream(server: ServerContext, listener: ListenerView, handle: object) -> ServerConnection:
    options = server.options
    return FifoConnection(
        listener_routing(server, listener),
        server.info,
        max_request_size=options.max_request_size,
        max_pending=options.max_pending_per_connection,
        handle=handle,
    )


class StreamConnection(asyncio.Protocol):
    """One accepted TCP or unix stream connection (binrpc, or the FIFO protocol with
    ``factory=fifo_stream``): transport callbacks and timers over a
    :class:`~binrpc.server._protocol.ServerConnection` (``self.protocol``)."""

    def __init__(
        self, server: ServerContext, listener: ListenerView, factory: StreamFactory = binrpc_stream
    ) -> None:
        self.server = server
        self.listener = listener
        self.protocol = factory(server, listener, self)
        self.protocol.on_reply = self._sync
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, str] = ("<anonymous unix socket>", "")
        self._reading = True
        self._resume_handle: asyncio.Handle | None = None
        self._request_timeout = server.options.request_timeout
        self._request_timer: asyncio.TimerHandle | None = None
        self._deadline: int | None = None  # the protocol's request_deadline the timer is for
        self._write_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._registered = False

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's stream transports do not subclass
        # asyncio.Transport
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if not self.server.add_connection(self):
            # ctl accepts and closes at once: the client sees EOF
            self._drop(transport)
            return
        self._registered = True
        sock = transport.get_extra_info("socket")
        proto = self.listener.address.proto
        if proto != "unixs":
            peer = transport.get_extra_info("peername")
            if peer:
                self.peer = (str(peer[0]), str(peer[1]))
        self.protocol.peer = self.peer[0]
        policy = self.listener.policy
        if policy.checks_peers and self._refused(transport, sock, policy):
            self._registered = False
            self.server.remove_connection(self)
            self._drop(transport)
            return
        if proto != "unixs" and sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        idle = self.server.options.idle_timeout
        if idle is not None:
            loop = asyncio.get_running_loop()
            self._last_activity = loop.time()
            self._idle_timer = loop.call_later(idle, self._check_idle)

    def _drop(self, transport: asyncio.Transport) -> None:
        self.protocol.connection_lost()
        transport.abort()

    def _refused(self, transport: asyncio.Transport, sock: Any, policy: ListenerPolicy) -> bool:
        """Check the peer against the listener's rules; log and return True if refused."""
        listener = self.listener
        refusals = listener.refusals
        assert refusals is not None
        if policy.checks_creds:
            creds = peer_creds(sock) if sock is not None else None
            if creds is None:
                refusals.refused("a unix socket peer", "credentials unavailable")
                return True
            pid, uid, gid = creds
            reason = policy.creds_refusal(uid, gid)
            if reason is not None:
                refusals.refused(f"pid {pid} uid {uid} gid {gid}", reason)
                return True
        if policy.allow_networks is not None:
            reason = policy.ip_refusal(self.peer[0])
            if reason is not None:
                refusals.refused(f"{self.peer[0]} port {self.peer[1]}", reason)
                return True
        if listener.address.proto == "tls":
            peercert = transport.get_extra_info("peercert")
            reason = policy.cert_refusal(peercert)
            if reason is not None:
                refusals.refused(f"{self.peer[0]} port {self.peer[1]}", reason)
                return True
        return False

    def data_received(self, data: bytes) -> None:
        if self._idle_timer is not None:
            self._last_activity = asyncio.get_running_loop().time()
        self._serve(self.protocol.receive_data(data))

    def _serve(self, calls: Iterator[Call]) -> None:
        """Run the requests the protocol hands out, then carry out what it wants."""
        protocol = self.protocol
        for method, ctx in calls:
            pending = call_method(method, ctx)
            if pending is not None:
                spawn_call(self.server, pending, ctx)
            if protocol.write_due:
                self._write()
        self._sync()

    def _resume(self) -> None:
        self._resume_handle = None
        if self.protocol.can_resume:
            self._serve(self.protocol.resume())

    def eof_received(self) -> bool:
        self.protocol.receive_eof()
        self._reading = False  # nothing more comes (and a TLS transport cannot pause now)
        # keep the write side open while replies are pending
        return self.protocol.pending > 0

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost()
        self._cancel_timers()
        if self._registered:
            self._registered = False
            self.server.remove_connection(self)

    def pause_writing(self) -> None:
        # the client does not read: stop running and reading its requests, and give it
        # write_timeout
        self.protocol.pause_writing()
        self._set_reading()
        timeout = self.server.options.write_timeout
        if timeout is not None and self._write_timer is None:
            self._write_timer = asyncio.get_running_loop().call_later(timeout, self.abort)

    def resume_writing(self) -> None:
        self.protocol.resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._sync()

    # -- output and the protocol's decisions ------------------------------------------------
    def _write(self) -> None:
        transport = self.transport
        for data in self.protocol.data_to_send():
            transport.write(data)  # type: ignore[union-attr]

    def _sync(self) -> None:
        """Carry out what the protocol now wants: write, close or abort, (stop) reading,
        resume stalled requests soon, the request deadline."""
        protocol = self.protocol
        transport = self.transport
        if transport is None:
            return
        for data in protocol.data_to_send():
            transport.write(data)
        if protocol.state is not OPEN:  # (close_expected, abort_expected: never while OPEN)
            if protocol.state is CLOSED:
                return
            if protocol.close_expected:
                transport.close()
            elif protocol.abort_expected:
                transport.abort()
        if protocol.want_read is not self._reading:
            self._set_reading()
        if protocol.stalled and protocol.can_resume and self._resume_handle is None:
            # not from inside a write or a reply: resume_writing runs inside transport.write
            self._resume_handle = asyncio.get_running_loop().call_soon(self._resume)
        if self._request_timeout is not None and protocol.request_deadline != self._deadline:
            self._restart_request_timer(self._request_timeout)

    def _set_reading(self) -> None:
        want = self.protocol.want_read
        transport = self.transport
        if want is self._reading or transport is None or transport.is_closing():
            return
        self._reading = want
        try:
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()
        except RuntimeError:
            pass

    def _restart_request_timer(self, timeout: float) -> None:
        """request_timeout: armed while a request is partly buffered, restarted for each
        new partial request, cancelled when none is (the protocol's request_deadline)."""
        self._deadline = deadline = self.protocol.request_deadline
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        if deadline is not None:
            self._request_timer = asyncio.get_running_loop().call_later(
                timeout, self._request_expired
            )

    def _request_expired(self) -> None:
        self._request_timer = None
        log.info(
            "closing connection from %s: request incomplete after %g s (%d bytes)",
            self.peer[0],
            self._request_timeout,
            self.protocol.buffered,
        )
        self.protocol.close()
        self._sync()

    def _check_idle(self) -> None:
        idle = self.server.options.idle_timeout
        if idle is None or self.protocol.state is CLOSED:
            return
        loop = asyncio.get_running_loop()
        remaining = self._last_activity + idle - loop.time()
        if remaining <= 0 and self.protocol.idle():
            log.info("closing idle connection from %s", self.peer[0])
            self._idle_timer = None
            self._sync()
            return
        self._idle_timer = loop.call_later(
            max(remaining, 0.05) if remaining > 0 else idle, self._check_idle
        )

    def shutdown(self) -> None:
        """Server shutdown: no more requests; close after the pending replies."""
        self.protocol.close()
        self._sync()

    def abort(self) -> None:
        """Close now (write_timeout, the end of the server's shutdown)."""
        self.protocol.abort()
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timers(self) -> None:
        for timer in (self._write_timer, self._idle_timer, self._request_timer,
                      self._resume_handle):  # fmt: skip
            if timer is not None:
                timer.cancel()
        self._write_timer = self._idle_timer = self._request_timer = None
        self._resume_handle = None

    # -- ctl.who ----------------------------------------------------------------------------
    def who_row(self) -> tuple[str, str, str, str, str, str]:
        lst = self.listener
        return (lst.payload, lst.address.transport_name, self.peer[0], self.peer[1],
                lst.local_host, lst.local_port)  # fmt: skip


class DatagramEndpoint(asyncio.DatagramProtocol):
    """A UDP or unix datagram listener (binrpc, or the FIFO protocol with ``fifo=True``):
    one request per datagram, one reply datagram."""

    def __init__(
        self, server: ServerContext, listener: ListenerView, max_reply_size: int, fifo: bool = False
    ) -> None:
        self.server = server
        self.listener = listener
        self.max_reply_size = max_reply_size
        routing = listener_routing(server, listener)
        self.protocol: BinrpcDatagram | FifoDatagram = (
            FifoDatagram(routing, server.info, max_reply_size)
            if fifo
            else BinrpcDatagram(routing, server.limits, server.info, max_reply_size)
        )
        self.protocol.on_reply = self._send  # each reply datagram at once
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's selector datagram transport does not subclass DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def refused(self, addr: Any) -> bool:
        """A UDP datagram from outside ``allow_networks``: logged, never answered."""
        policy = self.listener.policy
        if policy.allow_networks is None or not isinstance(addr, tuple):
            return False
        reason = policy.ip_refusal(str(addr[0]))
        if reason is None:
            return False
        assert self.listener.refusals is not None
        self.listener.refusals.refused(f"{addr[0]} port {addr[1]}", reason, "datagram")
        return True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.server.closing or self.refused(addr):
            return
        for call in self.protocol.receive_data(data, addr):
            run_call(self.server, call)

    def _send(self) -> None:
        transport = self.transport
        replies = self.protocol.data_to_send()
        if transport is None or transport.is_closing():
            return
        for data, addr in replies:
            transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("datagram listener %s: %s", self.listener.address, exc)
