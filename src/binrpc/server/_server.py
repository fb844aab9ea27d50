"""The server object: listeners, connection table, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .._address import Address, AddressError, parse_address
from .._context import ServerInfo
from .._defaults import default_server_address
from .._limits import RpcLimits
from .._registry import MethodTable, Registry
from ..rpcs import builtin_registry
from ._accept import Acceptor, FdShortage
from ._access import (
    TLS_HANDSHAKE_TIMEOUT,
    Listen,
    ListenerPolicy,
    MethodFilter,
    RefusalLog,
    UnixCredsGate,
)
from ._conn import DatagramEndpoint, StreamConnection, binrpc_stream, fifo_stream
from ._dgram import DatagramListenerTransport
from ._fifo_listener import FifoFileReader
from ._options import ServerOptions
from ._sockets import (
    ListenerError,
    OpenedFifo,
    OpenedSocket,
    open_fifo,
    open_socket,
    remove_fifo_file,
    remove_socket_file,
    resolve_ids,
)

__all__ = ["Listen", "Listener", "Server", "serve"]

_NO_POLICY = ListenerPolicy()

log = logging.getLogger("binrpc.server")

_MAX_DGRAM = {"udp4": 65507, "udp6": 65527, "unixd": 65535}
"""Largest reply datagram: IPv4/IPv6 UDP payload limits; ctl's 65535 for unix datagrams."""


