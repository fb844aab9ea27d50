"""Sans-I/O connections of the FIFO text protocol: streams and datagrams.

The same interface as the binrpc ones (:mod:`binrpc.server._protocol`); the wire format and
the context are :mod:`binrpc._fifo`. Rules, as in ctl unless said:

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
from typing import Any, Final

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
from .._rpc import ServerInfo
from ._protocol import DatagramReplies, ReplyTarget, Request, ServerConnection
from ._routing import REFUSED, Routing, refusal_text, route

__all__ = ["INCOMPLETE_DATAGRAM", "FifoConnection", "FifoDatagram", "fifo_request"]

log = logging.getLogger("binrpc.server.fifo")

INCOMPLETE_DATAGRAM: Final = "incomplete request (no empty line at its end): not run"


def fifo_request(
    target: ReplyTarget,
    key: Any,
    raw: bytes,
    routing: Routing,
    info: ServerInfo | None,
    *,
    peer: str,
    handle: object = None,
    max_reply_size: int | None = None,
) -> Request | None:
    """Parse and route the request ``raw``; the :class:`Request` to run, or None when it was
    answered here (``400`` for a bad first line, ``403``/``500`` from :func:`route`).

    The reply goes to ``target.send_reply(request, ...)`` with ``key``.
    """
    request = Request(target, key)
    try:
        parsed = parse_fifo_request(raw)
    except FifoRequestError as exc:
        request.reply(render_status(400, str(exc)))
        return None
    return fifo_route(
        request, parsed, routing, info, peer=peer, handle=handle, max_reply_size=max_reply_size
    )


def fifo_route(
    request: Request,
    parsed: FifoRequest,
    routing: Routing,
    info: ServerInfo | None,
    *,
    peer: str,
    handle: object = None,
    max_reply_size: int | None = None,
) -> Request | None:
    """Route a parsed request and give ``request`` its method and context; None when it was
    answered here (refused, not found)."""
    method = route(routing, parsed.method, peer)
    if isinstance(method, int):
        if method == REFUSED:
            request.reply(render_status(REFUSED, refusal_text(parsed.method)))
        else:
            request.reply(render_status(method, f"Command '{parsed.method}' not found"))
        return None
    request.method = method
    request.ctx = FifoContext(
        parsed,
        request.reply,
        registry=routing.methods,
        server=info,
        connection=handle,
        max_reply_size=max_reply_size,
    )
    return request


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
        super().__init__(max_pending=max_pending, handle=handle, peer=peer)
        self._framer = FifoFramer(max_request_size)
        self._routing = routing
        self._info = info

    def _feed(self, data: bytes) -> None:
        self._framer.feed(data)

    @property
    def buffered(self) -> int:
        return self._framer.buffered

    def _next_request(self) -> Request | bool:
        try:
            raw = self._framer.next_request()
        except FifoTooLarge as exc:
            log.warning("%s: %s from %s; closing", self._routing.where, exc, self.peer)
            self.abort()
            return False
        if raw is None:
            return False
        request = fifo_request(
            self, self._issue(), raw, self._routing, self._info, peer=self.peer, handle=self.handle
        )
        return True if request is None else request


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

    def receive_data(self, data: bytes, addr: Any) -> list[Request]:
        """One datagram from ``addr``: its request to run (none: answered here)."""
        raw = datagram_request(data)
        if raw is None:
            Request(self, addr).reply(render_status(400, INCOMPLETE_DATAGRAM))
            return []
        request = fifo_request(
            self,
            addr,
            raw,
            self._routing,
            self._info,
            peer=str(addr),
            max_reply_size=self.max_reply_size,
        )
        return [] if request is None else [request]
