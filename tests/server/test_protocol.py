"""The sans-I/O server connections (server/_protocol.py, server/_fifo_protocol.py), without
sockets or an event loop: bytes in, requests out, replies in any order, bytes out in order,
the pending cap, back-pressure and the close-after-error rules."""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Generator
from typing import Any

import pytest

from binrpc import StreamFramer, decode_values, encode_request
from binrpc._binrpc_reply import LARGE_RECORD
from binrpc._codec import MsgType, encode_header
from binrpc._context import RpcContext
from binrpc._dispatch import call_method
from binrpc._limits import RpcLimits
from binrpc._registry import Method, Registry
from binrpc.server._fifo_protocol import INCOMPLETE_DATAGRAM, FifoConnection, FifoDatagram
from binrpc.server._protocol import (
    ABORT,
    CLOSING,
    JOIN_LIMIT,
    OPEN,
    OUT_LIMIT,
    BinrpcConnection,
    BinrpcDatagram,
    ServerConnection,
)
from binrpc.server._routing import NOT_FOUND, REFUSED, Routing, route


def registry() -> Registry:
    reg = Registry()

    @reg.rpc("t.echo")
    def echo(tag: str) -> str:
        return tag

    @reg.rpc("t.big")
    def big(size: int) -> bytes:
        return b"x" * size

    def later(ctx: RpcContext) -> Later:  # an async handler, replied by the test
        return Later()

    reg.register("t.later", later, context=True)
    reg.register("t.denied", echo)
    return reg


class Later:
    """An awaitable that the tests never await: they reply through the request's ctx."""

    def __await__(self) -> Generator[None]:
        yield None


class DenyList:
    def __init__(self, *names: str) -> None:
        self.names = names

    def refuses(self, name: str) -> bool:
        return name in self.names


def routing(refused: tuple[str, ...] = ()) -> Routing:
    reg = registry()
    if not refused:
        return Routing(reg, None, "unixs:/test")

    class Filtered:
        def get(self, name: str) -> Any:
            return None if name in refused else reg.get(name)

        def names(self) -> list[str]:
            return [n for n in reg.names() if n not in refused]

    return Routing(Filtered(), DenyList(*refused), "unixs:/test")


def binrpc_conn(
    max_pending: int = 128, max_request_size: int = 65535, **kw: Any
) -> BinrpcConnection:
    return BinrpcConnection(
        routing(**kw),
        RpcLimits(max_body_size=1 << 24),
        None,
        max_request_size=max_request_size,
        max_pending=max_pending,
        peer="127.0.0.1",
    )


def fifo_conn(max_pending: int = 128, max_request_size: int = 65535) -> FifoConnection:
    return FifoConnection(
        routing(), None, max_request_size=max_request_size, max_pending=max_pending
    )


def run(calls: Any) -> list[RpcContext]:
    """Run every request handed out (sync handlers reply at once); the contexts of the
    ones still open."""
    waiting = []
    for method, ctx in calls:
        pending = call_method(method, ctx)
        if pending is not None:
            pending.close()  # type: ignore[attr-defined]  # never run: replied by hand
            waiting.append(ctx)
    return waiting


def finish(ctx: RpcContext, text: str) -> None:
    ctx.add("s", text)
    ctx.finish()


def packets(conn: ServerConnection) -> list[tuple[int, int, list[Any]]]:
    """(type, cookie, values) of every packet in data_to_send()."""
    framer = StreamFramer()
    framer.feed(b"".join(bytes(b) for b in conn.data_to_send()))
    out = []
    while (p := framer.next_packet()) is not None:
        out.append((int(p.type), p.cookie, decode_values(p.body)))
    assert framer.buffered == 0
    return out


def reply(cookie: int, *values: Any) -> tuple[int, int, list[Any]]:
    return (int(MsgType.REPLY), cookie, list(values))


def fault(cookie: int, code: int, text: str) -> tuple[int, int, list[Any]]:
    return (int(MsgType.FAULT), cookie, [code, text])


# --------------------------------------------------------------------------------------------
# binrpc streams


def test_byte_at_a_time_gives_each_request_at_its_last_byte() -> None:
    conn = binrpc_conn()
    stream = [encode_request("t.echo", [f"r{i}"], i + 1) for i in range(3)]
    data = b"".join(stream)
    ends = {sum(map(len, stream[: i + 1])) for i in range(3)}
    for pos in range(len(data)):
        got = run(conn.receive_data(data[pos : pos + 1]))
        assert got == []
        out = packets(conn)
        if pos + 1 in ends:
            k = sorted(ends).index(pos + 1)
            assert out == [reply(k + 1, f"r{k}")]
        else:
            assert out == []
    assert conn.buffered == 0 and conn.pending == 0 and conn.want_read


