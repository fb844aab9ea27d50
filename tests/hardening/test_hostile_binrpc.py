"""Issue #7, part 2: malformed binrpc from hostile clients (spec 4.3 and 11), in-process server.

Every case is followed by :func:`assert_healthy`: a fresh client on each transport gets a
correct answer (cookie and content) in under 2 s.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from binrpc import decode_values, encode_request
from binrpc._codec import MsgType
from binrpc._registry import Registry

from .conftest import (
    STREAMS,
    TRANSPORTS,
    Endpoints,
    RawClient,
    ServerThread,
    assert_healthy,
    connect,
    fault_of,
    read_all,
    read_packets,
)

CORRUPTED = (400, "bad request: corrupted packet")


def _registry() -> Registry:
    reg = Registry()

    @reg.rpc("t.any")
    def any_(*values: Any) -> int:
        return len(values)

    @reg.rpc("t.str")
    def str_(text: str) -> str:
        return text

    return reg


@pytest.fixture
def big_server(endpoints: Endpoints) -> Iterator[ServerThread]:
    """All four transports, requests up to 1 MiB (for the 100,000-deep nesting)."""
    ep = endpoints
    with ServerThread(
        _registry(), ep.unixs, ep.unixd, ep.udp, ep.tcp, max_request_size=1 << 20
    ) as st:
        yield st


@pytest.fixture
def srv(endpoints: Endpoints) -> Iterator[ServerThread]:
    ep = endpoints
    with ServerThread(_registry(), ep.unixs, ep.unixd, ep.udp, ep.tcp) as st:
        yield st


def _healthy_everywhere(ep: Endpoints) -> None:
    for transport in TRANSPORTS:
        assert_healthy(ep.by_transport(transport), ep.workdir)


def _exchange(address: str, data: bytes, timeout: float = 1.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh stream, read until the server closes or goes quiet."""
    with connect(address) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_all(s, timeout)


# ---------------------------------------------------------------------------------------------
# spec 4.3, one row at a time, on both stream transports

TYPE = (400, "bad request method: record doesn't match type")
MORE = (400, "bad request method: more data needed")
HEADER_FAULTS = [
    # (id, bytes, expected fault, expected cookie)
    ("bad-magic", bytes.fromhex("b1000f11") + b"x" * 15, CORRUPTED, 0),
    ("bad-version", bytes.fromhex("a2000f11") + b"x" * 15, CORRUPTED, 0),
    ("magic-zero", bytes(4), CORRUPTED, 0),
    *[(f"type-{t}", bytes([0xA1, t << 4, 0, 0x55]), CORRUPTED, 0) for t in (2, 4, 7, 15)],
    ("reply-as-request", bytes.fromhex("a1100077"), CORRUPTED, 0x77),
    ("fault-as-request", bytes.fromhex("a13005771001410000"), CORRUPTED, 0x77),
    ("empty-body", bytes.fromhex("a1000044"),
     (400, "bad request method: end of packet encountered"), 0x44),
    ("method-int", bytes.fromhex("a10002331005"), TYPE, 0x33),
    ("method-bytes", bytes.fromhex("a100043336616263"), TYPE, 0x33),
    ("method-struct", bytes.fromhex("a10002330383"), TYPE, 0x33),
    ("method-double", bytes.fromhex("a10002331205"), TYPE, 0x33),
    ("method-avp", bytes.fromhex("a1000333256100"), TYPE, 0x33),
    ("method-truncated", bytes.fromhex("a1000455910d636f"), MORE, 0x55),
    ("method-length-truncated", bytes.fromhex("a1000155b1"), MORE, 0x55),
]  # fmt: skip


