"""The sans-I/O binrpc client connection: :class:`ClientConnection`.

Every binrpc client (``Client``, ``Client.pipeline``, ``AsyncClient``) is a shell over one of
these: the shell moves bytes and runs timers, the connection decides everything else. No
socket, no event loop, no clock here.

Theory of operation (docs/architecture.md draws it)::

    requests:   new_cookie() -> encode() -> sent()        in flight
                                          \\-> forget()    never sent after all
    replies:    receive_data() / buffer()+advance()  ->  next_reply() / replies()
    giving up:  abandon(cookie)  (its reply, if it comes, is dropped once)
    failures:   fail(exc) -> [(cookie, error), ...]  every request in flight, oldest first

The connection is in one of three states:

* ``IDLE``: nothing in flight. Received bytes are still framed: a reply to an abandoned
  request is dropped; anything else is an error (a reply nobody asked for).
* ``AWAITING``: requests in flight. Each complete reply is matched by cookie and leaves the
  in-flight set; order does not matter.
* ``BROKEN``: the bytes received are not a reply to us (not binrpc, too big, a request
  packet, an unknown cookie). The stream cannot resynchronise: every :meth:`next_reply`
  raises that error (:attr:`error`) until the shell calls :meth:`start` (a new connection)
  or, on a datagram socket where each datagram stands alone, :meth:`discard_buffered`.

Transitions: ``sent`` moves IDLE to AWAITING; the last reply, ``abandon``, ``forget`` or
``fail`` back to IDLE; a bad reply to BROKEN (from either); ``start`` from anywhere to IDLE
with nothing buffered, nothing abandoned (a new transport has no late replies), the cookie
sequence kept.

The failure rule (one place for every client): when the connection fails, every request in
flight is answered, in sending order. A transport error (``TransportError``: a close, a reset,
a timeout) goes to each of them as it is: it is what happened to each. A protocol error goes
to the oldest request, whose reply it most likely was, and :class:`ReplyLost` to the others:
they were sent (so may have been executed) but their replies can no longer be told apart.
"""

from __future__ import annotations

from .._codec import MsgType, encode_header, str_record
from .._errors import RemoteProtocolError, TransportError
from .._framing import StreamFramer
from ._core import DEFAULT_MAX_REPLY_SIZE, Reply, build_request, next_cookie
from ._errors import CookieMismatch, ReplyLost, UnexpectedPacket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    from .._errors import BinrpcError
    from .._values import Value

__all__ = ["AWAITING", "BROKEN", "IDLE", "ClientConnection"]

IDLE: Final = "IDLE"
AWAITING: Final = "AWAITING"
BROKEN: Final = "BROKEN"

_HEADER_1_4: Final = 0xA103 << 40
"""A request header with one length byte and four cookie bytes, as an int (encode_header's
bytes for those widths): | length << 32 | cookie, then to_bytes(7)."""

_MAX_ABANDONED: Final = 4096
"""Abandoned cookies remembered at most (their late replies are dropped); older ones are
forgotten: a reply that late would be an unknown cookie, an error."""

_MAX_BODIES: Final = 256
"""Methods whose parameterless request body is kept (``binrpc --batch`` repeats a few)."""

_REQUEST: Final = MsgType.REQUEST


