"""The I/O-free core shared by :class:`~binrpc.client.Client` and ``AsyncClient``.

It builds requests, allocates cookies, reassembles replies (from stream reads or from datagrams:
the ctl module sends a large reply as several datagrams on UDP/unixd, spec 4.2) and checks
them. The sync and async shells only move bytes.
"""

from __future__ import annotations

import os

from .._address import Address, parse_address
from .._codec import MsgType, decode_fault, decode_values, encode_request
from .._errors import Fault
from .._framing import StreamFramer
from .._frozen import Frozen
from ._errors import CookieMismatch, UnexpectedPacket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

    from .._codec import Packet
    from .._values import Value

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_REPLY_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "DGRAM_RECV_SIZE",
    "Reply",
    "ReplyAssembler",
    "Timeouts",
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

DGRAM_RECV_SIZE: Final = 1 << 20
"""Receive buffer for one datagram. ctl never sends more than 65535 bytes per datagram, but a
unix datagram can be larger and a truncated one could never be reassembled."""


class Timeouts(Frozen):
    """Timeouts in seconds; ``None`` waits forever (kamcmd's behaviour).

    Attributes:
        connect: connecting (and, for TCP/UDP, resolving is not covered: the OS decides).
        read: from the end of sending a request to the end of its reply.
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
        super().__init__(connect, read)

    @classmethod
    def of(cls, value: float | Timeouts | None) -> Timeouts:
        """``Timeouts`` from a number (both timeouts), ``None`` (none) or a ``Timeouts``."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(None, None)
        if value <= 0:
            raise ValueError(f"timeout must be positive, not {value!r}")
        return cls(float(value), float(value))


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
        super().__init__(type, cookie, body)

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
    """The request packet (raises ``LocalProtocolError`` for values binrpc cannot carry)."""
    return encode_request(method, params, cookie)


def resolve_address(address: str | Address | None, *, udp_default: bool = False) -> Address:
    """The :class:`Address` to talk to: parsed like kamcmd's ``-s`` (IPv6 in brackets too);
    ``None`` means :func:`binrpc._defaults.default_client_address`.

    Raises:
        AddressError: the text is not a valid address.
    """
    if isinstance(address, Address):
        return address
    if address is None:
        from .._defaults import default_client_address

        address = default_client_address()
    return parse_address(address, "client", udp_default=udp_default)


class ReplyAssembler:
    """Reassemble the reply to one or more outstanding requests from received bytes.

    Feed stream reads or datagram payloads (in order) with :meth:`feed`; :meth:`next_reply`
    returns each complete reply. Cookies are checked against the outstanding set: a reply to
    an abandoned request (one that timed out) is dropped silently; any other unknown cookie
    raises :class:`CookieMismatch`.

    Args:
        max_reply_size: largest header + body accepted (``PacketTooLarge`` above it).
    """

    __slots__ = ("_abandoned", "_framer", "expected", "max_reply_size")

    def __init__(self, max_reply_size: int = DEFAULT_MAX_REPLY_SIZE) -> None:
        self.max_reply_size = max_reply_size
        self._framer = StreamFramer(max_reply_size)
        self.expected: set[int] = set()
        self._abandoned: set[int] = set()

    @property
    def buffered(self) -> int:
        return self._framer.buffered

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

    def reset(self) -> None:
        """Forget buffered bytes (after an error on a datagram socket, or a reconnect)."""
        self._framer = StreamFramer(self.max_reply_size)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._framer.feed(data)

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
            packet: Packet | None = self._framer.next_packet()
            if packet is None:
                return None
            if packet.type == MsgType.REQUEST:
                raise UnexpectedPacket(packet.type)
            if packet.cookie in self.expected:
                self.expected.discard(packet.cookie)
                return Reply(packet.type, packet.cookie, packet.body)
            if packet.cookie in self._abandoned:
                self._abandoned.discard(packet.cookie)
                continue
            sent = next(iter(self.expected)) if len(self.expected) == 1 else -1
            raise CookieMismatch(sent, packet.cookie)
