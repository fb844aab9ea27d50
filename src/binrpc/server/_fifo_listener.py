"""The FIFO text protocol's I/O: a FIFO file, and FIFO over stream and datagram sockets.

The protocol itself (framing, parsing, running a request, rendering the reply) is
:mod:`binrpc._fifo`; this module only moves bytes:

* :class:`FifoStreamConnection` (TCP, unix stream): requests are cut by a
  :class:`~binrpc._fifo.FifoFramer`, pipelined requests are answered in order, the connection
  stays open after every reply (errors included), and a buffer overflow without a request
  closes it (ctl: "buffer overrun").
* :class:`FifoDatagramEndpoint` (UDP, unix datagram): one request per datagram, the reply
  goes back to the sender in one datagram.
* :class:`FifoFileReader` (a real named pipe): requests from every writer go through one
  framer; the reply is written to the reply FIFO named in the request, in
  ``ServerOptions.fifo_reply_dir``, by :func:`write_reply_fifo`, which never blocks the
  event loop.

An invalid first line gets ``400 <why>`` on sockets (ctl sends a bogus ``200 OK`` and runs
nothing); on a FIFO file there is no valid reply file, so it is only logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from .._fifo import (
    FifoContext,
    FifoFramer,
    FifoRequest,
    FifoRequestError,
    FifoTooLarge,
    datagram_request,
    parse_fifo_request,
    render_status,
)
from .._rpc import call_method_with_timeout
from ._conn import DatagramEndpoint, StreamConnection, _Slot

if TYPE_CHECKING:
    from ._server import Listener, Server
    from ._sockets import OpenedFifo

__all__ = [
    "REPLY_OPEN_RETRIES",
    "REPLY_RETRY_WAIT",
    "FifoDatagramEndpoint",
    "FifoFileReader",
    "FifoStreamConnection",
    "run_fifo_request",
    "write_reply_fifo",
]

log = logging.getLogger("binrpc.server.fifo")

REPLY_OPEN_RETRIES: Final = 4
"""Further attempts to open a reply FIFO that nobody has opened for reading yet (ENXIO); ctl's
number. The client is expected to open its reply FIFO before it sends the request."""
REPLY_RETRY_WAIT: Final = 0.08
"""Seconds between those attempts (ctl's 80 ms; ctl sleeps, blocking everybody, we await)."""
_READ_SIZE: Final = 65536
INCOMPLETE_DATAGRAM: Final = "incomplete request (no empty line at its end): not run"


def run_fifo_request(  # noqa: PLR0917
    server: Server,
    request: FifoRequest,
    sink: Callable[[bytes], object],
    connection: object | None,
    max_reply_size: int | None,
    listener: Listener | None = None,
    peer: str = "",
) -> Awaitable[None] | None:
    """Run one parsed request; the whole reply goes to ``sink`` exactly once.

    Returns the coroutine of an async handler (the caller schedules it) or None when the
    reply has already been sent.
    """
    methods = server.methods if listener is None or listener.methods is None else listener.methods
    method = methods.get(request.method)
    if method is None:
        refuser = listener.method_filter if listener is not None else None
        if refuser is not None and refuser.refuses(request.method):
            assert listener is not None
            log.warning(
                "%s: refused method %s from %s", listener.address, request.method, peer or "?"
            )
            sink(render_status(403, f"method {request.method} not allowed on this listener"))
            return None
        sink(render_status(500, f"Command '{request.method}' not found"))
        return None
    ctx = FifoContext(
        request,
        sink,
        registry=methods,
        server=server,
        connection=connection,
        max_reply_size=max_reply_size,
    )
    return call_method_with_timeout(method, ctx, server.options.call_timeout)


# --------------------------------------------------------------------------------------------
# sockets


class FifoStreamConnection(StreamConnection):
    """One accepted TCP or unix stream connection of a ``fifo`` listener.

    Counted by ``ctl.connections`` and listed by ``ctl.who`` with payload ``fifo``; the
    connection limits, write and idle timeouts are those of binrpc connections.
    """

    def __init__(self, server: Server, listener: Listener) -> None:
        super().__init__(server, listener)
        self.fifo_framer = FifoFramer(server.options.max_request_size)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._touch()
        self.fifo_framer.feed(data)
        self._dispatch()

    def _dispatch(self) -> None:
        """Run the complete requests in the FIFO framer (each gets a reply slot); stop, like
        binrpc connections, on pause_writing or at max_pending_per_connection."""
        framer = self.fifo_framer
        queue = self._queue
        while not self._closing:
            if self._write_paused or len(queue) >= self._max_pending:
                self._stall()
                return
            try:
                raw = framer.next_request()
            except FifoTooLarge as exc:
                log.warning("%s: %s from %s; closing", self.listener.address, exc, self.peer[0])
                self._abort()
                return
            if raw is None:
                return
            slot = _Slot(self)
            self._queue.append(slot)
            try:
                request = parse_fifo_request(raw)
            except FifoRequestError as exc:
                slot.put(render_status(400, str(exc)))
                continue
            pending = run_fifo_request(
                self.server, request, slot.put, self, None, self.listener, self.peer[0]
            )
            if pending is not None:
                self.server.spawn(pending)


class FifoDatagramEndpoint(DatagramEndpoint):
    """A UDP or unix datagram ``fifo`` listener: a request per datagram, a reply datagram.

    What follows the empty line is ignored, as in ctl. A datagram without the empty line (a
    request cut short) is not run: it gets ``400 incomplete request`` (ctl ignores it
    silently, leaving its client to time out).
    """

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.server.closing or self.refused(addr):
            return

        def sink(reply: bytes) -> None:
            self._send(addr, reply)

        raw = datagram_request(data)
        if raw is None:
            sink(render_status(400, INCOMPLETE_DATAGRAM))
            return
        try:
            request = parse_fifo_request(raw)
        except FifoRequestError as exc:
            sink(render_status(400, str(exc)))
            return
        pending = run_fifo_request(
            self.server, request, sink, None, self.max_reply_size, self.listener, str(addr)
        )
        if pending is not None:
            self.server.spawn(pending)


# --------------------------------------------------------------------------------------------
# FIFO files


class FifoFileReader:
    """Reads requests from a listener's FIFO file and sends replies to reply FIFOs.

    All writers share one byte stream: requests up to PIPE_BUF (4096) bytes written in one
    ``write()`` are atomic, longer ones can interleave with other writers' (as in ctl).
    A buffer overflow without a request discards the buffer and the FIFO keeps working (ctl's
    FIFO is dead after that), and so does an incomplete request that stays longer than
    ``fifo_partial_timeout``.
    """

    def __init__(self, server: Server, listener: Listener, opened: OpenedFifo) -> None:
        self.server = server
        self.listener = listener
        self.opened = opened
        self.framer = FifoFramer(server.options.max_request_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._partial_timer: asyncio.TimerHandle | None = None
        self._reply_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @property
    def name(self) -> str:
        return str(self.listener.address)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.opened.rfd, self._readable)
        self._reading = True

    def stop_reading(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.opened.rfd)
        self._reading = False
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None

    def close(self) -> None:
        """Stop reading and close both ends (the file is removed by the server)."""
        self.stop_reading()
        for fd in (self.opened.rfd, self.opened.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- input ------------------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            data = os.read(self.opened.rfd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # pragma: no cover - not seen on a FIFO we hold open
            log.error("%s: read failed: %s", self.name, exc)
            return
        if not data:  # pragma: no cover - impossible while we hold the write end
            return
        if self.server.closing:
            return
        framer = self.framer
        framer.feed(data)
        while True:
            try:
                raw = framer.next_request()
            except FifoTooLarge as exc:
                log.warning("%s: %s; buffer discarded", self.name, exc)
                continue
            if raw is None:
                break
            self._handle(raw)
        self._arm_partial_timer()

    def _arm_partial_timer(self) -> None:
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None
        timeout = self.server.options.fifo_partial_timeout
        if self.framer.buffered and timeout is not None and self._loop is not None:
            self._partial_timer = self._loop.call_later(timeout, self._drop_partial)

    def _drop_partial(self) -> None:
        self._partial_timer = None
        dropped = self.framer.discard()
        if dropped:
            log.warning(
                "%s: incomplete request (%d bytes, no empty line) discarded after %g s",
                self.name,
                dropped,
                self.server.options.fifo_partial_timeout,
            )

    def _handle(self, raw: bytes) -> None:
        try:
            request = parse_fifo_request(raw)
        except FifoRequestError as exc:
            # there is no valid reply file to answer to
            log.warning("%s: invalid request, no reply sent: %s", self.name, exc)
            return
        sink: Callable[[bytes], object]
        if request.reply_name:
            name = request.reply_name

            def sink(reply: bytes) -> None:
                self.server.spawn(self._reply(name, reply))
        else:

            def sink(reply: bytes) -> None:
                log.debug("%s: %s run, reply discarded (no reply FIFO)", self.name, request.method)

        pending = run_fifo_request(
            self.server, request, sink, None, None, self.listener, "a FIFO writer"
        )
        if pending is not None:
            self.server.spawn(pending)

    # -- output -----------------------------------------------------------------------------
    async def _reply(self, name: str, data: bytes) -> None:
        # replies to the same reply FIFO go one after the other (in request order), so that
        # two replies bigger than PIPE_BUF never interleave
        entry = self._reply_locks.get(name)
        if entry is None:
            entry = self._reply_locks[name] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                path = os.path.join(self.server.options.fifo_reply_dir, name)
                await write_reply_fifo(
                    path, data, timeout=self.server.options.fifo_reply_timeout, source=self.name
                )
        finally:
            users[0] -= 1
            if not users[0]:
                del self._reply_locks[name]


class _ReplyRefused(Exception):
    pass


def _check_reply_target(path: str) -> os.stat_result:
    """lstat ``path`` and refuse anything but a single-link FIFO (no symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise _ReplyRefused("does not exist") from None
    except (OSError, ValueError) as exc:
        raise _ReplyRefused(f"cannot be checked: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise _ReplyRefused("is a symbolic link")
    if not stat.S_ISFIFO(st.st_mode):
        raise _ReplyRefused("is not a FIFO")
    if st.st_nlink != 1:
        raise _ReplyRefused(f"has {st.st_nlink} hard links")
    return st


async def _open_reply_fifo(path: str) -> int:
    """Open the reply FIFO for writing without blocking, checked against its lstat.

    Raises:
        _ReplyRefused: it is not a genuine FIFO, or nobody opened it for reading in time.
    """
    for attempt in range(REPLY_OPEN_RETRIES + 1):
        st = _check_reply_target(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                if attempt < REPLY_OPEN_RETRIES:
                    await asyncio.sleep(REPLY_RETRY_WAIT)
                    continue
                raise _ReplyRefused(
                    f"has no reader (tried {REPLY_OPEN_RETRIES + 1} times)"
                ) from None
            if exc.errno == errno.ELOOP:
                raise _ReplyRefused("is a symbolic link") from None
            raise _ReplyRefused(f"cannot be opened: {exc.strerror}") from None
        try:
            fst = os.fstat(fd)
        except OSError as exc:  # pragma: no cover
            os.close(fd)
            raise _ReplyRefused(f"cannot be checked: {exc.strerror}") from None
        if not stat.S_ISFIFO(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            raise _ReplyRefused("was replaced while being opened")
        return fd
    raise AssertionError("unreachable")  # pragma: no cover


async def _wait_writable(fd: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def on_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, on_writable)
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        return False
    finally:
        loop.remove_writer(fd)
    return True


async def write_reply_fifo(
    path: str, data: bytes, *, timeout: float = 5.0, source: str = "fifo"
) -> bool:
    """Write one reply to the reply FIFO at ``path`` and close it (the client reads to EOF).

    The target must be an existing FIFO that is not a symlink and has a single link (checked
    with ``lstat``, then opened ``O_WRONLY|O_NONBLOCK|O_NOFOLLOW`` and compared by device and
    inode with ``fstat``). Nobody reading it yet (ENXIO): retried
    :data:`REPLY_OPEN_RETRIES` times :data:`REPLY_RETRY_WAIT` apart. A reader that does not
    read: the writes wait at most ``timeout`` seconds in all. Nothing here blocks the loop.

    Returns:
        True if the whole reply was written; False if it was dropped (logged with the
        reason).
    """
    try:
        fd = await _open_reply_fifo(path)
    except _ReplyRefused as exc:
        log.warning("%s: reply FIFO %s %s; reply dropped", source, path, exc)
        return False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    view = memoryview(data)
    try:
        while view:
            try:
                written = os.write(fd, view)
            except (BlockingIOError, InterruptedError):
                written = 0
            except BrokenPipeError:
                log.warning(
                    "%s: reader of %s went away; %d reply bytes dropped", source, path, len(view)
                )
                return False
            except OSError as exc:
                log.warning("%s: writing to %s failed: %s; reply dropped", source, path, exc)
                return False
            view = view[written:]
            if view:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await _wait_writable(fd, remaining):
                    log.warning(
                        "%s: reader of %s does not read; %d of %d reply bytes dropped after %g s",
                        source,
                        path,
                        len(view),
                        len(data),
                        timeout,
                    )
                    return False
        return True
    finally:
        os.close(fd)
