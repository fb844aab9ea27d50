"""The I/O-free core shared by :class:`~binrpc.client.Client` and ``AsyncClient``.

It builds requests, allocates cookies, reassembles replies (from stream reads or from datagrams:
the ctl module sends a large reply as several datagrams on UDP/unixd, spec 4.2) and checks
them. The sync and async shells only move bytes.
"""

from __future__ import annotations

import os
from io import BytesIO

from .._address import Address, parse_address
from .._codec import MAGIC_VERSION, MsgType, decode_fault, decode_values, encode_request
from .._errors import E_CORRUPTED, DecodeError, Fault, PacketTooLarge, RemoteProtocolError
from .._frozen import Frozen
from ._errors import CookieMismatch, UnexpectedPacket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    from .._values import Value

__all__ = [
    "DATAGRAM_REPLY_DEADLINE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_REPLY_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "DGRAM_RECV_SIZE",
    "MAX_TIMEOUT",
    "Reply",
    "ReplyAssembler",
    "ReplyReader",
    "Timeouts",
    "argument_error",
    "build_request",
    "check_seconds",
    "check_size",
    "next_cookie",
    "resolve_address",
]

DEFAULT_MAX_REPLY_SIZE: Final = 64 * 1024 * 1024
"""Largest reply (header + body) accepted: 64 MiB. kamcmd stops at 128 KiB (its fixed buffer),
which ``domain.dump``-style replies of a tuned server exceed (upstream issue #1127); the limit
only exists so that a corrupt length field cannot make us buffer gigabytes."""

DEFAULT_CONNECT_TIMEOUT: Final = 10.0
"""Seconds allowed for connecting (kamcmd has no timeout at all)."""

DEFAULT_READ_TIMEOUT: Final = 30.0
"""Seconds allowed between sending a request and receiving its whole reply."""

DATAGRAM_REPLY_DEADLINE: Final = 10.0
"""Seconds a datagram request waits for its reply when the client has no read timeout
(``binrpc --batch`` without ``-t``): a datagram or its reply can be lost (a full receive queue,
a busy peer) and nothing else would ever end the wait. The request is then reported as timed
out -- never sent again: it may have been executed -- and its late reply, if any, is dropped
by its cookie. Streams need none: a lost connection is reported by the kernel."""

MAX_TIMEOUT: Final = 2_147_483
"""Largest timeout in seconds (about 24.8 days): ``poll()`` takes milliseconds in a C int.
Longer waits are ``None`` (no timeout)."""

DGRAM_RECV_SIZE: Final = 1 << 20
"""Receive buffer for one datagram. ctl never sends more than 65535 bytes per datagram, but a
unix datagram can be larger and a truncated one could never be reassembled."""


def argument_error(name: str, expected: str, value: object) -> TypeError:
    """The ``TypeError`` for argument ``name`` given ``value`` where ``expected`` was due."""
    return TypeError(f"{name} must be {expected}, not {type(value).__name__}")


def check_size(value: object, name: str) -> int:
    """``value`` as a size limit in bytes: an ``int`` > 0.

    Raises:
        TypeError: not an ``int``. ValueError: zero or negative.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise argument_error(name, "a number of bytes (an int)", value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, not {value!r}")
    return value


def check_seconds(value: object, name: str = "timeout") -> float | None:
    """``value`` as a timeout in seconds: ``None``, or a number in ``(0, MAX_TIMEOUT]``.

    Raises:
        TypeError: not a number (a ``bool`` is not one either).
        ValueError: zero, negative, NaN, infinite or above :data:`MAX_TIMEOUT`.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise argument_error(name, "a number of seconds or None", value)
    # NaN fails both comparisons; inf and huge ints the second (float() of a huge int raises)
    if not 0 < value <= MAX_TIMEOUT:
        raise ValueError(
            f"{name} must be a number of seconds > 0 and <= {MAX_TIMEOUT} "
            f"(None waits forever), not {value!r}"
        )
    return float(value)


class Timeouts(Frozen):
    """Timeouts in seconds; ``None`` waits forever (kamcmd's behaviour).

    Attributes:
        connect: connecting (and, for TCP/UDP, resolving is not covered: the OS decides).
        read: from the end of sending a request to the end of its reply.

    Raises:
        TypeError: a timeout that is not a number or None.
        ValueError: a timeout that is not > 0 and <= :data:`MAX_TIMEOUT` (0, negative, NaN,
            infinite): ``None`` is how to wait forever.
    """

    __match_args__ = ("connect", "read")
    __slots__ = __match_args__
    connect: float | None
    read: float | None

    def __init__(
        self,
        connect: float | None = DEFAULT_CONNECT_TIMEOUT,
        read: float | None = DEFAULT_READ_TIMEOUT,
    ) -> None:
        super().__init__(
            check_seconds(connect, "connect timeout"), check_seconds(read, "read timeout")
        )

    @classmethod
    def of(cls, value: float | Timeouts | None) -> Timeouts:
        """``Timeouts`` from a number (both timeouts), ``None`` (none) or a ``Timeouts``.

        Raises:
            TypeError, ValueError: as :class:`Timeouts` (the message says ``timeout``).
        """
        if isinstance(value, Timeouts):
            return value
        seconds = check_seconds(value)
        return cls(seconds, seconds)


