"""Reading binrpc replies from a byte stream with one copy of each body at most.

:class:`ReplyReader` has the interface of :class:`binrpc._framing.StreamFramer` (``feed``,
``next_packet``, ``buffered``, ``max_packet_size``; the same errors, checked by the same
:func:`binrpc._codec.header_fields`) plus ``buffer()``/``advance(n)``: the socket is read
straight into it, and a body bigger than its 64 KiB scratch buffer straight into the
``bytes`` object that becomes the reply's body (a 20 MiB reply costs 20 MiB, not 60).
``tests/client/test_pipeline.py::test_reader_is_the_stream_framer`` holds the two to the
same results. Once the framer offers in-place reads, this module goes (see
docs/architecture-client.md).

No I/O here.
"""

from __future__ import annotations

from io import BytesIO

from .._codec import header_fields
from .._errors import DecodeError, PacketTooLarge, RemoteProtocolError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["DEFAULT_MAX_REPLY_SIZE", "ReplyReader"]

DEFAULT_MAX_REPLY_SIZE: Final = 64 * 1024 * 1024
"""Largest reply (header + body) accepted: 64 MiB. kamcmd stops at 128 KiB (its fixed buffer),
which ``domain.dump``-style replies of a tuned server exceed (upstream issue #1127); the limit
only exists so that a corrupt length field cannot make us buffer gigabytes."""

_SCRATCH_SIZE: Final = 1 << 16
"""Bytes read at a time while replies are small (several pipelined replies fit)."""

_COMPACT_BELOW: Final = 4096
"""Move a partial packet to the front of the scratch buffer when less room than this is left."""


