"""Running a request's handler on the event loop: inline, or as a task under call_timeout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from .._context import RpcContext
from .._dispatch import CALL_TIMED_OUT, call_method
from ._context import ServerContext
from ._protocol import Call

__all__ = ["run_call", "spawn_call"]

log = logging.getLogger("binrpc.server")


def run_call(server: ServerContext, call: Call) -> None:
    """Run a request's handler: a synchronous one here, to the end (its reply has reached
    the connection when this returns); an asynchronous one as a server task
    (:func:`spawn_call`)."""
    method, ctx = call
    pending = call_method(method, ctx)
    if pending is not None:
        spawn_call(server, pending, ctx)


def spawn_call(server: ServerContext, pending: Awaitable[None], ctx: RpcContext) -> None:
    """Run the finishing coroutine of an async handler as a server task, bounded by
    ``call_timeout`` when it is set."""
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
        log.warning("%s: %s after %g s", ctx.method, CALL_TIMED_OUT, timeout)
        ctx.fault(500, CALL_TIMED_OUT)
        ctx.finish()