_set = object.__setattr__


class Reply(Frozen):
    """A reply or fault packet as received (nothing decoded yet).

    Attributes:
        type: ``MsgType.REPLY`` or ``MsgType.FAULT`` (an ``int``).
        cookie: the cookie (equal to the request's).
        body: the raw body; decode it with :meth:`values` or walk it with
            :class:`~binrpc.BodyReader` (``strict=False``).
    """

    __match_args__ = ("type", "cookie", "body")
    __slots__ = __match_args__
    type: int
    cookie: int
    body: bytes

    def __init__(self, type: int, cookie: int, body: bytes) -> None:
        # Frozen.__init__ spelled out: a pipelined batch makes thousands of these
        _set(self, "type", type)
        _set(self, "cookie", cookie)
        _set(self, "body", body)

    @property
    def is_fault(self) -> bool:
        return self.type == MsgType.FAULT

    def values(self) -> list[Value]:
        """The body's top-level values, parsed leniently like kamcmd (unnamed struct members).

        Raises:
            DecodeError: a malformed record.
        """
        return decode_values(self.body, strict=False)

    def fault(self) -> Fault:
        """The fault of a fault packet as a :class:`~binrpc.Fault` (not raised)."""
        code, message = decode_fault(self.body)
        return Fault(code, message)

    def result(self) -> list[Value]:
        """The values of a reply.

        Raises:
            Fault: the packet is a fault.
            DecodeError: a malformed record.
        """
        if self.is_fault:
            raise self.fault()
        return self.values()


def next_cookie(previous: int | None = None) -> int:
    """A fresh random cookie, or ``previous + 1`` (mod 2**32) for pipelined requests."""
    if previous is None:
        # os.urandom rather than the random module: importing random costs start-up time
        return int.from_bytes(os.urandom(4), "big")
    return (previous + 1) & 0xFFFFFFFF


def build_request(method: str, params: Sequence[Value], cookie: int) -> bytes:
    """The request packet.

    Raises:
        TypeError: ``method`` is not a ``str``, or ``params`` not a list or tuple.
        LocalProtocolError: values binrpc cannot carry.
    """
    if not isinstance(method, str):
        raise argument_error("method", "a str", method)
    if not isinstance(params, list | tuple):
        raise argument_error("params", "a list or tuple of values", params)
    return encode_request(method, params, cookie)


def resolve_address(address: str | Address | None, *, udp_default: bool = False) -> Address:
    """The :class:`Address` to talk to: parsed like kamcmd's ``-s`` (IPv6 in brackets too);
    ``None`` means :func:`binrpc._defaults.default_client_address`.

    Raises:
        AddressError: the text is not a valid address.
        TypeError: neither a str, an Address nor None.
    """
    if isinstance(address, Address):
        return address
    if address is not None and not isinstance(address, str):
        raise argument_error("address", "a str, an Address or None", address)
    if address is None:
        from .._defaults import default_client_address

        address = default_client_address()
    return parse_address(address, "client", udp_default=udp_default)


_SCRATCH_SIZE: Final = 1 << 16
"""Bytes read at a time while replies are small (several pipelined replies fit)."""

_COMPACT_BELOW: Final = 4096
"""Move a partial packet to the front of the scratch buffer when less room than this is left."""

_VALID_TYPES: Final = (MsgType.REQUEST, MsgType.REPLY, MsgType.FAULT)


