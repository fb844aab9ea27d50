"""Dispatch without an event loop of its own: ``call_method`` returns the coroutine that
finishes an asynchronous handler; the server bounds it (``call_timeout``), not the RPC layer.

What the server relies on: a handler's own ``TimeoutError`` is fault 500 like any exception;
a cancelled coroutine propagates ``CancelledError`` and leaves the context unfinished, so that
the canceller can send ``fault(500, CALL_TIMED_OUT)`` and ``finish()``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any, cast

import pytest

from binrpc import decode_values, encode_request, parse_packet, parse_request
from binrpc._binrpc_context import BinrpcContext
from binrpc._codec import MsgType
from binrpc._context import RpcContext
from binrpc._dispatch import CALL_TIMED_OUT, call_method
from binrpc._registry import Registry
from binrpc.server import ServerOptions
from binrpc.server._calls import spawn_call
from binrpc.server._context import ServerContext

COOKIE = 0x4242


def context(registry: Registry, method: str) -> tuple[BinrpcContext, list[bytes]]:
    packet = parse_packet(encode_request(method, (), COOKIE))
    assert packet is not None
    name, reader = parse_request(packet.body)
    sent: list[bytes] = []
    return BinrpcContext(reader, COOKIE, sent.append, method=name, registry=registry), sent


def decoded(sent: list[bytes]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for data in sent:
        packet = parse_packet(data)
        assert packet is not None and packet.cookie == COOKIE
        values = decode_values(packet.body)
        out.append(("fault" if packet.type == MsgType.FAULT else "reply", values))
    return out


def handlers(started: asyncio.Event, release: asyncio.Event) -> Registry:
    reg = Registry()

    @reg.rpc("t.wait")
    async def wait() -> str:
        started.set()
        await release.wait()
        return "done"

    @reg.rpc("t.wait_ctx", context=True)
    async def wait_ctx(ctx: RpcContext) -> None:
        started.set()
        await release.wait()
        ctx.add("s", "done")

    @reg.rpc("t.own_timeout")
    async def own_timeout() -> None:
        raise TimeoutError("the handler's own")

    return reg


def test_call_method_takes_no_timeout() -> None:
    assert list(inspect.signature(call_method).parameters) == ["method", "ctx"]


async def waiting_call(
    name: str,
) -> tuple[BinrpcContext, list[bytes], asyncio.Future[None], asyncio.Event]:
    """``name`` running as a task, waiting for the returned event."""
    started, release = asyncio.Event(), asyncio.Event()
    reg = handlers(started, release)
    ctx, sent = context(reg, name)
    method = reg.get(name)
    assert method is not None
    pending = call_method(method, ctx)
    assert pending is not None and sent == []
    task = asyncio.ensure_future(pending)
    await started.wait()
    return ctx, sent, task, release


@pytest.mark.parametrize("name", ["t.wait", "t.wait_ctx"])
async def test_the_coroutine_finishes_the_reply(name: str) -> None:
    _, sent, task, release = await waiting_call(name)
    release.set()
    await task
    assert decoded(sent) == [("reply", ["done"])]


async def test_a_handlers_own_timeout_error_is_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg = handlers(asyncio.Event(), asyncio.Event())
    ctx, sent = context(reg, "t.own_timeout")
    method = reg.get("t.own_timeout")
    assert method is not None
    pending = call_method(method, ctx)
    assert pending is not None
    with caplog.at_level(logging.ERROR, "binrpc.server"):
        await pending  # raises nothing: the fault is the reply
    assert decoded(sent) == [("fault", [500, "Internal server error: TimeoutError"])]
    assert "RPC t.own_timeout raised an exception" in caplog.text


@pytest.mark.parametrize("name", ["t.wait", "t.wait_ctx"])
async def test_cancellation_propagates_and_leaves_the_context_to_the_canceller(name: str) -> None:
    ctx, sent, task, _ = await waiting_call(name)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == [] and not ctx.replied  # no finish(): nothing sent
    ctx.fault(500, CALL_TIMED_OUT)  # what the server does then
    ctx.finish()
    assert decoded(sent) == [("fault", [500, "call timed out"])]


# -- call_timeout: the server shell bounds the finishing coroutine (server/_calls.py) ---------


class _Shell:
    """The two members of the server context that ``spawn_call`` uses."""

    def __init__(self, call_timeout: float | None) -> None:
        self.options = ServerOptions(call_timeout=call_timeout)
        self.spawned: list[Awaitable[None]] = []

    def spawn(self, coro: Awaitable[None]) -> None:
        self.spawned.append(coro)


def _spawn(reg: Registry, name: str, timeout: float | None) -> tuple[_Shell, list[bytes]]:
    ctx, sent = context(reg, name)
    method = reg.get(name)
    assert method is not None
    shell = _Shell(timeout)
    pending = call_method(method, ctx)
    assert pending is not None
    spawn_call(cast("ServerContext", shell), pending, ctx)
    assert len(shell.spawned) == 1
    return shell, sent


async def test_the_shell_sends_call_timed_out_at_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()  # never released: the deadline fires
    shell, sent = _spawn(handlers(started, release), "t.wait", 0.01)
    with caplog.at_level(logging.WARNING, "binrpc.server"):
        await shell.spawned[0]
    assert decoded(sent) == [("fault", [500, "call timed out"])]
    assert "t.wait: call timed out after 0.01 s" in caplog.text


async def test_the_shell_keeps_a_handlers_own_timeout_an_internal_error() -> None:
    shell, sent = _spawn(handlers(asyncio.Event(), asyncio.Event()), "t.own_timeout", 60.0)
    await shell.spawned[0]
    assert decoded(sent) == [("fault", [500, "Internal server error: TimeoutError"])]


async def test_the_shell_without_a_call_timeout_awaits_the_handler_unbounded() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    shell, sent = _spawn(handlers(started, release), "t.wait", None)
    task = asyncio.ensure_future(shell.spawned[0])
    await started.wait()
    release.set()
    await task
    assert decoded(sent)[0][0] == "reply"
