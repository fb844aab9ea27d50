"""The blocking client: :class:`Client`, a shell over :class:`ClientConnection` on a plain
socket (no asyncio import)."""

from __future__ import annotations

import time

from .._errors import ConnectionClosed, TransportError
from ._config import ClientConfig, Configured
from ._core import DATAGRAM_REPLY_DEADLINE, Reply
from ._errors import RECEIVE, SEND, closed_error, transport_error
from ._link import Link
from ._protocol import ClientConnection

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from types import TracebackType
    from typing import TypeAlias

    from .._errors import BinrpcError
    from .._values import Value

    TraceHook: TypeAlias = Callable[[bytes, int], None]
    """Called with every chunk read from the socket and the reply offset it starts at
    (``binrpc -vvv`` prints kamcmd's hex dumps with it)."""
else:
    # the precise alias is for type checkers; importing collections.abc costs start-up time
    TraceHook = object

__all__ = ["Client", "TraceHook"]


def _deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class Client(Configured):
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

    def _setup(self, config: ClientConfig) -> None:
        self.config = config
        self.connection = ClientConnection(
            str(config.address), max_reply_size=config.max_reply_size
        )
        """The sans-I/O state (cookies, replies in flight), shared with :meth:`pipeline`."""
        self.link = Link(config, self.connection)
        """The socket, shared with :meth:`pipeline`."""

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.link.sock is not None

    @property
    def reply_socket_path(self) -> str | None:
        """The unixd reply socket file currently bound (removed by :meth:`close`)."""
        return self.link.reply_socket_path

    def connect(self) -> None:
        """Open the connection now (otherwise the first call does).

        Raises:
            ResolveError, BindError, ConnectError, TransportTimeout.
        """
        self.link.open()

    def close(self) -> None:
        """Close the connection and remove a unixd reply socket file. Idempotent."""
        link = self.__dict__.get("link")  # absent if __init__ raised
        if link is not None:
            link.close()

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
        return f"<Client {self.address} {'connected' if self.connected else 'idle'}>"

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
        conn = self.connection
        cookie = conn.new_cookie()
        packet = conn.encode(method, params, cookie)
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
        from ._pipeline import open_pipeline  # start-up time of one-shot calls

        return open_pipeline(self, requests, window, on_wait, datagram_deadline).results()

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
    def _send(self, packet: bytes) -> None:
        link = self.link
        link.stale()  # a reused stream the server closed: closed, reopened below
        reconnected = link.sock is None
        sock = link.open()
        stream = self.config.address.is_stream
        try:
            self._sendall(sock, packet)
        except (BrokenPipeError, ConnectionResetError) as exc:
            link.close()
            if reconnected or not stream:
                raise transport_error(SEND, str(self.address), exc) from exc
            # the server closed a reused connection between our check and the write
            self._sendall(link.open(), packet)
        link.used = True

    def _sendall(self, sock: _socket.socket, packet: bytes) -> None:
        timeout = self.config.timeouts.read
        sock.settimeout(timeout)
        try:
            if self.config.address.is_stream:
                sock.sendall(packet)
            else:
                sock.send(packet)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except OSError as exc:
            self.link.close()
            raise transport_error(SEND, str(self.address), exc, timeout) from exc

    def _receive(self, cookie: int, trace: TraceHook | None) -> Reply:
        link = self.link
        sock = link.sock
        assert sock is not None
        conn = self.connection
        stream = self.config.address.is_stream
        if not stream:
            conn.discard_buffered()  # each call: drop a partial stray datagram
        conn.sent(cookie)
        timeout = self.config.timeouts.read
        deadline = _deadline(timeout)
        got = 0
        address = str(self.address)
        try:
            while True:
                reply = conn.next_reply()
                if reply is not None:
                    return reply
                sock.settimeout(_remaining(deadline))
                # streams are read straight into the connection's buffer (a big body: into
                # the very bytes object that becomes Reply.body); datagrams whole, then copied
                buf = conn.buffer() if stream else link.dgram
                try:
                    n = sock.recv_into(buf)
                except InterruptedError:  # pragma: no cover - PEP 475 retries already
                    continue
                except OSError as exc:
                    raise transport_error(RECEIVE, address, exc, timeout) from exc
                if n == 0 and stream:
                    raise closed_error(address, got)
                if trace is not None:
                    trace(bytes(buf[:n]), got)
                got += n
                if stream:
                    del buf  # no view may outlive the read (see ClientConnection.buffer)
                    conn.advance(n)
                else:
                    conn.receive_data(memoryview(buf)[:n])
        except BaseException as exc:
            conn.abandon(cookie)
            if stream or not isinstance(exc, TransportError) or isinstance(exc, ConnectionClosed):
                # the stream's position is unknown now: start afresh on the next call
                link.close()
            raise