class ReplyReader:
    """Cut received bytes into packets, with one copy of each body at most.

    Reads go into a 64 KiB scratch buffer (:meth:`buffer`, then :meth:`advance` with the count
    read); complete packets are sliced out of it. A packet that does not fit the scratch buffer
    is read *in place*: once its header is known, a buffer of exactly its body length is
    allocated and :meth:`buffer` returns the part still to be filled, so a 20 MiB reply is
    received straight into the ``bytes`` object that becomes :attr:`Reply.body` (no growing
    buffer, no final copy). :meth:`feed` copies given bytes in (datagrams, asyncio).

    Validation is :class:`binrpc._framing.StreamFramer`'s (the ctl module's stream rules):
    nothing is checked below 4 bytes; then magic/version and type; a packet above
    ``max_packet_size`` fails as soon as its header is complete, without buffering it. After an
    error every call to :meth:`next_packet` raises it again (the stream cannot resynchronise).
    """

    __slots__ = (
        "_big",
        "_big_cookie",
        "_big_got",
        "_big_type",
        "_big_view",
        "_end",
        "_error",
        "_ready",
        "_scratch",
        "_start",
        "_taken",
        "_view",
        "max_packet_size",
    )

    def __init__(self, max_packet_size: int = DEFAULT_MAX_REPLY_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._scratch = bytearray(_SCRATCH_SIZE)
        self._view = memoryview(self._scratch)
        self._start = 0  # first byte not yet cut into a packet
        self._end = 0  # end of the received bytes
        self._ready: list[tuple[int, int, bytes]] = []  # (type, cookie, body), oldest first
        self._taken = 0  # packets of _ready already returned
        self._error: RemoteProtocolError | None = None
        self._big: BytesIO | None = None  # the body being read in place
        self._big_view: memoryview | None = None
        self._big_got = 0
        self._big_type = 0
        self._big_cookie = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        n = self._end - self._start + sum(len(p[2]) for p in self._ready[self._taken :])
        if self._big_view is not None:
            n += self._big_got
        return n

    def buffer(self) -> memoryview:
        """Where the next read should go (then call :meth:`advance`). Don't keep the view:
        a body read in place is handed over without a copy only once every view is gone."""
        if self._big_view is not None:
            return self._big_view[self._big_got :]
        room = _SCRATCH_SIZE - self._end
        if room < _COMPACT_BELOW and self._start:
            start, end = self._start, self._end
            self._scratch[: end - start] = self._view[start:end].tobytes()
            self._start, self._end = 0, end - start
        return self._view[self._end :]

    def advance(self, n: int) -> None:
        """``n`` bytes were written at the start of the last :meth:`buffer`."""
        if self._error is not None:
            return
        if self._big_view is not None:
            self._big_got += n
            if self._big_got == len(self._big_view):
                self._finish_big()
            return
        self._end += n
        self._cut()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes (copied in)."""
        src = memoryview(data)
        pos = 0
        total = len(src)
        while pos < total and self._error is None:
            dst = self.buffer()
            k = min(len(dst), total - pos)
            dst[:k] = src[pos : pos + k]
            del dst
            self.advance(k)
            pos += k

    def next_packet(self) -> tuple[int, int, bytes] | None:
        """The next complete packet as ``(type, cookie, body)``, or None (more bytes needed).

        Raises:
            DecodeError: bad magic/version/type (``E_CORRUPTED``).
            PacketTooLarge: the header announces more than ``max_packet_size``.
        """
        ready = self._ready
        if ready:
            i = self._taken
            packet = ready[i]
            i += 1
            if i == len(ready):
                ready.clear()
                i = 0
            self._taken = i
            return packet
        if self._error is not None:
            raise self._error
        return None

    def take(self) -> list[tuple[int, int, bytes]]:
        """Every complete packet at once (oldest first); an error, if the bytes after them
        are invalid, is raised by the next :meth:`next_packet`."""
        ready = self._ready
        if not ready:
            return ready
        if self._taken:
            del ready[: self._taken]
            self._taken = 0
        self._ready = []
        return ready

    # -- internals -------------------------------------------------------------------------
    def _cut(self) -> None:
        """Slice every complete packet out of the scratch buffer; start reading a big one in
        place."""
        buf = self._scratch
        start = self._start
        end = self._end
        ready = self._ready
        from_bytes = int.from_bytes
        while end - start >= 4:
            b0 = buf[start]
            b1 = buf[start + 1]
            mtype = b1 >> 4
            if b0 != MAGIC_VERSION or mtype not in _VALID_TYPES:
                self._fail(DecodeError(E_CORRUPTED, f"bad header bytes {b0:02x} {b1:02x}"))
                return
            ll = ((b1 >> 2) & 3) + 1
            hsize = 2 + ll + (b1 & 3) + 1
            if end - start < hsize:
                break
            body_len = from_bytes(buf[start + 2 : start + 2 + ll], "big")
            total = hsize + body_len
            if total > self.max_packet_size:
                self._fail(PacketTooLarge(total, self.max_packet_size))
                return
            cookie = from_bytes(buf[start + 2 + ll : start + hsize], "big")
            if end - start >= total:
                ready.append((mtype, cookie, bytes(buf[start + hsize : start + total])))
                start += total
                continue
            if total > _SCRATCH_SIZE:
                self._start_big(mtype, cookie, body_len, start + hsize, end)
                start = end = 0
            break
        if start == end:
            start = end = 0
        self._start = start
        self._end = end

    def _start_big(self, mtype: int, cookie: int, body_len: int, start: int, end: int) -> None:
        # BytesIO's buffer is a bytes object: getbuffer() writes into it, getvalue() hands
        # that very object over (CPython copies only while a view is still exported)
        big = BytesIO()
        big.seek(body_len - 1)
        big.write(b"\0")
        view = big.getbuffer()
        have = end - start
        view[:have] = self._view[start:end]
        self._big = big
        self._big_view = view
        self._big_got = have
        self._big_type = mtype
        self._big_cookie = cookie

    def _finish_big(self) -> None:
        big, view = self._big, self._big_view
        assert big is not None and view is not None
        self._big = self._big_view = None
        view.release()
        self._ready.append((self._big_type, self._big_cookie, big.getvalue()))
        self._big_got = 0

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._error = exc
        self._start = self._end = 0
        if self._big_view is not None:
            self._big_view.release()
        self._big = self._big_view = None


class ReplyAssembler:
    """Reassemble the replies to one or more outstanding requests from received bytes.

    Feed stream reads or datagram payloads (in order) with :meth:`feed` (or read straight into
    :meth:`buffer` and call :meth:`advance`); :meth:`next_reply` returns each complete reply.
    Cookies are checked against the outstanding set: a reply to an abandoned request (one that
    timed out) is dropped silently; any other unknown cookie raises :class:`CookieMismatch`.

    Args:
        max_reply_size: largest header + body accepted (``PacketTooLarge`` above it).
    """

    __slots__ = ("_abandoned", "_reader", "expected", "max_reply_size")

    def __init__(self, max_reply_size: int = DEFAULT_MAX_REPLY_SIZE) -> None:
        self.max_reply_size = max_reply_size
        self._reader = ReplyReader(max_reply_size)
        self.expected: set[int] = set()
        self._abandoned: set[int] = set()

    @property
    def buffered(self) -> int:
        return self._reader.buffered

    def expect(self, cookie: int) -> None:
        """Register a request whose reply is awaited."""
        self.expected.add(cookie)
        self._abandoned.discard(cookie)

    def abandon(self, cookie: int) -> None:
        """The reply to ``cookie`` is no longer wanted (timeout): drop it if it comes."""
        self.expected.discard(cookie)
        self._abandoned.add(cookie)
        if len(self._abandoned) > 4096:
            self._abandoned.pop()

    def forget(self, cookie: int) -> None:
        """``cookie`` was never sent after all: neither expected nor abandoned."""
        self.expected.discard(cookie)

    def dropped(self, cookie: int) -> bool:
        """Whether ``cookie`` was abandoned (its reply is to be dropped, once)."""
        if cookie in self._abandoned:
            self._abandoned.discard(cookie)
            return True
        return False

    def take_packets(self) -> list[tuple[int, int, bytes]]:
        """Every complete packet, unchecked (see :meth:`ReplyReader.take`): for callers that
        match cookies themselves (``Client.pipeline``); then :meth:`next_reply` raises the
        error that stopped the reading, if any."""
        return self._reader.take()

    def reset(self) -> None:
        """Forget buffered bytes (after an error on a datagram socket, or a reconnect)."""
        self._reader = ReplyReader(self.max_reply_size)

    def buffer(self) -> memoryview:
        """See :meth:`ReplyReader.buffer`."""
        return self._reader.buffer()

    def advance(self, n: int) -> None:
        """See :meth:`ReplyReader.advance`."""
        self._reader.advance(n)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._reader.feed(data)

    def next_reply(self) -> Reply | None:
        """The next complete reply to an outstanding request, or ``None`` (more bytes needed).

        Raises:
            DecodeError: not a binrpc packet (bad magic/version/type).
            PacketTooLarge: the header announces more than ``max_reply_size``.
            UnexpectedPacket: a request packet.
            CookieMismatch: a reply to no outstanding request. With a single outstanding
                request ``.sent`` is its cookie.
        """
        while True:
            packet = self._reader.next_packet()
            if packet is None:
                return None
            mtype, cookie, body = packet
            if mtype == MsgType.REQUEST:
                raise UnexpectedPacket(mtype)
            if cookie in self.expected:
                self.expected.discard(cookie)
                return Reply(mtype, cookie, body)
            if cookie in self._abandoned:
                self._abandoned.discard(cookie)
                continue
            sent = next(iter(self.expected)) if len(self.expected) == 1 else -1
            raise CookieMismatch(sent, cookie)