def test_replies_in_any_order_leave_in_request_order() -> None:
    conn = binrpc_conn()
    burst = b"".join(encode_request("t.later", [], i) for i in (1, 2, 3))
    burst += encode_request("t.echo", ["sync"], 4)
    first, second, third = run(conn.receive_data(burst))
    assert conn.pending == 4 and packets(conn) == []  # the sync reply waits behind them
    finish(third, "c")
    assert packets(conn) == []
    finish(first, "a")
    assert packets(conn) == [reply(1, "a")]
    finish(second, "b")
    assert packets(conn) == [reply(2, "b"), reply(3, "c"), reply(4, "sync")]
    assert conn.pending == 0


def test_pending_cap_stops_and_resumes() -> None:
    conn = binrpc_conn(max_pending=2)
    burst = b"".join(encode_request("t.later", [], i) for i in range(1, 6))
    held = run(conn.receive_data(burst))
    assert len(held) == 2 and conn.pending == 2
    assert conn.stalled and not conn.want_read and not conn.can_resume
    assert conn.buffered > 0  # the rest stays in the framer
    finish(held[1], "b")  # out of order: still 2 pending
    assert not conn.can_resume
    finish(held[0], "a")
    assert conn.can_resume and packets(conn) == [reply(1, "a"), reply(2, "b")]
    held = run(conn.resume())
    assert len(held) == 2 and conn.stalled
    for request in held:
        finish(request, "x")
    held = run(conn.resume())
    assert len(held) == 1 and not conn.stalled and conn.want_read and conn.buffered == 0


def test_faults_answered_in_place_count_for_the_cap() -> None:
    conn = binrpc_conn(max_pending=3)
    burst = encode_request("t.later", [], 1)
    burst += b"".join(encode_request("no.such", [], i) for i in range(2, 10))
    (slow,) = run(conn.receive_data(burst))
    assert conn.pending == 3 and conn.stalled  # the slow one and two faults behind it
    finish(slow, "slow")
    assert packets(conn) == [
        reply(1, "slow"),
        fault(2, NOT_FOUND, "command no.such not found"),
        fault(3, NOT_FOUND, "command no.such not found"),
    ]


def test_pause_writing_stops_the_requests_until_resume_writing() -> None:
    conn = binrpc_conn()
    burst = b"".join(encode_request("t.echo", [f"r{i}"], i) for i in range(1, 5))
    requests = conn.receive_data(burst)
    run([next(requests)])
    conn.pause_writing()  # the shell's transport buffer is full, mid-read
    assert run(requests) == []
    assert conn.stalled and not conn.want_read and not conn.can_resume
    assert packets(conn) == [reply(1, "r1")]
    conn.resume_writing()
    assert conn.can_resume
    run(conn.resume())
    assert packets(conn) == [reply(i, f"r{i}") for i in range(2, 5)]
    assert conn.want_read


def test_an_oversized_packet_sends_the_replies_before_it_then_aborts() -> None:
    conn = binrpc_conn(max_request_size=1024)
    first = encode_request("t.echo", ["before"], 1)
    slow = encode_request("t.later", [], 2)
    after_slow = encode_request("t.echo", ["held"], 3)
    huge = encode_request("t.echo", ["x" * 2000], 4)
    held = run(conn.receive_data(first + slow + after_slow + huge[:100]))
    assert len(held) == 1
    assert conn.state is ABORT and conn.abort_expected and not conn.want_read
    assert packets(conn) == [reply(1, "before")]  # only what was in order
    finish(held[0], "late")  # after the abort: dropped
    assert packets(conn) == []
    assert list(conn.receive_data(encode_request("t.echo", ["more"], 5))) == []


def test_a_corrupted_packet_gets_fault_400_after_the_replies_due_then_closes() -> None:
    conn = binrpc_conn()
    (slow,) = run(conn.receive_data(encode_request("t.later", [], 1) + b"\xff\x00\x00\x00"))
    assert conn.state is CLOSING and not conn.close_expected  # a reply is still due
    assert packets(conn) == []
    finish(slow, "slow")
    assert packets(conn) == [reply(1, "slow"), fault(0, 400, "bad request: corrupted packet")]
    assert conn.close_expected


def test_a_reply_packet_as_request_gets_fault_400_and_closes() -> None:
    conn = binrpc_conn()
    bogus = encode_header(MsgType.REPLY, 0, 77)
    assert run(conn.receive_data(bogus + encode_request("t.echo", ["x"], 2))) == []
    assert packets(conn) == [fault(77, 400, "bad request: corrupted packet")]
    assert conn.close_expected


