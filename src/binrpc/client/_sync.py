"""The blocking client: :class:`Client`, on plain sockets (no asyncio import)."""

from __future__ import annotations

# _socket is the C module that socket.py wraps: importing socket.py (and through it enum,
# selectors ...) costs milliseconds of a one-shot ``binrpc`` call's start-up. Its socket class
# has everything used here; socket.timeout is TimeoutError, socket.gaierror is _socket's.
import _socket
import errno
import os
import time

from .._errors import ConnectError, ConnectionClosed, TransportError
from ._core import (
    DATAGRAM_REPLY_DEADLINE,
    DEFAULT_MAX_REPLY_SIZE,
    DGRAM_RECV_SIZE,
    Reply,
    ReplyAssembler,
    Timeouts,
    build_request,
    check_size,
    next_cookie,
    resolve_address,
)
from ._errors import (
    BIND,
    CONNECT,
    RECEIVE,
    SEND,
    BindError,
    ResolveError,
    closed_error,
    transport_error,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from ssl import SSLContext
    from types import TracebackType
    from typing import TypeAlias

    from .._address import Address
    from .._errors import BinrpcError
    from .._values import Value

    TraceHook: TypeAlias = Callable[[bytes, int], None]
    """Called with every chunk read from the socket and the reply offset it starts at
    (``binrpc -vvv`` prints kamcmd's hex dumps with it)."""
else:
    # the precise alias is for type checkers; importing collections.abc costs start-up time
    TraceHook = object

__all__ = ["Client", "TraceHook", "open_socket", "reply_socket_name"]

_DEFAULT_TIMEOUTS = Timeouts()


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


def _deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


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


def tls_address(address: Address, tls: object) -> Address:
    """``tcp:`` + ``tls`` set -> the ``tls:`` address; refuse TLS on other transports."""
    if tls is None:
        return address
    if tls is False:
        if address.proto == "tls":
            raise ValueError(f"{address}: a tls: address needs TLS (tls=False given)")
        return address
    if address.proto == "tcp":
        from .._address import Address

        return Address("tls", address.host, address.port)
    if address.proto != "tls":
        raise ValueError(f"TLS needs a tcp or tls address, not {address}")
    return address


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


class Client:
    """A blocking binrpc client (one connection, reused; thread-unsafe).

    Args:
        address: the server in kamcmd ``-s`` syntax (``unixs:/run/kamailio/kamailio_ctl``,
            ``unixd:/path``, ``tcp:host:port``, ``udp:host:port``, ``tcp:[::1]:2049``, ...) or an
            :class:`~binrpc.Address`; ``None`` is the default control socket
            (:func:`binrpc._defaults.default_client_address`).
        timeout: a number (connect and read timeout), a :class:`Timeouts`, or ``None`` to wait
            forever like kamcmd. Default: 10 s to connect, 30 s per reply.
        max_reply_size: largest reply accepted (default 64 MiB; kamcmd's is 128 KiB).
        reply_path: unixd only: bind the reply socket exactly here (kamcmd ``-R``).
        reply_dir: unixd only: bind an auto-named reply socket in this directory (kamcmd ``-D``).
            Without either, an abstract-namespace socket is used (nothing on disk).
            A reply socket file is always removed by :meth:`close`.
        udp_default: kamcmd ``-U``: a bare name without ``/`` and port means UDP.
        tls: TLS for a TCP server: ``True`` (a default context: certificates and host name
            verified against the system CAs), an ``ssl.SSLContext`` (your CAs, a client
            certificate for mutual TLS ...), or ``None``: TLS exactly when the address is
            ``tls:host:port``. A ``tcp:`` address with ``tls`` set is used as ``tls:``.
        server_hostname: the name the server certificate must carry (default: the host of
            the address, an IP literal is checked against the certificate's IP addresses).

    The connection opens lazily on the first call (or :meth:`connect`). A stream connection
    the server has closed is re-established before the next request; a request is never sent
    twice once it may have reached the server.

    Example::

        with Client("unixs:/run/kamailio/kamailio_ctl") as c:
            version = c.call_one("core.version")
            for proc in c.call("core.psx"):
                print(proc["PID"], proc["DSC"])
    """

    def __init__(
        self,
        address: str | Address | None = None,
        *,
        timeout: float | Timeouts | None = _DEFAULT_TIMEOUTS,
        max_reply_size: int = DEFAULT_MAX_REPLY_SIZE,
        reply_path: str | None = None,
        reply_dir: str | None = None,
        udp_default: bool = False,
        tls: bool | SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.address: Address = tls_address(resolve_address(address, udp_default=udp_default), tls)
        self.tls = tls
        self.server_hostname = server_hostname
        self._tls_context: SSLContext | None = None
        self.timeouts: Timeouts = Timeouts.of(timeout)
        self.max_reply_size = check_size(max_reply_size, "max_reply_size")
        self.reply_path = reply_path
        self.reply_dir = reply_dir
        self._sock: _socket.socket | None = None
        self._unlink: str | None = None
        self._assembler = ReplyAssembler(max_reply_size)
        # datagrams are received whole here; streams straight into the reply reader
        self._buf = bytearray(0 if self.address.is_stream else DGRAM_RECV_SIZE)
        self._cookie: int | None = None
        self._used = False

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def reply_socket_path(self) -> str | None:
        """The unixd reply socket file currently bound (removed by :meth:`close`)."""
        return self._unlink

    def connect(self) -> None:
        """Open the connection now (otherwise the first call does).

        Raises:
            ResolveError, BindError, ConnectError, TransportTimeout.
        """
        if self._sock is not None:
            return
        if self.address.proto == "tls" and self._tls_context is None:
            from ._tls import client_context

            self._tls_context = client_context(self.tls)
        self._sock, self._unlink = open_socket(
            self.address,
            connect_timeout=self.timeouts.connect,
            reply_path=self.reply_path,
            reply_dir=self.reply_dir,
            tls=self._tls_context,
            server_hostname=self.server_hostname,
        )
        self._assembler = ReplyAssembler(self.max_reply_size)
        self._used = False

    def close(self) -> None:
        """Close the connection and remove a unixd reply socket file. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        path, self._unlink = self._unlink, None
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Client {self.address} {'connected' if self._sock else 'idle'}>"

    # -- calls -------------------------------------------------------------------------------
    def call(self, method: str, *params: Value) -> list[Value]:
        """Call ``method`` and return the reply's top-level values (a list, maybe empty).

        ``core.version`` gives ``["kamailio 5.6.3 ..."]``; ``core.psx`` a list of
        :class:`~binrpc.Struct`; ``core.echo`` as many values as it was given.

        Raises:
            Fault: the server answered with a fault.
            TransportError: connect/send/read failed (ConnectError, ConnectionClosed,
                TransportTimeout, ...).
            RemoteProtocolError: the reply is not valid binrpc, too large, or has another cookie.
            LocalProtocolError: a parameter binrpc cannot carry.
        """
        return self.request(method, params).result()

    def call_one(self, method: str, *params: Value) -> Value | None:
        """Like :meth:`call` for methods that answer with one value: that value, ``None`` for an
        empty reply.

        Raises:
            ValueError: the reply holds more than one value (use :meth:`call`).
            and everything :meth:`call` raises.
        """
        values = self.call(method, *params)
        if len(values) > 1:
            raise ValueError(f"{method} returned {len(values)} values; use call()")
        return values[0] if values else None

    def request(
        self,
        method: str,
        params: tuple[Value, ...] | list[Value] = (),
        *,
        trace: TraceHook | None = None,
    ) -> Reply:
        """Send one request and return the raw :class:`Reply` (a fault is returned, not raised).

        Args:
            trace: called with every chunk read and its offset in the reply.
        """
        self._cookie = cookie = next_cookie(self._cookie)
        packet = build_request(method, params, cookie)
        self._send(packet)
        return self._receive(cookie, trace)

    def pipeline(
        self,
        requests: Iterable[tuple[str, Sequence[Value]]],
        *,
        window: int = 64,
        on_wait: Callable[[], object] | None = None,
        datagram_deadline: float | None = DATAGRAM_REPLY_DEADLINE,
    ) -> Iterator[Reply | BinrpcError]:
        """Send ``(method, params)`` requests ahead of their replies on this connection and
        yield, strictly in the order of ``requests``, each one's raw :class:`Reply` (faults
        included, not raised) or the error that stands for it.

        Up to ``window`` requests are in flight (fewer while replies are big: about 64 KiB of
        replies; 4 at most on unix datagram sockets); replies are matched by cookie, whatever
        order they come in. ``requests`` is consumed lazily, at most two windows ahead of what
        has been yielded. Nothing is raised for a single request: it yields

        * ``LocalProtocolError`` for parameters binrpc cannot carry (nothing sent);
        * a ``TransportError`` (``ConnectError``, ``ConnectionClosed``, ``TransportTimeout``,
          ``SendError``, ``ReceiveError`` ...) or ``RemoteProtocolError`` when the connection
          failed before its reply came. Every request in flight on a failed connection gets
          the transport error (an invalid reply: the oldest gets it, the others
          :class:`~binrpc.client.ReplyLost`); a request is never sent twice once it may have
          reached the server; the requests not yet sent go on a new connection.

        On a datagram socket (UDP, unixd) a request or its reply can be lost: without a read
        timeout (``timeout=None``), a request whose reply has not come ``datagram_deadline``
        seconds after it was sent yields ``TransportTimeout`` (``None``: wait forever); it is
        never sent again. The replies in flight are kept within half the socket's receive
        buffer, so that the kernel does not drop them while the caller is busy.

        Stopping the iteration early (``break``, an exception) closes a stream connection that
        still has replies to come. ``on_wait`` is called each time the pipeline is about to
        wait for the server (``binrpc --batch`` flushes its output there).

        Example::

            with Client(address) as c:
                for reply in c.pipeline(("core.echo", [i]) for i in range(1000)):
                    print(reply.result() if isinstance(reply, Reply) else reply)
        """
        if self.address.proto == "tls":
            return self._one_by_one(requests)
        from ._pipeline import Pipeline  # start-up time of one-shot calls

        return Pipeline(self, requests, window, on_wait, datagram_deadline).results()

    def _one_by_one(
        self, requests: Iterable[tuple[str, Sequence[Value]]]
    ) -> Iterator[Reply | BinrpcError]:
        """TLS connections are not pipelined (yet): one request at a time, same results."""
        from .._errors import BinrpcError

        for method, params in requests:
            try:
                yield self.request(method, list(params))
            except BinrpcError as exc:
                yield exc

    # -- internals ---------------------------------------------------------------------------
    def _stream_is_dead(self, sock: _socket.socket) -> bool:
        """A reused stream connection that the server closed (or that holds stray bytes)."""
        import select  # only a reused connection needs it (start-up time of one-shot calls)

        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        if self.address.proto == "tls":
            return self._tls_is_dead(sock)
        try:
            sock.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True  # EOF, or bytes nobody asked for: start afresh

    @staticmethod
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

    def _send(self, packet: bytes) -> None:
        sock = self._sock
        reused = sock is not None and self.address.is_stream and self._used
        if reused and sock is not None and self._stream_is_dead(sock):
            self.close()
        reconnected = self._sock is None
        self.connect()
        assert self._sock is not None
        try:
            self._sendall(self._sock, packet)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if reconnected or not self.address.is_stream:
                self.close()
                raise transport_error(SEND, str(self.address), exc) from exc
            # the server closed a reused connection between our check and the write
            self.close()
            self.connect()
            assert self._sock is not None
            self._sendall(self._sock, packet)
        self._used = True

    def _sendall(self, sock: _socket.socket, packet: bytes) -> None:
        sock.settimeout(self.timeouts.read)
        try:
            if self.address.is_stream:
                sock.sendall(packet)
            else:
                sock.send(packet)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except OSError as exc:
            self.close()
            raise transport_error(SEND, str(self.address), exc, self.timeouts.read) from exc

    def _receive(self, cookie: int, trace: TraceHook | None) -> Reply:
        sock = self._sock
        assert sock is not None
        assembler = self._assembler
        stream = self.address.is_stream
        if not stream:
            assembler.reset()
        assembler.expect(cookie)
        deadline = _deadline(self.timeouts.read)
        got = 0
        address = self.address
        try:
            while True:
                reply = assembler.next_reply()
                if reply is not None:
                    return reply
                sock.settimeout(_remaining(deadline))
                # streams are read straight into the reply reader's buffer (a big body: into
                # the very bytes object that becomes Reply.body); datagrams whole, then copied
                buf = assembler.buffer() if stream else self._buf
                try:
                    n = sock.recv_into(buf)
                except InterruptedError:  # pragma: no cover - PEP 475 retries already
                    continue
                except OSError as exc:
                    raise transport_error(RECEIVE, str(address), exc, self.timeouts.read) from exc
                if n == 0 and stream:
                    raise closed_error(str(address), got)
                if trace is not None:
                    trace(bytes(buf[:n]), got)
                got += n
                if stream:
                    del buf  # no view may outlive the read (see ReplyReader.buffer)
                    assembler.advance(n)
                else:
                    assembler.feed(memoryview(buf)[:n])
        except BaseException as exc:
            assembler.abandon(cookie)
            if stream or not isinstance(exc, TransportError) or isinstance(exc, ConnectionClosed):
                # the stream's position is unknown now: start afresh on the next call
                self.close()
            raise
