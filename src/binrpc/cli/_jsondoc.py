"""The ``--json`` documents of ``binrpc``: one JSON object per command, on one line. No I/O.

Every command prints exactly one document on stdout, whatever its outcome::

    {"result": [values]}                                      the reply (see _render.to_json)
    {"error": {"kind": K, "message": S, "address": A}}        any failure, K in ERROR_KINDS
    {"error": {"kind": "fault", "code": N, "message": S, "address": A}}   a fault

``address`` is the server address as given (``-s``, or the default). With several ``-s``,
every document starts with ``"node": A``. The exit status and stderr are those of the same
command without ``--json`` (kamcmd's messages stay on stderr); ``message`` is a sentence for
humans, not kamcmd's ``ERROR: ...`` line.
"""

from __future__ import annotations

from .._address import AddressError
from .._errors import (
    ConnectError,
    ConnectionClosed,
    LocalProtocolError,
    RemoteProtocolError,
    TransportError,
    TransportTimeout,
)
from ..client._errors import BindError, ReceiveError, ReplyLost, ResolveError, SendError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "ERROR_KINDS",
    "error_document",
    "error_kind",
    "error_text",
    "exception_document",
    "json_line",
]

ERROR_KINDS: Final = (
    "address",  # the address does not parse
    "resolve",  # its host name does not resolve
    "bind",  # the unixd reply socket cannot be bound (-R, -D)
    "connect",  # connecting failed: refused, no such socket, TLS handshake ...
    "timeout",  # connect or reply timeout (-t)
    "send",  # sending the request failed
    "closed",  # the connection ended before the reply came
    "receive",  # reading the reply failed otherwise
    "transport",  # any other transport failure
    "protocol",  # the reply is not valid binrpc, too big, not a reply, another cookie ...
    "request",  # the request cannot be built (too big ...)
    "argument",  # a bad argument or command line, found before anything is sent
    "fault",  # the server answered with a fault ("code" is its code)
)

# most specific class first: an exception gets the kind of the first class it is an instance of
_KIND_OF: Final = (
    (AddressError, "address"),  # a LocalProtocolError
    (ResolveError, "resolve"),  # a ConnectError
    (BindError, "bind"),  # a ConnectError
    (TransportTimeout, "timeout"),
    (ConnectError, "connect"),
    (SendError, "send"),
    (ConnectionClosed, "closed"),
    (ReplyLost, "closed"),
    (ReceiveError, "receive"),
    (TransportError, "transport"),
    (RemoteProtocolError, "protocol"),
    (LocalProtocolError, "request"),
)


def error_kind(exc: BaseException) -> str:
    """The ``kind`` of the document reporting ``exc`` (one of :data:`ERROR_KINDS`)."""
    for cls, kind in _KIND_OF:
        if isinstance(exc, cls):
            return kind
    return "transport"


def error_text(exc: BaseException) -> str:
    """The message of ``exc`` without ``[Errno N]`` (its ``strerror`` for an OSError)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def error_document(
    kind: str, message: str, address: str, *, code: int | None = None
) -> dict[str, object]:
    """``{"error": {...}}`` with the documented keys (``code`` for a fault only)."""
    error: dict[str, object] = {"kind": kind}
    if code is not None:
        error["code"] = code
    error["message"] = message
    error["address"] = address
    return {"error": error}


def exception_document(exc: BaseException, address: str) -> dict[str, object]:
    """The error document reporting ``exc`` (a transport, protocol or address error)."""
    return error_document(error_kind(exc), error_text(exc), address)


def json_line(doc: dict[str, object], node: str | None = None) -> bytes:
    """``doc`` as one line of valid UTF-8, after ``"node": node`` when a node is given
    (several ``-s``). Text is written as is, except the bytes that were not UTF-8 (decoded as
    lone surrogates): their JSON escape ``\\udcXX``."""
    import json  # only --json needs it (start-up of the one-shot path)

    if node is not None:
        doc = {"node": node, **doc}
    line = json.dumps(doc, ensure_ascii=False, separators=(", ", ": "))
    # "backslashreplace" writes a surrogate as \udcXX: the JSON escape of the same character
    return line.encode("utf-8", "backslashreplace") + b"\n"
