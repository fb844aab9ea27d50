"""Sans-I/O server connections: requests in, replies out in order, and every decision.

A connection object never touches a socket, a timer or the event loop; its shell
(:mod:`binrpc.server._conn`) moves bytes and runs timers::

    conn.on_reply = sync                         # a late reply (async handler) is due
    for method, ctx in conn.receive_data(data):  # the complete requests, one at a time
        call_method(method, ctx)                 # the context hands the reply to conn
        if conn.write_due:                       # a large reply, or much gathered output
            write(conn.data_to_send())
    sync(): write(conn.data_to_send()); close_expected -> close; abort_expected -> abort;
        want_read -> pause/resume reading; can_resume -> soon: conn.resume(), as above

Each request's context has sinks that hand its reply in (:meth:`ServerConnection.send_reply`
with the request's position); replies may come in any order, the connection puts each in
its place. A synchronous handler has replied when ``call_method`` returns.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .._binrpc_context import BinrpcContext
from .._binrpc_reply import Buffer
from .._codec import BodyReader, MsgType, Packet, encode_fault, parse_packet, parse_request
from .._context import RpcContext, ServerInfo
from .._errors import DecodeError, PacketTooLarge, RemoteProtocolError
from .._framing import StreamFramer
from .._limits import RpcLimits
from .._registry import Method
from ._routing import REFUSED, Routing, refusal_text, route

__all__ = [
    "ABORT",
    "CLOSED",
    "CLOSING",
    "CORRUPTED_FAULT",
    "OPEN",
    "Answer",
    "BinrpcConnection",
    "BinrpcDatagram",
    "Call",
    "DatagramReplies",
    "ReplySlot",
    "ServerConnection",
    "binrpc_request",
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


Call = tuple[Method, RpcContext]
"""A request to run: ``call_method(method, ctx)``; the context hands the reply in."""


class Framer(Protocol):
    """What a connection needs of its framer (:class:`~binrpc.StreamFramer`,
    :class:`~binrpc._fifo_wire.FifoFramer`)."""

    @property
    def buffered(self) -> int: ...

    def feed(self, data: bytes) -> None: ...


class ReplyTarget(Protocol):
    """Where a reply sink hands the reply of the request at ``key``."""

    def send_reply(self, key: Any, data: Buffer) -> None: ...

    def send_reply_chunks(self, key: Any, chunks: list[Buffer]) -> None: ...


class ReplySlot:
    """The sink of one request whose reply needs its place named: a request behind another
    one still in progress (streams), or a datagram's sender (``key``: the address)."""

    __slots__ = ("_target", "key")

    def __init__(self, target: ReplyTarget, key: Any) -> None:
        self._target = target
        self.key = key

    def reply(self, data: Buffer) -> None:
        """The whole reply (a context's sink)."""
        self._target.send_reply(self.key, data)

    def reply_chunks(self, chunks: list[Buffer]) -> None:
        """The whole reply as buffers to send in order (a large value, not copied)."""
        self._target.send_reply_chunks(self.key, chunks)


Sinks = tuple[Callable[[Buffer], None], Callable[[list[Buffer]], None]]
Routed = tuple[Method, str, BodyReader]


