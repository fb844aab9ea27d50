"""asyncio protocols: one per stream connection, one per datagram listener.

They move bytes only: framing is :class:`~binrpc.StreamFramer` / :func:`~binrpc.parse_packet`,
requests are run by :func:`~binrpc._rpc.call_method` on a :class:`~binrpc._rpc.BinrpcContext`.
Synchronous handlers run inline in ``data_received``; only async handlers get a Task.

Replies on one connection leave in request order. The replies of one ``data_received`` call
are gathered and written with one ``transport.write`` at its end (64 pipelined requests: one
send() instead of 64). Only a request behind an unfinished async one needs a reply slot in
the connection's queue; the others reply straight into the gathered output.

What one connection can make the server hold is bounded: the requests of a read are run
until the transport asks to pause writing (a large reply, or gathered replies beyond
``_OUT_LIMIT``, are written at once so that it can), or until ``max_pending_per_connection``
requests are in progress or queued; then reading stops and the rest stays in the framer
(and the socket) until the replies drain.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast

from .._codec import MsgType, Packet, encode_fault, parse_packet, parse_request
from .._errors import DecodeError, PacketTooLarge
from .._rpc import BinrpcContext, Buffer, call_method_with_timeout
from ._access import ListenerPolicy, peer_creds

if TYPE_CHECKING:
    from ._server import Listener, Server

__all__ = ["DatagramEndpoint", "StreamConnection"]

log = logging.getLogger("binrpc.server")

CORRUPTED_FAULT: Final = encode_fault(400, "bad request: corrupted packet", 0)


def dispatch(
    server: Server,
    packet: Packet,
    sink: Callable[[bytes], object],
    connection: StreamConnection | None,
    max_reply_size: int | None,
    *,
    chunk_sink: Callable[[list[Buffer]], object] | None = None,
    listener: Listener | None = None,
) -> tuple[Awaitable[None] | None, BinrpcContext | None, bool]:
    """Run one request packet.

    Returns (coroutine to schedule or None, the request's context or None when it was refused
    before reaching a handler, close the stream?).
    """
    cookie = packet.cookie
    if packet.type != MsgType.REQUEST:
        sink(encode_fault(400, "bad request: corrupted packet", cookie))
        return None, None, True
    try:
        name, reader = parse_request(packet.body)
    except DecodeError as exc:
        sink(encode_fault(400, f"bad request method: {exc.text}", cookie))
        return None, None, True
    methods = server.methods if listener is None or listener.methods is None else listener.methods
    method = methods.get(name)
    if method is None:
        refuser = listener.method_filter if listener is not None else None
        if refuser is not None and refuser.refuses(name):
            assert listener is not None
            peer = connection.peer[0] if connection is not None else "a datagram client"
            log.warning("%s: refused method %s from %s", listener.address, name, peer)
            text = f"method {name} not allowed on this listener"
            sink(encode_fault(403, text[:254], cookie))
            return None, None, False
        text = f"command {name} not found"
        sink(encode_fault(500, text[:254], cookie))
        return None, None, False
    ctx = BinrpcContext(
        reader,
        cookie,
        sink,
        server.limits,
        method=name,
        registry=methods,
        server=server,
        connection=connection,
        max_reply_size=max_reply_size,
        chunk_sink=chunk_sink,
    )
    return call_method_with_timeout(method, ctx, server.options.call_timeout), ctx, False


class _Slot:
    """A reply position in a connection's output queue."""

    __slots__ = ("conn", "data")

    def __init__(self, conn: StreamConnection) -> None:
        self.conn = conn
        self.data: list[Buffer] | None = None

    def put(self, data: bytes) -> None:
        self.data = [data]
        self.conn._flush()

    def put_chunks(self, chunks: list[Buffer]) -> None:
        self.data = chunks
        self.conn._flush()


_JOIN_LIMIT: Final = 64 * 1024
"""Gathered replies up to this size are joined into one write; a bigger buffer (the payload of
a large reply) is written as it is, without a copy."""

_OUT_LIMIT: Final = 256 * 1024
"""Gathered replies beyond this size (checked every ``_OUT_CHECK`` requests of a read) are
written at once instead of at the end of the read, so that a client that does not read
pauses the dispatch loop (pause_writing) instead of making it build every reply."""
_OUT_CHECK: Final = 64


