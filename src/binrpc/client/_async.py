"""The asyncio client: :class:`AsyncClient`, pipelining concurrent calls on one connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import _socket
    import ssl
    from collections.abc import Callable

    _socket_t = _socket.socket

from .._address import Address
from .._errors import BinrpcError
from .._values import Value
from ._core import (
    DEFAULT_MAX_REPLY_SIZE,
    Reply,
    ReplyAssembler,
    Timeouts,
    build_request,
    check_size,
    next_cookie,
    resolve_address,
)
from ._errors import RECEIVE, SEND, closed_error, timeout_error, transport_error
from ._sync import open_socket, tls_address

__all__ = ["AsyncClient"]

_DEFAULT_TIMEOUTS = Timeouts()


class _Connection(asyncio.Protocol, asyncio.DatagramProtocol):
    """One open connection: writes requests, feeds replies to the waiting futures by cookie."""

    def __init__(self, client: AsyncClient, stream: bool) -> None:
        self.client = client
        self.stream = stream
        self.transport: asyncio.BaseTransport | None = None
        self.assembler = ReplyAssembler(client.max_reply_size)
        self.waiting: dict[int, asyncio.Future[Reply]] = {}
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
            got = self.assembler.buffered
            if exc is not None and isinstance(exc, OSError):
                err: BaseException = self.client._error(SEND if self.unsent else RECEIVE, exc)
            else:
                err = closed_error(str(self.client.address), got)
            self._fail(err, close=False)
        if self.client._conn is self:
            self.client._conn = None
            self.client._cleanup_reply_socket()

    # -- internals ---------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self.assembler.feed(data)
        while True:
            try:
                reply = self.assembler.next_reply()
            except BinrpcError as exc:
                self._fail(exc, close=self.stream)
                if not self.stream:
                    self.assembler.reset()
                return
            if reply is None:
                return
            fut = self.waiting.pop(reply.cookie, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    def _fail(self, exc: BaseException, *, close: bool) -> None:
        self.error = exc
        waiting, self.waiting = self.waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(exc)
        for cookie in waiting:
            self.assembler.abandon(cookie)
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


class AsyncClient:
    """An asyncio binrpc client. Concurrent calls share one connection (pipelined): every
    request gets its own cookie and replies are matched by cookie, in whatever order they come.

    Arguments and results are those of :class:`~binrpc.client.Client` (``call`` returns the list
    of values, ``call_one`` the single value, ``request`` the raw :class:`Reply`); use it as
    ``async with AsyncClient(addr) as c: await c.call("core.version")``.

    A stream connection closed by the server is re-opened by the next call; the calls that were
    waiting on it fail with :class:`~binrpc.ConnectionClosed`.
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
        tls: bool | ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.address: Address = tls_address(resolve_address(address, udp_default=udp_default), tls)
        self.tls = tls
        self.server_hostname = server_hostname
        self.timeouts: Timeouts = Timeouts.of(timeout)
        self.max_reply_size = check_size(max_reply_size, "max_reply_size")
        self.reply_path = reply_path
        self.reply_dir = reply_dir
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._unlink: str | None = None
        self._cookie: int | None = None

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

    async def _connection(self) -> _Connection:
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
            new = _Connection(self, stream)
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
            self._conn = new
            return new

    async def _tls_handshake(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, sock: socket.socket
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

    async def request(self, method: str, params: tuple[Value, ...] | list[Value] = ()) -> Reply:
        """Send one request and return its raw :class:`Reply` (faults are returned)."""
        self._cookie = cookie = next_cookie(self._cookie)
        packet = build_request(method, params, cookie)
        conn = await self._connection()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        conn.assembler.expect(cookie)
        conn.waiting[cookie] = fut
        try:
            conn.send(packet)
        except OSError as exc:
            conn.waiting.pop(cookie, None)
            conn.assembler.forget(cookie)
            raise self._error(SEND, exc) from exc
        try:
            if self.timeouts.read is None:
                return await fut
            return await asyncio.wait_for(asyncio.shield(fut), self.timeouts.read)
        except TimeoutError:
            conn.waiting.pop(cookie, None)
            conn.assembler.abandon(cookie)
            raise timeout_error(
                "waiting for the reply from", str(self.address), self.timeouts.read
            ) from None
        except asyncio.CancelledError:
            conn.waiting.pop(cookie, None)
            conn.assembler.abandon(cookie)
            raise

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
