"""Dispatch: run a method's handler on a context and finish the request (reply, fault, or
fault 500 for an exception escaping the handler). No I/O here, and no event loop: an
asynchronous handler's finishing coroutine is returned for the caller to schedule.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable
from typing import Any, Final

from ._context import RpcContext
from ._errors import Fault
from ._registry import Method

__all__ = ["CALL_TIMED_OUT", "call_method"]

log = logging.getLogger("binrpc.server")


def _internal_error(ctx: RpcContext, exc: BaseException) -> None:
    log.error("RPC %s raised an exception", ctx.method, exc_info=exc)
    ctx.fault(500, "Internal server error: %s", type(exc).__name__)


_NOT_AWAITABLE: Final = frozenset((type(None), bool, int, float, str, bytes, list, tuple, dict))


CALL_TIMED_OUT: Final = "call timed out"
"""The text of fault 500 for an async handler cancelled by the server's ``call_timeout``.

The server bounds the coroutine :func:`call_method` returns (``asyncio.timeout``); when the
deadline cancelled it, the coroutine did not finish the context, and the server does:
``ctx.fault(500, CALL_TIMED_OUT)``, then ``ctx.finish()``."""


def call_method(method: Method, ctx: RpcContext) -> Awaitable[None] | None:
    """Run ``method`` for the request in ``ctx``.

    A synchronous handler runs to completion here and its reply (or fault) has gone to the
    context's sink when this returns None. For an asynchronous handler the coroutine that
    finishes the job is returned; the caller schedules it (and must await it): it sends the
    reply, a fault, or fault 500 for an exception (the handler's own ``TimeoutError`` too),
    and calls ``ctx.finish()``, except when it is cancelled (``CancelledError`` propagates,
    the context is left unfinished for the canceller). A synchronous handler cannot be
    interrupted.
    """
    try:
        result = method.func(ctx) if method.context else method.func(*method.read_args(ctx))
        # async def is known at registration; a plain callable may still return an
        # awaitable (a lambda, an object with an async __call__): checked unless the result
        # is a plain value (inspect.isawaitable costs 0.2-0.4 us per call)
        if method.is_async or (type(result) not in _NOT_AWAITABLE and inspect.isawaitable(result)):
            return _finish_async(result, ctx, not method.context)
        if not method.context:
            ctx.reply_value(result)
    except Fault as fault:
        ctx.fault(fault.code, "%s", fault.message)
    except Exception as exc:
        _internal_error(ctx, exc)
    ctx.finish()
    return None


async def _finish_async(awaitable: Awaitable[Any], ctx: RpcContext, pythonic: bool) -> None:
    # CancelledError is no Exception: it propagates, and ctx.finish() is not called
    try:
        result = await awaitable
        if pythonic:
            ctx.reply_value(result)
    except Fault as fault:
        ctx.fault(fault.code, "%s", fault.message)
    except Exception as exc:
        _internal_error(ctx, exc)
    ctx.finish()
