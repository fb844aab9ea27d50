"""The stream framer: whole, byte-by-byte and random-chunk delivery; header validation; limits.

Every test runs over both ways in: ``feed(data)`` (the server, asyncio, datagrams) and
``buffer()``/``advance(n)`` (the blocking clients' ``recv_into``).
"""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binrpc import DecodeError, MsgType, Packet, PacketTooLarge, StreamFramer, encode_request
from binrpc._codec import encode_header, encode_reply
from binrpc._errors import E_CORRUPTED

HOWS = ["feed", "in_place", "mixed"]


def put(framer: StreamFramer, data: bytes, how: str) -> None:
    """Hand ``data`` to the framer the ``how`` way: ``feed``; ``in_place``: as reads of up to
    what :meth:`StreamFramer.buffer` offers; ``mixed``: one or the other by length."""
    if how == "feed" or (how == "mixed" and len(data) % 2):
        framer.feed(data)
        return
    pos = 0
    while pos < len(data):
        view = framer.buffer()
        n = min(len(view), len(data) - pos)
        view[:n] = data[pos : pos + n]
        del view
        framer.advance(n)
        pos += n


def drain(framer: StreamFramer) -> list[Packet]:
    out = []
    while (p := framer.next_packet()) is not None:
        out.append(p)
    return out


def feed_in_chunks(
    stream: bytes, cuts: list[int], max_size: int = 65535, how: str = "feed"
) -> list[Packet]:
    framer = StreamFramer(max_size)
    out: list[Packet] = []
    pos = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        put(framer, stream[pos:cut], how)
        out += drain(framer)
        pos = cut
    return out


PACKETS = [
    encode_request("core.echo", ["one"], 1),
    encode_request("core.echo", ["two", 2, -3, 1.5], 2),
    encode_reply([], 0xDEADBEEF),
    encode_request("x" * 300, [b"\0" * 70], 70000),
]
STREAM = b"".join(PACKETS)
BIG_STREAM = STREAM + encode_reply([b"z" * 100_000], 5) + encode_reply(["after"], 6) + STREAM
"""With a packet above 64 KiB, whose body is read in place."""


@pytest.mark.parametrize("how", HOWS)
def test_whole_stream(how: str) -> None:
    packets = feed_in_chunks(STREAM, [], how=how)
    assert [p.cookie for p in packets] == [1, 2, 0xDEADBEEF, 70000]
    assert packets[2].type == MsgType.REPLY
    assert packets[2].body == b""


@pytest.mark.parametrize("how", HOWS)
def test_byte_by_byte(how: str) -> None:
    assert feed_in_chunks(STREAM, list(range(len(STREAM))), how=how) == feed_in_chunks(
        STREAM, [], how=how
    )


@pytest.mark.parametrize("how", HOWS)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_random_chunks_give_the_same_packets(how: str, cuts: list[int]) -> None:
    assert feed_in_chunks(STREAM, cuts, how=how) == feed_in_chunks(STREAM, [], how=how)


@pytest.mark.parametrize("how", HOWS)
@given(st.lists(st.integers(min_value=0, max_value=len(BIG_STREAM)), max_size=40))
def test_random_chunks_around_a_body_read_in_place(how: str, cuts: list[int]) -> None:
    got = feed_in_chunks(BIG_STREAM, cuts, 1 << 20, how=how)
    assert got == feed_in_chunks(BIG_STREAM, [], 1 << 20)
    assert [p.cookie for p in got[4:6]] == [5, 6]
    assert all(type(p.body) is bytes for p in got)


@pytest.mark.parametrize("how", HOWS)
def test_no_verdict_before_four_bytes(how: str) -> None:
    framer = StreamFramer()
    put(framer, b"\xb1\x00\x00", how)  # bad magic, but only 3 bytes
    assert framer.next_packet() is None
    put(framer, b"\x00", how)
    with pytest.raises(DecodeError) as info:
        framer.next_packet()
    assert info.value.code == E_CORRUPTED
    assert info.value.cookie == 0


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("first", [b"\xb1\x01", b"\xa2\x01", b"\xa1\x21", b"\xa1\xf1"])
def test_bad_magic_version_or_type(first: bytes, how: str) -> None:
    framer = StreamFramer()
    put(framer, first + b"\x0f\x42" + b"\0" * 15, how)
    with pytest.raises(DecodeError):
        framer.next_packet()
    put(framer, encode_request("core.version", [], 1), how)  # dead after an error
    with pytest.raises(DecodeError):
        framer.next_packet()


