"""Stream reassembly: bytes in, whole binrpc packets out. No I/O here.

Behaves like the ctl module's stream reader (spec 4.1): nothing is validated while fewer than
4 bytes are buffered; with 4 bytes the magic/version and message type are checked; then it
waits for the whole header and the whole body. Unlike ctl it refuses an oversized packet as
soon as its header is read, without buffering it (ctl waits until its 64 KiB buffer is full,
and 5.6.3 spins forever on some 4-byte lengths).

One framer serves the server and the clients. Bytes come in two ways: :meth:`StreamFramer.feed`
copies them in (asyncio, datagrams, the server), :meth:`StreamFramer.buffer` /
:meth:`StreamFramer.advance` let a blocking reader ``recv_into`` the framer (the clients). A
packet above 64 KiB is read *in place* either way: once its header is known, its body goes
straight into the ``bytes`` object that becomes :attr:`Packet.body` (a 20 MiB reply costs
20 MiB, not 60).
"""

from __future__ import annotations

from io import BytesIO

from ._codec import Packet, header_fields
from ._errors import DecodeError, PacketTooLarge, RemoteProtocolError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final, Generic, overload

    from typing_extensions import TypeVar

    _P = TypeVar("_P", default=Packet)
else:

    class Generic:
        """``typing.Generic``'s stand-in at run time (importing typing costs start-up time)."""

        __slots__ = ()

        def __class_getitem__(cls, item: object) -> type:
            return cls

    _P = None

__all__ = ["DEFAULT_MAX_PACKET_SIZE", "StreamFramer"]

DEFAULT_MAX_PACKET_SIZE: Final = 65535
"""Largest packet (header + body) accepted: the ctl module reads each connection into a
65535-byte buffer, so nothing larger can ever reach it."""

_COMPACT_AT: Final = 1 << 16

_SCRATCH_SIZE: Final = 1 << 16
"""Bytes read at a time by :meth:`StreamFramer.buffer` (several pipelined replies fit), and the
size above which a packet's body is read in place."""


class _Body(Generic[_P]):
    """A body being read in place: a ``bytes`` object of its final size, filled through a view
    (``BytesIO``'s buffer is a bytes object: ``getbuffer()`` writes into it, ``getvalue()``
    hands that very object over; CPython copies only while a view is still exported)."""

    __slots__ = ("cookie", "got", "io", "packet", "record", "type", "view")

    def __init__(
        self,
        record: Callable[[int, int, bytes], _P],
        mtype: int,
        cookie: int,
        size: int,
        head: bytearray | memoryview,
    ) -> None:
        self.record = record
        self.type = mtype
        self.cookie = cookie
        self.io = io = BytesIO()
        io.seek(size - 1)
        io.write(b"\0")
        self.view = io.getbuffer()
        self.got = 0
        self.packet: _P | None = None  # once complete, until returned
        self.fill(head)

    def fill(self, data: bytes | bytearray | memoryview) -> int:
        """Copy the start of ``data`` in; how many bytes were taken."""
        got = self.got
        k = min(len(self.view) - got, len(data))
        self.view[got : got + k] = data[:k]
        self.advance(k)
        return k

    def advance(self, n: int) -> None:
        """``n`` more bytes are in; the last ones make :attr:`packet`."""
        self.got += n
        if self.got == len(self.view):
            self.view.release()
            self.packet = self.record(self.type, self.cookie, self.io.getvalue())
            del self.io  # the body is the packet's now


