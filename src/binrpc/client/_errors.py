"""Client-side refinements of the exception hierarchy in :mod:`binrpc._errors`.

Every class here subclasses one of the public exceptions, so ``except TransportError`` or
``except RemoteProtocolError`` keep working; the refinements only let callers (the ``binrpc``
command above all) tell *which* step failed, to print kamcmd's exact messages::

    ConnectError
     ├── ResolveError        the host name did not resolve           (.host)
     └── BindError           the unixd reply socket could not be bound (.path)
    TransportError
     ├── SendError           writing the request failed
     ├── ReceiveError        reading the reply failed (ICMP "connection refused" on UDP ...)
     └── ReplyLost           pipelined: the connection was dropped because of an invalid
                             reply to an earlier request, before this one was answered
    RemoteProtocolError
     ├── CookieMismatch      the reply carries another cookie        (.sent, .received)
     └── UnexpectedPacket    the reply is a request packet           (.type)

Transport errors carry ``errno`` and a message that names the address, e.g.
``[Errno 111] cannot connect to tcp:127.0.0.1:2049: Connection refused``.
"""

from __future__ import annotations

import os

from .._errors import (
    ConnectError,
    ConnectionClosed,
    RemoteProtocolError,
    TransportError,
    TransportTimeout,
)

__all__ = [
    "BindError",
    "CookieMismatch",
    "ReceiveError",
    "ReplyLost",
    "ResolveError",
    "SendError",
    "UnexpectedPacket",
    "closed_error",
    "os_error",
    "timeout_error",
]


class ResolveError(ConnectError):
    """The server's host name could not be resolved."""

    def __init__(self, host: str, address: str, detail: str = "") -> None:
        self.host = host
        extra = f": {detail}" if detail else ""
        super().__init__(f"could not resolve {host!r} for {address}{extra}")


class BindError(ConnectError):
    """The unix datagram reply socket could not be bound (``-R``/``-D``)."""

    path: str = ""


class SendError(TransportError):
    """Sending the request failed."""


class ReceiveError(TransportError):
    """Reading the reply failed (other than a clean close or a timeout)."""


class ReplyLost(TransportError):
    """A pipelined request that was sent (so it may have been executed) but whose reply will
    never come: the connection was closed because the reply to an earlier request was invalid
    (a :class:`~binrpc.RemoteProtocolError`). Transport failures (a close, a timeout ...) are
    reported to every such request as themselves instead."""

    def __init__(self, address: str, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(
            0,
            f"no reply: the connection to {address} was dropped after an invalid reply to an "
            f"earlier request ({cause})",
        )


class CookieMismatch(RemoteProtocolError):
    """The reply's cookie is not the one of the request."""

    def __init__(self, sent: int, received: int) -> None:
        self.sent = sent
        self.received = received
        super().__init__(f"reply cookie {received:#x} does not match the request's {sent:#x}")


class UnexpectedPacket(RemoteProtocolError):
    """The server sent a packet that is not a reply or a fault (a request)."""

    def __init__(self, msg_type: int) -> None:
        self.type = msg_type
        super().__init__(f"expected a reply, got a packet of type {msg_type}")


_T = type[TransportError]


def os_error(cls: _T, what: str, address: str, exc: OSError) -> TransportError:
    """Wrap ``exc`` into ``cls`` with an ``errno`` and a message naming ``address``."""
    code = exc.errno or 0
    text = exc.strerror or (os.strerror(code) if code else str(exc))
    return cls(code, f"{what} {address}: {text}")


def closed_error(address: str, got: int) -> ConnectionClosed:
    """The peer closed a stream before the whole reply arrived."""
    detail = f" after {got} bytes of the reply" if got else " before replying"
    return ConnectionClosed(0, f"{address} closed the connection{detail}")


def timeout_error(what: str, address: str, seconds: float | None) -> TransportTimeout:
    """A connect/read timeout."""
    return TransportTimeout(0, f"{what} {address} timed out after {seconds:g} s")
