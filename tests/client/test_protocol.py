"""The sans-I/O client connection: bytes in, replies out, no socket anywhere."""

from __future__ import annotations

import pytest

from binrpc import ConnectionClosed, DecodeError, PacketTooLarge, TransportTimeout
from binrpc._codec import MsgType, encode_fault, encode_header, encode_reply, encode_request
from binrpc.client import Reply, ReplyLost
from binrpc.client._errors import CookieMismatch, UnexpectedPacket
from binrpc.client._protocol import AWAITING, BROKEN, IDLE, ClientConnection


def sent(conn: ClientConnection, n: int) -> list[int]:
    """``n`` requests in flight; their cookies."""
    return [conn.request("core.echo", [i])[0] for i in range(n)]


def reply(cookie: int, *values: str) -> bytes:
    return encode_reply(list(values), cookie)


def test_replies_fed_a_byte_at_a_time() -> None:
    conn = ClientConnection("tcp:h:1")
    assert conn.state == IDLE
    cookies = sent(conn, 3)
    assert conn.state == AWAITING and conn.in_flight == cookies
    data = reply(cookies[0], "a") + encode_fault(500, "no", cookies[1]) + reply(cookies[2], "c")
    got: list[Reply] = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        while (r := conn.next_reply()) is not None:
            got.append(r)
    assert [r.cookie for r in got] == cookies
    assert got[0].values() == ["a"] and got[1].fault().code == 500 and got[2].values() == ["c"]
    assert conn.state == IDLE and conn.buffered == 0


def test_replies_out_of_order_and_in_one_chunk() -> None:
    conn = ClientConnection()
    a, b, c = sent(conn, 3)
    conn.receive_data(reply(c, "c") + reply(a, "a") + reply(b, "b"))
    assert [(r.cookie, r.values()) for r in conn.replies()] == [(c, ["c"]), (a, ["a"]), (b, ["b"])]
    assert conn.state == IDLE and conn.replies() == []


def test_zero_copy_reads_through_buffer_and_advance() -> None:
    conn = ClientConnection()
    [cookie] = sent(conn, 1)
    data = reply(cookie, "x" * 200_000)  # bigger than the scratch buffer: read in place
    pos = 0
    while pos < len(data):
        view = conn.buffer()
        n = min(len(view), 7000, len(data) - pos)
        view[:n] = data[pos : pos + n]
        del view
        conn.advance(n)
        pos += n
    r = conn.next_reply()
    assert r is not None and r.values() == ["x" * 200_000]


def test_abandoned_reply_is_dropped_once() -> None:
    conn = ClientConnection()
    a, b = sent(conn, 2)
    conn.abandon(a)
    assert conn.in_flight == [b]
    conn.receive_data(reply(a, "late") + reply(b, "b"))
    r = conn.next_reply()
    assert r is not None and r.cookie == b
    conn.receive_data(reply(a, "again"))  # a second late reply is nobody's
    with pytest.raises(CookieMismatch) as info:
        conn.next_reply()
    assert (info.value.sent, info.value.received) == (-1, a)


def test_forgotten_request_gets_no_reply() -> None:
    conn = ClientConnection()
    [a] = sent(conn, 1)
    conn.forget(a)
    assert conn.state == IDLE
    conn.receive_data(reply(a))
    with pytest.raises(CookieMismatch):
        conn.next_reply()


def test_protocol_error_first_gets_it_the_rest_reply_lost() -> None:
    conn = ClientConnection("unixs:/x")
    a, b, c = sent(conn, 3)
    conn.receive_data(reply(b, "b") + reply(12345, "stray"))
    got = conn.replies()
    assert [r.cookie for r in got] == [b]  # the replies before the bad one are kept
    assert conn.state == BROKEN and isinstance(conn.error, CookieMismatch)
    assert conn.error.sent == a  # the oldest in flight
    with pytest.raises(CookieMismatch):  # BROKEN: the same error again
        conn.next_reply()
    errors = conn.fail(conn.error)
    assert [cookie for cookie, _ in errors] == [a, c]
    assert errors[0][1] is conn.error
    assert isinstance(errors[1][1], ReplyLost) and errors[1][1].cause is conn.error
    assert "unixs:/x" in str(errors[1][1])
    assert conn.in_flight == []
    conn.start()  # a new connection
    assert conn.state == IDLE and conn.error is None


def test_transport_error_goes_to_every_request() -> None:
    conn = ClientConnection()
    cookies = sent(conn, 3)
    exc = ConnectionClosed(0, "closed")
    assert conn.fail(exc) == [(c, exc) for c in cookies]
    # they are abandoned: replies written before the close are dropped
    conn.receive_data(reply(cookies[1]))
    assert conn.next_reply() is None
    assert conn.fail(TransportTimeout(0, "t")) == []


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xa2\x10\x00\x00", DecodeError),  # bad magic/version
        (bytes([0xA1, 0x20]) + b"xx", DecodeError),  # bad type
        (encode_header(MsgType.REPLY, 2000, 1), PacketTooLarge),
    ],
)
def test_bad_bytes_break_the_connection(data: bytes, error: type[Exception]) -> None:
    conn = ClientConnection(max_reply_size=1000)
    sent(conn, 1)
    conn.receive_data(data)
    with pytest.raises(error):
        conn.next_reply()
    assert conn.state == BROKEN
    with pytest.raises(error):
        conn.next_reply()
    assert conn.replies() == []
    conn.discard_buffered()  # a datagram socket: the next datagram stands alone
    assert conn.state == AWAITING


def test_request_packet_is_unexpected() -> None:
    conn = ClientConnection()
    sent(conn, 1)
    conn.receive_data(encode_request("core.version", [], 7))
    with pytest.raises(UnexpectedPacket):
        conn.next_reply()


def test_cookie_sequence() -> None:
    conn = ClientConnection()
    first = conn.new_cookie()
    assert 0 <= first < 1 << 32 and conn.new_cookie() == (first + 1) & 0xFFFFFFFF
    conn = ClientConnection(cookie=0xFFFFFFFF)
    assert conn.new_cookie() == 0 and conn.new_cookie() == 1
    conn.start()  # a new transport keeps the sequence
    assert conn.new_cookie() == 2


@pytest.mark.parametrize("cookie", [0, 1, 0xFFFFFF, 0x1000000, 0xFFFFFFFF])
@pytest.mark.parametrize("method", ["core.version", "m" * 300, "\u00e9t\u00e9", ""])
def test_encoding_fast_path_is_the_codec(cookie: int, method: str) -> None:
    conn = ClientConnection()
    for _ in range(2):  # the second time from the per-method cache
        assert conn.encode(method, [], cookie) == encode_request(method, [], cookie)
        assert conn.encode(method, (), cookie) == encode_request(method, [], cookie)
    assert conn.encode(method, [1, "a"], cookie) == encode_request(method, [1, "a"], cookie)


def test_encoding_refuses_wrong_types() -> None:
    conn = ClientConnection()
    with pytest.raises(TypeError, match="method must be a str"):
        conn.encode(None, [], 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="params must be a list or tuple"):
        conn.encode("m", "abc", 1)