class ReplyReader:
    """Cut received bytes into packets, with one copy of each body at most.

    Reads go into a 64 KiB scratch buffer (:meth:`buffer`, then :meth:`advance` with the count
    read); complete packets are sliced out of it. A packet that does not fit the scratch buffer
    is read *in place*: once its header is known, a buffer of exactly its body length is
    allocated and :meth:`buffer` returns the part still to be filled, so a 20 MiB reply is
    received straight into the ``bytes`` object that becomes :attr:`Reply.body` (no growing
    buffer, no final copy). :meth:`feed` copies given bytes in (datagrams, asyncio).

    Validation is :class:`binrpc._framing.StreamFramer`'s (the ctl module's stream rules):
    nothing is checked below 4 bytes; then magic/version and type; a packet above
    ``max_packet_size`` fails as soon as its header is complete, without buffering it. After an
    error every call to :meth:`next_packet` raises it again (the stream cannot resynchronise).
    """

    __slots__ = (
        "_big",
        "_big_cookie",
        "_big_got",
        "_big_type",
        "_big_view",
        "_end",
        "_error",
        "_ready",
        "_scratch",
        "_start",
        "_taken",
        "_view",
        "max_packet_size",
    )

    def __init__(self, max_packet_size: int = DEFAULT_MAX_REPLY_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._scratch = bytearray(_SCRATCH_SIZE)
        self._view = memoryview(self._scratch)
        self._start = 0  # first byte not yet cut into a packet
        self._end = 0  # end of the received bytes
        self._ready: list[tuple[int, int, bytes]] = []  # (type, cookie, body), oldest first
        self._taken = 0  # packets of _ready already returned
        self._error: RemoteProtocolError | None = None
        self._big: BytesIO | None = None  # the body being read in place
        self._big_view: memoryview | None = None
        self._big_got = 0
        self._big_type = 0
        self._big_cookie = 0

    @property
    def error(self) -> RemoteProtocolError | None:
        """The error that stopped the reading (raised again by every :meth:`next_packet`
        once the packets before it are taken), or None."""
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        n = self._end - self._start + sum(len(p[2]) for p in self._ready[self._taken :])
        if self._big_view is not None:
            n += self._big_got
        return n

    def buffer(self) -> memoryview:
        """Where the next read should go (then call :meth:`advance`). Don't keep the view:
        a body read in place is handed over without a copy only once every view is gone."""
        if self._big_view is not None:
            return self._big_view[self._big_got :]
        room = _SCRATCH_SIZE - self._end
        if room < _COMPACT_BELOW and self._start:
            start, end = self._start, self._end
            self._scratch[: end - start] = self._view[start:end].tobytes()
            self._start, self._end = 0, end - start
        return self._view[self._end :]

    def advance(self, n: int) -> None:
        """``n`` bytes were written at the start of the last :meth:`buffer`."""
        if self._error is not None:
            return
        if self._big_view is not None:
            self._big_got += n
            if self._big_got == len(self._big_view):
                self._finish_big()
            return
        self._end += n
        self._cut()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes (copied in)."""
        src = memoryview(data)
        pos = 0
        total = len(src)
        while pos < total and self._error is None:
            dst = self.buffer()
            k = min(len(dst), total - pos)
            dst[:k] = src[pos : pos + k]
            del dst
            self.advance(k)
            pos += k

    def next_packet(self) -> tuple[int, int, bytes] | None:
        """The next complete packet as ``(type, cookie, body)``, or None (more bytes needed).

        Raises:
            DecodeError: bad magic/version/type (``E_CORRUPTED``).
            PacketTooLarge: the header announces more than ``max_packet_size``.
        """
        ready = self._ready
        if ready:
            i = self._taken
            packet = ready[i]
            i += 1
            if i == len(ready):
                ready.clear()
                i = 0
            self._taken = i
            return packet
        if self._error is not None:
            raise self._error
        return None

    def take(self) -> list[tuple[int, int, bytes]]:
        """Every complete packet at once (oldest first); an error, if the bytes after them
        are invalid, is raised by the next :meth:`next_packet`."""
        ready = self._ready
        if not ready:
            return ready
        if self._taken:
            del ready[: self._taken]
            self._taken = 0
        self._ready = []
        return ready

    # -- internals -------------------------------------------------------------------------
    def _cut(self) -> None:
        """Slice every complete packet out of the scratch buffer; start reading a big one in
        place."""
        buf = self._scratch
        start = self._start
        end = self._end
        ready = self._ready
        limit = self.max_packet_size
        while end - start >= 4:
            # the header rules are the codec's (StreamFramer uses the same function)
            try:
                fields = header_fields(buf, start)
            except DecodeError as exc:
                self._fail(exc)
                return
            if fields is None or fields[3] > end - start:
                break
            mtype, body_len, cookie, hsize = fields
            total = hsize + body_len
            if total > limit:
                self._fail(PacketTooLarge(total, limit))
                return
            if end - start >= total:
                ready.append((mtype, cookie, bytes(buf[start + hsize : start + total])))
                start += total
                continue
            if total > _SCRATCH_SIZE:
                self._start_big(mtype, cookie, body_len, start + hsize, end)
                start = end = 0
            break
        if start == end:
            start = end = 0
        self._start = start
        self._end = end

    def _start_big(self, mtype: int, cookie: int, body_len: int, start: int, end: int) -> None:
        # BytesIO's buffer is a bytes object: getbuffer() writes into it, getvalue() hands
        # that very object over (CPython copies only while a view is still exported)
        big = BytesIO()
        big.seek(body_len - 1)
        big.write(b"\0")
        view = big.getbuffer()
        have = end - start
        view[:have] = self._view[start:end]
        self._big = big
        self._big_view = view
        self._big_got = have
        self._big_type = mtype
        self._big_cookie = cookie

    def _finish_big(self) -> None:
        big, view = self._big, self._big_view
        assert big is not None and view is not None
        self._big = self._big_view = None
        view.release()
        self._ready.append((self._big_type, self._big_cookie, big.getvalue()))
        self._big_got = 0

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._error = exc
        self._start = self._end = 0
        if self._big_view is not None:
            self._big_view.release()
        self._big = self._big_view = None