@pytest.mark.parametrize("how", HOWS)
def test_garbage_after_a_good_packet(how: str) -> None:
    framer = StreamFramer()
    put(framer, encode_request("core.version", [], 0x4242) + bytes.fromhex("deadbeef"), how)
    packet = framer.next_packet()
    assert packet is not None
    assert packet.cookie == 0x4242
    with pytest.raises(DecodeError):
        framer.next_packet()


@pytest.mark.parametrize("how", HOWS)
def test_exactly_the_limit_is_accepted(how: str) -> None:
    # header a1 05 <2-byte len> <2-byte cookie> = 6 bytes; the body fills up to 65535
    body_len = 65535 - 6
    header = encode_header(MsgType.REQUEST, body_len, 0x1234)
    assert len(header) == 6
    framer = StreamFramer()
    put(framer, header + b"\0" * body_len, how)
    packet = framer.next_packet()
    assert packet is not None
    assert len(packet.body) == body_len


@pytest.mark.parametrize("how", HOWS)
def test_oversize_refused_at_the_header_without_buffering(how: str) -> None:
    framer = StreamFramer()
    put(framer, encode_header(MsgType.REQUEST, 65535 - 5, 0x1234), how)  # 65536 in total
    with pytest.raises(PacketTooLarge) as info:
        framer.next_packet()
    assert info.value.size == 65536
    put(framer, b"\0" * 100_000, how)
    assert framer.buffered == 0
    with pytest.raises(PacketTooLarge):
        framer.next_packet()


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("length", [0x80000000, 0x80000100, 0xFFFFFFF7, 0xFFFFFFF8, 0xFFFFFFFF])
def test_huge_lengths_that_hang_kamailio_are_refused_at_once(length: int, how: str) -> None:
    framer = StreamFramer()
    put(framer, b"\xa1\x0c" + length.to_bytes(4, "big") + b"\x01", how)
    with pytest.raises(PacketTooLarge):
        framer.next_packet()


@pytest.mark.parametrize("how", HOWS)
def test_configurable_limit_for_clients(how: str) -> None:
    big = encode_reply(["z" * 200_000], 9)
    framer = StreamFramer(max_packet_size=64 << 20)
    put(framer, big, how)
    packet = framer.next_packet()
    assert packet is not None
    assert packet.cookie == 9


@pytest.mark.parametrize("how", HOWS)
def test_a_big_body_is_received_into_the_packets_bytes(how: str) -> None:
    # no growing buffer and no final copy: the body is written once, into Packet.body
    size = 4 << 20
    packet = encode_header(MsgType.REPLY, size, 7) + b"y" * size
    chunks = [packet[i : i + 50_000] for i in range(0, len(packet), 50_000)]
    framer = StreamFramer(8 << 20)
    got = []
    tracemalloc.start()
    try:
        for chunk in chunks:
            put(framer, chunk, how)
            got += drain(framer)
            assert framer.buffered <= size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got) == 1
    assert got[0].body == b"y" * size and type(got[0].body) is bytes
    assert framer.buffered == 0 and framer.next_packet() is None
    assert peak < size + (1 << 20)


def test_a_framer_only_fed_allocates_no_read_buffer() -> None:
    # binrpcd holds thousands of idle connections: buffer()'s 64 KiB only once it is used
    request = encode_request("core.echo", ["hi"], 1)
    tracemalloc.start()
    try:
        framers = [StreamFramer() for _ in range(200)]
        for framer in framers:
            framer.feed(request)
            assert framer.next_packet() is not None
        used = tracemalloc.get_traced_memory()[0]
        framers[0].buffer()
        with_buffer = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert used < 200 * 1024
    assert with_buffer - used >= 1 << 16


@pytest.mark.parametrize("how", HOWS)
def test_take_returns_every_packet_then_the_error_stays(how: str) -> None:
    framer = StreamFramer()
    put(framer, STREAM + b"\xa1\x20junk", how)
    assert framer.take() == feed_in_chunks(STREAM, [])
    assert isinstance(framer.error, DecodeError)
    with pytest.raises(DecodeError):
        framer.next_packet()
    assert framer.take() == []
    put(framer, STREAM, how)  # dead after an error: nothing is kept
    assert framer.buffered == 0
    with pytest.raises(DecodeError):
        framer.next_packet()
