"""Shared helpers for the server tests: the binrpcd command line and a sans-I/O request runner."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from binrpc import decode_values, encode_request, parse_packet, parse_request
from binrpc._binrpc_context import BinrpcContext
from binrpc._codec import MsgType
from binrpc._dispatch import call_method
from binrpc._errors import DecodeError
from binrpc._limits import RpcLimits
from binrpc._registry import Registry

BINRPCD_LOOP = os.environ.get("BINRPC_TEST_LOOP", "asyncio")
"""The event loop of the binrpcd subprocesses the tests start (``--loop``) when their arguments
do not choose one: asyncio by default, what CI has (it installs ``.[dev]``, without uvloop),
so that a local run with uvloop installed tests the same path. ``BINRPC_TEST_LOOP=uvloop``
(or ``auto``) runs them on another loop."""


def binrpcd_command(*args: str) -> list[str]:
    """The command line of a binrpcd subprocess: ``--loop BINRPCD_LOOP`` unless ``args``
    has a ``--loop``."""
    loop = [] if "--loop" in args or not BINRPCD_LOOP else ["--loop", BINRPCD_LOOP]
    return [sys.executable, "-m", "binrpc.cli.daemon", *loop, *args]


def decode_reply(packet: bytes) -> tuple[str, int, Any]:
    """("reply", cookie, values) or ("fault", cookie, (code, text))."""
    p = parse_packet(packet)
    assert p is not None, packet.hex()
    values = decode_values(p.body)
    if p.type == MsgType.FAULT:
        return "fault", p.cookie, (values[0], values[1])
    assert p.type == MsgType.REPLY
    return "reply", p.cookie, values


def run(
    registry: Registry,
    method: str,
    params: Sequence[Any] = (),
    *,
    limits: RpcLimits | None = None,
    cookie: int = 0x1234,
    raw_params: bytes | None = None,
    max_reply_size: int | None = None,
) -> list[bytes]:
    """Run one request through BinrpcContext synchronously; every packet the sink got."""
    if raw_params is not None:
        body = encode_request(method, (), cookie)
        p0 = parse_packet(body)
        assert p0 is not None
        body = p0.body + raw_params
    else:
        p0 = parse_packet(encode_request(method, params, cookie))
        assert p0 is not None
        body = p0.body
    name, reader = parse_request(body)
    sent: list[bytes] = []
    ctx = BinrpcContext(
        reader,
        cookie,
        sent.append,
        limits or RpcLimits(),
        method=name,
        registry=registry,
        max_reply_size=max_reply_size,
    )
    m = registry.get(name)
    assert m is not None, name
    pending = call_method(m, ctx)
    if pending is not None:
        import asyncio

        asyncio.run(pending)  # type: ignore[arg-type]
    return sent


def one(registry: Registry, method: str, params: Sequence[Any] = (), **kw: Any) -> tuple[str, Any]:
    """Run and return (kind, values-or-(code, text)) for the single packet sent."""
    sent = run(registry, method, params, **kw)
    assert len(sent) == 1, sent
    kind, cookie, payload = decode_reply(sent[0])
    assert cookie == kw.get("cookie", 0x1234)
    return kind, payload


__all__ = ["DecodeError", "decode_reply", "one", "run"]
