"""The FIFO-protocol client library against our server, on every transport."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from binrpc import ConnectError, Fault, LocalProtocolError, Struct, TransportTimeout
from binrpc._fifo_wire import FifoReply, build_fifo_request, format_param, parse_fifo_reply
from binrpc.client._fifo_client import FifoClient
from binrpc.rpcs.core import NAME

from .conftest import TRANSPORTS, FifoServer, reply_name


def client(server: FifoServer, transport: str, **kw: Any) -> FifoClient:
    return FifoClient(server.addresses[transport], reply_dir=server.workdir, **kw)


def leftovers(directory: str) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith("binrpc_")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_calls(fifo_server: FifoServer, transport: str) -> None:
    c = client(fifo_server, transport)
    code, reason, lines = c.request("core.version")
    assert (code, reason) == (200, "OK") and lines[0].startswith(f"{NAME} ")
    # strings with every escape, numbers, bools, bytes
    text = "tab\there, nl\nback\\slash: colon, comma\r"
    reply = c.request("core.echo", text, 42, -5, 2.5, True, b"raw bytes").check()
    assert reply.values() == [text, "42", "-5", "2.5", "1", "raw bytes"]
    # a NUL travels as \0 both ways (over binrpc core.echo's 's' would end at it)
    assert c.request("core.echo", "nul\0end").values() == ["nul\0end"]
    assert c.request("t.echo", "nul\0end", "\u00e9t\u00e9").values() == [
        "nul\0end",
        "\u00e9t\u00e9",
    ]
    assert c.request("t.add", 40, 2).lines == ("42",)
    assert c.request("t.add", "0x10").values() == ["16"]
    assert c.request("t.types", 7, 1.5, "s", False).values() == [
        "int=7",
        "float=1.5",
        "str=s",
        "bool=False",
    ]
    # a struct (or dict) becomes a struct line; ':' and ',' travel escaped
    assert c.request("t.struct", {"a": 1, "b:c": "x,y"}).lines == ("a:1,b\\oc:x\\cy",)
    assert c.request("t.structs", Struct([("a", 1), ("b", 2)]), {"c": 3}).values() == ["2", "1"]
    assert leftovers(fifo_server.workdir) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_faults_and_statuses(fifo_server: FifoServer, transport: str) -> None:
    c = client(fifo_server, transport)
    reply = c.request("x")  # a one-letter method: the shortest request
    assert reply == FifoReply(500, "Command 'x' not found", (), b"500 Command 'x' not found\n")
    assert not reply.ok
    with pytest.raises(Fault) as info:
        c.request("t.fault").check()
    assert (info.value.code, info.value.message) == (404, "no thing here")
    assert c.request("t.fault").lines == ("kept",)  # the body is kept
    assert c.request("t.printf").lines == ("a=1 b=two",)  # no final LF
    assert c.request("t.add", "abc").code == 400


@pytest.mark.parametrize("transport", ["fifo", "tcp", "unixs"])
def test_big_reply(fifo_server: FifoServer, transport: str) -> None:
    reply = client(fifo_server, transport).request("t.big", 3000)
    assert len(reply.lines) == 3000 and reply.lines[-1] == "0002999" + "x" * 90


def test_concurrent_fifo_clients(fifo_server: FifoServer) -> None:
    c = client(fifo_server, "fifo")
    errors: list[str] = []

    def work(k: int) -> None:
        for i in range(10):
            got = c.request("core.echo", f"{k}/{i}").values()
            if got != [f"{k}/{i}"]:
                errors.append(f"{k}/{i}: {got}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert leftovers(fifo_server.workdir) == []


# ------------------------------------------------------------------------------------------
# errors


def test_parameters_the_protocol_cannot_carry(fifo_server: FifoServer) -> None:
    c = client(fifo_server, "udp")
    for bad in ("", {}, [1, 2], None, {"a": {"b": 1}}, object()):
        with pytest.raises(LocalProtocolError):
            c.request("core.echo", bad)
    with pytest.raises(LocalProtocolError):
        c.request("bad:name")


def test_fifo_request_bigger_than_pipe_buf_is_refused(fifo_server: FifoServer) -> None:
    c = client(fifo_server, "fifo")
    assert c.request("core.echo", "a" * 4000).values() == ["a" * 4000]
    with pytest.raises(LocalProtocolError, match="4096"):
        c.request("core.echo", "a" * 4100)
    # over a socket the same request is fine
    assert client(fifo_server, "tcp").request("core.echo", "a" * 4100).values() == ["a" * 4100]
    assert leftovers(fifo_server.workdir) == []


def test_no_server(workdir: str) -> None:
    with pytest.raises(ConnectError, match="No such file"):
        FifoClient(f"{workdir}/missing", reply_dir=workdir).request("core.version")
    path = f"{workdir}/nobody"
    os.mkfifo(path)
    with pytest.raises(ConnectError, match="no server is reading"):
        FifoClient(path, reply_dir=workdir).request("core.version")
    with open(f"{workdir}/file", "w") as fh:
        fh.write("x")
    with pytest.raises(ConnectError, match="is not a FIFO"):
        FifoClient(f"{workdir}/file", reply_dir=workdir).request("core.version")
    with open(f"{workdir}/file") as fh:
        assert fh.read() == "x"
    assert leftovers(workdir) == []


def test_timeout_and_cleanup(workdir: str) -> None:
    # a "server" that reads requests and never answers
    path = f"{workdir}/silent"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        start = time.monotonic()
        with pytest.raises(TransportTimeout):
            FifoClient(path, reply_dir=workdir, timeout=0.3).request("core.version")
        assert 0.25 < time.monotonic() - start < 2
        request = os.read(fd, 4096)
        assert request.startswith(b":core.version:binrpc_") and request.endswith(b"\n\n")
        name = request.split(b"\n")[0].split(b":")[2].decode()
        assert "." not in name and not os.path.exists(os.path.join(workdir, name))
    finally:
        os.close(fd)
    assert leftovers(workdir) == []


def test_timeout_on_sockets(fifo_server: FifoServer) -> None:
    for transport in ("udp", "tcp"):
        with pytest.raises(TransportTimeout):
            client(fifo_server, transport, timeout=0.3).request("t.slow", 2, "late")


def test_reply_dir_must_exist(fifo_server: FifoServer) -> None:
    with pytest.raises(ConnectError, match="reply FIFO"):
        FifoClient(fifo_server.addresses["fifo"], reply_dir="/nonexistent-dir").request("x")


# ------------------------------------------------------------------------------------------
# sans-I/O helpers


def test_format_param() -> None:
    assert format_param("a\tb\\c\nd:e,f") == "a\\tb\\\\c\\nd:e,f"
    assert format_param(7) == "7" and format_param(-1) == "-1"
    assert format_param(True) == "1" and format_param(False) == "0"
    assert format_param(2.5) == "2.5"
    assert format_param(b"\xff") == "\udcff"  # undecodable bytes survive the round trip
    assert format_param({"n:1": "v,2", "x": 3}) == "n\\c1:v\\o2,x:3"


def test_build_request() -> None:
    assert build_fifo_request("core.echo", ["a", 1], "r1") == b":core.echo:r1\na\n1\n\n"
    assert build_fifo_request("x") == b":x:\n\n"
    for bad_name in ("../x", "a.b", "a/b", "a\\b"):
        with pytest.raises(LocalProtocolError):
            build_fifo_request("core.version", (), bad_name)


def test_parse_reply() -> None:
    r = parse_fifo_reply(b"200 OK\na\\tb\n\nc:1,d:2\n")
    assert (r.code, r.reason, r.lines) == (200, "OK", ("a\\tb", "", "c:1,d:2"))
    assert r.values() == ["a\tb", "", "c:1,d:2"]
    code, reason, lines = r
    assert (code, reason) == (200, "OK")
    assert lines == ["a\\tb", "", "c:1,d:2"]
    assert parse_fifo_reply(b"500 Command 'x' not found\n").reason == "Command 'x' not found"
    assert parse_fifo_reply(b"200 OK\nno final newline").lines == ("no final newline",)
    assert parse_fifo_reply(b"200 OK\n").lines == ()
    assert parse_fifo_reply(b"404 a\\tb\n").reason == "a\tb"
    with pytest.raises(Exception, match="status line"):
        parse_fifo_reply(b"garbage\n")


def test_reply_name_has_no_dot() -> None:
    assert "." not in reply_name()


@pytest.mark.parametrize("transport", ["fifo", "tcp", "udp"])
def test_call_has_the_contract_of_client_call(fifo_server: FifoServer, transport: str) -> None:
    c = client(fifo_server, transport)
    # the values, unescaped, as Client.call returns a binrpc reply's values
    assert c.call("core.echo", "a\tb", 7) == ["a\tb", "7"]
    with pytest.raises(Fault) as info:
        c.call("t.fault")
    assert (info.value.code, info.value.message) == (404, "no thing here")
    with pytest.raises(Fault) as info:
        c.call("x")
    assert (info.value.code, info.value.message) == (500, "Command 'x' not found")
    # the raw reply, whatever its status, from request()
    raw = c.request("t.fault")
    assert (raw.code, raw.lines) == (404, ("kept",))
