"""The server object: listeners, connection table, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .._address import Address, AddressError, parse_address
from .._defaults import default_server_address
from .._framing import StreamFramer
from .._rpc import MethodTable, Registry, RpcLimits
from ..rpcs import builtin_registry
from ._conn import DatagramEndpoint, StreamConnection
from ._options import ServerOptions
from ._sockets import ListenerError, OpenedSocket, open_socket, remove_socket_file, resolve_ids

__all__ = ["Listener", "Server", "serve"]

log = logging.getLogger("binrpc.server")

_MAX_DGRAM = {"udp4": 65507, "udp6": 65527, "unixd": 65535}
"""Largest reply datagram: IPv4/IPv6 UDP payload limits; ctl's 65535 for unix datagrams."""


@dataclass(eq=False)
class Listener:
    """One listening socket.

    Attributes:
        address: the address as configured (port defaulted/wrapped).
        bound: the address actually bound (same as ``address`` except for resolved hosts).
        payload: ``binrpc`` (``fifo`` later).
    """

    address: Address
    opened: OpenedSocket
    payload: str = "binrpc"
    local_host: str = ""
    local_port: str = ""
    server: asyncio.AbstractServer | None = None
    transport: asyncio.BaseTransport | None = None
    endpoint: DatagramEndpoint | None = field(default=None, repr=False)

    @property
    def bound(self) -> Address:
        return self.address

    def listen_row(self) -> tuple[str, str, str, str]:
        a = self.address
        if a.is_unix:
            return (self.payload, a.transport_name, a.path, "")
        return (self.payload, a.transport_name, a.display_host, str(a.port))


