"""AsyncClient: pipelining on one connection, replies matched by cookie, timeouts, reconnect."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import socket
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import binrpc.client._async as async_mod
from binrpc import ConnectionClosed, Fault, TransportTimeout, encode_reply
from binrpc._codec import parse_request
from binrpc._framing import StreamFramer
from binrpc.client import AsyncClient

from .fakeserver import FakeServer, reply


class ShufflingServer:
    """Answers core.echo, but only in batches of ``batch`` requests, in random order."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.connections = 0
        self.max_pending = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        framer = StreamFramer(1 << 20)
        pending: list[bytes] = []
        while data := await reader.read(65536):
            framer.feed(data)
            while (packet := framer.next_packet()) is not None:
                _method, rd = parse_request(packet.body)
                rd.strict = False
                pending.append(encode_reply(rd.read_all(), packet.cookie))
            self.max_pending = max(self.max_pending, len(pending))
            if len(pending) >= self.batch:
                random.shuffle(pending)
                writer.write(b"".join(pending))
                pending.clear()
                await writer.drain()
        writer.close()


async def test_pipelines_1000_concurrent_calls_out_of_order() -> None:
    srv = ShufflingServer(batch=50)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        async with AsyncClient(f"tcp:127.0.0.1:{port}", timeout=10) as c:
            results = await asyncio.gather(*(c.call("core.echo", i, f"s{i}") for i in range(1000)))
        assert results == [[i, f"s{i}"] for i in range(1000)]
        assert srv.connections == 1
        # replies were only sent once 50 requests were waiting: they really were pipelined
        assert srv.max_pending >= 50


@pytest.mark.parametrize("proto", ["unixs", "unixd", "udp", "tcp"])
async def test_every_transport(proto: str) -> None:
    with FakeServer(proto) as srv:
        async with AsyncClient(srv.address, timeout=5) as c:
            assert await c.call_one("core.version") == "fake 1.0"
            many = await asyncio.gather(*(c.call("core.echo", i) for i in range(50)))
            assert many == [[i] for i in range(50)]
            with pytest.raises(Fault):
                await c.call("nope")


async def test_timeout_and_late_reply_dropped() -> None:
    def handler(method: str, params: list[Any], cookie: int) -> list[Any]:
        if method == "late":
            return [0.5, reply(["late"], cookie)]
        return [reply(params, cookie)]

    with FakeServer("tcp", handler) as srv:
        async with AsyncClient(srv.address, timeout=0.2) as c:
            with pytest.raises(TransportTimeout):
                await c.call("late")
            await asyncio.sleep(0.6)
            assert await c.call("core.echo", 1) == [1]


async def test_close_mid_reply_fails_waiters_then_reconnects() -> None:
    def handler(method: str, params: list[Any], cookie: int) -> list[Any]:
        if method == "cut":
            return [reply(["x" * 100], cookie)[:10], None]
        return [reply(params, cookie)]

    with FakeServer("unixs", handler) as srv:
        async with AsyncClient(srv.address, timeout=5) as c:
            with pytest.raises(ConnectionClosed):
                await c.call("cut")
            assert await c.call("core.echo", 2) == [2]
            assert srv.connections == 2


