"""Stream output paths shaped for speed (issue #6), uvloop and ``binrpcd --loop``.

* the replies of one read are written with one ``transport.write``, in request order, also
  around async handlers (held back behind an unfinished one, not behind one that replied
  before its first await);
* a large BYTES/STR value goes to the transport as it is (``chunk_sink``), and the bytes on
  the wire are those of the joined packet;
* the end of the parameters in ``scan`` gives the codes it always gave;
* the server on uvloop (skipped when uvloop is not importable) and ``binrpcd --loop``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from binrpc import Struct, decode_values, encode_request, parse_packet
from binrpc._binrpc_context import BinrpcContext
from binrpc._binrpc_reply import LARGE_RECORD, Buffer
from binrpc._codec import MsgType, parse_request
from binrpc._context import RpcContext
from binrpc._dispatch import call_method
from binrpc._limits import RpcLimits
from binrpc._registry import Registry
from binrpc.cli.daemon import ConfigError, loop_factory
from binrpc.server import serve
from binrpc.server._conn import StreamConnection

from .conftest import Endpoints, RawClient, ServerThread, free_port
from .helpers import decode_reply, one, run

KiB = 1024


def stream_registry() -> Registry:
    reg = Registry()

    @reg.rpc("t.fast")
    def fast(tag: str) -> str:
        return tag

    @reg.rpc("t.sleep")
    async def sleep(tag: str, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return tag

    @reg.rpc("t.bytes")
    def big_bytes(size: int) -> bytes:
        return bytes(range(256)) * (size // 256)

    @reg.rpc("t.text")
    def big_text(size: int) -> str:
        return "é" * size

    def member(ctx: RpcContext) -> None:
        handle = ctx.add("{")
        ctx.struct_add(handle, "sy", "name", "x", "data", b"\1" * (100 * KiB))
        ctx.struct_add(handle, "d", "after", 7)

    reg.register("t.member", member, context=True)
    return reg


# --------------------------------------------------------------------------------------------
# one write per read (no sockets: a transport that counts its writes)


class CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class _Address:
    proto = "unixs"


class _Listener:
    from binrpc.server import ListenerPolicy

    address = _Address()
    policy = ListenerPolicy()
    methods = None
    method_filter = None


def _cookies(data: bytes) -> list[int]:
    from binrpc import StreamFramer

    framer = StreamFramer()
    framer.feed(data)
    out = []
    while (p := framer.next_packet()) is not None:
        out.append(p.cookie)
    return out


async def test_pipelined_replies_leave_in_one_write() -> None:
    conn = StreamConnection(serve(None, "unixs:/nonexistent/x.sock"), _Listener())  # type: ignore[arg-type]
    transport = CountingTransport()
    conn.connection_made(transport)
    burst = b"".join(encode_request("core.echo", [str(i)], i) for i in range(64))
    conn.data_received(burst)
    assert len(transport.writes) == 1
    assert _cookies(transport.writes[0]) == list(range(64))
    # an unknown method and a fault are part of the same write, in order
    conn.data_received(
        encode_request("core.echo", ["a"], 1)
        + encode_request("no.such", [], 2)
        + encode_request("core.echo", ["b"], 3)
    )
    assert len(transport.writes) == 2
    assert _cookies(transport.writes[1]) == [1, 2, 3]


async def test_a_corrupted_packet_closes_after_the_replies_due() -> None:
    conn = StreamConnection(serve(None, "unixs:/nonexistent/x.sock"), _Listener())  # type: ignore[arg-type]
    transport = CountingTransport()
    conn.connection_made(transport)
    conn.data_received(encode_request("core.echo", ["a"], 1) + b"\xff\x00\x00\x00")
    assert len(transport.writes) == 1
    assert _cookies(transport.writes[0]) == [1, 0]  # the reply, then fault 400 (cookie 0)
    assert transport.closed


class EndedTlsTransport(CountingTransport):
    """A TLS transport after the peer's close_notify: pausing it fails (asyncio's
    _SSLProtocolTransport has lost its protocol) until connection_lost comes."""

    def __init__(self) -> None:
        super().__init__()
        self.eof = False

    def pause_reading(self) -> None:
        if self.eof:
            raise AttributeError("'NoneType' object has no attribute '_pause_reading'")


async def test_shutdown_after_eof_does_not_touch_the_reading_side() -> None:
    conn = StreamConnection(serve(None, "unixs:/nonexistent/x.sock"), _Listener())  # type: ignore[arg-type]
    transport = EndedTlsTransport()
    conn.connection_made(transport)
    conn.data_received(encode_request("core.echo", ["a"], 1))
    transport.eof = True
    assert conn.eof_received() is False  # nothing pending: the transport may close
    conn.shutdown()  # server shutdown before connection_lost: no exception
    assert _cookies(transport.writes[0]) == [1]


# --------------------------------------------------------------------------------------------
# order around async handlers, on real sockets


def test_sync_replies_of_one_read_around_an_async_one(endpoints: Endpoints) -> None:
    ep = endpoints
    with ServerThread(stream_registry(), ep.unixs), RawClient(ep.unixs) as c:
        c.send(
            encode_request("t.fast", ["1"], 1)
            + encode_request("t.sleep", ["2", 0.3], 2)
            + encode_request("t.fast", ["3"], 3)
            + encode_request("t.fast", ["4"], 4)
        )
        first = c.recv_packet(0.2)
        assert first is not None and first.cookie == 1  # not held back by the later sleep
        assert c.recv_packet(0.1) is None  # 3 and 4 wait for 2
        rest = [c.recv_packet(2.0) for _ in range(3)]
        assert [p.cookie for p in rest if p is not None] == [2, 3, 4]
        assert [decode_values(p.body) for p in rest if p is not None] == [["2"], ["3"], ["4"]]


def test_an_async_handler_that_replied_holds_nothing_back(endpoints: Endpoints) -> None:
    ep = endpoints
    reg = stream_registry()
    finish = threading.Event()  # t.early works on until every reply has arrived

    async def early(ctx: RpcContext) -> None:
        # reply first, then go on working: later requests need not wait
        ctx.add("s", "early")
        ctx.send()
        await asyncio.to_thread(finish.wait, 30)

    reg.register("t.early", early, context=True)
    with ServerThread(reg, ep.unixs), RawClient(ep.unixs) as c:
        try:
            c.send(
                encode_request("t.early", [], 1)
                + encode_request("t.fast", ["2"], 2)
                + encode_request("t.sleep", ["3", 0.05], 3)
                + encode_request("t.fast", ["4"], 4)
            )
            got = [c.recv_packet(10.0) for _ in range(4)]
            assert [p.cookie for p in got if p is not None] == [1, 2, 3, 4]
            assert decode_values(got[0].body) == ["early"]  # type: ignore[union-attr]
        finally:
            finish.set()


# --------------------------------------------------------------------------------------------
# large values: not copied into the reply, same bytes on the wire


def _big_limits() -> dict[str, Any]:
    return {"binrpc_max_body_size": 4096, "binrpc_struct_max_body_size": 4096}


@pytest.mark.parametrize("transport", ["unixs", "tcp"])
def test_large_values_over_streams(endpoints: Endpoints, transport: str) -> None:
    ep = endpoints
    with (
        ServerThread(stream_registry(), ep.unixs, ep.tcp, **_big_limits()),
        RawClient(ep.by_transport(transport), timeout=10) as c,
    ):
        kind, values = c.call("t.bytes", [1024 * KiB], cookie=5)
        assert kind == "reply" and values == [bytes(range(256)) * 4096]
        kind, values = c.call("t.text", [100 * KiB], cookie=6)
        assert kind == "reply" and values == ["é" * (100 * KiB)]
        kind, values = c.call("t.member", cookie=7)
        assert kind == "reply"
        assert values == [Struct([("name", "x"), ("data", b"\1" * (100 * KiB)), ("after", 7)])]
        # small replies after and between large ones, pipelined
        c.send(
            encode_request("core.echo", ["a"], 8)
            + encode_request("t.bytes", [LARGE_RECORD * 2], 9)
            + encode_request("core.echo", ["b"], 10)
        )
        got = [c.recv_packet(5.0) for _ in range(3)]
        assert [p.cookie for p in got if p is not None] == [8, 9, 10]
        assert decode_values(got[1].body)[0] == bytes(range(256)) * (LARGE_RECORD * 2 // 256)  # type: ignore[union-attr]


def test_large_value_over_a_datagram_is_still_a_fault(endpoints: Endpoints) -> None:
    ep = endpoints
    with (
        ServerThread(stream_registry(), ep.unixd, **_big_limits()),
        RawClient(ep.unixd, ep.workdir) as c,
    ):
        kind, (code, text) = c.call("t.bytes", [100 * KiB])
        assert (kind, code) == ("fault", 500) and "too big for a datagram" in text


@pytest.mark.parametrize(
    ("method", "params", "chunked"),
    [
        ("t.bytes", [LARGE_RECORD], True),
        ("t.text", [LARGE_RECORD], True),
        ("t.member", [], True),
        ("t.bytes", [256], False),
        ("t.fast", ["x"], False),
    ],
)
def test_chunk_sink_gets_the_same_bytes_as_sink(
    method: str, params: list[Any], chunked: bool
) -> None:
    """Sans-I/O: with a chunk_sink, a large reply comes as buffers whose concatenation is
    the packet the plain sink gets; a small one still goes to the plain sink."""
    limits = RpcLimits(max_body_size=4096 * KiB, struct_max_body_size=4096 * KiB)
    registry = stream_registry()
    expected = run(registry, method, params, limits=limits)
    packet = parse_packet(encode_request(method, params, 0x1234))
    assert packet is not None
    name, reader = parse_request(packet.body)
    plain: list[bytes] = []
    chunks: list[list[Buffer]] = []
    ctx = BinrpcContext(reader, 0x1234, plain.append, limits, chunk_sink=chunks.append)
    m = registry.get(name)
    assert m is not None and call_method(m, ctx) is None
    if not chunked:
        assert (plain, chunks) == (expected, [])
        return
    assert plain == [] and len(chunks) == 1
    assert b"".join(bytes(c) for c in chunks[0]) == expected[0]
    assert any(len(c) >= LARGE_RECORD for c in chunks[0])
    assert decode_reply(expected[0])[0] == "reply"


def test_chunk_sink_reply_above_a_datagram_limit_is_not_chunked() -> None:
    limits = RpcLimits(max_body_size=4096 * KiB)
    sent = run(stream_registry(), "t.bytes", [100 * KiB], limits=limits, max_reply_size=65535)
    kind, _, (code, text) = decode_reply(sent[0])
    assert (kind, code) == ("fault", 500) and "too big for a datagram" in text


# --------------------------------------------------------------------------------------------
# scan: the end of the parameters without exceptions, same codes


def _scanner(fmt: str, repeat: int = 1, add: bool = True) -> Registry:
    """t.scan: scan(fmt) ``repeat`` times; adds each result (``add``), else adds nothing so
    that the deferred fault of a failed scan is the reply."""
    reg = Registry()

    def handler(ctx: RpcContext) -> None:
        for _ in range(repeat):
            r = ctx.scan(fmt)
            if add:
                ctx.add("d", int(r))

    reg.register("t.scan", handler, context=True)
    return reg


@pytest.mark.parametrize(
    ("fmt", "params", "auto", "expected"),
    [
        ("*.s", [], False, ("reply", [0])),
        ("*s", [], False, ("reply", [0])),
        ("*.d", [], True, ("reply", [0])),
        ("s", [], False, ("fault", (400, "error at parameter 0: expected string type but "
                                          "end of packet encountered"))),
        (".d", [], False, ("fault", (400, "error at parameter 0: expected integer type but "
                                          "end of packet encountered"))),
        ("sf", ["a"], False, ("fault", (400, "error at parameter 1: expected float type but "
                                             "end of packet encountered"))),
        ("*sd", ["a"], False, ("reply", [1])),
    ],
)  # fmt: skip
def test_scan_at_the_end_of_the_parameters(
    fmt: str, params: list[Any], auto: bool, expected: tuple[str, Any]
) -> None:
    limits = RpcLimits(autoconversion=auto)
    registry = _scanner(fmt, add=expected[0] == "reply")
    assert one(registry, "t.scan", params, limits=limits) == expected


def test_scan_at_the_end_inside_a_struct_left_open_is_more_data() -> None:
    # autoconversion consumes a struct start and leaves it open (as ctl); the end of the
    # body is then "more data needed", which "*" accepts like the end of the packet
    auto = RpcLimits(autoconversion=True)
    unterminated = b"\x03"  # a struct start, nothing after it
    assert one(_scanner("*.s", 2), "t.scan", raw_params=unterminated, limits=auto) == (
        "reply",
        [0, 0],
    )
    reg = Registry()

    def handler(ctx: RpcContext) -> None:
        ctx.scan(".s")
        ctx.scan(".s")

    reg.register("t.scan", handler, context=True)
    assert one(reg, "t.scan", raw_params=unterminated, limits=auto) == (
        "fault",
        (400, "error at parameter 0: expected string type but more data needed"),
    )


# --------------------------------------------------------------------------------------------
# uvloop


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    uvloop = pytest.importorskip("uvloop", exc_type=ImportError)
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def test_server_on_uvloop(endpoints: Endpoints) -> None:
    factory = _uvloop_factory()
    ep = endpoints
    with ServerThread(
        stream_registry(), ep.unixs, ep.unixd, ep.udp, ep.tcp, loop_factory=factory,
        **_big_limits(),
    ) as st:  # fmt: skip
        assert "uvloop" in type(st.loop).__module__
        for transport in ("unixs", "unixd", "udp", "tcp"):
            with RawClient(ep.by_transport(transport), ep.workdir) as c:
                assert c.call("core.echo", ["on uvloop"]) == ("reply", ["on uvloop"])
                assert c.call("no.such") == ("fault", (500, "command no.such not found"))
        with RawClient(ep.unixs, timeout=10) as c:
            c.send(b"".join(encode_request("core.echo", [str(i)], i) for i in range(64)))
            got = [c.recv_packet() for _ in range(64)]
            assert [p.cookie for p in got if p is not None] == list(range(64))
            c.send(encode_request("t.sleep", ["s", 0.05], 1) + encode_request("t.fast", ["f"], 2))
            got = [c.recv_packet(2.0) for _ in range(2)]
            assert [p.cookie for p in got if p is not None] == [1, 2]
            kind, values = c.call("t.bytes", [1024 * KiB])
            assert kind == "reply" and len(values[0]) == 1024 * KiB
        with RawClient(ep.tcp) as c:
            # a corrupted packet: fault 400 (cookie 0), then the server closes
            c.send(b"\xff\x00\x00\x00")
            p = c.recv_packet()
            assert p is not None and p.type == MsgType.FAULT and p.cookie == 0
            assert c.closed_by_server()
        with RawClient(ep.unixs) as c:
            # half-close: the reply still comes
            c.send(encode_request("core.echo", ["half"], 3))
            c.sock.shutdown(1)
            p = c.recv_packet()
            assert p is not None and decode_values(p.body) == ["half"]


# --------------------------------------------------------------------------------------------
# binrpcd --loop


def test_loop_factory_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loop_factory("asyncio") == (None, "asyncio")
    with pytest.raises(ConfigError):
        loop_factory("trio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not importable
    assert loop_factory("auto") == (None, "asyncio")
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_loop_factory_auto_picks_uvloop_when_installed() -> None:
    factory = _uvloop_factory()
    chosen, name = loop_factory("auto")
    assert chosen is factory and name.startswith("uvloop")
    assert loop_factory("uvloop")[0] is factory


def _daemon(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Start binrpcd, wait for its listener, stop it with SIGTERM: (status, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "binrpc.cli.daemon", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.startswith(b"listening on "):
            proc.terminate()
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode()


@pytest.mark.parametrize("choice", ["asyncio", "auto", "uvloop"])
def test_binrpcd_prints_its_loop(workdir: str, choice: str) -> None:
    try:
        import uvloop  # noqa: F401

        has_uvloop = True
    except ImportError:
        has_uvloop = False
    rc, err = _daemon(["--loop", choice, "--binrpc", f"tcp:127.0.0.1:{free_port()}"])
    if choice == "uvloop" and not has_uvloop:
        assert rc == 1 and "uvloop is not installed" in err
        return
    assert rc == 0, err
    expected = "uvloop" if choice == "uvloop" or (choice == "auto" and has_uvloop) else "asyncio"
    assert f"binrpcd: event loop {expected}" in err


def test_binrpcd_loop_from_the_config_file(workdir: str) -> None:
    cfg = os.path.join(workdir, "d.toml")
    with open(cfg, "w") as fh:
        fh.write(f'loop = "asyncio"\nbinrpc = "tcp:127.0.0.1:{free_port()}"\n')
    rc, err = _daemon(["--config", cfg])
    assert rc == 0 and "binrpcd: event loop asyncio" in err, err


def test_binrpcd_auto_without_uvloop_runs_on_asyncio(workdir: str) -> None:
    # a uvloop that cannot be imported first on the path
    blocker = os.path.join(workdir, "blocker", "uvloop")
    os.makedirs(blocker)
    with open(os.path.join(blocker, "__init__.py"), "w") as fh:
        fh.write("raise ImportError('no uvloop here')\n")
    path = [os.path.dirname(blocker), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
    rc, err = _daemon(["--binrpc", f"tcp:127.0.0.1:{free_port()}"], env)
    assert rc == 0 and "binrpcd: event loop asyncio" in err, err
    rc, err = _daemon(["--loop", "uvloop", "--binrpc", f"tcp:127.0.0.1:{free_port()}"], env)
    assert rc == 1 and "uvloop is not installed" in err


def test_replies_before_an_oversized_packet_are_sent(endpoints: Endpoints) -> None:
    ep = endpoints
    with ServerThread(None, ep.unixs, max_request_size=1024), RawClient(ep.unixs) as c:
        huge = encode_request("core.echo", ["x" * 2000], 2)
        c.send(encode_request("core.echo", ["before"], 1) + huge[:100])
        p = c.recv_packet()
        assert p is not None and p.cookie == 1 and decode_values(p.body) == ["before"]
        assert c.closed_by_server()


def test_chunk_sink_with_a_size_cap_gets_the_fault() -> None:
    limits = RpcLimits(max_body_size=4096 * KiB)
    packet = parse_packet(encode_request("t.bytes", [100 * KiB], 9))
    assert packet is not None
    name, reader = parse_request(packet.body)
    plain: list[bytes] = []
    chunks: list[list[Buffer]] = []
    ctx = BinrpcContext(
        reader, 9, plain.append, limits, max_reply_size=65535, chunk_sink=chunks.append
    )
    m = stream_registry().get(name)
    assert m is not None and call_method(m, ctx) is None
    assert chunks == [] and len(plain) == 1
    kind, _, (code, text) = decode_reply(plain[0])
    assert (kind, code) == ("fault", 500) and "too big for a datagram" in text
