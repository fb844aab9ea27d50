"""Sans-I/O connections of the FIFO text protocol: streams and datagrams.

The same interface as the binrpc ones (:mod:`binrpc.server._protocol`); the wire format and
the context are :mod:`binrpc._fifo_wire` and :mod:`binrpc._fifo_context`. Rules, as in ctl
unless said:

* streams (TCP, unix stream): requests end at an empty line; pipelined requests are answered
  in order; the connection stays open after every reply, errors included; more than
  ``max_request_size`` bytes buffered without a complete request ends it at once ("buffer
  overrun");
* datagrams (UDP, unix datagram): one request per datagram, what follows its empty line is
  ignored; a datagram without the empty line (cut short) gets ``400 incomplete request``
  (ctl ignores it, leaving its client to time out);
* an invalid first line gets ``400 <why>`` (ctl sends a bogus ``200 OK`` and runs nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from .._context import ServerInfo
from .._errors import RemoteProtocolError
from .._fifo_context import FifoContext
from .._fifo_wire import (
    FifoFramer,
    FifoRequest,
    FifoRequestError,
    datagram_request,
    parse_fifo_request,
    render_status,
)
from ._protocol import Call, DatagramReplies, ServerConnection
from ._routing import REFUSED, Routing, refusal_text, route

__all__ = [
    "INCOMPLETE_DATAGRAM",
    "FifoConnection",
    "FifoDatagram",
    "fifo_request",
]

log = logging.getLogger("binrpc.server.fifo")

INCOMPLETE_DATAGRAM: Final = "incomplete request (no empty line at its end): not run"


def fifo_request(
    request: bytes | FifoRequest,
    sink: Callable[[bytes], object],
    routing: Routing,
    info: ServerInfo | None,
    *,
    peer: str,
    handle: object = None,
    max_reply_size: int | None = None,
) -> Call | None:
    """Parse (given the raw bytes) and route one request: the
    :data:`~binrpc.server._protocol.Call` to run (its context replies to ``sink``), or None
    when it was answered here: ``400`` for a bad first line, ``403``/``500`` from
    :func:`~binrpc.server._routing.route`."""
    if isinstance(request, bytes):
        try:
            request = parse_fifo_request(request)
        except FifoRequestError as exc:
            sink(render_status(400, str(exc)))
            return None
    method = route(routing, request.method, peer)
    if isinstance(method, int):
        if method == REFUSED:
            sink(render_status(REFUSED, refusal_text(request.method)))
        else:
            sink(render_status(method, f"Command '{request.method}' not found"))
        return None
    ctx = FifoContext(
        request,
        sink,
        registry=routing.methods,
        server=info,
        connection=handle,
        max_reply_size=max_reply_size,
    )
    return method, ctx


class FifoConnection(ServerConnection):
    """A FIFO-protocol stream connection (TCP, unix stream), sans I/O (module docstring).

    Args:
        routing, info: see :class:`~binrpc.server._protocol.BinrpcConnection`.
        max_request_size: the most bytes buffered without a complete request.
        max_pending, handle, peer: see :class:`~binrpc.server._protocol.ServerConnection`.
    """

    def __init__(
        self,
        routing: Routing,
        info: ServerInfo | None,
        *,
        max_request_size: int,
        max_pending: int,
        handle: object = None,
        peer: str = "",
    ) -> None:
        framer = FifoFramer(max_request_size)
        super().__init__(
            framer, framer.next_request, max_pending=max_pending, handle=handle, peer=peer
        )
        self._routing = routing
        self._info = info

    def _bad_stream(self, exc: RemoteProtocolError) -> None:
        # FifoTooLarge: more than the limit buffered without an empty line ("buffer overrun")
        log.warning("%s: %s from %s; closing", self._routing.where, exc, self.peer)
        self.abort()

    def _request(self, item: Any) -> Call | None:
        return fifo_request(
            item, self._issue()[0], self._routing, self._info, peer=self.peer, handle=self.handle
        )


class FifoDatagram(DatagramReplies):
    """A FIFO-protocol datagram listener (UDP, unix datagram), sans I/O: a request per
    datagram, its reply to the sender in one datagram (module docstring).

    Args:
        routing, info: see :class:`FifoConnection`.
        max_reply_size: the largest reply datagram (a bigger one: ``500 reply too large``).
    """

    def __init__(self, routing: Routing, info: ServerInfo | None, max_reply_size: int) -> None:
        super().__init__()
        self._routing = routing
        self._info = info
        self.max_reply_size = max_reply_size

    def receive_data(self, data: bytes, addr: Any) -> list[Call]:
        """One datagram from ``addr``: its request to run (none: answered here)."""
        raw = datagram_request(data)
        if raw is None:
            self.send_reply(addr, render_status(400, INCOMPLETE_DATAGRAM))
            return []
        call = fifo_request(
            raw,
            self._sinks(addr)[0],
            self._routing,
            self._info,
            peer=str(addr),
            max_reply_size=self.max_reply_size,
        )
        return [] if call is None else [call]
