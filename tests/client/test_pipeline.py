"""``Client.pipeline``, the stream framer's two ways in (big replies read in place) and the fast
renderer."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc
from typing import Any

import pytest

from binrpc import (
    ConnectionClosed,
    DecodeError,
    LocalProtocolError,
    PacketTooLarge,
    Struct,
    TransportError,
    TransportTimeout,
    encode_values,
)
from binrpc._codec import Packet, encode_header
from binrpc._framing import StreamFramer
from binrpc.cli._render import render_default, render_simple
from binrpc.client import Client, CookieMismatch, Reply, ReplyLost

from .fakeserver import FakeServer, fault, reply

TRANSPORTS = ["unixs", "unixd", "udp", "tcp"]


def echo(method: str, params: list[Any], cookie: int) -> list[Any]:
    if method == "core.echo":
        return [reply(params, cookie)]
    return [fault(500, f"command {method} not found", cookie)]


def _values(results: list[Any]) -> list[Any]:
    return [r.values() if isinstance(r, Reply) and not r.is_fault else r for r in results]


@pytest.mark.parametrize("proto", TRANSPORTS)
def test_results_in_order_faults_and_local_errors(proto: str) -> None:
    requests: list[tuple[str, list[Any]]] = []
    for i in range(300):
        if i % 50 == 7:
            requests.append(("nope", []))
        elif i % 50 == 9:
            requests.append(("core.echo", [1 << 40]))  # cannot be encoded: never sent
        else:
            requests.append(("core.echo", [i, "x"]))
    with FakeServer(proto, echo) as srv, Client(srv.address, timeout=10) as c:
        results = list(c.pipeline(requests))
        assert c.call("core.echo", "after") == ["after"]
        sent = len(srv.requests)
    assert len(results) == 300
    for i, r in enumerate(results):
        if i % 50 == 7:
            assert isinstance(r, Reply) and r.fault().message == "command nope not found"
        elif i % 50 == 9:
            assert isinstance(r, LocalProtocolError)
        else:
            assert isinstance(r, Reply) and r.values() == [i, "x"]
    assert sent == 300 - 6 + 1


def test_empty_and_lazy() -> None:
    pulled: list[int] = []

    def requests() -> Any:
        for i in range(1000):
            pulled.append(i)
            yield "core.echo", [i]

    with FakeServer("unixs", echo) as srv, Client(srv.address) as c:
        assert list(c.pipeline([])) == []
        it = c.pipeline(requests(), window=16)
        first = next(it)
        assert isinstance(first, Reply) and first.values() == [0]
        assert len(pulled) <= 2 * 16  # two windows ahead at most
        it.close()  # type: ignore[attr-defined, unused-ignore]  # stopped early: the stream (replies still to come) is closed
        assert not c.connected
        assert c.call("core.echo", 1) == [1]
    with pytest.raises(ValueError):
        Client("unixs:/nonexistent").pipeline([], window=0)


@pytest.mark.parametrize("proto", ["unixs", "tcp"])
def test_cookie_mismatch_fails_the_oldest_and_loses_the_others(proto: str) -> None:
    done = threading.Event()

    def wrong(method: str, params: list[Any], cookie: int) -> list[Any]:
        if params == [20] and not done.is_set():
            done.set()
            # (a wrong cookie far from every cookie in flight: ^ 0xFF could be a later one's)
            return [0.1, reply(params, cookie ^ 0x80000000)]  # meanwhile, more are sent
        return [reply(params, cookie)]

    with FakeServer(proto, wrong) as srv, Client(srv.address) as c:
        results = list(c.pipeline(("core.echo", [i]) for i in range(200)))
    kinds = [type(r).__name__ for r in results]
    assert _values(results[:20]) == [[i] for i in range(20)]
    assert kinds[20] == "CookieMismatch"
    err = results[20]
    assert isinstance(err, CookieMismatch) and err.received == err.sent ^ 0x80000000
    # the requests in flight behind the bad reply are lost (how many were sent by then
    # depends on scheduling: none on a loaded machine), the rest go on a new connection
    lost = kinds.index("Reply", 21) - 21
    assert kinds[21 : 21 + lost] == ["ReplyLost"] * lost
    if lost:
        assert isinstance(results[21], ReplyLost) and "invalid reply" in str(results[21])
    assert _values(results[21 + lost :]) == [[i] for i in range(21 + lost, 200)]


@pytest.mark.parametrize("proto", ["unixs", "tcp"])
def test_close_mid_pipeline(proto: str) -> None:
    done = threading.Event()

    def closing(method: str, params: list[Any], cookie: int) -> list[Any]:
        if params == [3] and not done.is_set():
            done.set()
            return [reply(params, cookie), None]  # answers 3, then closes
        return [reply(params, cookie)]

    with FakeServer(proto, closing) as srv, Client(srv.address) as c:
        results = list(c.pipeline(("core.echo", [i]) for i in range(100)))
        assert srv.connections == 2
    assert _values(results[:4]) == [[i] for i in range(4)]
    lost = [r for r in results if not isinstance(r, Reply)]
    # an EOF, or a reset when the server closed with our requests unread (unix sockets)
    assert lost and all(r == lost[0] for r in lost)
    assert isinstance(lost[0], ConnectionClosed) or (
        isinstance(lost[0], OSError) and lost[0].errno == 104
    )
    assert results[4 : 4 + len(lost)] == lost
    assert _values(results[4 + len(lost) :]) == [[i] for i in range(4 + len(lost), 100)]


@pytest.mark.parametrize("proto", ["udp", "unixd"])
def test_datagram_late_reply_is_dropped(proto: str) -> None:
    def late(method: str, params: list[Any], cookie: int) -> list[Any]:
        if params == [2]:
            return [0.6, reply(params, cookie)]
        return [reply(params, cookie)]

    with FakeServer(proto, late) as srv, Client(srv.address, timeout=0.3) as c:
        t0 = time.monotonic()
        results = list(c.pipeline(("core.echo", [i]) for i in range(3)))
        assert isinstance(results[2], TransportTimeout)
        assert _values(results[:2]) == [[0], [1]]
        assert time.monotonic() - t0 < 2
        time.sleep(0.5)  # the late reply arrives now: recognised and dropped
        results = list(c.pipeline(("core.echo", [i]) for i in range(5, 8)))
        assert _values(results) == [[5], [6], [7]]


def test_udp_nobody_listening_does_not_hang() -> None:
    with FakeServer("udp", echo) as srv:
        address = srv.address
    with Client(address, timeout=2) as c:
        results = list(c.pipeline(("core.echo", [i]) for i in range(10)))
    assert len(results) == 10
    # ICMP "port unreachable": reported by the next send or read (errno ECONNREFUSED)
    assert all(isinstance(r, TransportError) and r.errno == 111 for r in results)


def test_connect_error_for_each_request() -> None:
    with FakeServer("unixs", echo) as srv:
        address = srv.address
    with Client(address) as c:
        results = list(c.pipeline(("core.echo", [i]) for i in range(3)))
    assert [type(r).__name__ for r in results] == ["ConnectError"] * 3


def test_read_timeout_on_a_stream_fails_everything_in_flight() -> None:
    def stuck(method: str, params: list[Any], cookie: int) -> list[Any]:
        return [1.0] if params == [1] else [reply(params, cookie)]  # holds the connection

    with FakeServer("unixs", stuck) as srv, Client(srv.address, timeout=0.3) as c:
        results = list(c.pipeline(("core.echo", [i]) for i in range(4)))
        assert c.call("core.echo", "again") == ["again"]
    assert _values(results[:1]) == [[0]]
    assert all(isinstance(r, TransportTimeout) for r in results[1:])


# -- the reply reader ----------------------------------------------------------------------


def _packets(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        size = rng.choice([0, 1, 5, 300, 70_000, 200_000])
        body = bytes(rng.randrange(256) for _ in range(min(size, 64))) * (size // 64 + 1)
        body = body[:size]
        out.append(encode_header(rng.choice([1, 3]), len(body), rng.randrange(1 << 32)) + body)
    return out


def _framed(
    framer: StreamFramer, data: bytes, cuts: list[int], in_place: bool
) -> tuple[list[Any], str]:
    """The packets (and the error) of ``data`` cut at ``cuts``, fed or read in place (reads
    of at most what ``buffer()`` offers, as ``recv_into`` does)."""
    got: list[Any] = []
    pos = 0
    try:
        for cut in [*cuts, len(data)]:
            while pos < cut:
                if in_place:
                    view = framer.buffer()
                    n = min(len(view), cut - pos)
                    view[:n] = data[pos : pos + n]
                    del view
                    framer.advance(n)
                else:
                    n = cut - pos
                    framer.feed(data[pos:cut])
                pos += n
                while (p := framer.next_packet()) is not None:
                    got.append((p.type, p.cookie, p.body))
    except (DecodeError, PacketTooLarge) as exc:
        return got, repr(exc)
    return got, ""


def test_in_place_reads_frame_like_feed() -> None:
    rng = random.Random(3)
    for trial in range(60):
        packets = _packets(rng, rng.randrange(1, 6))
        if trial % 5 == 4:
            packets.append(bytes([0xA1, rng.choice([0x20, 0x43])]) + b"junk")  # bad type
        data = b"".join(packets)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data), rng.randrange(1, 40))))
        limit = rng.choice([1 << 20, 100_000])
        expected = _framed(StreamFramer(limit), data, cuts, in_place=False)
        assert _framed(StreamFramer(limit), data, cuts, in_place=True) == expected


def test_framer_reads_big_bodies_in_place() -> None:
    body = bytes(range(256)) * 1000
    packet = encode_header(1, len(body), 7) + body
    framer = StreamFramer(1 << 20)
    pos = 0
    got = None
    while pos < len(packet):
        view = framer.buffer()
        n = min(len(view), 10_000, len(packet) - pos)
        view[:n] = packet[pos : pos + n]
        del view
        framer.advance(n)
        pos += n
        if pos < len(packet):
            assert framer.next_packet() is None  # (the clients look after each read)
    assert framer.buffered == len(body)
    got = framer.next_packet()
    assert got == Packet(1, 7, body)
    assert type(got.body) is bytes


def test_20_mib_reply_read_with_bounded_memory() -> None:
    size = 20 * 1024 * 1024
    bodies = {"s": encode_values(["y" * size]), "b": encode_values([b"z" * size])}

    def big(method: str, params: list[Any], cookie: int) -> list[Any]:
        body = bodies.get(method, b"")
        return [encode_header(1, len(body), cookie), body]  # prebuilt: not traced below

    with FakeServer("unixs", big) as srv, Client(srv.address) as c:
        c.call("warm")
        peaks = {}
        for method, how in (("s", "request"), ("s", "call_one"), ("b", "call_one")):
            tracemalloc.start()
            try:
                value = c.request(method) if how == "request" else c.call_one(method)
                peaks[method, how] = tracemalloc.get_traced_memory()[1] / size
            finally:
                tracemalloc.stop()
            assert len(value.body if isinstance(value, Reply) else value) >= size  # type: ignore[arg-type]
            del value
    # the body is received in place (no growing buffer, no copy for Reply.body); decoding adds
    # the value itself, and for a str the codec's slice of the body (a codec matter)
    assert peaks["s", "request"] < 1.1
    assert peaks["b", "call_one"] < 2.1
    assert peaks["s", "call_one"] < 3.1


# -- render_simple is render_default ---------------------------------------------------------


def _record(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        text = bytes(rng.choice(b"ab\0\xff\xc3\xa9 ") for _ in range(rng.randrange(20)))
        if rng.random() < 0.8:
            text += b"\0"
        n = len(text)
        if n < 8 and rng.random() < 0.7:
            return bytes([n << 4 | 1]) + text
        nb = rng.choice([1, 2, 4]) if n < 256 else 2
        return bytes([0x80 | nb << 4 | 1]) + n.to_bytes(nb, "big") + text
    if kind == 1:
        raw = rng.randrange(1 << 40).to_bytes(5, "big")[: rng.randrange(6)]
        return bytes([len(raw) << 4]) + raw
    if kind == 2:
        return encode_values([rng.choice([1.5, Struct(a=1), [1, "x"], b"by\0tes"])])  # type: ignore[list-item]
    return bytes([rng.randrange(256)])  # anything, truncated records included


def test_render_simple_is_render_default() -> None:
    rng = random.Random(11)
    simple = 0
    for _ in range(20_000):
        body = b"".join(_record(rng) for _ in range(rng.randrange(4)))
        fast = render_simple(body)
        if fast is None:
            continue
        simple += 1
        reference = render_default(body)
        assert reference.error is None and fast == reference.out, body.hex()
    assert simple > 3000
    assert render_simple(b"") == b""
