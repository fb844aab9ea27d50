"""Per-connection limits and deadlines: the dispatch loop stops on pause_writing and on
``max_pending_per_connection`` and resumes when the replies drain (bugs 6, 7),
``request_timeout`` (slow senders), ``call_timeout`` (async handlers)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import socket
import time
from typing import Any

import pytest

from binrpc import decode_values, encode_request
from binrpc._codec import MsgType
from binrpc._context import RpcContext
from binrpc._registry import Registry
from binrpc.server import ServerOptions

from .conftest import Endpoints, RawClient, ServerThread

KiB = 1024


def limits_registry() -> Registry:
    reg = Registry()

    @reg.rpc("t.fast")
    def fast(tag: str) -> str:
        return tag

    @reg.rpc("t.sleep")
    async def sleep(tag: str, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return tag

    @reg.rpc("t.blob")
    def blob(tag: str, size: int) -> str:
        return tag + "x" * size

    @reg.rpc("t.block")
    def block(seconds: float) -> str:
        time.sleep(seconds)  # a sync handler: call_timeout cannot interrupt it
        return "done"

    async def own_timeout(ctx: RpcContext) -> None:
        await asyncio.wait_for(asyncio.sleep(5), 0.01)

    reg.register("t.own_timeout", own_timeout, context=True)
    return reg


def _reply(c: RawClient, cookie: int, timeout: float = 3.0) -> list[Any]:
    p = c.recv_packet(timeout)
    assert p is not None, f"no reply for cookie {cookie}"
    assert (p.type, p.cookie) == (MsgType.REPLY, cookie), (p, decode_values(p.body))
    return decode_values(p.body)


def _fault(c: RawClient, cookie: int, timeout: float = 3.0) -> tuple[object, ...]:
    p = c.recv_packet(timeout)
    assert p is not None, f"no fault for cookie {cookie}"
    assert (p.type, p.cookie) == (MsgType.FAULT, cookie), p
    return tuple(decode_values(p.body))


def _connection(st: ServerThread) -> object:
    assert st.server is not None
    conns = list(st.server.connections)
    assert len(conns) == 1, conns
    return conns[0]


# ------------------------------------------------------------------------------------------
# pause_writing stops the dispatch loop; the requests left wait in the framer


def test_non_reader_pauses_dispatch_and_is_served_once_it_reads(endpoints: Endpoints) -> None:
    ep = endpoints
    n, size = 64, 256 * KiB
    burst = b"".join(encode_request("t.blob", [f"r{i}", size], i + 1) for i in range(n))
    with (
        ServerThread(limits_registry(), ep.unixs, binrpc_max_body_size=1024) as st,
        RawClient(ep.unixs) as c,
    ):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send(burst)
        time.sleep(0.3)
        conn = _connection(st)
        # the loop stopped: most requests are still unread in the framer
        p = conn.protocol  # type: ignore[attr-defined]
        state = st.call_in_loop(lambda: (p.write_paused, p.stalled, p.buffered))
        assert state[0] and state[1] and state[2] > 0, state
        for i in range(n):  # now read: every reply comes, in order
            values = _reply(c, i + 1, 5.0)
            assert isinstance(values[0], str) and values[0].startswith(f"r{i}x")
            assert len(values[0]) == len(f"r{i}") + size
        c.send(encode_request("t.fast", ["after"], 99))
        assert _reply(c, 99) == ["after"]


def test_small_pipelined_replies_are_one_write(endpoints: Endpoints) -> None:
    # the fast path: 64 small requests in one read, one write (no early flush)
    ep = endpoints
    burst = b"".join(encode_request("t.fast", [f"r{i}"], i + 1) for i in range(64))
    with ServerThread(limits_registry(), ep.unixs) as st, RawClient(ep.unixs) as c:
        c.send(encode_request("t.fast", ["warm"], 1000))
        assert _reply(c, 1000) == ["warm"]
        conn = _connection(st)
        writes: list[int] = []

        def spy() -> None:
            transport = conn.transport  # type: ignore[attr-defined]
            real = transport.write

            def write(data: bytes) -> None:
                writes.append(len(data))
                real(data)

            transport.write = write

        st.call_in_loop(spy)
        c.send(burst)
        for i in range(64):
            assert _reply(c, i + 1) == [f"r{i}"]
        assert len(writes) <= 2, writes  # one per read (the burst may arrive in two)


# ------------------------------------------------------------------------------------------
# max_pending_per_connection


def test_pending_cap_bounds_tasks_and_resumes(endpoints: Endpoints) -> None:
    ep = endpoints
    n = 40
    burst = b"".join(encode_request("t.sleep", [f"s{i}", 0.2], i + 1) for i in range(n))
    with (
        ServerThread(limits_registry(), ep.unixs, max_pending_per_connection=8) as st,
        RawClient(ep.unixs) as c,
    ):
        c.send(burst)
        time.sleep(0.1)
        assert st.server is not None
        tasks = st.call_in_loop(lambda: len(st.server._tasks))
        assert 1 <= tasks <= 8, tasks
        for i in range(n):  # all of them, in order, as the slots free up
            assert _reply(c, i + 1, 5.0) == [f"s{i}"]


def test_pending_cap_counts_replies_queued_behind_an_async_one(endpoints: Endpoints) -> None:
    ep = endpoints
    burst = encode_request("t.sleep", ["slow", 0.3], 1)
    burst += b"".join(encode_request("t.fast", [f"f{i}"], i + 2) for i in range(20))
    with (
        ServerThread(limits_registry(), ep.unixs, max_pending_per_connection=4) as st,
        RawClient(ep.unixs) as c,
    ):
        c.send(burst)
        time.sleep(0.1)
        conn = _connection(st)
        queued = st.call_in_loop(lambda: (conn.protocol.pending, conn.protocol.stalled))  # type: ignore[attr-defined]
        assert queued == (4, True), queued
        assert _reply(c, 1) == ["slow"]
        for i in range(20):
            assert _reply(c, i + 2) == [f"f{i}"]


# ------------------------------------------------------------------------------------------
# request_timeout


def _closed_within(c: RawClient, seconds: float) -> bool:
    c.sock.settimeout(seconds)
    try:
        return c.sock.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


def test_request_timeout_closes_an_incomplete_request(
    endpoints: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    ep = endpoints
    request = encode_request("t.fast", ["x"], 5)
    caplog.set_level(logging.INFO, logger="binrpc.server")
    with (
        ServerThread(limits_registry(), ep.unixs, ep.tcp, request_timeout=0.3),
        RawClient(ep.tcp) as c,
    ):
        start = time.monotonic()
        c.send(request[:3])  # a header in progress
        assert _closed_within(c, 3.0)
        assert 0.25 < time.monotonic() - start < 2.0
    assert "request incomplete after 0.3 s" in caplog.text


def test_request_timeout_restarts_for_each_request(endpoints: Endpoints) -> None:
    ep = endpoints
    requests = [encode_request("t.fast", [f"r{i}"], i + 1) for i in range(6)]
    with (
        ServerThread(limits_registry(), ep.unixs, request_timeout=0.4),
        RawClient(ep.unixs) as c,
    ):
        # each request completes within 0.4 s of its first byte, the stream is never idle of a
        # partial request for less: 6 x 0.2 s = 1.2 s in all, more than the timeout
        c.send(requests[0][:4])
        for i in range(6):
            time.sleep(0.2)
            nxt = requests[i + 1][:4] if i + 1 < 6 else b""
            c.send(requests[i][4:] + nxt)
            assert _reply(c, i + 1) == [f"r{i}"]
        # nothing buffered: no deadline (only idle_timeout would close it)
        assert not _closed_within(c, 0.6)
        c.send(encode_request("t.fast", ["last"], 50))
        assert _reply(c, 50) == ["last"]


def test_request_timeout_off_by_default(endpoints: Endpoints) -> None:
    ep = endpoints
    assert ServerOptions().request_timeout is None
    request = encode_request("t.fast", ["x"], 5)
    with ServerThread(limits_registry(), ep.unixs), RawClient(ep.unixs) as c:
        c.send(request[:3])
        assert not _closed_within(c, 0.5)
        c.send(request[3:])
        assert _reply(c, 5) == ["x"]


# ------------------------------------------------------------------------------------------
# call_timeout


@pytest.mark.parametrize("transport", ["unixs", "udp"])
def test_call_timeout_cancels_an_async_handler(
    endpoints: Endpoints, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    ep = endpoints
    with (
        ServerThread(limits_registry(), ep.unixs, ep.udp, call_timeout=0.2) as st,
        RawClient(ep.by_transport(transport), ep.workdir) as c,
    ):
        # the fault itself shows the timeout: the handler would answer after 5 s
        c.send(encode_request("t.sleep", ["late", 5], 7))
        assert _fault(c, 7) == (500, "call timed out")
        c.send(encode_request("t.sleep", ["soon", 0.01], 8))
        assert _reply(c, 8) == ["soon"]
        assert st.server is not None
        assert st.call_in_loop(lambda: len(st.server._tasks)) == 0
    assert "t.sleep: call timed out after 0.2 s" in caplog.text


def test_call_timeout_does_not_interrupt_sync_handlers(endpoints: Endpoints) -> None:
    ep = endpoints
    with (
        ServerThread(limits_registry(), ep.unixs, call_timeout=0.05),
        RawClient(ep.unixs) as c,
    ):
        c.send(encode_request("t.block", [0.2], 3))
        assert _reply(c, 3) == ["done"]


def test_call_timeout_a_handlers_own_timeout_is_an_internal_error(endpoints: Endpoints) -> None:
    ep = endpoints
    with (
        ServerThread(limits_registry(), ep.unixs, call_timeout=2.0),
        RawClient(ep.unixs) as c,
    ):
        c.send(encode_request("t.own_timeout", [], 3))
        assert _fault(c, 3) == (500, "Internal server error: TimeoutError")


def test_fifo_stream_pending_cap_bounds_tasks_and_resumes(workdir: str) -> None:
    address = f"unixs:{workdir}/fifo.sock"
    n = 12
    burst = b"".join(f":t.sleep:r\ns{i}\n0.2\n\n".encode() for i in range(n))
    with (
        ServerThread(limits_registry(), fifo=[address], max_pending_per_connection=3) as st,
        socket.socket(socket.AF_UNIX) as s,
    ):
        s.settimeout(5)
        s.connect(address.partition(":")[2])
        s.sendall(burst)
        time.sleep(0.1)
        assert st.server is not None
        tasks = st.call_in_loop(lambda: len(st.server._tasks))
        assert 1 <= tasks <= 3, tasks
        expected = b"".join(f"200 OK\ns{i}\n".encode() for i in range(n))
        data = b""
        while len(data) < len(expected):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert data == expected


# ------------------------------------------------------------------------------------------
# every timeout and size option is checked

NAN, INF = float("nan"), float("inf")
NOT_NUMBERS = (True, False, "5", b"5", [5])
# option -> (accepted: given -> stored, refused)
OPTION_VALUES: dict[str, tuple[dict[Any, Any], tuple[Any, ...]]] = {
    **{
        name: ({0.25: 0.25, 3: 3, None: None, INF: None}, (0, 0.0, -1, -0.5, NAN, -INF))
        for name in ("idle_timeout", "write_timeout", "request_timeout", "call_timeout",
                     "fifo_partial_timeout")
    },
    "fifo_reply_timeout": ({0.25: 0.25, 3: 3}, (0, -1, NAN, INF, None)),
    "shutdown_timeout": ({0: 0, 0.25: 0.25}, (-0.5, -1, NAN, INF, None)),
    **{
        name: ({1: 1, 4096: 4096}, (0, -1, 1.5, None))
        for name in ("binrpc_buffer_size", "max_connections", "max_pending_per_connection",
                     "max_request_size")
    },
    # ctl reads <= 0 as its fallback (4 and 1 KiB): kept
    **{
        name: ({0: 0, -1: -1, 64: 64}, (1.5, None))
        for name in ("binrpc_max_body_size", "binrpc_struct_max_body_size")
    },
}  # fmt: skip


def test_option_table_covers_every_numeric_option() -> None:
    numeric = {
        f.name
        for f in dataclasses.fields(ServerOptions)
        if f.name not in ("mode", "user", "group")
        and set(str(f.type).split(" | ")) & {"int", "float"}
    }
    assert numeric == set(OPTION_VALUES)


@pytest.mark.parametrize(
    ("name", "value"),
    [(n, v) for n, (_, bad) in OPTION_VALUES.items() for v in (*bad, *NOT_NUMBERS)],
    ids=repr,
)
def test_bad_timeout_or_size_option_is_refused(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be .*, got {re.escape(repr(value))}$"):
        ServerOptions(**{name: value})
    with pytest.raises(ValueError, match=name):
        ServerOptions().with_changes(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [(n, v, s) for n, (good, _) in OPTION_VALUES.items() for v, s in good.items()],
)
def test_good_timeout_or_size_option_is_kept(name: str, value: Any, stored: Any) -> None:
    assert getattr(ServerOptions(**{name: value}), name) == stored
