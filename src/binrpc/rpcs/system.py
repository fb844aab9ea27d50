"""``system.listMethods``, ``system.methodHelp``, ``system.methodSignature``."""

from __future__ import annotations

from .._context import RpcContext
from .._registry import Registry

__all__ = ["register"]


def list_methods(ctx: RpcContext) -> None:
    """One STR per method, sorted byte-wise (strcmp order), as Kamailio lists them."""
    if ctx.registry is None:
        return
    for name in ctx.registry.names():
        if ctx.add("s", name) < 0:
            return


def method_help(ctx: RpcContext) -> None:
    r = ctx.scan("s")
    if r < 1:
        ctx.fault(400, "Method Name Expected")
        return
    method = ctx.registry.get(r.values[0]) if ctx.registry is not None else None
    if method is None:
        ctx.fault(400, "command not found")
        return
    ctx.add("s", method.doc if method.doc else "undocumented")


def method_signature(ctx: RpcContext) -> None:
    """Kamailio always answers 500 "Not Implemented Yet"; we answer with the signature of the
    named method when we know it: one array (a struct of unnamed STR) of type names, return
    type first. No name, an unknown method or one without a known signature: the 5.6.3 fault.
    """
    r = ctx.scan("*s")
    method = None
    if r > 0 and ctx.registry is not None:
        method = ctx.registry.get(r.values[0])
    if method is None or method.signature is None:
        ctx.fault(500, "Not Implemented Yet")
        return
    handle = ctx.add("[")
    if isinstance(handle, int):
        return
    for name in method.signature:
        ctx.array_add(handle, "s", name)


def register(registry: Registry) -> None:
    registry.register(
        "system.listMethods",
        list_methods,
        context=True,
        doc="Lists all RPC methods supported by the server.",
        signature=["array"],
    )
    registry.register(
        "system.methodHelp",
        method_help,
        context=True,
        doc="Print the help string for given method.",
        signature=["string", "string"],
    )
    registry.register(
        "system.methodSignature",
        method_signature,
        context=True,
        doc="Returns signature of given method.",
        signature=["array", "string"],
    )