class StreamConnection(asyncio.Protocol):
    """One accepted TCP or unix stream connection."""

    def __init__(self, server: Server, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.framer = server.new_framer()
        self.peer: tuple[str, str] = ("<anonymous unix socket>", "")
        # replies waiting for an earlier async reply (that one included), in request order
        self._queue: deque[_Slot] = deque()
        # replies due, in order, not yet given to the transport (see _flush)
        self._out: list[Buffer] = []
        self._corked = False  # inside data_received: _flush gathers, writes at the end
        self._write_paused = False  # the transport asked us to pause writing
        self._stalled = False  # requests left in the framer: write paused or too many pending
        self._read_paused = False  # we called transport.pause_reading
        self._resume_handle: asyncio.Handle | None = None
        self._max_pending = server.options.max_pending_per_connection
        self._request_timeout = server.options.request_timeout
        self._request_timer: asyncio.TimerHandle | None = None
        self._closing = False  # no more requests are read
        self._closed = False
        self._eof = False
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
        server = self.server
        if server.closing or len(server.connections) >= server.options.max_connections:
            # ctl accepts and closes at once: the client sees EOF
            transport.abort()
            self._closed = True
            return
        sock = transport.get_extra_info("socket")
        proto = self.listener.address.proto
        if proto != "unixs":
            peer = transport.get_extra_info("peername")
            if peer:
                self.peer = (str(peer[0]), str(peer[1]))
        policy = self.listener.policy
        if policy.checks_peers and self._refused(transport, sock, policy):
            transport.abort()
            self._closed = True
            return
        server.connections[self] = None
        self._registered = True
        if proto != "unixs" and sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        idle = server.options.idle_timeout
        if idle is not None:
            loop = asyncio.get_running_loop()
            self._last_activity = loop.time()
            self._idle_timer = loop.call_later(idle, self._check_idle)

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

    def _touch(self) -> None:
        if self._idle_timer is not None:
            self._last_activity = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._touch()
        self.framer.feed(data)
        self._dispatch()

    def _dispatch(self) -> None:
        """Run the complete requests in the framer, gathering their replies."""
        framer = self.framer
        queue = self._queue
        max_pending = self._max_pending
        completed = False
        count = 0
        self._corked = True
        try:
            while not self._closing:
                if self._write_paused or len(queue) >= max_pending:
                    self._stall()
                    return
                try:
                    packet = framer.next_packet()
                except PacketTooLarge:
                    # ctl: "buffer overrun", close without a reply (and we never buffer it);
                    # the replies to the packets before it go out first, as in ctl
                    self._corked = False
                    self._flush()
                    self._abort()
                    return
                except DecodeError:
                    self._fault_and_close(CORRUPTED_FAULT)
                    return
                if packet is None:
                    if self._request_timeout is not None:
                        self._request_deadline(completed)
                    return
                completed = True
                self._run(packet)
                count += 1
                if count == _OUT_CHECK:
                    count = 0
                    if sum(map(len, self._out)) > _OUT_LIMIT:
                        self._write_out()
        finally:
            self._corked = False
            self._flush()

    def _stall(self) -> None:
        """Leave the remaining requests in the framer and stop reading until _resume."""
        self._stalled = True
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        self._pause_reading()

    def _resume_soon(self) -> None:
        if self._resume_handle is None and not self._closed:
            self._resume_handle = asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        if self._closing or self._write_paused or len(self._queue) >= self._max_pending:
            return
        self._stalled = False
        self._resume_reading()
        self._dispatch()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self._closed:
            self._read_paused = True
            try:
                self.transport.pause_reading()
            except RuntimeError:
                pass

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self._closing:
            self._read_paused = False
            try:
                self.transport.resume_reading()
            except RuntimeError:
                pass

    def _request_deadline(self, completed: bool) -> None:
        """request_timeout: armed while a request is partly buffered, restarted for the next
        request once one completes, cancelled when nothing is buffered."""
        timer = self._request_timer
        if self.framer.buffered:
            if timer is None or completed:
                if timer is not None:
                    timer.cancel()
                timeout = self._request_timeout
                assert timeout is not None
                self._request_timer = asyncio.get_running_loop().call_later(
                    timeout, self._request_expired
                )
        elif timer is not None:
            timer.cancel()
            self._request_timer = None

    def _request_expired(self) -> None:
        self._request_timer = None
        if self._closed:
            return
        log.info(
            "closing connection from %s: request incomplete after %g s (%d bytes)",
            self.peer[0],
            self._request_timeout,
            self.framer.buffered,
        )
        self._start_closing()

    def _out_chunks(self, chunks: list[Buffer]) -> None:
        """chunk_sink of a request replied in place: a large reply is written at once (it may
        pause writing, which stops the dispatch loop)."""
        self._out.extend(chunks)
        if self._corked:
            self._write_out()
        else:
            self._flush()

    def _write_out(self) -> None:
        out = self._out
        transport = self.transport
        if out and transport is not None and not self._closed:
            self._out = []
            _write(transport, out)

    def _run(self, packet: Packet) -> None:
        queue = self._queue
        out = self._out
        slot: _Slot | None = None
        if queue:
            # an async reply is still due before this one
            slot = _Slot(self)
            queue.append(slot)
            pending, ctx, close = dispatch(
                self.server,
                packet,
                slot.put,
                self,
                None,
                chunk_sink=slot.put_chunks,
                listener=self.listener,
            )
        else:
            pending, ctx, close = dispatch(
                self.server,
                packet,
                out.append,
                self,
                None,
                chunk_sink=self._out_chunks,
                listener=self.listener,
            )
        if pending is not None:
            if slot is None and ctx is not None and not ctx.replied:
                # the async reply comes later: hold back the replies of later requests
                slot = _Slot(self)
                queue.append(slot)
                ctx.set_sink(slot.put, slot.put_chunks)
            self.server.spawn(pending)
        if close:
            self._start_closing()

    def eof_received(self) -> bool:
        self._eof = True
        self._closing = True
        # keep the write side open while replies are pending
        return bool(self._queue or self._out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._closing = True
        self._cancel_timers()
        self._queue.clear()
        self._out.clear()
        if self._registered:
            self.server.connections.pop(self, None)
            self._registered = False
            self.server.connection_gone()

    def pause_writing(self) -> None:
        # the client does not read: stop running and reading its requests (the dispatch loop
        # checks _write_paused) and give it write_timeout
        self._write_paused = True
        self._pause_reading()
        timeout = self.server.options.write_timeout
        if timeout is not None and self._write_timer is None:
            self._write_timer = asyncio.get_running_loop().call_later(timeout, self._abort)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._stalled:
            self._resume_soon()  # requests are waiting in the framer
        else:
            self._resume_reading()  # (the dispatch loop checks max_pending itself)

    # -- output -----------------------------------------------------------------------------
    def _flush(self) -> None:
        """Move the replies now due to the output; unless inside data_received, write them
        (one write) and close the transport if it is closing and nothing is pending."""
        queue = self._queue
        out = self._out
        transport = self.transport
        if self._closed or transport is None:
            queue.clear()
            out.clear()
            return
        while queue and queue[0].data is not None:
            out += queue.popleft().data  # type: ignore[arg-type]
        if self._stalled and len(queue) < self._max_pending and not self._write_paused:
            self._resume_soon()
        if self._corked:
            return
        if out:
            self._out = []
            _write(transport, out)
        if not queue and self._closing:
            transport.close()

    def _fault_and_close(self, packet: bytes) -> None:
        slot = _Slot(self)
        self._queue.append(slot)
        self._start_closing()
        slot.put(packet)

    def _start_closing(self) -> None:
        """Read no more requests; close once the replies already due are written."""
        if self._closing:
            return
        self._closing = True
        if self.transport is not None and not self._closed:
            self._pause_reading()
            self._flush()

    def shutdown(self) -> None:
        """Server shutdown: no more requests; close after the pending replies."""
        self._start_closing()
        self._flush()

    def _abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timers(self) -> None:
        for timer in (self._write_timer, self._idle_timer, self._request_timer,
                      self._resume_handle):  # fmt: skip
            if timer is not None:
                timer.cancel()
        self._write_timer = self._idle_timer = self._request_timer = None
        self._resume_handle = None

    def _check_idle(self) -> None:
        idle = self.server.options.idle_timeout
        if idle is None or self._closed:
            return
        loop = asyncio.get_running_loop()
        remaining = self._last_activity + idle - loop.time()
        if remaining <= 0 and not self._queue:
            log.info("closing idle connection from %s", self.peer[0])
            self._idle_timer = None
            self._start_closing()
            return
        self._idle_timer = loop.call_later(
            max(remaining, 0.05) if remaining > 0 else idle, self._check_idle
        )

    # -- ctl.who ----------------------------------------------------------------------------
    def who_row(self) -> tuple[str, str, str, str, str, str]:
        lst = self.listener
        return (lst.payload, lst.address.transport_name, self.peer[0], self.peer[1],
                lst.local_host, lst.local_port)  # fmt: skip


class DatagramEndpoint(asyncio.DatagramProtocol):
    """A UDP or unix datagram listener: one request per datagram, one reply datagram."""

    def __init__(self, server: Server, listener: Listener, max_reply_size: int) -> None:
        self.server = server
        self.listener = listener
        self.max_reply_size = max_reply_size
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
        try:
            packet = parse_packet(data)
        except DecodeError:
            self._send(addr, CORRUPTED_FAULT)
            return
        if packet is None:
            return  # incomplete: ignored, as ctl does
        pending, _, _ = dispatch(
            self.server,
            packet,
            lambda reply: self._send(addr, reply),
            None,
            self.max_reply_size,
            listener=self.listener,
        )
        if pending is not None:
            self.server.spawn(pending)

    def _send(self, addr: Any, data: bytes) -> None:
        transport = self.transport
        if not addr or transport is None or transport.is_closing():
            # an unbound unix datagram sender cannot get a reply (ctl logs the same)
            return
        transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("datagram listener %s: %s", self.listener.address, exc)


def _write(transport: asyncio.Transport, buffers: list[Buffer]) -> None:
    """Write ``buffers`` in order: small ones joined into one write, a large one on its own
    and as a memoryview (asyncio slices what send() did not take: no copy of a 10 MiB
    payload)."""
    if len(buffers) == 1 and len(buffers[0]) <= _JOIN_LIMIT:
        transport.write(buffers[0])
        return
    small: list[Buffer] = []
    for buf in buffers:
        if len(buf) <= _JOIN_LIMIT:
            small.append(buf)
            continue
        if small:
            transport.write(b"".join(small))
            small = []
        transport.write(memoryview(buf))
    if small:
        transport.write(b"".join(small))
