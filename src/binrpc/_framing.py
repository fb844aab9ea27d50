"""Stream reassembly: bytes in, whole binrpc packets out. No I/O here.

Behaves like the ctl module's stream reader (spec 4.1): nothing is validated while fewer than
4 bytes are buffered; with 4 bytes the magic/version and message type are checked; then it
waits for the whole header and the whole body. Unlike ctl it refuses an oversized packet as
soon as its header is read, without buffering it (ctl waits until its 64 KiB buffer is full,
and 5.6.3 spins forever on some 4-byte lengths).
"""

from __future__ import annotations

from ._codec import Packet, header_fields
from ._errors import DecodeError, PacketTooLarge, RemoteProtocolError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["DEFAULT_MAX_PACKET_SIZE", "StreamFramer"]

DEFAULT_MAX_PACKET_SIZE: Final = 65535
"""Largest packet (header + body) accepted: the ctl module reads each connection into a
65535-byte buffer, so nothing larger can ever reach it."""

_COMPACT_AT: Final = 1 << 16


class StreamFramer:
    """Cut a byte stream into packets.

    Usage::

        framer.feed(data)
        while (packet := framer.next_packet()) is not None:
            handle(packet)

    Args:
        max_packet_size: largest header + body accepted; a bigger one raises
            :class:`PacketTooLarge` as soon as its header is complete.

    Once :meth:`next_packet` has raised, the stream cannot be resynchronised: every later call
    raises the same error again.
    """

    __slots__ = ("_buf", "_error", "_pos", "max_packet_size")

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        self._pos = 0
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Call :meth:`next_packet` until it returns None afterwards."""
        if self._error is None:
            self._buf += data

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None when more bytes are needed.

        Raises:
            DecodeError: bad magic/version/type (``E_CORRUPTED``, cookie 0).
            PacketTooLarge: the packet's size is above ``max_packet_size``.
        """
        if self._error is not None:
            raise self._error
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
            return None
        packet = Packet(mtype, cookie, bytes(buf[pos + size : end]))
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end >= _COMPACT_AT:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return packet

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._error = exc
        self._buf = bytearray()
        self._pos = 0
