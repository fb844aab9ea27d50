"""Running a request's handler on the event loop: inline, or as a task under call_timeout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .._rpc import CALL_TIMED_OUT, RpcContext, call_method
from ._context import ServerContext
from ._protocol import Request

__all__ = ["run_request"]

log = logging.getLogger("binrpc.server")


def run_request(
    server: ServerContext, request: Request, on_late_reply: Callable[[], object] | None
) -> None:
    """Run ``request``'s handler: a synchronous one here, to the end (its reply has reached
    the connection when this returns); an asynchronous one as a server task, bounded by
    ``call_timeout``. ``on_late_reply`` is called after a reply that comes later (the shell
    writes it out).
    """
    method, ctx = request.method, request.ctx
    assert method is not None and ctx is not None
    pending = call_method(method, ctx)
    if pending is None:
        return
    if not ctx.replied:
        request.on_reply = on_late_reply
    timeout = server.options.call_timeout
    server.spawn(pending if timeout is None else _bounded(pending, ctx, timeout))


async def _bounded(pending: Awaitable[None], ctx: RpcContext, timeout: float) -> None:
    """Await the handler's finishing coroutine for at most ``timeout`` seconds; then it is
    cancelled and the client gets fault 500 ``call timed out``. A TimeoutError of the
    handler's own is caught inside ``pending`` (an internal error), never seen here."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await pending
    except TimeoutError:
        if not deadline.expired():
            raise
        log.warning("%s: call timed out after %g s", ctx.method, timeout)
        ctx.fault(500, CALL_TIMED_OUT)
        ctx.finish()
