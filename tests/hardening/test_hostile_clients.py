"""Issue #7, part 2: hostile connection behaviour against an in-process server.

Floods past ``max_connections``, connect/close cycles (file descriptor leaks), slowloris
(what ``idle_timeout`` means), clients that never read their replies (``write_timeout``,
memory), handlers that raise or hang. Each test ends with a fresh client getting a correct
answer in under 2 s.

``idle_timeout`` (src/binrpc/server/_conn.py): the time a stream connection may stay
*silent* with no reply pending. Every received byte restarts it, so it reaps dead, idle and
half-sent connections, but not a client that trickles bytes; a pending reply (a slow async
handler) keeps the connection too. Without it (the default, as in ctl) nothing is ever reaped.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import tracemalloc

import pytest

from binrpc import Fault, encode_request
from binrpc._codec import MsgType
from binrpc._registry import Registry

from .conftest import (
    STREAMS,
    TRANSPORTS,
    Endpoints,
    RawClient,
    ServerThread,
    assert_healthy,
    closing_all,
    connect,
    fault_of,
    fd_count,
    read_all,
    wait_for,
)

MiB = 1 << 20


def hostile_registry(release: threading.Event | None = None) -> Registry:
    reg = Registry()

    @reg.rpc("t.big")
    def big(n: int) -> str:
        return "x" * n

    @reg.rpc("t.raise")
    def raise_(kind: str) -> int:
        if kind == "fault":
            raise Fault(418, "teapot " * 100)
        if kind == "recursion":

            def down(n: int) -> int:
                return down(n + 1)

            return down(0)
        if kind == "object":
            return object()  # type: ignore[return-value]
        raise ValueError("boom")

    @reg.rpc("t.araise")
    async def araise() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("async boom")

    @reg.rpc("t.hang")
    async def hang() -> str:
        if release is None:
            await asyncio.Event().wait()  # forever
        assert release is not None
        while not release.is_set():
            await asyncio.sleep(0.01)
        return "released"

    return reg


def _connections(st: ServerThread) -> int:
    return int(st.call_in_loop(lambda: len(st.server.connections)))  # type: ignore[union-attr]


def _healthy(ep: Endpoints, transports: tuple[str, ...] = TRANSPORTS) -> None:
    for transport in transports:
        assert_healthy(ep.by_transport(transport), ep.workdir)


# ---------------------------------------------------------------------------------------------
# floods and descriptor leaks


def test_flood_past_max_connections(endpoints: Endpoints) -> None:
    ep = endpoints
    with ServerThread(None, ep.unixs, ep.tcp, max_connections=16) as st:
        base = fd_count()
        held = [RawClient(ep.unixs if i % 2 else ep.tcp) for i in range(16)]
        try:
            for i, c in enumerate(held):
                assert c.call("core.echo", [f"held{i}"], cookie=i + 1) == ("reply", [f"held{i}"])
            assert _connections(st) == 16
            extra: list[socket.socket] = []
            with closing_all(extra):
                start = time.monotonic()
                for i in range(200):
                    try:
                        extra.append(connect(ep.unixs if i % 2 else ep.tcp, timeout=2))
                    except (ConnectionRefusedError, BlockingIOError):
                        pass  # a full backlog is a refusal too
                # each extra connection is closed at once (EOF or reset, no data)
                for s in extra:
                    data, closed = read_all(s, 1.0)
                    assert closed and data == b""
                assert time.monotonic() - start < 10
                # the held connections are served throughout
                for i, c in enumerate(held):
                    assert c.call("core.echo", [f"again{i}"]) == ("reply", [f"again{i}"])
                assert _connections(st) == 16
        finally:
            for c in held:
                c.close()
        assert wait_for(lambda: _connections(st) == 0)
        _healthy(ep, STREAMS)
        assert wait_for(lambda: fd_count() <= base + 2), (base, fd_count())


def _cycle(address: str, i: int, request: bytes) -> None:
    s = connect(address, timeout=5)
    try:
        mode = i % 5
        if mode == 1:
            s.sendall(request[:7])  # half a request, then gone
        elif mode == 2:
            s.sendall(request)  # a request whose reply nobody reads
        elif mode == 3 and s.family != socket.AF_UNIX:
            # RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        elif mode == 4:
            s.sendall(b"\xff\xff\xff\xff")  # corrupted: fault and close
    finally:
        s.close()


@pytest.mark.parametrize("transport", STREAMS)
def test_connect_close_cycles_leak_no_descriptor(endpoints: Endpoints, transport: str) -> None:
    ep = endpoints
    cycles = 10_000
    with ServerThread(None, ep.unixs, ep.tcp) as st:
        address = ep.by_transport(transport)
        assert_healthy(address)
        assert wait_for(lambda: _connections(st) == 0)
        before = fd_count()
        request = encode_request("core.echo", ["x" * 100], 9)
        start = time.monotonic()
        for i in range(cycles):
            _cycle(address, i, request)
            if i % 50 == 49:
                # let the server (same process) accept: a full TCP backlog drops SYNs, and
                # the client's retransmission waits a whole second
                wait_for(lambda: _connections(st) == 0, 2, interval=0.001)
        elapsed = time.monotonic() - start
        assert wait_for(lambda: _connections(st) == 0, 10), _connections(st)
        assert wait_for(lambda: fd_count() <= before + 2, 5), (before, fd_count())
        assert elapsed < 60
        _healthy(ep, STREAMS)


# ---------------------------------------------------------------------------------------------
# slowloris: what idle_timeout does and does not do


def _trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(interval):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


@pytest.mark.parametrize("transport", STREAMS)
def test_idle_timeout_closes_silent_and_half_sent_connections(
    endpoints: Endpoints, transport: str
) -> None:
    ep = endpoints
    with ServerThread(None, ep.unixs, ep.tcp, idle_timeout=1.0):
        address = ep.by_transport(transport)
        request = encode_request("core.echo", ["slow"], 7)
        with connect(address) as silent, connect(address) as half, connect(address) as used:
            start = time.monotonic()
            half.sendall(request[: len(request) // 2])
            used.sendall(request)
            for s in (silent, half, used):
                data, closed = read_all(s, 3.0)
                assert closed, "an idle connection was kept"
                assert 0.8 < time.monotonic() - start < 2.8
            assert read_packets_cookies(data) == [7]  # `used` got its reply before the close
        _healthy(ep, STREAMS)


def read_packets_cookies(data: bytes) -> list[int]:
    from .conftest import read_packets

    return [p.cookie for p in read_packets(data)]


@pytest.mark.parametrize("idle_timeout", [1.0, None])
def test_trickling_client_is_kept_and_blocks_nobody(
    endpoints: Endpoints, idle_timeout: float | None
) -> None:
    """A byte every 0.4 s: idle_timeout=1 does not close it (it is not silent), nor does the
    ctl-compatible default; either way the other clients are served meanwhile, and the
    request, once complete, is answered."""
    ep = endpoints
    with ServerThread(None, ep.unixs, ep.tcp, idle_timeout=idle_timeout):
        request = encode_request("core.echo", ["t"], 0x51)
        stop = threading.Event()
        with connect(ep.tcp) as s:
            head, tail = request[:-8], request[-8:]
            s.sendall(head)
            worker = threading.Thread(target=_trickle, args=(s, tail, 0.4, stop))
            worker.start()
            try:
                deadline = time.monotonic() + 2.4
                while time.monotonic() < deadline:
                    _healthy(ep, STREAMS)
                    time.sleep(0.2)
                worker.join(5)
                data, _ = read_all(s, 1.0)
                assert read_packets_cookies(data) == [0x51]
            finally:
                stop.set()
                worker.join()


def test_tricklers_cannot_hold_every_slot(endpoints: Endpoints) -> None:
    ep = endpoints
    with ServerThread(
        None, ep.unixs, ep.tcp, max_connections=4, idle_timeout=1.0, request_timeout=1.0
    ):
        stop = threading.Event()
        socks = [connect(ep.tcp) for _ in range(4)]
        workers = [
            threading.Thread(target=_trickle, args=(s, b"\xa1\x0c\x00\x00\x10" * 20, 0.4, stop))
            for s in socks
        ]
        with closing_all(socks):
            for w in workers:
                w.start()
            try:
                time.sleep(3.0)
                assert_healthy(ep.tcp)
            finally:
                stop.set()
                for w in workers:
                    w.join()


# ---------------------------------------------------------------------------------------------
# clients that do not read their replies


def _non_reader(address: str, requests: list[bytes]) -> socket.socket:
    s = connect(address)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for r in requests:
        s.sendall(r)
    return s


@pytest.mark.parametrize("transport", STREAMS)
def test_non_reader_is_closed_after_write_timeout(endpoints: Endpoints, transport: str) -> None:
    """A client that asks for a 1 MiB reply every 0.1 s and never reads: once the kernel
    buffers are full (a few MiB on TCP), the server waits write_timeout=1 s and closes it;
    other clients are served meanwhile and the server's memory stays bounded."""
    ep = endpoints
    with ServerThread(
        hostile_registry(), ep.unixs, ep.tcp, ep.udp, write_timeout=1.0, binrpc_max_body_size=2048
    ) as st:
        address = ep.by_transport(transport)
        tracemalloc.start()
        try:
            with _non_reader(address, []) as s:
                assert wait_for(lambda: _connections(st) == 1)
                start = time.monotonic()
                sent = 0
                closed = False
                while time.monotonic() - start < 8:
                    try:
                        s.sendall(encode_request("t.big", [MiB], sent))
                        sent += 1
                    except OSError:  # reset by the server
                        closed = True
                        break
                    _healthy(ep, (transport, "udp"))
                    if wait_for(lambda: _connections(st) == 0, 0.1):
                        closed = True
                        break
                _, peak = tracemalloc.get_traced_memory()
                assert closed, f"kept after {sent} unread 1 MiB replies"
                assert sent < 40
                got = 0
                s.setblocking(False)
                try:
                    while chunk := s.recv(MiB):
                        got += len(chunk)
                except (BlockingIOError, ConnectionResetError):
                    pass
                assert got < sent * MiB, "every reply was delivered"
        finally:
            tracemalloc.stop()
        assert peak < 24 * MiB, f"peak {peak / MiB:.1f} MiB"
        _healthy(ep, (transport,))