@dataclass(eq=False)
class Listener:
    """One listening socket or FIFO file.

    Attributes:
        address: the address as configured (port defaulted/wrapped).
        bound: the address actually bound (same as ``address`` except for resolved hosts).
        payload: ``binrpc`` or ``fifo`` (the FIFO text protocol, on any transport).
        opened: the socket, or the FIFO file's descriptors.
        policy: the access rules (:class:`ListenerPolicy`; empty: everything allowed).
        methods: the methods this listener serves (the server's, minus what ``policy``
            refuses).
    """

    address: Address
    opened: OpenedSocket | OpenedFifo
    payload: str = "binrpc"
    policy: ListenerPolicy = _NO_POLICY
    methods: Any = None
    method_filter: MethodFilter | None = field(default=None, repr=False)
    refusals: RefusalLog | None = field(default=None, repr=False)
    local_host: str = ""
    local_port: str = ""
    server: Acceptor | None = None
    transport: asyncio.BaseTransport | None = None
    endpoint: DatagramEndpoint | None = field(default=None, repr=False)
    reader: FifoFileReader | None = field(default=None, repr=False)

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
        addresses: tuple[str | Listen, ...],
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
        self._fd_shortage = FdShortage()

    # -- start ------------------------------------------------------------------------------
    def _parse_addresses(self) -> list[tuple[Address, str, ListenerPolicy]]:
        """(address, payload, policy) per listener: the binrpc ones, then the fifo ones."""
        specs: list[tuple[str | Listen, str]] = []
        for item in self._addresses:
            fifo = isinstance(item, Listen) and item.fifo
            specs.append((item, "fifo" if fifo else "binrpc"))
        specs += [(item, "fifo") for item in self.options.fifo]
        default = False
        if not specs:
            # the default socket only when neither binrpc nor fifo is configured (spec 7.3)
            specs = [(default_server_address(), "binrpc")]
            default = True
        out: list[tuple[Address, str, ListenerPolicy]] = []
        for item, flavour in specs:
            text = item.address if isinstance(item, Listen) else item
            policy = item.policy if isinstance(item, Listen) else _NO_POLICY
            try:
                address = parse_address(text, "fifo" if flavour == "fifo" else "binrpc")
            except AddressError as exc:
                raise ListenerError(f"bad {flavour} listen address {text!r}: {exc}") from None
            try:
                policy.check(address)
            except ValueError as exc:
                raise ListenerError(str(exc)) from None
            # ``fifo:`` given as a binrpc address makes a FIFO listener in ctl too (which then
            # reports it as "binrpc"); we report what it speaks
            payload = "fifo" if address.proto == "fifo" else flavour
            out.append((address, payload, policy))
        if default and out[0][0].is_unix:
            directory = os.path.dirname(out[0][0].path)
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
        opened: list[tuple[OpenedSocket | OpenedFifo, str, ListenerPolicy]] = []
        try:
            contexts = self._tls_contexts(addresses)
            for address, payload, policy in addresses:
                # one by one, so that a failure closes the ones already open
                item: OpenedSocket | OpenedFifo
                if address.proto == "fifo":
                    item = open_fifo(address, self.options.mode, uid, gid)
                else:
                    item = open_socket(address, self.options.mode, uid, gid)
                opened.append((item, payload, policy))
            for index, (item, payload, policy) in enumerate(opened):
                await self._start_listener(loop, item, payload, policy, contexts.get(index))
        except BaseException:
            self._unwind(opened)
            raise
        self.started = time.time()
        return self

    @staticmethod
    def _tls_contexts(
        addresses: list[tuple[Address, str, ListenerPolicy]],
    ) -> dict[int, Any]:
        """The TLS server contexts of the ``tls:`` listeners, by index (before any socket is
        opened: a bad certificate opens nothing)."""
        contexts: dict[int, Any] = {}
        for index, (address, _payload, policy) in enumerate(addresses):
            if address.proto == "tls":
                try:
                    contexts[index] = policy.server_context()
                except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                    raise ListenerError(f"{address}: cannot load TLS files: {exc}") from None
        return contexts

    async def _start_listener(
        self,
        loop: asyncio.AbstractEventLoop,
        item: OpenedSocket | OpenedFifo,
        payload: str,
        policy: ListenerPolicy,
        tls: Any,
    ) -> None:
        """Start serving one opened socket or FIFO; it joins :attr:`listeners`."""
        listener = Listener(item.address, item, payload, policy)
        listener.refusals = RefusalLog(item.address)
        if policy.filters_methods:
            listener.method_filter = MethodFilter(self.methods, policy)
            listener.methods = listener.method_filter
        else:
            listener.methods = self.methods
        if isinstance(item, OpenedFifo):
            listener.local_host = item.address.path
            listener.reader = FifoFileReader(self, listener, item)
            listener.reader.start(loop)
            self.listeners.append(listener)
            return
        sock = item.sock
        if item.address.is_inet:
            name = sock.getsockname()
            listener.local_host, listener.local_port = str(name[0]), str(name[1])
        else:
            listener.local_host = item.address.path
        if item.address.is_stream:
            listener.server = await self._start_stream(loop, listener, tls)
        else:
            await self._start_datagram(loop, listener)
        self.listeners.append(listener)

    def _unwind(self, opened: list[tuple[OpenedSocket | OpenedFifo, str, ListenerPolicy]]) -> None:
        """A listener failed to start: close every one started and every socket opened."""
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
            if listener.transport is not None:
                listener.transport.close()
            if listener.reader is not None:
                listener.reader.stop_reading()
        for item, _, _ in opened:
            _close_opened(item)
        self.listeners = []

    async def _start_stream(
        self, loop: asyncio.AbstractEventLoop, listener: Listener, tls: Any = None
    ) -> Acceptor:
        kind = fifo_stream if listener.payload == "fifo" else binrpc_stream

        def factory() -> StreamConnection:
            return StreamConnection(self, listener, kind)

        assert isinstance(listener.opened, OpenedSocket)
        return Acceptor(
            loop,
            listener.opened.sock,
            factory,
            self._fd_shortage,
            listener.address,
            ssl=tls,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
        )

    async def _start_datagram(self, loop: asyncio.AbstractEventLoop, listener: Listener) -> None:
        assert isinstance(listener.opened, OpenedSocket)
        sock = listener.opened.sock
        if sock.family == socket.AF_UNIX:
            limit = _MAX_DGRAM["unixd"]
        elif sock.family == socket.AF_INET6:
            limit = _MAX_DGRAM["udp6"]
        else:
            limit = _MAX_DGRAM["udp4"]
        endpoint = DatagramEndpoint(self, listener, limit, fifo=listener.payload == "fifo")
        assert listener.refusals is not None
        gate = None
        if sock.family == socket.AF_UNIX and listener.policy.checks_creds:
            gate = UnixCredsGate(listener.policy, listener.refusals)
        # our own transport on every loop: see _dgram (size limit before decoding, replies to
        # any unix address kind)
        transport = DatagramListenerTransport(
            loop,
            sock,
            endpoint,
            max_request_size=self.options.max_request_size,
            refusals=listener.refusals,
            gate=gate,
        )
        await asyncio.sleep(0)  # connection_made
        listener.transport = transport
        listener.endpoint = endpoint

    # -- the connections' view (ServerContext) and the built-in RPCs' (ServerInfo) -------
    @property
    def info(self) -> ServerInfo:
        return self

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_connection(self, conn: object) -> bool:
        if self.closing or len(self.connections) >= self.options.max_connections:
            return False
        assert isinstance(conn, StreamConnection)
        self.connections[conn] = None
        return True

    def remove_connection(self, conn: object) -> None:
        self.connections.pop(conn, None)  # type: ignore[call-overload]
        self._connection_gone()

    def _connection_gone(self) -> None:
        if self._fd_shortage.waiting:
            # a listener out of descriptors may go on, once the transport has closed the
            # socket (asyncio calls connection_lost first)
            asyncio.get_running_loop().call_soon(self._fd_shortage.descriptor_freed)
        if self._conns_gone is not None and not self.connections:
            self._conns_gone.set()

    def listener_rows(self) -> list[tuple[str, str, str, str]]:
        return [listener.listen_row() for listener in self.listeners]

    def connection_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        return [conn.who_row() for conn in self.connections]

    def connection_count(self) -> int:
        return len(self.connections)

    @property
    def process_name(self) -> str:
        """``options.process_name``, else the program's file name (``sys.argv[0]``)."""
        return self.options.process_name or os.path.basename(sys.argv[0] or "python")

    def request_shutdown(self) -> None:
        """Close the server soon (after the current reply is queued): ``core.kill``."""
        asyncio.get_running_loop().call_soon(self.close)

    @property
    def addresses(self) -> list[Address]:
        """The addresses listened on, in configuration order."""
        return [listener.address for listener in self.listeners]

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (FIFO files have none)."""
        return [
            listener.opened.sock
            for listener in self.listeners
            if isinstance(listener.opened, OpenedSocket)
        ]

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
            if listener.reader is not None:
                listener.reader.stop_reading()
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
                        conn.abort()
            for listener in self.listeners:
                if listener.transport is not None:
                    listener.transport.close()
                if listener.server is not None:
                    with contextlib.suppress(Exception):
                        await listener.server.wait_closed()
        finally:
            for listener in self.listeners:
                if listener.reader is not None:
                    listener.reader.close()
                    assert isinstance(listener.opened, OpenedFifo)
                    remove_fifo_file(listener.opened)
                else:
                    _close_opened(listener.opened)
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


def _close_opened(item: OpenedSocket | OpenedFifo) -> None:
    """Close a socket / FIFO opened at start-up and remove its file if it is still ours."""
    if isinstance(item, OpenedFifo):
        for fd in (item.rfd, item.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        remove_fifo_file(item)
    else:
        item.sock.close()
        remove_socket_file(item)


def serve(
    registry: Registry | None,
    *addresses: str | Listen,
    options: ServerOptions | None = None,
    **changes: Any,
) -> Server:
    """Create a server for ``registry`` on ``addresses`` (``binrpc`` parameter syntax, spec
    7.2, plus ``tcp:[::1]:2046``) and on the FIFO-protocol listeners of the ``fifo`` option
    (``fifo=["/tmp/ser_fifo", "udp:*:2050"]``, ``fifo`` parameter syntax). With neither: the
    default control socket (:func:`binrpc._defaults.default_server_address`).

    An address may be a :class:`Listen` with access rules (peer uids/gids, client networks,
    method allow/deny lists, TLS for ``tls:host:port``); a string has none (the ctl
    behaviour). ``fifo`` accepts :class:`Listen` items too.

    ``options`` and/or keyword arguments (the :class:`ServerOptions` field names) set limits.
    Nothing is opened until the server is started: ``async with serve(...) as srv`` or
    ``srv = await serve(...)``.
    """
    opts = options if options is not None else ServerOptions()
    if changes:
        opts = opts.with_changes(**changes)
    return Server(registry, tuple(addresses), opts)
