"""The socket of the blocking clients: opening it (every transport, TLS, the unixd reply
socket) and :class:`Link`, which holds it for a ``Client`` and its ``Pipeline``.

I/O only: no parsing here. Failures are mapped by :func:`binrpc.client._errors.transport_error`.
"""

from __future__ import annotations

# _socket is the C module that socket.py wraps: importing socket.py (and through it enum,
# selectors ...) costs milliseconds of a one-shot ``binrpc`` call's start-up. Its socket class
# has everything used here; socket.timeout is TimeoutError, socket.gaierror is _socket's.
import _socket
import errno
import os

from .._errors import ConnectError
from ._errors import BIND, CONNECT, BindError, ResolveError, transport_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ssl import SSLContext
    from typing import Final

    from .._address import Address
    from ._config import ClientConfig
    from ._protocol import ClientConnection

__all__ = ["DGRAM_RECV_SIZE", "Link", "open_socket", "reply_socket_name"]

DGRAM_RECV_SIZE: Final = 1 << 20
"""Receive buffer for one datagram. ctl never sends more than 65535 bytes per datagram, but a
unix datagram can be larger and a truncated one could never be reassembled."""


def reply_socket_name(directory: str, prefix: str = "binrpc") -> str:
    """An auto-generated reply socket path in ``directory`` (kamcmd: ``/tmp/kamcmd_<rand>``)."""
    # os.urandom rather than the random module (start-up time); 31 random bits as before
    return os.path.join(directory, f"{prefix}_{int.from_bytes(os.urandom(4), 'big') >> 1}")


def _host_arg(host: str) -> str | bytes:
    """``host`` for getaddrinfo: given a str, the C code encodes it with the "idna" codec,
    whose import pulls in re and unicodedata (start-up time). An ASCII name that codec accepts
    unchanged is passed as those very bytes; anything else as the str (same result, errors)."""
    if host.isascii():
        labels = host.split(".")
        if all(0 < len(label) < 64 for label in labels[:-1]) and len(labels[-1]) < 64:
            return host.encode("ascii")
    return host


