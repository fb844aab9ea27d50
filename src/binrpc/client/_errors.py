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
``[Errno 111] cannot connect to tcp:127.0.0.1:2049: Connection refused``. Which class an
``OSError`` becomes depends only on the step that failed (:data:`STEPS`,
:func:`transport_error`), the same for every client.
"""

from __future__ import annotations

import errno
import os

from .._errors import (
    ConnectError,
    ConnectionClosed,
    RemoteProtocolError,
    TransportError,
    TransportTimeout,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "BIND",
    "CONNECT",
    "FIFO_CREATE",
    "FIFO_OPEN",
    "FIFO_READ",
    "FIFO_WRITE",
    "HANDSHAKE",
    "RECEIVE",
    "SEND",
    "STEPS",
    "BindError",
    "CookieMismatch",
    "ReceiveError",
    "ReplyLost",
    "ResolveError",
    "SendError",
    "UnexpectedPacket",
    "closed_error",
    "timeout_error",
    "transport_error",
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


CONNECT: Final = "connect"
"""A :data:`STEPS` key: opening the connection (``connect()``; unix paths, TCP, UDP)."""
BIND: Final = "bind"
"""Binding the client's reply socket (unixd) or creating its reply FIFO."""
HANDSHAKE: Final = "handshake"
"""The TLS handshake."""
SEND: Final = "send"
"""Writing the request."""
RECEIVE: Final = "receive"
"""Reading the reply."""
FIFO_CREATE: Final = "fifo-create"
"""FIFO client: creating its reply FIFO (what binding a reply socket is to the others)."""
FIFO_OPEN: Final = "fifo-open"
"""FIFO client: opening the server's FIFO file."""
FIFO_WRITE: Final = "fifo-write"
"""FIFO client: writing the request to the server's FIFO."""
FIFO_READ: Final = "fifo-read"
"""FIFO client: reading its reply FIFO."""

STEPS: Final[dict[str, tuple[type[TransportError], str, str]]] = {
    # step: (class of its failures, "{failed} {address}: {reason}", "{timed out} {address}")
    CONNECT: (ConnectError, "cannot connect to", "connecting to"),
    BIND: (BindError, "cannot bind the reply socket", "binding the reply socket"),
    HANDSHAKE: (ConnectError, "TLS handshake failed with", "TLS handshake with"),
    SEND: (SendError, "cannot send to", "sending to"),
    RECEIVE: (ReceiveError, "cannot read the reply from", "waiting for the reply from"),
    FIFO_CREATE: (BindError, "cannot create the reply FIFO", "creating the reply FIFO"),
    FIFO_OPEN: (ConnectError, "cannot open the FIFO", "opening the FIFO"),
    FIFO_WRITE: (SendError, "cannot write to", "writing to"),
    FIFO_READ: (ReceiveError, "reading the reply FIFO", "waiting for the reply from"),
}
"""The one table from which every client (``Client``, ``AsyncClient``, ``FifoClient`` and
both pipelines) turns an ``OSError`` into its exception: the failed step picks the class,
whatever the transport or the I/O layer (blocking socket, asyncio transport, FIFO file). A
timeout, ours or the kernel's (``ETIMEDOUT``), is :class:`TransportTimeout` at every step."""


def transport_error(
    step: str, address: str, exc: BaseException, timeout: float | None = None
) -> TransportError:
    """The exception that stands for ``exc`` (an ``OSError``) raised while doing ``step``
    (a :data:`STEPS` key) with ``address``; ``timeout`` is the timeout that applied to the step
    (named in the message when it is what expired).

    A :class:`TransportError` is returned as it is (already mapped).
    """
    if isinstance(exc, TransportError):
        return exc
    cls, failed, timed_out = STEPS[step]
    if isinstance(exc, TimeoutError):
        # a socket timeout has no errno: it is ours; ETIMEDOUT is the kernel's (TCP gave up),
        # which happens with no timeout of ours at all (timeout=None)
        return timeout_error(timed_out, address, timeout if exc.errno is None else None)
    code = getattr(exc, "errno", None) or 0
    strerror = getattr(exc, "strerror", None)
    text = strerror or (os.strerror(code) if code else str(exc) or type(exc).__name__)
    return cls(code, f"{failed} {address}: {text}")


def closed_error(address: str, got: int) -> ConnectionClosed:
    """The peer closed a stream before the whole reply arrived."""
    detail = f" after {got} bytes of the reply" if got else " before replying"
    return ConnectionClosed(0, f"{address} closed the connection{detail}")


def timeout_error(what: str, address: str, seconds: float | None) -> TransportTimeout:
    """A connect/send/read timeout; ``seconds`` is the timeout that expired, ``None`` when the
    kernel gave up (``ETIMEDOUT``) rather than a timeout of ours."""
    after = "" if seconds is None else f" after {seconds:g} s"
    return TransportTimeout(errno.ETIMEDOUT, f"{what} {address} timed out{after}")
