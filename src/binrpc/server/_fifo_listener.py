"""The FIFO text protocol on a real named pipe: :class:`FifoFileReader`.

Requests from every writer go through one :class:`~binrpc._fifo_wire.FifoFramer`; each reply is
written to the reply FIFO named in its request, in ``ServerOptions.fifo_reply_dir``, by
:func:`write_reply_fifo`, which never blocks the event loop. An invalid first line is only
logged: there is no valid reply file to answer to. (FIFO over sockets: the shells of
:mod:`binrpc.server._conn` over :mod:`binrpc.server._fifo_protocol`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from typing import TYPE_CHECKING, Final

from .._binrpc_reply import Buffer
from .._fifo_wire import FifoFramer, FifoRequestError, FifoTooLarge, parse_fifo_request
from ._calls import run_call
from ._conn import listener_routing
from ._context import ListenerView, ServerContext
from ._fifo_protocol import fifo_request
from ._protocol import ReplySlot

if TYPE_CHECKING:
    from ._sockets import OpenedFifo

__all__ = ["REPLY_OPEN_RETRIES", "REPLY_RETRY_WAIT", "FifoFileReader", "write_reply_fifo"]

log = logging.getLogger("binrpc.server.fifo")

REPLY_OPEN_RETRIES: Final = 4
"""Further attempts to open a reply FIFO that nobody has opened for reading yet (ENXIO); ctl's
number. The client is expected to open its reply FIFO before it sends the request."""
REPLY_RETRY_WAIT: Final = 0.08
"""Seconds between those attempts (ctl's 80 ms; ctl sleeps, blocking everybody, we await)."""
_READ_SIZE: Final = 65536


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

    def __init__(self, server: ServerContext, listener: ListenerView, opened: OpenedFifo) -> None:
        self.server = server
        self.listener = listener
        self.opened = opened
        self.framer = FifoFramer(server.options.max_request_size)
        self._routing = listener_routing(server, listener)
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
            parsed = parse_fifo_request(raw)
        except FifoRequestError as exc:
            # there is no valid reply file to answer to
            log.warning("%s: invalid request, no reply sent: %s", self.name, exc)
            return
        sink = ReplySlot(self, (parsed.reply_name, parsed.method)).reply
        call = fifo_request(parsed, sink, self._routing, self.server.info, peer="a FIFO writer")
        if call is not None:
            run_call(self.server, call)

    def send_reply(self, key: tuple[str, str], data: Buffer) -> None:
        """Write a reply to the reply FIFO named in its request, ``key`` = (reply FIFO name,
        method); none named: discarded."""
        name, method = key
        if name:
            self.server.spawn(self._reply(name, bytes(data)))
        else:
            log.debug("%s: %s run, reply discarded (no reply FIFO)", self.name, method)

    def send_reply_chunks(self, key: tuple[str, str], chunks: list[Buffer]) -> None:
        self.send_reply(key, b"".join(chunks))

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
