"""The stream framer: whole, byte-by-byte and random-chunk delivery; header validation; limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binrpc import DecodeError, MsgType, Packet, PacketTooLarge, StreamFramer, encode_request
from binrpc._codec import encode_header, encode_reply
from binrpc._errors import E_CORRUPTED


def drain(framer: StreamFramer) -> list[Packet]:
    out = []
    while (p := framer.next_packet()) is not None:
        out.append(p)
    return out


def feed_in_chunks(stream: bytes, cuts: list[int], max_size: int = 65535) -> list[Packet]:
    framer = StreamFramer(max_size)
    out: list[Packet] = []
    pos = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        framer.feed(stream[pos:cut])
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


def test_whole_stream() -> None:
    packets = feed_in_chunks(STREAM, [])
    assert [p.cookie for p in packets] == [1, 2, 0xDEADBEEF, 70000]
    assert packets[2].type == MsgType.REPLY
    assert packets[2].body == b""


def test_byte_by_byte() -> None:
    assert feed_in_chunks(STREAM, list(range(len(STREAM)))) == feed_in_chunks(STREAM, [])


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_random_chunks_give_the_same_packets(cuts: list[int]) -> None:
    assert feed_in_chunks(STREAM, cuts) == feed_in_chunks(STREAM, [])


def test_no_verdict_before_four_bytes() -> None:
    framer = StreamFramer()
    framer.feed(b"\xb1\x00\x00")  # bad magic, but only 3 bytes
    assert framer.next_packet() is None
    framer.feed(b"\x00")
    with pytest.raises(DecodeError) as info:
        framer.next_packet()
    assert info.value.code == E_CORRUPTED
    assert info.value.cookie == 0


@pytest.mark.parametrize("first", [b"\xb1\x01", b"\xa2\x01", b"\xa1\x21", b"\xa1\xf1"])
def test_bad_magic_version_or_type(first: bytes) -> None:
    framer = StreamFramer()
    framer.feed(first + b"\x0f\x42" + b"\0" * 15)
    with pytest.raises(DecodeError):
        framer.next_packet()
    framer.feed(encode_request("core.version", [], 1))  # dead after an error
    with pytest.raises(DecodeError):
        framer.next_packet()


def test_garbage_after_a_good_packet() -> None:
    framer = StreamFramer()
    framer.feed(encode_request("core.version", [], 0x4242) + bytes.fromhex("deadbeef"))
    packet = framer.next_packet()
    assert packet is not None
    assert packet.cookie == 0x4242
    with pytest.raises(DecodeError):
        framer.next_packet()


def test_exactly_the_limit_is_accepted() -> None:
    # header a1 05 <2-byte len> <2-byte cookie> = 6 bytes; the body fills up to 65535
    body_len = 65535 - 6
    header = encode_header(MsgType.REQUEST, body_len, 0x1234)
    assert len(header) == 6
    framer = StreamFramer()
    framer.feed(header + b"\0" * body_len)
    packet = framer.next_packet()
    assert packet is not None
    assert len(packet.body) == body_len


def test_oversize_refused_at_the_header_without_buffering() -> None:
    framer = StreamFramer()
    framer.feed(encode_header(MsgType.REQUEST, 65535 - 5, 0x1234))  # 65536 in total
    with pytest.raises(PacketTooLarge) as info:
        framer.next_packet()
    assert info.value.size == 65536
    framer.feed(b"\0" * 100_000)
    assert framer.buffered == 0
    with pytest.raises(PacketTooLarge):
        framer.next_packet()


@pytest.mark.parametrize("length", [0x80000000, 0x80000100, 0xFFFFFFF7, 0xFFFFFFF8, 0xFFFFFFFF])
def test_huge_lengths_that_hang_kamailio_are_refused_at_once(length: int) -> None:
    framer = StreamFramer()
    framer.feed(b"\xa1\x0c" + length.to_bytes(4, "big") + b"\x01")
    with pytest.raises(PacketTooLarge):
        framer.next_packet()


def test_configurable_limit_for_clients() -> None:
    big = encode_reply(["z" * 200_000], 9)
    framer = StreamFramer(max_packet_size=64 << 20)
    framer.feed(big)
    packet = framer.next_packet()
    assert packet is not None
    assert packet.cookie == 9