class StreamFramer(Generic[_P]):
    """Cut a byte stream into packets.

    Usage::

        framer.feed(data)                    # or: n = sock.recv_into(framer.buffer())
        while (packet := framer.next_packet()) is not None:     # framer.advance(n)
            handle(packet)

    Args:
        max_packet_size: largest header + body accepted; a bigger one raises
            :class:`PacketTooLarge` as soon as its header is complete.
        record: what a packet becomes, called as ``record(type, cookie, body)``:
            :class:`Packet`, or the caller's own record (the client makes its ``Reply``
            straight away: one object per packet, not two).

    Once :meth:`next_packet` has raised, the stream cannot be resynchronised: every later call
    raises the same error again.

    A framer only fed costs what its bytes cost: the 64 KiB buffer of :meth:`buffer` is
    allocated on its first call (a server holds thousands of idle connections).
    """

    __slots__ = ("_buf", "_hold", "_pos", "_record", "_scratch", "max_packet_size")

    if TYPE_CHECKING:

        @overload
        def __init__(
            self: StreamFramer[Packet], max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
        ) -> None: ...
        @overload
        def __init__(
            self,
            max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
            *,
            record: Callable[[int, int, bytes], _P],
        ) -> None: ...

    def __init__(
        self,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        *,
        record: Callable[[int, int, bytes], _P] = Packet,  # type: ignore[assignment]
    ) -> None:
        self.max_packet_size = max_packet_size
        self._record = record
        self._buf = bytearray()
        self._pos = 0
        # None on the plain path; else the error (raised again), or the packet being read in
        # place (complete or not): one test on the per-packet path for both
        self._hold: RemoteProtocolError | _Body[_P] | None = None
        self._scratch: memoryview | None = None  # buffer()'s, made on first use

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        n = len(self._buf) - self._pos
        hold = self._hold
        if isinstance(hold, _Body):
            n += hold.got
        return n

    @property
    def error(self) -> RemoteProtocolError | None:
        """The error :meth:`next_packet` raised (and raises again), or None."""
        hold = self._hold
        return hold if isinstance(hold, RemoteProtocolError) else None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Call :meth:`next_packet` until it returns None afterwards."""
        if self._hold is None:
            self._buf += data
        elif isinstance(self._hold, _Body):
            self._feed_body(self._hold, data)

    def buffer(self) -> memoryview:
        """Where the next read should go (``recv_into``), then call :meth:`advance` with the
        count read: the rest of a body read in place (a packet above 64 KiB, once
        :meth:`next_packet` has seen its header), else a 64 KiB buffer whose bytes
        :meth:`advance` copies in (small packets; several fit). Don't keep the view past the
        read: a body read in place is handed over without a copy only once every view is
        gone."""
        body = self._hold
        if isinstance(body, _Body) and body.packet is None:
            return body.view[body.got :]
        scratch = self._scratch
        if scratch is None:
            self._scratch = scratch = memoryview(bytearray(_SCRATCH_SIZE))
        return scratch

    def advance(self, n: int) -> None:
        """``n`` bytes were written at the start of the last :meth:`buffer`."""
        body = self._hold
        if isinstance(body, _Body):
            if body.packet is None:
                body.advance(n)
                return
        elif body is not None:  # the error: nothing is kept
            return
        scratch = self._scratch
        assert scratch is not None, "advance() without buffer()"
        self._buf += scratch[:n]  # (after a body read in place too: these bytes follow it)

    def next_packet(self) -> _P | None:
        """The next complete packet, or None when more bytes are needed.

        Raises:
            DecodeError: bad magic/version/type (``E_CORRUPTED``, cookie 0).
            PacketTooLarge: the packet's size is above ``max_packet_size``.
        """
        if self._hold is not None:
            return self._take_held()
        buf = self._buf
        pos = self._pos
        try:
            fields = header_fields(buf, pos)
        except DecodeError as exc:
            self._fail(exc)
            raise
        if fields is None:
            return None
        mtype, body_len, cookie, size = fields
        total = size + body_len
        if total > self.max_packet_size:
            exc2 = PacketTooLarge(total, self.max_packet_size)
            self._fail(exc2)
            raise exc2
        end = pos + total
        if len(buf) < end:
            if total > _SCRATCH_SIZE:
                # everything buffered is this packet's: its body goes in place from now on
                head = memoryview(buf)[pos + size :]
                self._hold = _Body(self._record, mtype, cookie, body_len, head)
                self._buf = bytearray()
                self._pos = 0
            return None
        packet = self._record(mtype, cookie, bytes(buf[pos + size : end]))
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end >= _COMPACT_AT:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return packet

    def take(self) -> list[_P]:
        """Every complete packet at once, oldest first (what :meth:`next_packet` returns call
        after call). Never raises: an error after them is :attr:`error`, raised again by the
        next :meth:`next_packet`."""
        out: list[_P] = []
        append = out.append
        next_packet = self.next_packet
        try:
            while (packet := next_packet()) is not None:
                append(packet)
        except RemoteProtocolError:
            pass
        return out

    # -- internals -------------------------------------------------------------------------
    def _feed_body(self, body: _Body[_P], data: bytes | bytearray | memoryview) -> None:
        if body.packet is None:
            k = body.fill(data)
            if k == len(data):
                return
            data = memoryview(data)[k:]
        self._buf += data

    def _take_held(self) -> _P | None:
        hold = self._hold
        if not isinstance(hold, _Body):
            assert hold is not None
            raise hold
        packet = hold.packet
        if packet is not None:
            self._hold = None
        return packet

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._hold = exc
        self._buf = bytearray()
        self._pos = 0