def test_unknown_and_refused_methods_get_faults_and_the_stream_goes_on() -> None:
    conn = binrpc_conn(refused=("t.denied",))
    burst = encode_request("no.such", [], 1) + encode_request("t.denied", ["x"], 2)
    burst += encode_request("t.echo", ["ok"], 3)
    run(conn.receive_data(burst))
    assert packets(conn) == [
        fault(1, NOT_FOUND, "command no.such not found"),
        fault(2, REFUSED, "method t.denied not allowed on this listener"),
        reply(3, "ok"),
    ]
    assert conn.state is OPEN


def test_eof_closes_once_the_pending_replies_are_out() -> None:
    conn = binrpc_conn()
    (slow,) = run(conn.receive_data(encode_request("t.later", [], 1)))
    conn.receive_eof()
    assert not conn.want_read and not conn.close_expected and conn.pending == 1
    finish(slow, "done")
    assert packets(conn) == [reply(1, "done")] and conn.close_expected


def test_idle_closes_only_with_nothing_in_progress() -> None:
    conn = binrpc_conn()
    (slow,) = run(conn.receive_data(encode_request("t.later", [], 1)))
    assert conn.idle() is False and conn.state is OPEN
    finish(slow, "done")
    assert conn.idle() is True and conn.close_expected


def test_request_deadline_follows_the_partial_request() -> None:
    conn = binrpc_conn()
    one, two = encode_request("t.echo", ["a"], 1), encode_request("t.echo", ["b"], 2)
    assert conn.request_deadline is None
    run(conn.receive_data(one[:3]))
    first = conn.request_deadline
    assert first is not None
    run(conn.receive_data(one[3:5]))
    assert conn.request_deadline == first  # the same request: the timer goes on
    run(conn.receive_data(one[5:] + two[:2]))
    assert conn.request_deadline not in (None, first)  # a new one: restarted
    run(conn.receive_data(two[2:]))
    assert conn.request_deadline is None  # nothing buffered: no deadline


def test_small_replies_are_joined_a_large_one_is_alone_and_written_at_once() -> None:
    conn = binrpc_conn()
    size = max(LARGE_RECORD, JOIN_LIMIT) + 1
    requests = conn.receive_data(
        encode_request("t.echo", ["a"], 1)
        + encode_request("t.big", [size], 2)
        + encode_request("t.echo", ["b"], 3)
    )
    run([next(requests)])
    assert not conn.write_due
    run([next(requests)])
    assert conn.write_due  # written before the next request runs
    writes = conn.data_to_send()
    assert not conn.write_due
    assert len(writes) == 3 and isinstance(writes[1], memoryview) and len(writes[1]) == size
    run(requests)
    assert packets(conn) == [reply(3, "b")]


def test_gathered_output_beyond_the_limit_is_due_at_once() -> None:
    conn = binrpc_conn()
    size = 16 * 1024  # below LARGE_RECORD: a plain reply
    assert size < LARGE_RECORD
    n = OUT_LIMIT // size + 2
    requests = conn.receive_data(b"".join(encode_request("t.big", [size], i) for i in range(n)))
    sizes = []
    for request in requests:
        run([request])
        sizes.append(sum(len(b) for b in conn.data_to_send()) if conn.write_due else 0)
    # due as soon as the gathered replies pass the limit, not before
    assert sum(sizes) > 0 and len(sizes) == n
    due = sizes.index(next(s for s in sizes if s))
    assert sizes[due] > OUT_LIMIT and sizes[due] - sizes[due] // (due + 1) <= OUT_LIMIT


def test_after_connection_lost_everything_is_dropped() -> None:
    conn = binrpc_conn()
    (slow,) = run(conn.receive_data(encode_request("t.later", [], 1)))
    conn.connection_lost()
    finish(slow, "late")
    assert conn.data_to_send() == [] and not conn.want_read and not conn.close_expected


# --------------------------------------------------------------------------------------------
# FIFO streams


def fifo_text(conn: ServerConnection) -> bytes:
    return b"".join(bytes(b) for b in conn.data_to_send())


def test_fifo_byte_at_a_time_and_replies_in_order() -> None:
    conn = fifo_conn()
    data = b":t.later:\n\n:t.echo:\nhello\n\n"
    held: list[RpcContext] = []
    for pos in range(len(data)):
        held += run(conn.receive_data(data[pos : pos + 1]))
        if pos + 1 < len(data):
            assert fifo_text(conn) == b""
    assert len(held) == 1 and conn.pending == 2
    assert fifo_text(conn) == b""  # the echo reply waits for the first one
    finish(held[0], "first")
    assert fifo_text(conn) == b"200 OK\nfirst\n200 OK\nhello\n"