class ClientConnection:
    """The state of one binrpc client connection (see the module docstring).

    Args:
        address: the peer, as text, for error messages (``ReplyLost`` names it).
        max_reply_size: largest reply (header + body) accepted; ``PacketTooLarge`` above it.
        cookie: the last cookie used (the next request gets ``cookie + 1``); ``None``: the
            first request gets a random one.
    """

    __slots__ = ("_abandoned", "_bodies", "_cookie", "_framer", "_in_flight", "address", "error")

    def __init__(
        self,
        address: str = "",
        *,
        max_reply_size: int = DEFAULT_MAX_REPLY_SIZE,
        cookie: int | None = None,
    ) -> None:
        self.address = address
        self._framer = StreamFramer(max_reply_size, record=Reply)
        self._in_flight: dict[int, None] = {}  # cookies, oldest first (dicts keep order)
        self._abandoned: set[int] = set()
        self._cookie = cookie
        self._bodies: dict[str, bytes] = {}  # method -> body of a call without parameters
        self.error: RemoteProtocolError | None = None
        """The protocol error that broke the connection (state ``BROKEN``), or None."""

    def __repr__(self) -> str:
        return f"<ClientConnection {self.address} {self.state} in_flight={len(self._in_flight)}>"

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``IDLE``, ``AWAITING`` or ``BROKEN``."""
        if self.error is not None:
            return BROKEN
        return AWAITING if self._in_flight else IDLE

    @property
    def in_flight(self) -> list[int]:
        """The cookies of the requests in flight, oldest first (a copy)."""
        return list(self._in_flight)

    @property
    def max_reply_size(self) -> int:
        return self._framer.max_packet_size

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as replies."""
        return self._framer.buffered

    def start(self) -> None:
        """A new transport connection: forget what was buffered, in flight or abandoned (and
        the error); the cookie sequence goes on."""
        self._framer = StreamFramer(self._framer.max_packet_size, record=Reply)
        self._in_flight.clear()
        self._abandoned.clear()
        self.error = None

    def discard_buffered(self) -> None:
        """Drop the bytes received so far, and the error they caused: datagram sockets, where
        a bad or half-received datagram does not spoil the next one."""
        self._framer = StreamFramer(self._framer.max_packet_size, record=Reply)
        self.error = None

    # -- requests --------------------------------------------------------------------------
    def new_cookie(self) -> int:
        """The next cookie: random for the first request, then the previous + 1 (mod 2**32),
        so that pipelined requests never share one."""
        self._cookie = cookie = next_cookie(self._cookie)
        return cookie

    def encode(self, method: str, params: Sequence[Value], cookie: int) -> bytes:
        """The request packet for ``method(*params)`` with ``cookie`` (not yet in flight).

        A call without parameters takes a fast path: its body is made once per method and
        the common header (one length byte, four cookie bytes) is one integer operation;
        the bytes are those of :func:`binrpc._codec.encode_request`.

        Raises:
            TypeError: ``method`` is not a ``str``, or ``params`` not a list or tuple.
            LocalProtocolError: values binrpc cannot carry.
        """
        if params or type(method) is not str or not isinstance(params, list | tuple):
            return build_request(method, params, cookie)
        bodies = self._bodies
        body = bodies.get(method)
        if body is None:
            body = str_record(method)
            if len(bodies) < _MAX_BODIES:
                bodies[method] = body
        n = len(body)
        if n < 256 and cookie >= 0x1000000:
            return (_HEADER_1_4 | n << 32 | cookie).to_bytes(7, "big") + body
        return encode_header(_REQUEST, n, cookie) + body

    def request(self, method: str, params: Sequence[Value]) -> tuple[int, bytes]:
        """``new_cookie`` + ``encode`` + ``sent``: the cookie and packet of a request that the
        shell now sends (on failure: :meth:`forget` if no byte left, else :meth:`abandon` or
        :meth:`fail`).

        Raises:
            TypeError, LocalProtocolError: as :meth:`encode` (the cookie is used up).
        """
        cookie = self.new_cookie()
        packet = self.encode(method, params, cookie)
        self._in_flight[cookie] = None
        self._abandoned.discard(cookie)
        return cookie, packet

    def sent(self, cookie: int) -> None:
        """The request ``cookie`` is (being) sent: its reply is awaited."""
        self._in_flight[cookie] = None
        self._abandoned.discard(cookie)

    def forget(self, cookie: int) -> None:
        """The request ``cookie`` was not sent after all: no reply can come."""
        self._in_flight.pop(cookie, None)

    def abandon(self, cookie: int) -> None:
        """The reply to ``cookie`` is no longer wanted (a timeout, a cancelled call): drop it,
        once, if it comes."""
        self._in_flight.pop(cookie, None)
        abandoned = self._abandoned
        abandoned.add(cookie)
        if len(abandoned) > _MAX_ABANDONED:
            abandoned.pop()

    def fail(self, exc: BinrpcError) -> list[tuple[int, BinrpcError]]:
        """The connection failed with ``exc``: every request in flight, oldest first, with the
        error that answers it (the module docstring's rule). They are all abandoned."""
        cookies = list(self._in_flight)
        self._in_flight.clear()
        abandon = self.abandon
        out: list[tuple[int, BinrpcError]] = []
        transport = isinstance(exc, TransportError)
        for k, cookie in enumerate(cookies):
            abandon(cookie)
            out.append((cookie, exc if k == 0 or transport else ReplyLost(self.address, exc)))
        return out

    # -- received bytes --------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes (a stream read, or one whole datagram), copied in; then call
        :meth:`next_reply` (or :meth:`replies`) until it has nothing more."""
        self._framer.feed(data)

    def buffer(self) -> memoryview:
        """Where the next stream read should go (then :meth:`advance`), for reads without a
        copy. Do not keep the view past the read (a body read in place is handed over as
        the reply's bytes only once every view is gone)."""
        return self._framer.buffer()

    def advance(self, n: int) -> None:
        """``n`` bytes were read into the last :meth:`buffer`."""
        self._framer.advance(n)

    def next_reply(self) -> Reply | None:
        """The next complete reply to a request in flight, or ``None`` (more bytes needed).
        A reply to an abandoned request is dropped on the way.

        Raises:
            DecodeError: not a binrpc packet (bad magic/version/type).
            PacketTooLarge: the header announces more than ``max_reply_size``.
            UnexpectedPacket: a request packet.
            CookieMismatch: a reply to no request in flight (``.sent``: the oldest in flight,
                -1 when none).
            After any of them the connection is ``BROKEN``: the same error again.
        """
        if self.error is not None:
            raise self.error
        framer = self._framer
        while True:
            try:
                packet = framer.next_packet()
            except RemoteProtocolError as exc:
                self.error = exc
                raise
            if packet is None:
                return None
            got = self._match(packet)
            if isinstance(got, Reply):
                return got
            if got is not None:
                self.error = got
                raise got

    def replies(self) -> list[Reply]:
        """Every complete reply at once, oldest first (what :meth:`next_reply` would return
        call after call, for less overhead per reply). Never raises: an error after them
        leaves the connection ``BROKEN`` (see :attr:`error`)."""
        out: list[Reply] = []
        if self.error is not None:
            return out
        in_flight = self._in_flight
        for packet in self._framer.take():
            cookie = packet.cookie
            if packet.type != _REQUEST and cookie in in_flight:
                del in_flight[cookie]
                out.append(packet)
                continue
            got = self._match(packet)
            if isinstance(got, RemoteProtocolError):  # (a reply would have been in flight)
                self.error = got
                return out
        self.error = self._framer.error
        return out

    def _match(self, packet: Reply) -> Reply | RemoteProtocolError | None:
        """The packet if it is a reply to us; None: dropped (abandoned); or the error it is."""
        if packet.type == _REQUEST:
            return UnexpectedPacket(packet.type)
        cookie = packet.cookie
        in_flight = self._in_flight
        if cookie in in_flight:
            del in_flight[cookie]
            return packet
        if cookie in self._abandoned:
            self._abandoned.discard(cookie)
            return None
        return CookieMismatch(next(iter(in_flight), -1), cookie)
