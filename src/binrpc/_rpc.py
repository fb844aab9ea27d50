"""The RPC layer's former single module, now split by concern (issue 11): re-exports only.

temporary: removed when the restructuring is merged.

``_registry`` (methods, registry, signature introspection), ``_context`` (the context base and
the mapping of Python return values), ``_binrpc_context`` and ``_binrpc_reply`` (the binrpc
context and reply builder), ``_limits`` (RpcLimits), ``_dispatch`` (call_method), ``_cnum``
(C number parsing).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from ._binrpc_context import BinrpcContext
from ._binrpc_reply import LARGE_RECORD, MAX_FAULT_TEXT, Buffer, ReplyStruct
from ._context import MISSING, RpcContext, ScanResult, ServerInfo
from ._dispatch import CALL_TIMED_OUT, call_method
from ._limits import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_LIMITS,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_STRUCT_MAX_BODY_SIZE,
    RpcLimits,
)
from ._registry import Method, MethodTable, Registry

__all__ = [
    "CALL_TIMED_OUT",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_STRUCT_MAX_BODY_SIZE",
    "LARGE_RECORD",
    "MAX_FAULT_TEXT",
    "MISSING",
    "BinrpcContext",
    "Buffer",
    "Method",
    "MethodTable",
    "Registry",
    "ReplyStruct",
    "RpcContext",
    "RpcLimits",
    "ScanResult",
    "ServerInfo",
    "call_method",
    "call_method_with_timeout",
]


def call_method_with_timeout(
    method: Method, ctx: RpcContext, timeout: float | None
) -> Awaitable[None] | None:
    """``call_method`` with the server's ``call_timeout`` on an asynchronous handler.

    temporary: the server shell takes this over when the restructuring is merged.
    """
    pending = call_method(method, ctx)
    if pending is None or timeout is None:
        return pending
    return _bounded(pending, ctx, timeout)


async def _bounded(pending: Awaitable[None], ctx: RpcContext, timeout: float) -> None:
    import asyncio  # loaded by then (the client does not import asyncio)

    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await pending
    except TimeoutError:
        if not deadline.expired():
            raise  # not the deadline's (the handler's own is fault 500 inside ``pending``)
        logging.getLogger("binrpc.server").warning(
            "%s: %s after %g s", ctx.method, CALL_TIMED_OUT, timeout
        )
        ctx.fault(500, CALL_TIMED_OUT)
        ctx.finish()