def test_fifo_errors_answer_and_the_stream_goes_on() -> None:
    conn = fifo_conn()
    run(conn.receive_data(b"bogus\n\n:no.such:\n\n:t.echo:\nok\n\n"))
    text = fifo_text(conn).decode()
    assert text.startswith("400 ")
    assert "500 Command 'no.such' not found\n200 OK\nok\n" in text
    assert conn.state is OPEN


def test_fifo_overflow_without_a_request_aborts() -> None:
    conn = fifo_conn(max_request_size=64)
    run(conn.receive_data(b":t.echo:\nok\n\n" + b"x" * 100))
    assert conn.abort_expected
    assert fifo_text(conn) == b"200 OK\nok\n"


def test_fifo_pending_cap() -> None:
    conn = fifo_conn(max_pending=1)
    held = run(conn.receive_data(b":t.later:\n\n:t.echo:\nx\n\n"))
    assert len(held) == 1 and conn.stalled and not conn.can_resume
    finish(held[0], "a")
    assert conn.can_resume
    run(conn.resume())
    assert fifo_text(conn) == b"200 OK\na\n200 OK\nx\n"


# --------------------------------------------------------------------------------------------
# datagrams


def test_binrpc_datagrams() -> None:
    dg = BinrpcDatagram(routing(), RpcLimits(), None, max_reply_size=65507)
    addr = ("127.0.0.1", 4000)
    run(dg.receive_data(encode_request("t.echo", ["x"], 5), addr))
    assert dg.receive_data(b"\xff\x00\x00\x00", addr) == []  # corrupted: fault 400
    assert dg.receive_data(encode_request("t.echo", ["x"], 6)[:5], addr) == []  # ignored
    run(dg.receive_data(encode_request("t.echo", ["unbound"], 7), ""))  # no address: dropped
    (late,) = run(dg.receive_data(encode_request("t.later", [], 8), addr))
    out = dg.data_to_send()
    assert [a for _, a in out] == [addr, addr]
    assert out[1][0] == fault_packet(0, 400, "bad request: corrupted packet")
    finish(late, "late")
    assert [a for _, a in dg.data_to_send()] == [addr]
    run(dg.receive_data(encode_request("t.big", [70000], 9), addr))  # too big for a datagram
    ((data, _),) = dg.data_to_send()
    assert bytes(data)[1] >> 4 == int(MsgType.FAULT)


def fault_packet(cookie: int, code: int, text: str) -> bytes:
    from binrpc._codec import encode_fault

    return encode_fault(code, text, cookie)


def test_fifo_datagrams() -> None:
    dg = FifoDatagram(routing(), None, max_reply_size=65507)
    addr = ("127.0.0.1", 4000)
    run(dg.receive_data(b":t.echo:\nhi\n\nignored", addr))
    assert dg.receive_data(b":t.echo:\nhi\n", addr) == []
    out = dg.data_to_send()
    assert out == [(b"200 OK\nhi\n", addr), (out[1][0], addr)]
    assert INCOMPLETE_DATAGRAM.encode() in bytes(out[1][0])


# --------------------------------------------------------------------------------------------
# routing and layering


def test_route_the_same_for_every_protocol() -> None:
    r = routing(refused=("t.denied",))
    method = route(r, "t.echo", "p")
    assert isinstance(method, Method) and method.name == "t.echo"
    assert route(r, "t.denied", "p") == REFUSED
    assert route(r, "no.such", "p") == NOT_FOUND


SANS_IO = ("_protocol.py", "_fifo_protocol.py", "_routing.py")
FORBIDDEN = {"asyncio", "socket", "selectors", "ssl", "threading"}


@pytest.mark.parametrize("name", SANS_IO)
def test_the_connection_objects_import_no_io(name: str) -> None:
    import binrpc.server

    path = pathlib.Path(binrpc.server.__file__).parent / name
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module or ""]
            if node.level == 1:  # a sibling in server/: only the other sans-I/O ones
                assert f"_{(node.module or '').lstrip('_')}.py" in SANS_IO, node.module
        else:
            continue
        for mod in mods:
            assert mod.split(".")[0] not in FORBIDDEN, (name, mod)


def test_on_reply_announces_only_the_replies_outside_an_iteration() -> None:
    conn = binrpc_conn()
    announced: list[int] = []
    conn.on_reply = lambda: announced.append(conn.pending)
    burst = encode_request("t.later", [], 1) + encode_request("t.echo", ["x"], 2)
    (slow,) = run(conn.receive_data(burst))
    assert announced == []  # the echo reply came during the iteration: gathered
    finish(slow, "late")
    assert announced == [0]
    assert packets(conn) == [reply(1, "late"), reply(2, "x")]