class ServerConnection(abc.ABC):
    """One stream connection, sans I/O: requests in order, replies out in order.

    Subclasses parse what their framer cuts (:meth:`_request`, :meth:`_bad_stream`), taking
    each request's reply sinks from :meth:`_issue` (or answering it in place with
    :meth:`_answer`); everything else (order, the pending cap, back-pressure, closing) is
    here.

    Args:
        framer: the subclass's framer (fed by :meth:`receive_data`).
        cut: the framer's "next complete request, or None" (it raises
            :class:`~binrpc.RemoteProtocolError` when the stream cannot be framed).
        max_pending: requests that may be in progress or have a reply waiting to be written
            (``max_pending_per_connection``); at the cap no request is handed out.
        handle: what handlers see as ``ctx.connection`` (the shell).
        peer: the client, for log lines.
    """

    def __init__(
        self,
        framer: Framer,
        cut: Callable[[], Any],
        *,
        max_pending: int,
        handle: object = None,
        peer: str = "",
    ) -> None:
        self._framer = framer
        self._cut = cut
        self.max_pending = max_pending
        self.handle = handle
        self.peer = peer
        self.on_reply: Callable[[], object] | None = None
        """Called after a reply arrived outside an iteration of :meth:`receive_data` /
        :meth:`resume` (the late reply of an async handler): the shell writes it out."""
        self.state: str = OPEN
        self.write_paused = False
        """The shell said pause_writing (the client does not read)."""
        self.stalled = False
        """Requests were left buffered (write paused, or the cap): no reading until
        :meth:`resume`."""
        self.want_read = True
        """True while the shell should read: open, not stalled, the client reading."""
        self.write_due = False
        """The gathered output should be written now, before the next request runs."""
        self._issued = 0  # requests handed out (or answered) so far: the next one's position
        self._done = 0  # position of the next reply to send
        self._held: dict[int, list[Buffer]] = {}  # replies waiting for an earlier one
        self._out: list[Buffer] = []  # replies in order, not yet given to the shell
        self._out_size = 0
        self._serving = False  # inside an iteration: replies are gathered, not announced
        # the sinks of a request with nothing before it: its reply is in order whenever it
        # comes (nothing after it can pass it), so it needs no place of its own
        self._head_sinks: Sinks = (self._reply_head, self._reply_head_chunks)

    # -- input ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _request(self, item: Any) -> Call | None:
        """Parse one request the framer cut: the :data:`Call` to run, or None when it was
        answered here (a fault; the subclass may also have closed the stream)."""

    @abc.abstractmethod
    def _bad_stream(self, exc: RemoteProtocolError) -> None:
        """The framer cannot go on (``exc``): close or abort, answering what is due."""

    @property
    def buffered(self) -> int:
        """Bytes received and not yet cut into requests."""
        return self._framer.buffered

    def receive_data(self, data: bytes) -> Iterator[Call]:
        """Take bytes from the stream; returns the complete requests, to run in order.

        The requests are cut one by one as the caller iterates: a reply that pauses writing
        or fills the pending cap stops the iteration, leaving the rest buffered (then
        ``want_read`` is False until ``can_resume``: call :meth:`resume`). Data after EOF or
        an error is ignored.
        """
        if self.state is not OPEN:
            return iter(())
        self._framer.feed(data)
        return self._requests()

    def resume(self) -> Iterator[Call]:
        """Go on with the requests left buffered by a stall (when ``can_resume``)."""
        self.stalled = False
        self._check_reading()
        return self._requests()

    def _requests(self) -> Iterator[Call]:
        self._serving = True
        cut = self._cut
        try:
            while self.state is OPEN:
                if self.write_paused or self._issued - self._done >= self.max_pending:
                    self.stalled = True
                    self.want_read = False
                    return
                try:
                    item = cut()
                except RemoteProtocolError as exc:
                    self._bad_stream(exc)
                    return
                if item is None:
                    return
                call = self._request(item)
                if call is not None:
                    yield call
        finally:
            self._serving = False

    def _check_reading(self) -> None:
        self.want_read = self.state is OPEN and not self.stalled and not self.write_paused

    def receive_eof(self) -> None:
        """The client will send nothing more: the requests read are still answered."""
        self.close()

    def _issue(self) -> Sinks:
        """Give the next request its place; its reply sinks (for subclasses)."""
        seq = self._issued
        self._issued = seq + 1
        if seq == self._done:
            return self._head_sinks
        slot = ReplySlot(self, seq)
        return slot.reply, slot.reply_chunks

    def _answer(self, data: Buffer) -> None:
        """Answer the next request without running anything (for subclasses: a fault)."""
        self._issue()[0](data)

    def _answer_and_close(self, data: Buffer) -> None:
        """Answer the next request, then read no more (a stream that cannot go on)."""
        self._answer(data)
        self.close()

    # -- replies ----------------------------------------------------------------------------
    def send_reply(self, key: int, data: Buffer) -> None:
        """Hand in the whole reply of the request at position ``key``, in any order (the
        contexts' sinks do)."""
        if key == self._done:
            self._reply_head(data)
        elif self.state is not CLOSED and self.state is not ABORT:
            self._held[key] = [data]

    def send_reply_chunks(self, key: int, chunks: list[Buffer]) -> None:
        """Hand in a reply as buffers (a large value): due at once when it is in order."""
        if key == self._done:
            self._reply_head_chunks(chunks)
        elif self.state is not CLOSED and self.state is not ABORT:
            self._held[key] = chunks

    def _reply_head(self, data: Buffer) -> None:
        """The reply of the first request not yet answered: to the output."""
        if self.state is CLOSED or self.state is ABORT:
            return
        self._out.append(data)
        self._out_size += len(data)
        self._done += 1
        if self._held:
            self._release()
        if self._out_size > OUT_LIMIT:
            self.write_due = True
        if not self._serving and self.on_reply is not None:
            self.on_reply()

    def _reply_head_chunks(self, chunks: list[Buffer]) -> None:
        if self.state is CLOSED or self.state is ABORT:
            return
        self._out += chunks
        self._done += 1
        if self._held:
            self._release()
        self.write_due = True  # a large reply: written before the next request runs
        if not self._serving and self.on_reply is not None:
            self.on_reply()

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
        stream is ending and every reply has been handed out. Never while OPEN."""
        return self.state is CLOSING and self._issued == self._done

    @property
    def abort_expected(self) -> bool:
        """True when the shell should abort (after writing :meth:`data_to_send`). Never
        while OPEN."""
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
        self.want_read = False

    def resume_writing(self) -> None:
        """The transport buffer drained (see ``can_resume``)."""
        self.write_paused = False
        self._check_reading()

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
            self.want_read = False

    def abort(self) -> None:
        """Close now: only the replies already in order are still sent."""
        if self.state is not CLOSED:
            self.state = ABORT
            self.want_read = False
            self._held.clear()

    def connection_lost(self) -> None:
        """The transport is gone: drop everything."""
        self.state = CLOSED
        self.want_read = False
        self._held.clear()
        self._out.clear()
        self._out_size = 0
        self.handle = self.on_reply = None  # (no cycle with the shell)


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


@dataclass(frozen=True, slots=True)
class Answer:
    """A request answered without running: ``data`` is its fault; ``fatal``: the stream
    cannot go on after it (the bytes that follow cannot be trusted)."""

    data: bytes
    fatal: bool = False


def binrpc_request(packet: Packet, routing: Routing, peer: str) -> Answer | Routed:
    """Check and route one binrpc packet: (method, name, reader of the parameters), or the
    fault to answer: 400 for a packet that is no request or an unreadable method name
    (fatal on a stream), 403/500 from :func:`~binrpc.server._routing.route`."""
    cookie = packet.cookie
    if packet.type != MsgType.REQUEST:
        return Answer(encode_fault(400, "bad request: corrupted packet", cookie), True)
    try:
        name, reader = parse_request(packet.body)
    except DecodeError as exc:
        return Answer(encode_fault(400, f"bad request method: {exc.text}", cookie), True)
    method = route(routing, name, peer)
    if isinstance(method, int):
        text = refusal_text(name) if method == REFUSED else f"command {name} not found"
        return Answer(encode_fault(method, text[:254], cookie))
    return method, name, reader


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
        self._stream = StreamFramer(max_request_size)
        super().__init__(
            self._stream,
            self._stream.next_packet,
            max_pending=max_pending,
            handle=handle,
            peer=peer,
        )
        self._routing = routing
        self._limits = limits
        self._info = info
        self._packets = 0  # complete packets so far (request_deadline)

    @property
    def request_deadline(self) -> int | None:
        if self.state is not OPEN or self.stalled or not self._stream.buffered:
            return None
        return self._packets

    def _bad_stream(self, exc: RemoteProtocolError) -> None:
        if isinstance(exc, PacketTooLarge):
            # ctl: "buffer overrun", close without a reply (and we never buffer it); the
            # replies to the packets before it go out first, as in ctl
            self.abort()
        else:  # a corrupted header: what follows cannot be framed
            self._answer_and_close(CORRUPTED_FAULT)

    def _request(self, item: Any) -> Call | None:
        packet: Packet = item
        self._packets += 1
        request = binrpc_request(packet, self._routing, self.peer)
        if isinstance(request, Answer):
            if request.fatal:
                self._answer_and_close(request.data)
            else:
                self._answer(request.data)
            return None
        method, name, reader = request
        sink, chunk_sink = self._issue()
        ctx = BinrpcContext(
            reader,
            packet.cookie,
            sink,
            self._limits,
            method=name,
            registry=self._routing.methods,
            server=self._info,
            connection=self.handle,
            chunk_sink=chunk_sink,
        )
        return method, ctx


class DatagramReplies:
    """The output of a datagram listener: each reply to its sender, in one datagram.

    ``on_reply`` (set by the shell) is called after each reply: datagrams are sent at once.
    """

    def __init__(self) -> None:
        self._out: list[tuple[Buffer, Any]] = []
        self.on_reply: Callable[[], object] | None = None

    def _sinks(self, addr: Any) -> Sinks:
        slot = ReplySlot(self, addr)
        return slot.reply, slot.reply_chunks

    def send_reply(self, key: Any, data: Buffer) -> None:
        """The reply datagram to ``key`` (the sender's address). An unbound unix datagram
        sender has no address and cannot get it (ctl logs the same): dropped."""
        if key:
            self._out.append((data, key))
            if self.on_reply is not None:
                self.on_reply()

    def send_reply_chunks(self, key: Any, chunks: list[Buffer]) -> None:
        self.send_reply(key, b"".join(chunks))

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

    def receive_data(self, data: bytes, addr: Any) -> list[Call]:
        """One datagram from ``addr``: its request to run (none: answered or ignored)."""
        try:
            packet = parse_packet(data)
        except DecodeError:
            self.send_reply(addr, CORRUPTED_FAULT)
            return []
        if packet is None:
            return []  # incomplete: ignored, as ctl does
        request = binrpc_request(packet, self._routing, "a datagram client")
        if isinstance(request, Answer):
            self.send_reply(addr, request.data)
            return []
        method, name, reader = request
        ctx = BinrpcContext(
            reader,
            packet.cookie,
            self._sinks(addr)[0],
            self._limits,
            method=name,
            registry=self._routing.methods,
            server=self._info,
            max_reply_size=self.max_reply_size,
        )
        return [(method, ctx)]
