"""Sans-I/O server connections: requests in, replies out in order, and every decision.

A connection object never touches a socket, a timer or the event loop; its shell
(:mod:`binrpc.server._conn`) moves bytes and runs timers::

    for request in conn.receive_data(data):      # the complete requests, one at a time
        pending = call_method(request.method, request.ctx)   # the reply reaches conn
        if conn.write_due:                        # a large reply, or much gathered output
            write(conn.data_to_send())
    write(conn.data_to_send())
    then: close_expected -> close; abort_expected -> abort; want_read -> pause/resume
    reading; can_resume -> soon: for request in conn.resume(): ...

The request's context sends its reply with :meth:`Request.reply` (the shell need not: a
synchronous handler has replied when ``call_method`` returns); replies may come in any order,
the connection puts each in its request's place. ``Request.on_reply`` lets the shell hear
about a reply that comes later (an async handler), to write it out.

States (``conn.state``) and transitions; the theory of operation is in docs/architecture.md:

* OPEN: requests are read. The complete requests are handed out while fewer than
  ``max_pending`` are in progress or waiting to be written and the shell has not said
  :meth:`~ServerConnection.pause_writing`; otherwise the connection is *stalled* (the rest
  stays buffered, ``want_read`` is False) until ``can_resume``.
* CLOSING (from OPEN: EOF, an error that ends the stream, ``close()``): no request is read;
  ``close_expected`` once every reply due is out.
* ABORT (from OPEN or CLOSING: an oversized request, ``abort()``): the replies already in
  order are the last data to send, then ``abort_expected``; later replies are dropped.
* CLOSED (``connection_lost()``): everything is dropped.

:class:`BinrpcConnection` speaks binrpc; :class:`~binrpc.server._fifo_protocol.FifoConnection`
the FIFO text protocol; both are :class:`ServerConnection`. The datagram flavours
(:class:`BinrpcDatagram`, :class:`~binrpc.server._fifo_protocol.FifoDatagram`) have the same
``receive_data`` / ``send_reply`` / ``data_to_send``, with the sender's address.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, Final, Protocol

from .._codec import MsgType, Packet, encode_fault, parse_packet, parse_request
from .._errors import DecodeError, PacketTooLarge
from .._framing import StreamFramer
from .._rpc import BinrpcContext, Buffer, Method, RpcContext, RpcLimits, ServerInfo
from ._routing import REFUSED, Routing, refusal_text, route

__all__ = [
    "ABORT",
    "CLOSED",
    "CLOSING",
    "CORRUPTED_FAULT",
    "OPEN",
    "BinrpcConnection",
    "BinrpcDatagram",
    "DatagramReplies",
    "Request",
    "ServerConnection",
]

CORRUPTED_FAULT: Final = encode_fault(400, "bad request: corrupted packet", 0)

OPEN: Final = "OPEN"
CLOSING: Final = "CLOSING"
ABORT: Final = "ABORT"
CLOSED: Final = "CLOSED"

JOIN_LIMIT: Final = 64 * 1024
"""Replies up to this size are joined into one write; a bigger buffer (the payload of a large
reply) is sent as it is, without a copy."""

OUT_LIMIT: Final = 256 * 1024
"""Gathered replies beyond this size are written at once (``write_due``) instead of at the end
of the read, so that a client that does not read pauses the loop (pause_writing) instead of
making the server build every reply."""


class ReplyTarget(Protocol):
    """Where a :class:`Request` hands its reply: its connection."""

    def send_reply(self, request: Request, data: Buffer) -> None: ...

    def send_reply_chunks(self, request: Request, chunks: list[Buffer]) -> None: ...


class Request:
    """One request to run: ``call_method(request.method, request.ctx)``.

    Attributes:
        key: the reply's place: its position on a stream, the sender's address on a
            datagram listener.
        method: the handler (None only for a request answered without running).
        ctx: its context; the context's sink is :meth:`reply`.
        on_reply: called after a reply was handed in, if set: the shell sets it when the
            reply comes later (an async handler) and must be written then.
    """

    __slots__ = ("_target", "ctx", "key", "method", "on_reply")

    def __init__(self, target: ReplyTarget, key: Any) -> None:
        self._target = target
        self.key = key
        self.method: Method | None = None
        self.ctx: RpcContext | None = None
        self.on_reply: Any = None

    def reply(self, data: Buffer) -> None:
        """The whole reply (the context's sink)."""
        self._target.send_reply(self, data)
        if self.on_reply is not None:
            self.on_reply()

    def reply_chunks(self, chunks: list[Buffer]) -> None:
        """The whole reply as buffers to send in order (a large value, not copied)."""
        self._target.send_reply_chunks(self, chunks)
        if self.on_reply is not None:
            self.on_reply()


class ServerConnection(abc.ABC):
    """One stream connection, sans I/O: requests in order, replies out in order.

    Subclasses cut and parse requests (:meth:`_next_request`) with :meth:`_issue` and
    :meth:`_answer`; everything else (order, the pending cap, back-pressure, closing) is here.

    Args:
        max_pending: requests that may be in progress or have a reply waiting to be written
            (``max_pending_per_connection``); at the cap no request is handed out.
        handle: what handlers see as ``ctx.connection`` (the shell).
        peer: the client, for log lines.
    """

    def __init__(self, *, max_pending: int, handle: object = None, peer: str = "") -> None:
        self.max_pending = max_pending
        self.handle = handle
        self.peer = peer
        self.state: str = OPEN
        self.write_paused = False
        """The shell said pause_writing (the client does not read)."""
        self.stalled = False
        """Requests were left buffered (write paused, or the cap): no reading until
        :meth:`resume`."""
        self.write_due = False
        """The gathered output should be written now, before the next request runs."""
        self._issued = 0  # requests handed out (or answered) so far: the next one's position
        self._done = 0  # position of the next reply to send
        self._held: dict[int, list[Buffer]] = {}  # replies waiting for an earlier one
        self._out: list[Buffer] = []  # replies in order, not yet given to the shell
        self._out_size = 0

    # -- input ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _feed(self, data: bytes) -> None:
        """Buffer ``data`` in the framer."""

    @abc.abstractmethod
    def _next_request(self) -> Request | bool:
        """Cut and parse the next request: a :class:`Request` to run, True when one was
        answered here (a fault) and the next may follow, False to stop (no complete request
        is buffered, or the stream is ending)."""

    @property
    @abc.abstractmethod
    def buffered(self) -> int:
        """Bytes received and not yet cut into requests."""

    def receive_data(self, data: bytes) -> Iterator[Request]:
        """Take bytes from the stream; returns the complete requests, to run in order.

        The requests are cut one by one as the caller iterates: a reply that pauses writing
        or fills the pending cap stops the iteration, leaving the rest buffered (then
        ``want_read`` is False until ``can_resume``: call :meth:`resume`). Data after EOF or
        an error is ignored.
        """
        if self.state is not OPEN:
            return iter(())
        self._feed(data)
        return self._requests()

    def resume(self) -> Iterator[Request]:
        """Go on with the requests left buffered by a stall (when ``can_resume``)."""
        self.stalled = False
        return self._requests()

    def _requests(self) -> Iterator[Request]:
        while self.state is OPEN:
            if self.write_paused or self._issued - self._done >= self.max_pending:
                self.stalled = True
                return
            request = self._next_request()
            if request is False:
                return
            if request is not True:
                yield request

    def receive_eof(self) -> None:
        """The client will send nothing more: the requests read are still answered."""
        self.close()

    def _issue(self) -> int:
        """The position of the next request (for subclasses)."""
        seq = self._issued
        self._issued = seq + 1
        return seq

    def _answer(self, data: Buffer) -> None:
        """Answer the next request without running anything (for subclasses: a fault)."""
        self.send_reply(Request(self, self._issue()), data)

    def _answer_and_close(self, data: Buffer) -> None:
        """Answer the next request, then read no more (a stream that cannot go on)."""
        self._answer(data)
        self.close()

    # -- replies ----------------------------------------------------------------------------
    def send_reply(self, request: Request, data: Buffer) -> None:
        """Hand in the whole reply of ``request``, in any order."""
        if self.state is CLOSED or self.state is ABORT:
            return
        seq = request.key
        if seq != self._done:
            self._held[seq] = [data]
            return
        self._out.append(data)
        self._out_size += len(data)
        self._done = seq + 1
        if self._held:
            self._release()
        if self._out_size > OUT_LIMIT:
            self.write_due = True

    def send_reply_chunks(self, request: Request, chunks: list[Buffer]) -> None:
        """Hand in a reply as buffers (a large value): written as soon as it is in order."""
        if self.state is CLOSED or self.state is ABORT:
            return
        seq = request.key
        if seq != self._done:
            self._held[seq] = chunks
            return
        self._out += chunks
        self._done = seq + 1
        if self._held:
            self._release()
        self.write_due = True

    def _release(self) -> None:
        """Move the held replies that are now in order to the output."""
        held = self._held
        done = self._done
        out = self._out
        while (data := held.pop(done, None)) is not None:
            out += data
            self._out_size += sum(map(len, data))
            done += 1
        self._done = done

    @property
    def pending(self) -> int:
        """Requests in progress or with a reply waiting for an earlier one."""
        return self._issued - self._done

    def data_to_send(self) -> list[Buffer]:
        """The bytes to write now, in order: small replies joined, a large buffer alone."""
        out = self._out
        self.write_due = False
        if not out:
            return []
        self._out = []
        self._out_size = 0
        if len(out) == 1 and len(out[0]) <= JOIN_LIMIT:
            return out
        return _group(out)

    # -- decisions --------------------------------------------------------------------------
    @property
    def want_read(self) -> bool:
        """True while the shell should read: open, not stalled, the client reading."""
        return self.state is OPEN and not self.stalled and not self.write_paused

    @property
    def can_resume(self) -> bool:
        """True when stalled requests may go on (the shell calls :meth:`resume`, soon: not
        from inside a write or a reply)."""
        return (
            self.stalled
            and self.state is OPEN
            and not self.write_paused
            and self._issued - self._done < self.max_pending
        )

    @property
    def close_expected(self) -> bool:
        """True when the shell should close (after writing :meth:`data_to_send`): the
        stream is ending and every reply has been handed out."""
        return self.state is CLOSING and self._issued == self._done

    @property
    def abort_expected(self) -> bool:
        """True when the shell should abort (after writing :meth:`data_to_send`)."""
        return self.state is ABORT

    @property
    def request_deadline(self) -> int | None:
        """While a request is partly received: a number that changes with each new partial
        request (the shell's ``request_timeout`` timer restarts when it changes). None: no
        deadline (nothing buffered, stalled, not open, or not this protocol's rule)."""
        return None

    def pause_writing(self) -> None:
        """The shell's transport buffer is full: hand out no more requests."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """The transport buffer drained (see ``can_resume``)."""
        self.write_paused = False

    def idle(self) -> bool:
        """The shell's ``idle_timeout`` elapsed without a byte: close if nothing is in
        progress (True), else keep waiting (False)."""
        if self._issued != self._done:
            return False
        self.close()
        return True

    def close(self) -> None:
        """Read no more requests; close once the replies due are out (shutdown, a timeout)."""
        if self.state is OPEN:
            self.state = CLOSING

    def abort(self) -> None:
        """Close now: only the replies already in order are still sent."""
        if self.state is not CLOSED:
            self.state = ABORT
            self._held.clear()

    def connection_lost(self) -> None:
        """The transport is gone: drop everything."""
        self.state = CLOSED
        self._held.clear()
        self._out.clear()
        self._out_size = 0


def _group(buffers: list[Buffer]) -> list[Buffer]:
    """``buffers`` as writes: runs of small ones joined, a large one alone as a memoryview
    (asyncio slices what send() did not take: no copy of a 10 MiB payload)."""
    writes: list[Buffer] = []
    small: list[Buffer] = []
    for buf in buffers:
        if len(buf) <= JOIN_LIMIT:
            small.append(buf)
            continue
        if small:
            writes.append(b"".join(small))
            small = []
        writes.append(memoryview(buf))
    if small:
        writes.append(b"".join(small))
    return writes


def _not_found(name: str) -> str:
    return f"command {name} not found"


class BinrpcConnection(ServerConnection):
    """A binrpc stream connection (TCP, unix stream), sans I/O.

    Errors, as in ctl: a packet over ``max_request_size`` ends the stream without a reply
    (never buffered; the replies before it are sent first); a corrupted packet, a reply or
    fault packet, or an unreadable method name gets fault 400 and ends the stream after the
    replies due; an unknown or refused method gets its fault and the stream goes on.

    Args:
        routing: the listener's methods and rules.
        limits: reply limits of the contexts.
        info: what the contexts give handlers as ``ctx.server``.
        max_request_size: the framer's limit.
        max_pending, handle, peer: see :class:`ServerConnection`.
    """

    def __init__(
        self,
        routing: Routing,
        limits: RpcLimits,
        info: ServerInfo | None,
        *,
        max_request_size: int,
        max_pending: int,
        handle: object = None,
        peer: str = "",
    ) -> None:
        super().__init__(max_pending=max_pending, handle=handle, peer=peer)
        self._framer = StreamFramer(max_request_size)
        self._routing = routing
        self._limits = limits
        self._info = info
        self._packets = 0  # complete packets so far (request_deadline)

    def _feed(self, data: bytes) -> None:
        self._framer.feed(data)

    @property
    def buffered(self) -> int:
        return self._framer.buffered

    @property
    def request_deadline(self) -> int | None:
        if self.state is not OPEN or self.stalled or not self._framer.buffered:
            return None
        return self._packets

    def _next_request(self) -> Request | bool:
        try:
            packet = self._framer.next_packet()
        except PacketTooLarge:
            # ctl: "buffer overrun", close without a reply (and we never buffer it); the
            # replies to the packets before it go out first, as in ctl
            self.abort()
            return False
        except DecodeError:
            self._answer_and_close(CORRUPTED_FAULT)
            return False
        if packet is None:
            return False
        self._packets += 1
        return self._request(packet)

    def _request(self, packet: Packet) -> Request | bool:
        cookie = packet.cookie
        if packet.type != MsgType.REQUEST:
            self._answer_and_close(encode_fault(400, "bad request: corrupted packet", cookie))
            return False
        try:
            name, reader = parse_request(packet.body)
        except DecodeError as exc:
            self._answer_and_close(encode_fault(400, f"bad request method: {exc.text}", cookie))
            return False
        method = route(self._routing, name, self.peer)
        if isinstance(method, int):
            text = refusal_text(name) if method == REFUSED else _not_found(name)
            self._answer(encode_fault(method, text[:254], cookie))
            return True
        request = Request(self, self._issue())
        request.method = method
        request.ctx = BinrpcContext(
            reader,
            cookie,
            request.reply,
            self._limits,
            method=name,
            registry=self._routing.methods,
            server=self._info,
            connection=self.handle,
            chunk_sink=request.reply_chunks,
        )
        return request


class DatagramReplies:
    """The output of a datagram listener: each reply to its sender, in one datagram."""

    def __init__(self) -> None:
        self._out: list[tuple[Buffer, Any]] = []

    def send_reply(self, request: Request, data: Buffer) -> None:
        """The reply datagram of ``request``. An unbound unix datagram sender has no address
        and cannot get it (ctl logs the same): dropped."""
        if request.key:
            self._out.append((data, request.key))

    def send_reply_chunks(self, request: Request, chunks: list[Buffer]) -> None:
        self.send_reply(request, b"".join(chunks))

    def data_to_send(self) -> list[tuple[Buffer, Any]]:
        """The datagrams to send now: (data, address)."""
        out = self._out
        if not out:
            return []
        self._out = []
        return out


class BinrpcDatagram(DatagramReplies):
    """A binrpc datagram listener (UDP, unix datagram), sans I/O: one request per datagram,
    its reply to the sender in one datagram.

    A corrupted datagram gets fault 400, an incomplete one is ignored (as in ctl), a reply
    too big for a datagram becomes fault 500; nothing ends the listener.

    Args:
        routing, limits, info: see :class:`BinrpcConnection`.
        max_reply_size: the largest reply datagram.
    """

    def __init__(
        self, routing: Routing, limits: RpcLimits, info: ServerInfo | None, max_reply_size: int
    ) -> None:
        super().__init__()
        self._routing = routing
        self._limits = limits
        self._info = info
        self.max_reply_size = max_reply_size

    def receive_data(self, data: bytes, addr: Any) -> list[Request]:
        """One datagram from ``addr``: its request to run (none: answered or ignored)."""
        try:
            packet = parse_packet(data)
        except DecodeError:
            Request(self, addr).reply(CORRUPTED_FAULT)
            return []
        if packet is None:
            return []  # incomplete: ignored, as ctl does
        cookie = packet.cookie
        request = Request(self, addr)
        if packet.type != MsgType.REQUEST:
            request.reply(encode_fault(400, "bad request: corrupted packet", cookie))
            return []
        try:
            name, reader = parse_request(packet.body)
        except DecodeError as exc:
            request.reply(encode_fault(400, f"bad request method: {exc.text}", cookie))
            return []
        method = route(self._routing, name, "a datagram client")
        if isinstance(method, int):
            text = refusal_text(name) if method == REFUSED else _not_found(name)
            request.reply(encode_fault(method, text[:254], cookie))
            return []
        request.method = method
        request.ctx = BinrpcContext(
            reader,
            cookie,
            request.reply,
            self._limits,
            method=name,
            registry=self._routing.methods,
            server=self._info,
            max_reply_size=self.max_reply_size,
        )
        return [request]
