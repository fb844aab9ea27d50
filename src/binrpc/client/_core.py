"""The clients' values and argument checks: :class:`Timeouts`, :class:`Reply`, the default
limits, cookies and addresses. No I/O; the connection logic is in
:mod:`binrpc.client._protocol`.
"""

from __future__ import annotations

import os

from .._address import Address, parse_address
from .._codec import MsgType, decode_fault, decode_values, encode_request
from .._errors import Fault
from .._frozen import Frozen

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