def open_socket(
    address: Address,
    *,
    connect_timeout: float | None,
    reply_path: str | None = None,
    reply_dir: str | None = None,
    tls: SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[_socket.socket, str | None]:
    """Create and connect a socket for ``address``; return it and the unixd reply path to
    unlink afterwards (``None`` when there is nothing to remove: abstract names, other
    transports).

    ``tls``: for tcp/tls addresses, run a TLS handshake with this context (checking
    ``server_hostname``, by default the address's host) within the connect timeout.

    unix datagram sockets are bound first so that the server can answer: to exactly
    ``reply_path`` (kamcmd ``-R``), else to an auto-named path in ``reply_dir`` (``-D``), else to
    an autobound Linux abstract name (nothing left on disk, ever). TCP/UDP try every address the
    name resolves to (IPv4 and IPv6), like kamcmd's master branch.

    Raises:
        ResolveError, BindError, ConnectError, TransportTimeout.
    """
    text = str(address)
    if address.proto == "unixs":
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(address.path)
        except OSError as exc:
            sock.close()
            raise transport_error(CONNECT, text, exc, connect_timeout) from exc
        return sock, None
    if address.proto == "unixd":
        return _open_unixd(address, reply_path, reply_dir)
    if address.proto not in ("tcp", "tls", "udp"):
        raise ConnectError(f"a client cannot talk to a {address.proto} address ({text})")
    kind = _socket.SOCK_DGRAM if address.proto == "udp" else _socket.SOCK_STREAM
    if address.host in ("*", ""):
        # "tcp:2049" parses as port 2049 on host "*": a listener's "any", not a peer
        raise ResolveError(address.host, text, "not a host to connect to")
    try:
        infos = _socket.getaddrinfo(_host_arg(address.host), address.port, _socket.AF_UNSPEC, kind)
    except (OSError, UnicodeError) as exc:
        raise ResolveError(address.host, text, str(exc)) from exc
    last: OSError | None = None
    for family, stype, proto, _canon, sockaddr in infos:
        sock = _socket.socket(family, stype, proto)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        if tls is not None:
            return _tls_handshake(sock, tls, server_hostname or address.host, text, connect_timeout)
        return sock, None
    assert last is not None
    raise transport_error(CONNECT, text, last, connect_timeout) from last


def _tls_handshake(
    sock: _socket.socket,
    tls: SSLContext,
    server_hostname: str,
    text: str,
    connect_timeout: float | None,
) -> tuple[_socket.socket, str | None]:
    from ._tls import handshake_failure

    try:
        wrapped = tls.wrap_socket(sock, server_hostname=server_hostname)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        sock.close()
        raise handshake_failure(text, exc, connect_timeout) from exc
    return wrapped, None


def _open_unixd(
    address: Address, reply_path: str | None, reply_dir: str | None
) -> tuple[_socket.socket, str | None]:
    text = str(address)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    bound: str | None = None
    try:
        if reply_path is not None:
            candidates = [reply_path]
        elif reply_dir is not None:
            candidates = [reply_socket_name(reply_dir) for _ in range(11)]
        else:
            candidates = [""]  # Linux autobind: a unique abstract name
        for i, path in enumerate(candidates):
            try:
                sock.bind(path)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and i + 1 < len(candidates):
                    continue
                err = transport_error(BIND, path or "@auto", exc)
                assert isinstance(err, BindError)
                err.path = path
                raise err from exc
            bound = path or None
            break
        try:
            sock.connect(address.path)
        except OSError as exc:
            raise transport_error(CONNECT, text, exc) from exc
    except BaseException:
        sock.close()
        if bound:
            try:
                os.unlink(bound)
            except OSError:
                pass
        raise
    return sock, bound


class Link:
    """The socket of one blocking client, opened lazily and re-opened after a close, for
    ``Client`` and its ``Pipeline`` alike. Each new socket starts ``conn`` afresh
    (:meth:`ClientConnection.start`): a new transport has nothing buffered or in flight.

    Attributes:
        sock: the socket, or None while closed.
        used: a request went out on this socket (a reused stream may have been closed by
            the server meanwhile: see :meth:`stale`).
        reply_socket_path: the unixd reply socket file bound (removed by :meth:`close`).
        dgram: the receive buffer of whole datagrams (empty for streams).
    """

    __slots__ = ("_tls_context", "config", "conn", "dgram", "reply_socket_path", "sock", "used")

    def __init__(self, config: ClientConfig, conn: ClientConnection) -> None:
        self.config = config
        self.conn = conn
        self.sock: _socket.socket | None = None
        self.used = False
        self.reply_socket_path: str | None = None
        self._tls_context: SSLContext | None = None
        # datagrams are received whole here; streams straight into the connection's buffer
        self.dgram = bytearray(0 if config.address.is_stream else DGRAM_RECV_SIZE)

    def open(self) -> _socket.socket:
        """The socket, opened now unless open.

        Raises:
            ResolveError, BindError, ConnectError, TransportTimeout.
        """
        sock = self.sock
        if sock is not None:
            return sock
        config = self.config
        if config.address.proto == "tls" and self._tls_context is None:
            from ._tls import client_context

            self._tls_context = client_context(config.tls)
        sock, self.reply_socket_path = open_socket(
            config.address,
            connect_timeout=config.timeouts.connect,
            reply_path=config.reply_path,
            reply_dir=config.reply_dir,
            tls=self._tls_context,
            server_hostname=config.server_hostname,
        )
        self.sock = sock
        self.conn.start()
        self.used = False
        return sock

    def close(self) -> None:
        """Close the socket and remove a unixd reply socket file. Idempotent."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        path, self.reply_socket_path = self.reply_socket_path, None
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def stale(self) -> bool:
        """A reused stream connection that the server has closed (or that holds bytes nobody
        asked for): close it, so that the next request goes on a new one. Never true for
        datagram sockets or a connection not used yet."""
        sock = self.sock
        if sock is None or not self.used or not self.config.address.is_stream:
            return False
        if _stream_is_dead(sock, self.config.address.proto == "tls"):
            self.close()
            return True
        return False


def _stream_is_dead(sock: _socket.socket, tls: bool) -> bool:
    import select  # only a reused connection needs it (start-up time of one-shot calls)

    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    if tls:
        return _tls_is_dead(sock)
    try:
        sock.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True  # EOF, or bytes nobody asked for: start afresh


def _tls_is_dead(sock: _socket.socket) -> bool:
    """Readable TLS socket: session tickets (alive), or close_notify/EOF/stray data."""
    import ssl

    sock.settimeout(0.0)
    try:
        return len(sock.recv(1)) >= 0  # data nobody asked for, or EOF: start afresh
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False  # only TLS records (NewSessionTicket): nothing for us
    except OSError:
        return True
