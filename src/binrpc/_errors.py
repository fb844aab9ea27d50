"""The whole exception hierarchy of binrpc.

::

    BinrpcError
     ├── ProtocolError
     │    ├── RemoteProtocolError          the peer sent bytes that are not valid binrpc
     │    │    ├── DecodeError             a packet or record could not be decoded
     │    │    │                           (.code is the binrpc error number, e.g. -3)
     │    │    └── PacketTooLarge          a packet announced more bytes than allowed
     │    └── LocalProtocolError           the API was misused (also a ValueError):
     │                                     a value that binrpc cannot carry, a bad address ...
     ├── TransportError (also OSError)     the connection failed
     │    ├── ConnectError                 could not connect / bind
     │    ├── ConnectionClosed             the peer closed the connection mid-exchange
     │    └── TransportTimeout             a connect/read/write timeout expired
     │                                     (also the builtin TimeoutError)
     ├── ListenerError (also OSError)      the server could not create a listener (a bad
     │                                     or busy address, a foreign file at the path ...)
     └── Fault                             the server answered with a fault (code, message)

Decoders raise only :class:`RemoteProtocolError` subclasses on any input: never
``IndexError``, ``struct.error``, ``RecursionError`` or ``MemoryError``.
"""

from __future__ import annotations

__all__ = [
    "BINRPC_ERROR_TEXTS",
    "E_BAD_RECORD",
    "E_BUG",
    "E_CORRUPTED",
    "E_END_OF_PACKET",
    "E_INVALID_ARGS",
    "E_MORE_DATA",
    "E_OVERFLOW",
    "E_TYPE",
    "BinrpcError",
    "ConnectError",
    "ConnectionClosed",
    "DecodeError",
    "Fault",
    "ListenerError",
    "LocalProtocolError",
    "PacketTooLarge",
    "ProtocolError",
    "RemoteProtocolError",
    "TransportError",
    "TransportTimeout",
    "binrpc_error_text",
]

# binrpc's numbered parser errors; their texts appear verbatim inside Kamailio's faults
# ("bad request method: end of packet encountered"), so they are part of the wire contract.
E_INVALID_ARGS = -1
E_OVERFLOW = -2
E_CORRUPTED = -3
E_MORE_DATA = -4
E_END_OF_PACKET = -5
E_TYPE = -7
E_BAD_RECORD = -8
E_BUG = -9

BINRPC_ERROR_TEXTS: tuple[str, ...] = (
    "no error",
    "invalid function arguments",
    "buffer too small (overflow)",
    "corrupted packet",
    "more data needed",
    "end of packet encountered",
    "binrpc parse context not initialized",
    "record doesn't match type",
    "bad record",
    "bug -- internal error",
)


def binrpc_error_text(code: int) -> str:
    """Return the text Kamailio uses for binrpc error ``code`` (0, -1 ... -9)."""
    if -len(BINRPC_ERROR_TEXTS) < code <= 0:
        return BINRPC_ERROR_TEXTS[-code]
    return "unknown/invalid error code"


class BinrpcError(Exception):
    """Base class of every exception raised by binrpc."""


class ProtocolError(BinrpcError):
    """Bytes or values that do not follow the binrpc protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not valid binrpc."""


class DecodeError(RemoteProtocolError):
    """A packet or record could not be decoded.

    Attributes:
        code: the binrpc error number (``E_MORE_DATA``, ``E_TYPE`` ...).
        text: its canonical text, as Kamailio prints it in faults.
        cookie: the cookie of the packet when its header could be read, else 0.
    """

    def __init__(self, code: int, detail: str = "", *, cookie: int = 0) -> None:
        self.code = code
        self.text = binrpc_error_text(code)
        self.cookie = cookie
        super().__init__(f"{self.text}: {detail}" if detail else self.text)


class PacketTooLarge(RemoteProtocolError):
    """A packet announced a size above the configured limit; nothing of it was buffered."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"packet of {size} bytes exceeds the limit of {limit} bytes")


class LocalProtocolError(ProtocolError, ValueError):
    """The caller asked for something binrpc cannot express (API misuse)."""


class TransportError(BinrpcError, OSError):
    """The connection to the peer failed.

    ``errno`` is the OS error number, or 0 when the failure has none (a close, a TLS
    handshake refused ...); ``strerror`` the message. ``str()`` is ``[Errno N] message``
    like any ``OSError``, without a meaningless ``[Errno 0]``.
    """

    def __str__(self) -> str:
        if not self.errno and self.strerror:
            return str(self.strerror)
        return super().__str__()


class ConnectError(TransportError):
    """Connecting (or binding the client's reply socket) failed."""


class ConnectionClosed(TransportError):
    """The peer closed the connection before the exchange was complete."""


class TransportTimeout(TransportError, TimeoutError):
    """A connect, read or write timeout expired."""


class ListenerError(BinrpcError, OSError):
    """A listener could not be created; the message names the address.

    Raised by the server when it starts (``binrpc.server`` re-exports it).
    """


class Fault(BinrpcError):
    """A fault reply from the server (or raised by an RPC handler to send one).

    Attributes:
        code: the fault code (400, 500, ...).
        message: the fault text.
    """

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(code, message)

    def __str__(self) -> str:
        return f"{self.code} - {self.message}"

    def __repr__(self) -> str:
        return f"Fault({self.code!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Fault):
            return (self.code, self.message) == (other.code, other.message)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.code, self.message))
