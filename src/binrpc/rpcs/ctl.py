"""``ctl.listen``, ``ctl.connections``, ``ctl.who`` (spec 9.1)."""

from __future__ import annotations

from .._context import RpcContext
from .._registry import Registry

__all__ = ["register"]


def listen(ctx: RpcContext) -> None:
    """4 STR per listener, flat, configuration order: payload, transport, name, port."""
    if ctx.server is None:
        return
    for row in ctx.server.listener_rows():
        if ctx.add("ssss", *row) < 0:
            return


def connections(ctx: RpcContext) -> None:
    """One INT: open stream connections (binrpc and FIFO-over-stream)."""
    ctx.add("d", ctx.server.connection_count() if ctx.server is not None else 0)


def who(ctx: RpcContext) -> None:
    """6 STR per stream connection, oldest first; none at all -> 400."""
    rows = ctx.server.connection_rows() if ctx.server is not None else []
    if not rows:
        ctx.fault(400, "no open stream connection")
        return
    for row in rows:
        if ctx.add("ssssss", *row) < 0:
            return


def register(registry: Registry) -> None:
    registry.register(
        "ctl.listen", listen, context=True, doc="list ctl listen sockets", signature=["array"]
    )
    registry.register(
        "ctl.connections",
        connections,
        context=True,
        doc="returns number of open connections",
        signature=["int"],
    )
    registry.register(
        "ctl.who", who, context=True, doc="list open connections", signature=["array"]
    )