@pytest.mark.parametrize("proto", ["unixs", "unixd"])
def test_cancelled_connect_closes_the_socket_it_opens_later(
    proto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the thread running open_socket cannot be stopped: hold it until the call is cancelled
    entered, release = threading.Event(), threading.Event()
    real_open = async_mod.open_socket  # type: ignore[attr-defined, unused-ignore]

    def held_open(*args: Any, **kw: Any) -> Any:
        entered.set()
        release.wait()
        return real_open(*args, **kw)

    monkeypatch.setattr(async_mod, "open_socket", held_open)
    replies = tmp_path / "replies"
    replies.mkdir()
    server = socket.socket(
        socket.AF_UNIX, socket.SOCK_STREAM if proto == "unixs" else socket.SOCK_DGRAM
    )
    server.bind(str(tmp_path / "ctl"))
    if proto == "unixs":
        server.listen(8)  # connecting succeeds (the backlog): nobody needs to accept

    async def main() -> None:
        loop = asyncio.get_running_loop()
        c = AsyncClient(f"{proto}:{tmp_path}/ctl", reply_dir=str(replies))
        call = asyncio.ensure_future(c.call("core.version"))
        await loop.run_in_executor(None, entered.wait)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.set()  # now the thread connects, for nobody
        await loop.shutdown_default_executor()  # ... and has finished
        await c.close()

    gc.collect()  # the garbage of earlier tests warns before, not within, what is recorded
    fds = len(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    server.close()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert len(os.listdir("/proc/self/fd")) == fds - 1  # the server socket only
    assert list(replies.iterdir()) == []  # no unixd reply socket file left behind


# -- what Client has: pipeline and trace --------------------------------------------------------


async def test_pipeline_results_in_order_as_client_pipeline() -> None:
    from binrpc import LocalProtocolError
    from binrpc.client import Client, Reply

    srv = ShufflingServer(batch=8)  # replies come back shuffled, 8 at a time
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    address = f"tcp:127.0.0.1:{server.sockets[0].getsockname()[1]}"
    requests: list[tuple[str, list[Any]]] = [("core.echo", [i]) for i in range(100)]
    requests[50] = ("core.echo", [object()])  # binrpc cannot carry it: yielded, not raised
    async with server, AsyncClient(address, timeout=10) as c:
        results = [r async for r in c.pipeline(requests, window=16)]
    assert isinstance(results[50], LocalProtocolError)
    values = [r.values() if isinstance(r, Reply) else None for r in results]
    assert values == [None if i == 50 else [i] for i in range(100)]
    assert srv.max_pending >= 8  # they were in flight together
    # the blocking client gives the same kinds of result for the same requests
    with FakeServer("tcp") as fake, Client(fake.address) as sync:
        sync_results = list(sync.pipeline(requests))
    assert [type(r) for r in sync_results] == [type(r) for r in results]


async def test_pipeline_stopped_early_cancels_what_is_in_flight() -> None:
    srv = ShufflingServer(batch=1)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    address = f"tcp:127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, AsyncClient(address, timeout=10) as c:
        pipeline = c.pipeline(("core.echo", [i]) for i in range(1000))
        first = await pipeline.__anext__()
        await pipeline.aclose()
        assert first.values() == [0]  # type: ignore[union-attr]
        assert await c.call("core.echo", "next") == ["next"]  # late replies are dropped


async def test_pipeline_protocol_error_first_gets_it_rest_reply_lost() -> None:
    from binrpc.client import ReplyLost
    from binrpc.client._errors import CookieMismatch

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer(1 << 20)
        seen: list[int] = []
        while data := await reader.read(65536):
            framer.feed(data)
            while (packet := framer.next_packet()) is not None:
                seen.append(packet.cookie)
            if len(seen) >= 3:  # all three in flight: a reply with a wrong cookie
                writer.write(reply([1], seen[0] ^ 0x80000000))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    address = f"tcp:127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, AsyncClient(address, timeout=10) as c:
        results = [r async for r in c.pipeline(("core.echo", [i]) for i in range(3))]
    assert isinstance(results[0], CookieMismatch)
    assert all(isinstance(r, ReplyLost) and r.cause is results[0] for r in results[1:])


async def test_trace_sees_every_chunk_of_the_reply() -> None:
    chunks: list[tuple[bytes, int]] = []
    with FakeServer("unixs") as srv:
        async with AsyncClient(srv.address, timeout=10) as c:
            got = await c.request(
                "core.echo", ["x" * 3000], trace=lambda d, o: chunks.append((d, o))
            )
            await c.call("core.echo", "untraced")
    assert got.values() == ["x" * 3000]
    data = b"".join(d for d, _ in chunks)
    assert data == reply(["x" * 3000], got.cookie)  # the reply exactly, nothing else
    assert [o for _, o in chunks] == [
        sum(len(d) for d, _ in chunks[:k]) for k in range(len(chunks))
    ]