@pytest.mark.parametrize("transport", STREAMS)
@pytest.mark.parametrize(
    ("data", "fault", "cookie"),
    [pytest.param(d, f, c, id=i) for i, d, f, c in HEADER_FAULTS],
)
def test_malformed_request_gets_fault_and_close(
    srv: ServerThread,
    endpoints: Endpoints,
    transport: str,
    data: bytes,
    fault: tuple[int, str],
    cookie: int,
) -> None:
    # a good request first, then the bad one, then a good one that must be lost (4.3)
    good = encode_request("core.echo", ["before"], 1)
    after = encode_request("core.echo", ["after"], 2)
    received, closed = _exchange(endpoints.by_transport(transport), good + data + after)
    packets = read_packets(received)
    assert closed, "the stream stays open after a fatal fault"
    assert [p.cookie for p in packets] == [1, cookie], packets
    assert decode_values(packets[0].body) == ["before"]
    assert fault_of(packets[1]) == fault
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", ("unixd", "udp"))
@pytest.mark.parametrize(
    ("data", "fault", "cookie"),
    [pytest.param(d, f, c, id=i) for i, d, f, c in HEADER_FAULTS],
)
def test_malformed_datagram_gets_fault(
    srv: ServerThread,
    endpoints: Endpoints,
    transport: str,
    data: bytes,
    fault: tuple[int, str],
    cookie: int,
) -> None:
    with RawClient(endpoints.by_transport(transport), endpoints.workdir) as c:
        c.send(data)
        p = c.recv_packet(2.0)
        assert p is not None and p.type == MsgType.FAULT
        assert (p.cookie, fault_of(p)) == (cookie, fault)
        assert c.call("core.echo", ["same socket"]) == ("reply", ["same socket"])
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", STREAMS)
def test_unknown_method_keeps_the_connection(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    with RawClient(endpoints.by_transport(transport)) as c:
        assert c.call("no.such", [1, "x"]) == ("fault", (500, "command no.such not found"))
        assert c.call("core.echo", ["still here"]) == ("reply", ["still here"])


# 4-byte total_len with the top bit set: Kamailio 5.6.3's ctl spins or misparses on these
BIG_LENGTHS = [0x80000000, 0x80000001, 0x80000100, 0x90000000, 0xC0000000, 0xFFFFFFF0,
               0xFFFFFFF7, 0xFFFFFFF8, 0xFFFFFFF9, 0xFFFFFFFE, 0xFFFFFFFF]  # fmt: skip


@pytest.mark.parametrize("transport", STREAMS)
def test_huge_length_fields_close_at_once(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    address = endpoints.by_transport(transport)
    for length in BIG_LENGTHS:
        for tail in (b"", b"\x91\x0acore.echo\0" + b"z" * 100):
            # LL=3: 4-byte length; CC=0: 1-byte cookie
            header = bytes([0xA1, 0x0C]) + length.to_bytes(4, "big") + b"\x42"
            start = time.monotonic()
            received, closed = _exchange(address, header + tail, timeout=2.0)
            assert closed, f"length {length:#x}: connection kept"
            assert time.monotonic() - start < 1.5, f"length {length:#x}: slow close"
            # no reply (ctl HEAD would send "corrupted packet"; either is fine, nothing else)
            for p in read_packets(received):
                assert fault_of(p) == CORRUPTED
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", ("unixd", "udp"))
def test_huge_length_fields_in_datagrams_are_ignored(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    with RawClient(endpoints.by_transport(transport), endpoints.workdir) as c:
        for length in BIG_LENGTHS:
            c.send(bytes([0xA1, 0x0C]) + length.to_bytes(4, "big") + b"\x42" + b"\x91\x02a\0")
        assert c.recv_packet(0.3) is None  # incomplete datagrams: silently ignored (4.2)
        assert c.call("core.echo", ["ok"]) == ("reply", ["ok"])
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", STREAMS)
def test_oversized_and_exact_size_requests(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    address = endpoints.by_transport(transport)
    # exactly 65535 bytes: served; 65536: closed without a reply, nothing buffered
    for size, served in ((65535, True), (65536, False), (1 << 20, False)):
        n = size - 10
        while len(packet := encode_request("x" * n, [], 0x10)) != size:
            n += size - len(packet)
        received, closed = _exchange(address, packet, timeout=0.5 if served else 2.0)
        packets = read_packets(received)
        if served:
            assert not closed and len(packets) == 1
            code, text = fault_of(packets[0])
            assert code == 500 and len(text) == 254  # "command xxx... not found", cut
        else:
            assert closed and packets == []
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", STREAMS)
def test_truncated_packets_then_eof(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    """Every prefix of a request, then the client half-closes: no reply, no harm."""
    address = endpoints.by_transport(transport)
    packet = encode_request("core.echo", ["abc", 5, {"k": 1}, [2]], 0x1234)  # type: ignore[list-item]
    for cut in range(len(packet)):
        with connect(address) as s:
            s.sendall(packet[:cut])
            s.shutdown(socket.SHUT_WR)
            received, closed = read_all(s, 2.0)
        assert closed and received == b"", f"prefix {cut}: {received.hex()}"
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", ("unixd", "udp"))
def test_truncated_datagrams_are_ignored(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    packet = encode_request("core.echo", ["abc", 5], 0x99)
    with RawClient(endpoints.by_transport(transport), endpoints.workdir) as c:
        for cut in range(len(packet)):
            c.send(packet[:cut])
        c.send(packet)
        p = c.recv_packet(2.0)
        assert p is not None and p.cookie == 0x99  # only the whole one was answered
        assert decode_values(p.body) == ["abc", "5"]
        assert c.recv_packet(0.2) is None


# ---------------------------------------------------------------------------------------------
# hostile record contents (spec 2 and 11)


def _request(body: bytes, cookie: int = 0x2468) -> bytes:
    from binrpc import encode_header

    return encode_header(MsgType.REQUEST, len(body), cookie) + body


def _str(raw: bytes, nul: bool = True) -> bytes:
    payload = raw + (b"\0" if nul else b"")
    n = len(payload)
    if n < 8:
        return bytes([(n << 4) | 1]) + payload
    nb = (n.bit_length() + 7) // 8
    return bytes([0x80 | (nb << 4) | 1]) + n.to_bytes(nb, "big") + payload


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("depth", "kind"),
    [(100_000, "array"), (100_000, "struct"), (60_000, "array-in-64k"), (300, "array")],
)
def test_deep_nesting(
    big_server: ServerThread, endpoints: Endpoints, transport: str, depth: int, kind: str
) -> None:
    if kind == "struct":  # a named struct member per level: 03 (15 00 03)* 83*
        params = b"\x03" + b"\x15\x00\x03" * (depth - 1) + b"\x83" * depth
    else:
        params = b"\x04" * depth + b"\x84" * depth
    if transport in ("unixd", "udp") and len(params) > 60_000:
        params = b"\x04" * 30_000 + b"\x84" * 30_000  # a datagram carries 64 KiB at most
    for method in ("t.any", "core.echo", "t.str"):
        body = _str(method.encode()) + params
        with RawClient(endpoints.by_transport(transport), endpoints.workdir, timeout=5) as c:
            c.send(_request(body, 0x77))
            p = c.recv_packet(5.0)
            assert p is not None and p.cookie == 0x77, f"{method}: no answer"
            if p.type == MsgType.FAULT:
                code, _ = fault_of(p)
                assert code in (400, 500)
                assert "Internal server error" not in fault_of(p)[1], fault_of(p)
            elif method == "core.echo":
                assert decode_values(p.body) == []  # echo stops at the first non-scalar
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_huge_method_name(srv: ServerThread, endpoints: Endpoints, transport: str) -> None:
    # the biggest name that fits the stream limit / a datagram
    size = 65_500 if transport in STREAMS else 65_000
    name = b"n" * size
    with RawClient(endpoints.by_transport(transport), endpoints.workdir) as c:
        c.send(_request(_str(name)))
        p = c.recv_packet(3.0)
        assert p is not None
        code, text = fault_of(p)
        assert code == 500 and text == ("command " + "n" * 300)[:254]
        assert c.call("core.echo", ["after"]) == ("reply", ["after"])
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invalid_utf8_in_method_and_params(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    bad = [b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80"]
    with RawClient(endpoints.by_transport(transport), endpoints.workdir) as c:
        for raw in bad:
            # method name: an unknown method, the name's bytes come back in the fault
            c.send(_request(_str(b"core." + raw), 1))
            p = c.recv_packet()
            assert p is not None and p.type == MsgType.FAULT
            body = p.body
            assert b"command core." + raw + b" not found" in body
            # params: echoed byte for byte (core.echo and a pythonic str handler)
            for method in (b"core.echo", b"t.str", b"core.prints"):
                c.send(_request(_str(method) + _str(raw), 2))
                p = c.recv_packet()
                assert p is not None and p.type == MsgType.REPLY, method
                assert _str(raw) in p.body, (method, p.body.hex())
        assert c.call("core.echo", ["fine"]) == ("reply", ["fine"])
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_str_without_nul_and_zero_length_records(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    cases: list[tuple[bytes, str, Any]] = [
        # method name without its NUL: still found
        (_str(b"core.echo", nul=False) + _str(b"x"), "reply", ["x"]),
        # parameter without NUL, and one of 8+ bytes without NUL
        (_str(b"core.echo") + _str(b"abc", nul=False), "reply", ["abc"]),
        (_str(b"core.echo") + _str(b"abcdefghij", nul=False), "reply", ["abcdefghij"]),
        # zero-length STR (01 and 81): "" (ctl computes length -1 here)
        (_str(b"core.echo") + b"\x01\x81", "reply", ["", ""]),
        # zero-length INT (00, 80), BYTES (06, 86), DOUBLE (02) as parameters
        (_str(b"core.printi") + b"\x00\x80", "reply", [0, 0]),
        (_str(b"t.any") + b"\x00\x80\x06\x86\x02\x01\x81", "reply", [7]),
        # zero-length method name: "command  not found", connection kept
        (b"\x01", "fault", (500, "command  not found")),
        (b"\x81", "fault", (500, "command  not found")),
        # a STR whose explicit length field is zero bytes long and an empty struct/array
        (_str(b"t.any") + b"\x03\x83\x04\x84", "reply", [2]),
    ]
    with RawClient(endpoints.by_transport(transport), endpoints.workdir) as c:
        for body, kind, expected in cases:
            c.send(_request(body, 5))
            p = c.recv_packet()
            assert p is not None and p.cookie == 5, body.hex()
            if kind == "fault":
                assert fault_of(p) == expected, body.hex()
            else:
                assert p.type == MsgType.REPLY, (body.hex(), decode_values(p.body))
                assert decode_values(p.body) == expected, body.hex()
    _healthy_everywhere(endpoints)


@pytest.mark.parametrize("transport", STREAMS)
def test_garbage_after_a_good_packet(
    srv: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    good = encode_request("core.echo", ["good"], 3)
    for garbage in (b"\x00\x00\x00\x00", b"GET / HTTP/1.1\r\n\r\n", b"\xa1\x20\x00\x00"):
        received, closed = _exchange(endpoints.by_transport(transport), good + garbage)
        packets = read_packets(received)
        assert closed
        assert [p.cookie for p in packets] == [3, 0]
        assert fault_of(packets[1]) == CORRUPTED
    _healthy_everywhere(endpoints)


def test_random_garbage_storm(srv: ServerThread, endpoints: Endpoints) -> None:
    """A few hundred random byte strings on every transport, then a health check."""
    import random

    rng = random.Random(4242)
    good = encode_request("core.echo", ["x"], 1)
    for transport in TRANSPORTS:
        address = endpoints.by_transport(transport)
        for _ in range(60):
            data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            if rng.random() < 0.5:
                data = good[: rng.randint(0, len(good))] + data
            if transport in STREAMS:
                _exchange(address, data, timeout=0.05)
            else:
                with RawClient(address, endpoints.workdir) as c:
                    c.send(data)
    _healthy_everywhere(endpoints)
