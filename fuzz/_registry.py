"""RPCs for the fuzz targets: every way a handler reads parameters and builds a reply.

Cheap built-ins whose scanning differs, context handlers scanning every format character,
pythonic handlers with every annotation, and a handler that nests structs. None of them
raises by itself: an "Internal server error" fault from one of them means an exception
escaped the context (FifoContext / BinrpcContext) into the handler.
"""

from __future__ import annotations

import math
from typing import Any

from binrpc import Struct
from binrpc._context import RpcContext
from binrpc._registry import Registry
from binrpc.rpcs import builtin_registry

__all__ = ["METHODS", "REGISTRY"]


def _registry() -> Registry:
    reg = Registry()
    builtins = builtin_registry()
    # cheap built-ins whose scanning differs (process listings are slow and scan nothing)
    for name in (
        "core.echo",
        "core.printi",
        "core.prints",
        "core.shmmem",
        "core.version",
        "system.methodHelp",
        "system.methodSignature",
    ):
        method = builtins.get(name)
        assert method is not None, name
        reg.register(name, method.func, context=method.context, doc=method.doc)

    for fmt in ("d", "u", "t", "b", "f", "l", "j", "L", "J", "s", "S", "{", "*s", "*d", "dfs",
                "*.s", ".d", "s{d", "x", "*{", "SS*S"):  # fmt: skip

        def scan_all(ctx: RpcContext, fmt: str = fmt) -> None:
            rounds = 0
            while rounds < 50:
                rounds += 1
                r = ctx.scan(fmt)
                if r <= 0:
                    break
                for value in r.values:
                    if isinstance(value, Struct):
                        handle = ctx.add("{")
                        for name, member in value.items():
                            ctx.struct_add(handle, "s", name, str(member))
                    elif isinstance(value, float):
                        # known bug (test_parsers.py::test_add_double_the_server_decoded):
                        # add("f") raises for NaN/inf (strtod of "nan" with autoconversion)
                        # and for the largest DOUBLEs the decoder returns; sent as text here
                        if math.isfinite(value) and abs(value) < 9e15:
                            ctx.add("f", value)
                        else:
                            ctx.add("s", repr(value))
                    elif isinstance(value, int):
                        ctx.add("d", value)
                        ctx.add("j", value)
                    else:
                        ctx.add("s", value)
                        ctx.rpl_printf("%s", value)

        reg.register(f"scan.{fmt}", scan_all, context=True)

    @reg.rpc("py.int")
    def py_int(a: int, b: int = 0) -> int:
        return (a + b) % (1 << 31)

    @reg.rpc("py.float")
    def py_float(x: float) -> str:
        return repr(x)

    @reg.rpc("py.str")
    def py_str(s: str, t: str = "") -> list[str]:
        return [s, t]

    @reg.rpc("py.bytes")
    def py_bytes(b: bytes) -> int:
        return len(b)

    @reg.rpc("py.bool")
    def py_bool(flag: bool) -> bool:
        return flag

    @reg.rpc("py.struct")
    def py_struct(s: Struct) -> Struct:
        return s

    @reg.rpc("py.dict")
    def py_dict(d: dict) -> dict:  # type: ignore[type-arg]
        return d

    @reg.rpc("py.list")
    def py_list(values: list) -> int:  # type: ignore[type-arg]
        return len(values)

    @reg.rpc("py.any")
    def py_any(*rest: Any) -> int:
        return len(rest)

    @reg.rpc("py.ints")
    def py_ints(*rest: int) -> int:
        return len(rest)

    def nested(ctx: RpcContext) -> None:
        top = ctx.add("{")
        sub = ctx.struct_add(top, "{", "inner")
        ctx.array_add(sub, "sd", "x:y,z", -5)
        ctx.struct_printf(top, "p", "%s", "a\\b\nc")
        arr = ctx.add("[")
        ctx.array_add(arr, "s", "\0nul")

    reg.register("ctx.nested", nested, context=True)
    return reg


REGISTRY = _registry()
METHODS = REGISTRY.names()