def test_pipelined_non_reader_memory_is_bounded(endpoints: Endpoints) -> None:
    ep = endpoints
    with ServerThread(
        hostile_registry(), ep.unixs, write_timeout=1.0, binrpc_max_body_size=2048
    ) as st:
        tracemalloc.start()
        try:
            burst = b"".join(encode_request("t.big", [MiB], i) for i in range(64))
            with _non_reader(ep.unixs, []) as s:
                assert wait_for(lambda: _connections(st) == 1)
                s.sendall(burst)
                assert wait_for(lambda: _connections(st) == 0, 8)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert_healthy(ep.unixs)
        assert peak < 16 * MiB, f"peak {peak / MiB:.0f} MiB for one connection"


# ---------------------------------------------------------------------------------------------
# handlers that raise or hang


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_raising_handlers_give_faults_and_the_server_goes_on(
    endpoints: Endpoints, transport: str
) -> None:
    ep = endpoints
    with ServerThread(hostile_registry(), ep.unixs, ep.unixd, ep.udp, ep.tcp):
        with RawClient(ep.by_transport(transport), ep.workdir) as c:
            for kind, expected in (
                ("value", (500, "Internal server error: ValueError")),
                ("recursion", (500, "Internal server error: RecursionError")),
                ("object", (500, "Internal server error: LocalProtocolError")),
            ):
                assert c.call("t.raise", [kind]) == ("fault", expected)
            kind, (code, text) = c.call("t.raise", ["fault"])
            assert (kind, code, len(text)) == ("fault", 418, 254)
            assert c.call("t.araise") == ("fault", (500, "Internal server error: RuntimeError"))
            assert c.call("core.echo", ["after"]) == ("reply", ["after"])
        _healthy(ep)


