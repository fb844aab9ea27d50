"""The blocking Client against the fake server: transports, reassembly, errors, limits."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pytest

from binrpc import (
    ConnectError,
    ConnectionClosed,
    Double,
    Fault,
    PacketTooLarge,
    Struct,
    TransportTimeout,
)
from binrpc.client import Client, CookieMismatch, Reply, Timeouts, UnexpectedPacket
from binrpc.client._errors import BindError, ResolveError

from .fakeserver import FakeServer, fault, raw_reply, reply

TRANSPORTS = ["unixs", "unixd", "udp", "tcp"]


@pytest.mark.parametrize("proto", [*TRANSPORTS, "tcp6", "udp6"])
def test_call_every_transport(proto: str) -> None:
    with FakeServer(proto) as srv, Client(srv.address, timeout=5) as c:
        assert c.call("core.echo", 1, "a", -5, 1.5, b"xy") == [1, "a", -5, 1.5, b"xy"]
        assert c.call_one("core.version") == "fake 1.0"
        assert c.call("core.echo") == []
        assert c.call_one("core.echo") is None
        up = c.call_one("core.uptime")
        assert isinstance(up, Struct) and up["uptime"] == 7
        with pytest.raises(Fault) as info:
            c.call("no.such")
        assert info.value == Fault(500, "command no.such not found")
        with pytest.raises(ValueError, match="2 values"):
            c.call_one("core.echo", 1, 2)
    # a stream connection is reused for every call
    if proto in ("unixs", "tcp", "tcp6"):
        assert srv.connections == 1


def test_request_returns_raw_reply_and_faults() -> None:
    with FakeServer("unixs") as srv, Client(srv.address) as c:
        r = c.request("no.such")
        assert isinstance(r, Reply) and r.is_fault
        assert r.fault() == Fault(500, "command no.such not found")
        r2 = c.request("core.echo", [Double(5)])
        assert r2.values() == [5.0]


def _handler_with(special: dict[str, Any]):  # type: ignore[no-untyped-def]
    def handler(method: str, params: list[Any], cookie: int) -> list[Any]:
        if method in special:
            return special[method](params, cookie)  # type: ignore[no-any-return]
        return [reply(params, cookie)]

    return handler


@pytest.mark.parametrize("proto", ["unixs", "tcp"])
def test_split_delivery_one_byte_at_a_time(proto: str) -> None:
    def slow(params: list[Any], cookie: int) -> list[Any]:
        data = reply([Struct(a=1, b="x" * 50), 7], cookie)
        out: list[Any] = []
        for b in data:
            out += [bytes([b]), 0.001]
        return out

    with FakeServer(proto, _handler_with({"slow": slow})) as srv, Client(srv.address) as c:
        assert c.call("slow") == [Struct(a=1, b="x" * 50), 7]


@pytest.mark.parametrize("proto", ["udp", "unixd"])
def test_reply_split_across_datagrams(proto: str) -> None:
    # the ctl module sends big struct-heavy replies as several datagrams (spec 4.2)
    def split(params: list[Any], cookie: int) -> list[Any]:
        data = reply([Struct(i=i) for i in range(100)], cookie)
        return [data[:7], data[7:500], data[500:]]

    with FakeServer(proto, _handler_with({"split": split})) as srv, Client(srv.address) as c:
        assert c.call("split") == [Struct(i=i) for i in range(100)]
        assert c.call("core.echo", "after") == ["after"]


@pytest.mark.parametrize("proto", TRANSPORTS)
def test_read_timeout_fires(proto: str) -> None:
    def late(params: list[Any], cookie: int) -> list[Any]:
        return [1.0, reply(["late"], cookie)]

    with (
        FakeServer(proto, _handler_with({"late": late})) as srv,
        Client(srv.address, timeout=Timeouts(connect=2, read=0.2)) as c,
    ):
        if True:
            # raised at all: the timeout fired before the reply (sent after 1 s) came
            with pytest.raises(TransportTimeout, match=r"timed out after 0\.2 s") as info:
                c.call("late")
            assert isinstance(info.value, TimeoutError)
            assert srv.address.split(":", 1)[1] in str(info.value)
            # the client is usable afterwards; a late reply to the abandoned call is dropped
            time.sleep(1.0)
            assert c.call("core.echo", "next") == ["next"]


def test_delayed_reply_without_timeout_is_waited_for() -> None:
    def late(params: list[Any], cookie: int) -> list[Any]:
        return [0.5, reply(["late"], cookie)]

    with (
        FakeServer("tcp", _handler_with({"late": late})) as srv,
        Client(srv.address, timeout=None) as c,
    ):
        assert c.call("late") == ["late"]


@pytest.mark.parametrize("proto", ["unixs", "tcp"])
def test_close_mid_reply_is_a_clear_error(proto: str) -> None:
    def cut(params: list[Any], cookie: int) -> list[Any]:
        return [reply(["x" * 100], cookie)[:20], None]

    with FakeServer(proto, _handler_with({"cut": cut})) as srv, Client(srv.address) as c:
        with pytest.raises(ConnectionClosed, match="closed the connection after 20 bytes"):
            c.call("cut")
        # and the next call reconnects
        assert c.call("core.echo", 1) == [1]
        assert srv.connections == 2


@pytest.mark.parametrize("proto", ["unixs", "tcp"])
def test_close_without_reply(proto: str) -> None:
    def drop(params: list[Any], cookie: int) -> list[Any]:
        return [None]

    with (
        FakeServer(proto, _handler_with({"drop": drop})) as srv,
        Client(srv.address) as c,
        pytest.raises(ConnectionClosed, match="before replying"),
    ):
        c.call("drop")


@pytest.mark.parametrize("proto", ["unixs", "tcp"])
def test_reconnect_after_server_closed_idle_connection(proto: str) -> None:
    with FakeServer(proto) as srv, Client(srv.address) as c:
        assert c.call("core.echo", 1) == [1]
        srv.close_clients()
        time.sleep(0.2)
        assert c.call("core.echo", 2) == [2]
        assert srv.connections == 2


@pytest.mark.parametrize("proto", TRANSPORTS)
def test_cookie_mismatch_detected(proto: str) -> None:
    def wrong(params: list[Any], cookie: int) -> list[Any]:
        return [reply(["x"], cookie ^ 0x5A)]

    with FakeServer(proto, _handler_with({"wrong": wrong})) as srv, Client(srv.address) as c:
        with pytest.raises(CookieMismatch) as info:
            c.call("wrong")
        assert info.value.received == info.value.sent ^ 0x5A


def test_not_a_reply_and_corrupted() -> None:
    def req(params: list[Any], cookie: int) -> list[Any]:
        return [raw_reply(b"", cookie, msg_type=0)]

    def bad(params: list[Any], cookie: int) -> list[Any]:
        return [b"\xb1\x10\x00\x00garbage"]

    h = _handler_with({"req": req, "bad": bad})
    with FakeServer("tcp", h) as srv, Client(srv.address) as c:
        with pytest.raises(UnexpectedPacket):
            c.call("req")
        from binrpc import DecodeError

        with pytest.raises(DecodeError, match="corrupted"):
            c.call("bad")


def test_20_mib_reply() -> None:
    big = "y" * (20 * 1024 * 1024)

    def huge(params: list[Any], cookie: int) -> list[Any]:
        return [reply([big], cookie)]

    with FakeServer("unixs", _handler_with({"huge": huge})) as srv, Client(srv.address) as c:
        assert c.call_one("huge") == big


def test_reply_size_limit() -> None:
    def huge(params: list[Any], cookie: int) -> list[Any]:
        return [reply(["z" * 5000], cookie)]

    h = _handler_with({"huge": huge})
    with (
        FakeServer("tcp", h) as srv,
        Client(srv.address, max_reply_size=4096) as c,
        pytest.raises(PacketTooLarge),
    ):
        c.call("huge")


def test_lenient_replies_unnamed_values_and_arrays() -> None:
    # struct with unnamed members (ctl's "arrays") and a real binrpc array
    body = bytes.fromhex("03 10 01 10 02 21 78 00 83 04 10 01 84".replace(" ", ""))

    def odd(params: list[Any], cookie: int) -> list[Any]:
        return [raw_reply(body, cookie)]

    with FakeServer("unixs", _handler_with({"odd": odd})) as srv, Client(srv.address) as c:
        values = c.call("odd")
        assert values == [Struct([(None, 1), (None, 2), (None, "x")]), [1]]


def test_connect_errors_name_the_address(tmp_path: Any) -> None:
    missing = f"unixs:{tmp_path}/nope"
    with pytest.raises(ConnectError, match="nope") as info:
        Client(missing).connect()
    assert info.value.errno == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError, match=f"tcp:127.0.0.1:{port}"):
        Client(f"tcp:127.0.0.1:{port}").call("x")
    with pytest.raises(ResolveError):
        Client("tcp:no-such-host.invalid:5").connect()


def test_udp_port_unreachable_is_a_transport_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from binrpc.client import ReceiveError

    with Client(f"udp:127.0.0.1:{port}", timeout=2) as c, pytest.raises(ReceiveError) as info:
        c.call("x")
    assert info.value.errno == 111


def test_unixd_reply_socket_abstract_by_default() -> None:
    with FakeServer("unixd") as srv, Client(srv.address) as c:
        assert c.call("core.echo", 1) == [1]
        assert c.reply_socket_path is None  # abstract namespace: nothing on disk


def test_unixd_reply_socket_in_directory_and_exact_path(tmp_path: Any) -> None:
    with FakeServer("unixd") as srv:
        c = Client(srv.address, reply_dir=str(tmp_path))
        assert c.call("core.echo", 1) == [1]
        path = c.reply_socket_path
        assert path is not None and os.path.dirname(path) == str(tmp_path)
        assert os.path.exists(path)
        c.close()
        assert not os.path.exists(path)

        exact = str(tmp_path / "reply.sock")
        with Client(srv.address, reply_path=exact) as c2:
            assert c2.call("core.echo", 2) == [2]
            assert os.path.exists(exact)
        assert not os.path.exists(exact)

        # an existing file is not touched, and binding fails
        open(exact, "w").close()
        with pytest.raises(BindError) as info:
            Client(srv.address, reply_path=exact).connect()
        assert info.value.path == exact and info.value.errno == 98
        assert os.path.exists(exact)


def test_unixd_reply_socket_removed_after_errors(tmp_path: Any) -> None:
    def never(params: list[Any], cookie: int) -> list[Any]:
        return []

    with FakeServer("unixd", _handler_with({"never": never})) as srv:
        exact = str(tmp_path / "r.sock")
        with (
            Client(srv.address, reply_path=exact, timeout=0.2) as c,
            pytest.raises(TransportTimeout),
        ):
            c.call("never")
        assert not os.path.exists(exact)


def test_timeouts_value() -> None:
    assert Timeouts.of(3) == Timeouts(3.0, 3.0)
    assert Timeouts.of(None) == Timeouts(None, None)
    with pytest.raises(ValueError):
        Timeouts.of(0)


def test_fault_helper_roundtrip() -> None:
    def f(params: list[Any], cookie: int) -> list[Any]:
        return [fault(404, "not here", cookie)]

    with (
        FakeServer("udp", _handler_with({"f": f})) as srv,
        Client(srv.address) as c,
        pytest.raises(Fault, match="404 - not here"),
    ):
        c.call("f")
