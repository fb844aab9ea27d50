"""The asyncio client: :class:`AsyncClient`, pipelining concurrent calls on one connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

from .._address import Address
from .._errors import BinrpcError, ConnectError, TransportError
from .._values import Value
from ._core import (
    DEFAULT_MAX_REPLY_SIZE,
    Reply,
    ReplyAssembler,
    Timeouts,
    build_request,
    next_cookie,
    resolve_address,
)
from ._errors import ReceiveError, closed_error, os_error, timeout_error
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

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._feed(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            err = os_error(
                ReceiveError, "cannot read the reply from", str(self.client.address), exc
            )
            self._fail(err, close=False)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiting:
            got = self.assembler.buffered
            if exc is not None and isinstance(exc, OSError):
                err: BaseException = os_error(
                    ReceiveError, "cannot read the reply from", str(self.client.address), exc
                )
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
        assert self.transport is not None
        if self.stream:
            self.transport.write(packet)  # type: ignore[attr-defined]
        else:
            self.transport.sendto(packet)  # type: ignore[attr-defined]


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
        self.max_reply_size = max_reply_size
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
            raw, unlink = await loop.run_in_executor(
                None,
                lambda: open_socket(
                    self.address,
                    connect_timeout=self.timeouts.connect,
                    reply_path=self.reply_path,
                    reply_dir=self.reply_dir,
                ),
            )
            # open_socket gives the C-level _socket.socket (see _sync); asyncio's transports
            # take socket.socket objects: wrap the same file descriptor
            sock = socket.socket(fileno=raw.detach())
            sock.setblocking(False)
            stream = self.address.is_stream
            new = _Connection(self, stream)
            try:
                if self.address.proto == "tls":
                    from ._tls import client_context, handshake_error

                    try:
                        await loop.create_connection(
                            lambda: new,
                            sock=sock,
                            ssl=client_context(self.tls),
                            server_hostname=self.server_hostname or self.address.host,
                            ssl_handshake_timeout=self.timeouts.connect,
                        )
                    except (OSError, TimeoutError) as exc:
                        raise ConnectError(
                            0, f"TLS handshake with {self.address} failed: {handshake_error(exc)}"
                        ) from exc
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
            raise os_error(TransportError, "cannot send to", str(self.address), exc) from exc
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
