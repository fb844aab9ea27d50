"""The asyncio client: :class:`AsyncClient`, a shell over :class:`ClientConnection` that
pipelines concurrent calls on one connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import _socket
    from collections.abc import AsyncGenerator, Callable, Iterable, Sequence

    _socket_t = _socket.socket

from .._errors import BinrpcError
from .._values import Value
from ._config import ClientConfig, Configured
from ._core import (
    DATAGRAM_REPLY_DEADLINE,
    Reply,
    check_seconds,
)
from ._errors import RECEIVE, SEND, closed_error, timeout_error, transport_error
from ._link import open_socket
from ._protocol import ClientConnection
from ._sync import TraceHook

__all__ = ["AsyncClient"]


_UNIXD_WINDOW = 4
"""Requests in flight at most on unix datagram sockets (as ``Client.pipeline``)."""


class _Transport(asyncio.Protocol, asyncio.DatagramProtocol):
    """One open transport: writes requests, hands received bytes to the client's
    :class:`ClientConnection` and its replies to the waiting futures by cookie."""

    def __init__(self, client: AsyncClient, stream: bool) -> None:
        self.client = client
        self.conn = client.connection
        self.stream = stream
        self.transport: asyncio.BaseTransport | None = None
        self.waiting: dict[int, asyncio.Future[Reply]] = {}
        self.traces: dict[int, list[object]] = {}  # cookie -> [hook, offset]
        self.lost = False
        self.error: BaseException | None = None
        self.sending = False  # inside transport.write()/sendto(): an error is the send's
        self.send_error: OSError | None = None  # the error reported during that call
        self.unsent = False  # stream: request bytes wait in the transport's buffer

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.stream:
            # pause_writing() as soon as a byte waits in the buffer, resume_writing() once it
            # is empty: a connection lost in between failed while sending (SendError)
            transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.unsent = True

    def resume_writing(self) -> None:
        self.unsent = False

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._feed(data)

    def error_received(self, exc: Exception) -> None:
        if not isinstance(exc, OSError):
            return
        if self.sending:  # asyncio reports a failed sendto() here: send() raises it
            self.send_error = exc
            return
        self._fail(self.client._error(RECEIVE, exc), close=False)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiting:
            got = self.conn.buffered if self.current else 0
            if exc is not None and isinstance(exc, OSError):
                err: BinrpcError = self.client._error(SEND if self.unsent else RECEIVE, exc)
            else:
                err = closed_error(str(self.client.address), got)
            self._fail(err, close=False)
        if self.client._conn is self:
            self.client._conn = None
            self.client._cleanup_reply_socket()

    # -- internals ---------------------------------------------------------------------
    @property
    def current(self) -> bool:
        """The client's connection state is this transport's (not yet replaced)."""
        return self.client._conn is self

    def _feed(self, data: bytes) -> None:
        if self.traces:
            for trace in self.traces.values():
                hook, offset = trace
                hook(data, offset)  # type: ignore[operator]
                trace[1] = offset + len(data)  # type: ignore[operator]
        if not self.current:  # pragma: no cover - asyncio stops reading a closed transport
            return
        conn = self.conn
        conn.receive_data(data)
        waiting = self.waiting
        while True:
            try:
                reply = conn.next_reply()
            except BinrpcError as exc:
                self._fail(exc, close=self.stream)
                if not self.stream:
                    conn.discard_buffered()
                return
            if reply is None:
                return
            fut = waiting.pop(reply.cookie, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    def _fail(self, exc: BinrpcError, *, close: bool) -> None:
        """Every request waiting on this transport gets its error (the rule of
        :meth:`ClientConnection.fail`)."""
        self.error = exc
        waiting, self.waiting = self.waiting, {}
        # once the client's state belongs to a new transport, this one's get the error as is
        errors = self.conn.fail(exc) if self.current else [(c, exc) for c in waiting]
        for cookie, err in errors:
            fut = waiting.pop(cookie, None)
            if fut is not None and not fut.done():
                fut.set_exception(err)
        for fut in waiting.values():  # pragma: no cover - every waiter is in flight
            if not fut.done():
                fut.set_exception(exc)
        if close and self.transport is not None:
            self.transport.close()

    def send(self, packet: bytes) -> None:
        """Write ``packet``.

        Raises:
            OSError: the datagram could not be sent (a stream reports its write errors
                through ``connection_lost``).
        """
        transport = self.transport
        assert transport is not None
        if self.stream:
            transport.write(packet)  # type: ignore[attr-defined]
            return
        self.sending = True
        try:
            transport.sendto(packet)  # type: ignore[attr-defined]
        finally:
            self.sending = False
        exc, self.send_error = self.send_error, None
        if exc is not None:
            raise exc


def _discard(opened: tuple[object, str | None]) -> None:
    """Close a socket that ``open_socket`` returned to nobody, and remove its reply file."""
    sock, unlink = opened
    sock.close()  # type: ignore[attr-defined]
    if unlink:
        with contextlib.suppress(OSError):
            os.unlink(unlink)


class _Opening:
    """``open_socket`` run in a worker thread, which a cancelled ``connect`` cannot stop: the
    socket it opens after the caller has gone is closed by whichever side comes last (the
    thread, or :meth:`abandon`), under one lock, whatever the event loop does meanwhile."""

    def __init__(self, open_: Callable[[], tuple[_socket_t, str | None]]) -> None:
        self._open = open_
        self._lock = threading.Lock()
        self._abandoned = False
        self._result: tuple[_socket_t, str | None] | None = None

    def run(self) -> tuple[_socket_t, str | None]:
        """In the worker thread."""
        result = self._open()
        with self._lock:
            if not self._abandoned:
                self._result = result
                return result
        _discard(result)
        return result

    def abandon(self) -> None:
        """In the loop, when the awaiting call was cancelled."""
        with self._lock:
            self._abandoned = True
            result, self._result = self._result, None
        if result is not None:
            _discard(result)


class AsyncClient(Configured):
    """An asyncio binrpc client. Concurrent calls share one connection (pipelined): every
    request gets its own cookie and replies are matched by cookie, in whatever order they come.

    Arguments and results are those of :class:`~binrpc.client.Client` (``call`` returns the list
    of values, ``call_one`` the single value, ``request`` the raw :class:`Reply`); use it as
    ``async with AsyncClient(addr) as c: await c.call("core.version")``.

    A stream connection closed by the server is re-opened by the next call; the calls that were
    waiting on it fail with :class:`~binrpc.ConnectionClosed`.
    """

    def _setup(self, config: ClientConfig) -> None:
        self.config = config
        self.connection = ClientConnection(
            str(config.address), max_reply_size=config.max_reply_size
        )
        """The sans-I/O state: cookies, requests in flight, replies."""
        self._conn: _Transport | None = None
        self._connecting: asyncio.Lock | None = None
        self._unlink: str | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.address} {'connected' if self._conn else 'idle'}>"

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.lost

    def _error(self, step: str, exc: OSError, timeout: float | None = None) -> BinrpcError:
        """``exc`` raised at ``step`` as the exception every client raises for it."""
        return transport_error(step, str(self.address), exc, timeout)

    async def connect(self) -> None:
        """Open the connection now (otherwise the first call does)."""
        await self._connection()

    async def close(self) -> None:
        """Close the connection (pending calls fail) and remove a unixd reply socket file."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            await asyncio.sleep(0)
        self._cleanup_reply_socket()

    def _cleanup_reply_socket(self) -> None:
        path, self._unlink = self._unlink, None
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _connection(self) -> _Transport:
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            conn = self._conn
            if conn is not None and not conn.lost:
                return conn
            loop = asyncio.get_running_loop()
            # connecting is quick and local in practice; reuse the blocking code in a thread
            # so that resolution, IPv6 fallbacks, unixd binding and the errors are identical
            opening = _Opening(
                lambda: open_socket(
                    self.address,
                    connect_timeout=self.timeouts.connect,
                    reply_path=self.reply_path,
                    reply_dir=self.reply_dir,
                )
            )
            try:
                raw, unlink = await loop.run_in_executor(None, opening.run)
            except asyncio.CancelledError:
                opening.abandon()  # the thread may still be connecting: it closes its socket
                raise
            # open_socket gives the C-level _socket.socket (see _sync); asyncio's transports
            # take socket.socket objects: wrap the same file descriptor
            sock = socket.socket(fileno=raw.detach())
            sock.setblocking(False)
            stream = self.address.is_stream
            new = _Transport(self, stream)
            try:
                if self.address.proto == "tls":
                    await self._tls_handshake(loop, new, sock)
                elif stream:
                    await loop.create_connection(lambda: new, sock=sock)
                else:
                    await loop.create_datagram_endpoint(lambda: new, sock=sock)
            except BaseException:
                sock.close()
                if unlink:
                    with contextlib.suppress(OSError):
                        os.unlink(unlink)
                raise
            self._cleanup_reply_socket()
            self._unlink = unlink
            self.connection.start()  # a new transport: nothing buffered or in flight
            self._conn = new
            return new

    async def _tls_handshake(
        self, loop: asyncio.AbstractEventLoop, conn: _Transport, sock: socket.socket
    ) -> None:
        """The TLS handshake on ``sock``, within the connect timeout (as ``Client``'s)."""
        from ._tls import client_context, handshake_failure

        timeout = self.timeouts.connect
        try:
            # our own deadline: asyncio's ssl_handshake_timeout ends in ConnectionAbortedError,
            # not in a timeout; its own is set beyond ours (None: practically never)
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    sock=sock,
                    ssl=client_context(self.tls),
                    server_hostname=self.server_hostname or self.address.host,
                    ssl_handshake_timeout=2 * timeout + 1 if timeout is not None else 1 << 31,
                ),
                timeout,
            )
        except (OSError, ValueError) as exc:  # TimeoutError is an OSError
            raise handshake_failure(str(self.address), exc, timeout) from exc

    async def request(
        self,
        method: str,
        params: tuple[Value, ...] | list[Value] = (),
        *,
        trace: TraceHook | None = None,
    ) -> Reply:
        """Send one request and return its raw :class:`Reply` (faults are returned).

        Args:
            trace: called with every chunk received while the request waits, and its offset
                (as ``Client.request``'s; chunks of concurrent replies included).

        Raises:
            what ``Client.request`` raises, for the same failures.
        """
        return await self._request(method, params, self.timeouts.read, trace)

    async def _request(
        self,
        method: str,
        params: Sequence[Value],
        timeout: float | None,
        trace: TraceHook | None,
    ) -> Reply:
        state = self.connection
        cookie = state.new_cookie()
        packet = state.encode(method, params, cookie)  # before connecting: argument errors
        conn = await self._connection()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        state.sent(cookie)
        conn.waiting[cookie] = fut
        if trace is not None:
            conn.traces[cookie] = [trace, 0]
        try:
            try:
                conn.send(packet)
            except OSError as exc:
                conn.waiting.pop(cookie, None)
                state.forget(cookie)
                raise self._error(SEND, exc) from exc
            try:
                if timeout is None:
                    return await fut
                return await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError:
                self._abandon(conn, cookie)
                raise timeout_error(
                    "waiting for the reply from", str(self.address), timeout
                ) from None
            except asyncio.CancelledError:
                self._abandon(conn, cookie)
                raise
        finally:
            conn.traces.pop(cookie, None)

    def _abandon(self, conn: _Transport, cookie: int) -> None:
        conn.waiting.pop(cookie, None)
        if conn.current:
            self.connection.abandon(cookie)

    async def call(self, method: str, *params: Value) -> list[Value]:
        """Call ``method``; the reply's top-level values (see ``Client.call``)."""
        reply = await self.request(method, params)
        return reply.result()

    async def call_one(self, method: str, *params: Value) -> Value | None:
        """The single value of a one-value reply, ``None`` when empty (see ``Client.call_one``)."""
        values = await self.call(method, *params)
        if len(values) > 1:
            raise ValueError(f"{method} returned {len(values)} values; use call()")
        return values[0] if values else None

    async def pipeline(
        self,
        requests: Iterable[tuple[str, Sequence[Value]]],
        *,
        window: int = 64,
        datagram_deadline: float | None = DATAGRAM_REPLY_DEADLINE,
    ) -> AsyncGenerator[Reply | BinrpcError, None]:
        """``Client.pipeline`` for asyncio: up to ``window`` requests in flight (4 on unix
        datagram sockets), and each one's raw :class:`Reply` or the error that stands for it
        yielded strictly in the order of ``requests`` (the same errors as ``Client.pipeline``:
        nothing is raised for a single request but ``TypeError`` for a malformed one).

        Without a read timeout, a request on a datagram socket has ``datagram_deadline``
        seconds for its reply (``None``: wait forever). Stopping the iteration early cancels
        the requests still in flight (their late replies are dropped).

        Example::

            async for reply in client.pipeline(("core.echo", [i]) for i in range(1000)):
                print(reply.result() if isinstance(reply, Reply) else reply)
        """
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        if self.address.proto == "unixd":
            window = min(window, _UNIXD_WINDOW)
        timeout = self.timeouts.read
        if timeout is None and not self.address.is_stream:
            # a lost datagram must not make the pipeline wait forever
            timeout = check_seconds(datagram_deadline, "datagram_deadline")
        pending: deque[asyncio.Task[Reply | BinrpcError]] = deque()
        try:
            for method, params in requests:
                pending.append(asyncio.ensure_future(self._result(method, params, timeout)))
                if len(pending) >= window:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for task in pending:
                task.cancel()

    async def _result(
        self, method: str, params: Sequence[Value], timeout: float | None
    ) -> Reply | BinrpcError:
        """The reply, or the error that stands for it (a pipeline's result)."""
        try:
            return await self._request(method, params, timeout, None)
        except BinrpcError as exc:
            return exc