def test_hanging_handlers_block_nobody_and_shutdown_still_ends(endpoints: Endpoints) -> None:
    ep = endpoints
    st = ServerThread(hostile_registry(), ep.unixs, ep.unixd, ep.udp, ep.tcp, shutdown_timeout=0.5)
    with st:
        hung = [RawClient(ep.by_transport(t), ep.workdir) for t in TRANSPORTS for _ in range(3)]
        try:
            for i, c in enumerate(hung):
                c.send(encode_request("t.hang", [], i + 1))
            _healthy(ep)
            for c in hung:
                assert c.recv_packet(0.05) is None
            # pipelined behind a hung request on the same stream: held back, in order
            hung[0].send(encode_request("core.echo", ["queued"], 99))
            assert hung[0].recv_packet(0.2) is None
            _healthy(ep)
            start = time.monotonic()
            st.stop()
            assert time.monotonic() - start < 3.0, "shutdown waited for hung handlers"
        finally:
            for c in hung:
                c.close()


def test_per_call_timeout_gives_a_fault(endpoints: Endpoints) -> None:
    ep = endpoints
    with (
        ServerThread(hostile_registry(), ep.unixs, shutdown_timeout=0.2, call_timeout=0.5),
        RawClient(ep.unixs) as c,
    ):
        c.send(encode_request("t.hang", [], 5))
        p = c.recv_packet(2.0)
        assert p is not None, "no answer from a hung handler"
        assert p.type == MsgType.FAULT and fault_of(p) == (500, "call timed out")


def test_in_flight_requests_per_connection_are_bounded(endpoints: Endpoints) -> None:
    ep = endpoints
    release = threading.Event()
    with ServerThread(hostile_registry(release), ep.unixs) as st:
        try:
            with connect(ep.unixs) as s:
                burst = encode_request("t.hang", [], 1) * 5000
                s.sendall(burst)
                time.sleep(0.5)
                tasks = st.call_in_loop(lambda: len(st.server._tasks))  # type: ignore[union-attr]
                assert tasks <= 1024, f"{tasks} tasks in flight for one connection"
        finally:
            release.set()
