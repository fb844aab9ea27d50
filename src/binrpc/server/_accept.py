"""Accepting stream connections: our own accept loop, the same on every event loop.

Instead of ``loop.create_server``/``create_unix_server``, whose accept paths misbehave when
the process runs out of file descriptors: asyncio's logs a traceback per failed ``accept()``
and schedules a retry for each (thousands of tracebacks a second), uvloop's (libuv's)
accepts and closes waiting clients without a word. Here, when ``accept()`` fails for lack of
descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM):

* the listener stops accepting; new clients wait in the kernel's backlog (refused by the
  kernel only when it is full), clients already connected are served as usual;
* accepting resumes as soon as one of the server's connections closes (its descriptor is
  free), and at the latest after ``RETRY_DELAY`` (descriptors freed elsewhere);
* one WARNING line at most every ``WARN_INTERVAL`` seconds, for the whole server, says so
  with the number of refused ``accept()`` calls since the previous line.

Accepted sockets become transports with ``loop.connect_accepted_socket`` (TLS included).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["Acceptor", "FdShortage"]

log = logging.getLogger("binrpc.server")

_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

RETRY_DELAY: Final = 0.5
"""Seconds before a listener stopped for lack of descriptors tries ``accept()`` again."""

WARN_INTERVAL: Final = 5.0
"""Seconds between two "out of file descriptors" warnings."""

_ACCEPTS_PER_WAKEUP: Final = 128
"""Connections accepted per readiness callback (the listen backlog)."""


class FdShortage:
    """The server-wide count of ``accept()`` calls refused for lack of resources, logged at
    most once every ``WARN_INTERVAL`` seconds."""

    __slots__ = ("_last_warning", "_refused", "waiting")

    def __init__(self) -> None:
        self._refused = 0  # refused accepts not yet reported
        self._last_warning = -WARN_INTERVAL
        self.waiting: set[Acceptor] = set()  # listeners that stopped accepting

    def refused(self, address: object, exc: OSError) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._last_warning < WARN_INTERVAL:
            return
        self._last_warning = now
        count, self._refused = self._refused, 0
        log.warning(
            "%s: cannot accept connections: %s; %d accept() refused since the last warning "
            "(connected clients are still served; new ones wait until descriptors are free)",
            address,
            exc.strerror or exc,
            count,
        )

    def descriptor_freed(self) -> None:
        """A connection closed: every stopped listener tries again now."""
        for acceptor in list(self.waiting):
            acceptor.resume()


class Acceptor:
    """Accepts the connections of one listening stream socket (see the module docstring).

    ``close()`` stops accepting and drops the connections still being set up (a TLS
    handshake); the socket itself is closed by its owner. ``wait_closed()`` waits for
    those to be gone."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        shortage: FdShortage,
        address: object,
        *,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = factory
        self._shortage = shortage
        self._address = address
        self._ssl = ssl
        self._handshake_timeout = ssl_handshake_timeout
        self._reading = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._setups: set[asyncio.Task[Any]] = set()
        sock.listen(128)
        self._start_reading()

    def _start_reading(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self._fd, self._accept)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _accept(self) -> None:
        sock = self._sock
        for _ in range(_ACCEPTS_PER_WAKEUP):
            if self._closed:
                return
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:
                    self._out_of_resources(exc)
                # other errors (ECONNABORTED: the client gave up first ...) concern one
                # client, which is gone
                return
            self._setup(conn)

    def _out_of_resources(self, exc: OSError) -> None:
        self._stop_reading()
        self._shortage.refused(self._address, exc)
        self._shortage.waiting.add(self)
        if self._retry is None:
            self._retry = self._loop.call_later(RETRY_DELAY, self.resume)

    def resume(self) -> None:
        """Try accepting again (descriptors may be free)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._shortage.waiting.discard(self)
        if not self._closed and not self._reading:
            self._start_reading()
            self._accept()  # the clients in the backlog do not make the socket readable again

    def _setup(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        owned: list[bool] = []  # a transport took the socket: it closes it, in every case

        def factory() -> asyncio.Protocol:
            owned.append(True)
            return self._factory()

        if self._ssl is None:
            coro = self._loop.connect_accepted_socket(factory, conn)
        else:
            coro = self._loop.connect_accepted_socket(
                factory, conn, ssl=self._ssl, ssl_handshake_timeout=self._handshake_timeout
            )
        task = asyncio.ensure_future(coro)
        self._setups.add(task)
        task.add_done_callback(lambda t: self._set_up(t, conn, bool(owned)))

    def _set_up(self, task: asyncio.Task[Any], conn: socket.socket, owned: bool) -> None:
        self._setups.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            # a failed TLS handshake, a client gone before its transport existed ...
            log.debug("%s: connection not set up: %r", self._address, exc)
        if (exc is not None or task.cancelled()) and not owned:
            conn.close()  # never reached a transport (closing it here too could close a
            # descriptor number the transport's loop has already closed and reused)

    def close(self) -> None:
        self._closed = True
        self._stop_reading()
        for task in self._setups:  # a TLS handshake in progress: that client is dropped
            task.cancel()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._shortage.waiting.discard(self)

    async def wait_closed(self) -> None:
        if self._setups:
            await asyncio.wait(set(self._setups))