class Server:
    """A running binrpc (ctl) server. Create it with :func:`serve`.

    Use as ``async with serve(registry, "unixs:/tmp/x.sock") as srv: ...`` or call
    :meth:`start` yourself, then :meth:`serve_forever` or :meth:`close` +
    :meth:`wait_closed`.
    """

    def __init__(
        self,
        registry: Registry | None,
        addresses: tuple[str, ...],
        options: ServerOptions,
    ) -> None:
        self.options = options
        self.registry = registry if registry is not None else Registry()
        tables: list[MethodTable] = [self.registry]
        if options.builtins:
            tables.append(builtin_registry())
        self.methods: MethodTable = Registry.chain(*tables) if len(tables) > 1 else tables[0]
        self.limits: RpcLimits = options.limits()
        self._addresses = addresses
        self.listeners: list[Listener] = []
        self.connections: dict[StreamConnection, None] = {}
        self.started = time.time()
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed_event: asyncio.Event | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._conns_gone: asyncio.Event | None = None

    # -- start ------------------------------------------------------------------------------
    def _parse_addresses(self) -> list[Address]:
        if self.options.fifo:
            raise ListenerError(
                f"fifo listener {self.options.fifo[0]!r}: the FIFO protocol is not yet supported"
            )
        texts = list(self._addresses)
        default = False
        if not texts:
            texts = [default_server_address()]
            default = True
        out: list[Address] = []
        for text in texts:
            try:
                address = parse_address(text, "binrpc")
            except AddressError as exc:
                raise ListenerError(f"bad listen address {text!r}: {exc}") from None
            if address.proto == "fifo":
                raise ListenerError(f"listener {text!r}: the FIFO protocol is not yet supported")
            out.append(address)
        if default and out[0].is_unix:
            directory = os.path.dirname(out[0].path)
            if directory:
                with contextlib.suppress(OSError):
                    os.makedirs(directory, mode=0o700, exist_ok=True)
        return out

    async def start(self) -> Server:
        """Open every listener (all or nothing).

        Raises:
            ListenerError: a bad address, a busy port or path, a path that is not a socket,
                a chmod/chown failure ... (the message names the address).
        """
        if self.listeners:
            return self
        loop = asyncio.get_running_loop()
        self._closed_event = asyncio.Event()
        addresses = self._parse_addresses()
        uid, gid = resolve_ids(self.options.user, self.options.group)
        opened: list[OpenedSocket] = []
        try:
            for address in addresses:
                # one by one, so that a failure closes the ones already open
                opened.append(open_socket(address, self.options.mode, uid, gid))  # noqa: PERF401
            for item in opened:
                listener = Listener(item.address, item)
                sock = item.sock
                if item.address.proto in ("tcp", "udp"):
                    name = sock.getsockname()
                    listener.local_host, listener.local_port = str(name[0]), str(name[1])
                else:
                    listener.local_host = item.address.path
                if item.address.is_stream:
                    listener.server = await self._start_stream(loop, listener)
                else:
                    await self._start_datagram(loop, listener)
                self.listeners.append(listener)
        except BaseException:
            for listener in self.listeners:
                if listener.server is not None:
                    listener.server.close()
                if listener.transport is not None:
                    listener.transport.close()
            for item in opened:
                item.sock.close()
                remove_socket_file(item)
            self.listeners = []
            raise
        self.started = time.time()
        return self

    async def _start_stream(
        self, loop: asyncio.AbstractEventLoop, listener: Listener
    ) -> asyncio.AbstractServer:
        def factory() -> StreamConnection:
            return StreamConnection(self, listener)

        sock = listener.opened.sock
        if sock.family == socket.AF_UNIX:
            return await loop.create_unix_server(factory, sock=sock, backlog=128)
        return await loop.create_server(factory, sock=sock, backlog=128)

    async def _start_datagram(self, loop: asyncio.AbstractEventLoop, listener: Listener) -> None:
        sock = listener.opened.sock
        if sock.family == socket.AF_UNIX:
            limit = _MAX_DGRAM["unixd"]
        elif sock.family == socket.AF_INET6:
            limit = _MAX_DGRAM["udp6"]
        else:
            limit = _MAX_DGRAM["udp4"]
        endpoint = DatagramEndpoint(self, listener, limit)
        transport, _ = await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
        listener.transport = transport
        listener.endpoint = endpoint

    # -- used by the protocols and the built-in RPCs ---------------------------------------
    def new_framer(self) -> StreamFramer:
        return StreamFramer(self.options.max_request_size)

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection_gone(self) -> None:
        if self._conns_gone is not None and not self.connections:
            self._conns_gone.set()

    def listener_rows(self) -> list[tuple[str, str, str, str]]:
        return [listener.listen_row() for listener in self.listeners]

    def connection_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        return [conn.who_row() for conn in self.connections]

    def connection_count(self) -> int:
        return len(self.connections)

    def request_shutdown(self) -> None:
        """Close the server soon (after the current reply is queued): ``core.kill``."""
        asyncio.get_running_loop().call_soon(self.close)

    @property
    def addresses(self) -> list[Address]:
        """The addresses listened on, in configuration order."""
        return [listener.address for listener in self.listeners]

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets."""
        return [listener.opened.sock for listener in self.listeners]

    # -- stop -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting and reading requests; pending replies are still written and running
        async handlers get ``shutdown_timeout`` seconds to finish. Then listeners are closed
        and socket files removed. Idempotent; :meth:`wait_closed` waits for the end."""
        if self.closing:
            return
        self.closing = True
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
        for conn in list(self.connections):
            conn.shutdown()
        self._close_task = asyncio.ensure_future(self._finish_close())

    async def _finish_close(self) -> None:
        try:
            if self._tasks:
                _done, pending = await asyncio.wait(
                    set(self._tasks), timeout=self.options.shutdown_timeout
                )
                for task in pending:
                    task.cancel()
            # streams close themselves once their replies are flushed
            if self.connections:
                self._conns_gone = asyncio.Event()
                try:
                    await asyncio.wait_for(
                        self._conns_gone.wait(), timeout=self.options.shutdown_timeout
                    )
                except TimeoutError:
                    for conn in list(self.connections):
                        conn._abort()
            for listener in self.listeners:
                if listener.transport is not None:
                    listener.transport.close()
                if listener.server is not None:
                    with contextlib.suppress(Exception):
                        await listener.server.wait_closed()
        finally:
            for listener in self.listeners:
                listener.opened.sock.close()
                remove_socket_file(listener.opened)
            if self._closed_event is not None:
                self._closed_event.set()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        if self._closed_event is None:
            return
        await self._closed_event.wait()

    async def serve_forever(self) -> None:
        """Run until :meth:`close` is called (or ``core.kill``), then wait for the end."""
        if not self.listeners:
            await self.start()
        await self.wait_closed()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    def __await__(self) -> Any:
        return self.start().__await__()

    def __repr__(self) -> str:
        return f"<Server {[str(a) for a in self.addresses]}>"


def serve(
    registry: Registry | None,
    *addresses: str,
    options: ServerOptions | None = None,
    **changes: Any,
) -> Server:
    """Create a server for ``registry`` on ``addresses`` (``binrpc`` parameter syntax, spec
    7.2, plus ``tcp:[::1]:2046``). With no address: the default control socket
    (:func:`binrpc._defaults.default_server_address`).

    ``options`` and/or keyword arguments (the :class:`ServerOptions` field names) set limits.
    Nothing is opened until the server is started: ``async with serve(...) as srv`` or
    ``srv = await serve(...)``.
    """
    opts = options if options is not None else ServerOptions()
    if changes:
        opts = opts.with_changes(**changes)
    return Server(registry, tuple(addresses), opts)
