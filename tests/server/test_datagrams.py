"""Datagram listeners on every event loop: every kind of unix datagram peer gets its reply
(issue 10, point 24), and a datagram over the request size limit is dropped before anything
decodes it, as ctl does (point 15)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from binrpc import encode_request, parse_packet
from binrpc._codec import MsgType, decode_values
from binrpc.client import Client
from tests.loops import loop_factory

from .conftest import Endpoints, RawClient, ServerThread, free_port
from .test_daemon import Daemon


@pytest.fixture
def unixd_daemon(workdir: str, loop_name: str) -> Iterator[str]:
    """binrpcd (a subprocess) on a unix datagram socket, on each loop: its address."""
    address = f"unixd:{workdir}/d.dgram"
    daemon = Daemon("--loop", loop_name, "--binrpc", address)
    try:
        daemon.wait_ready(1)
        yield address
    finally:
        assert daemon.stop() == 0
        assert not os.path.exists(f"{workdir}/d.dgram")


def test_binrpc_command_on_unixd(unixd_daemon: str) -> None:
    # the binrpc command's default reply socket: an abstract name
    done = subprocess.run(
        [sys.executable, "-m", "binrpc.cli.main", "-s", unixd_daemon, "core.echo", "hello"],
        capture_output=True,
        check=False,
        timeout=30,  # a hang guard: the reply comes or never does
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hello\n", b"")


def test_binrpc_client_library_on_unixd(unixd_daemon: str) -> None:
    with Client(unixd_daemon) as client:
        assert client.call("core.echo", "a", 1) == ["a", "1"]


def _echo_from(sock: socket.socket, target: str, token: str) -> list[object]:
    sock.settimeout(10)
    sock.sendto(encode_request("core.echo", [token], 7), target)
    packet = parse_packet(sock.recv(1 << 16))
    assert packet is not None and (packet.type, packet.cookie) == (MsgType.REPLY, 7)
    return [*decode_values(packet.body)]


@pytest.mark.parametrize(
    "bind",
    [
        pytest.param(lambda d: f"{d}/kamcmd-like.sock", id="file"),
        pytest.param(lambda d: "", id="autobind"),
        # the longest abstract name there is (its NULs are part of the name)
        pytest.param(lambda d: b"\0peer" + b"\0" * 103, id="abstract-108"),
        pytest.param(lambda d: b"\0" + b"p" * 107, id="abstract-108-full"),
    ],
)
def test_every_bound_unix_datagram_peer_gets_its_reply(
    unixd_daemon: str, workdir: str, bind: object
) -> None:
    name = bind(workdir)  # type: ignore[operator]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(name)
        assert _echo_from(sock, unixd_daemon.split(":", 1)[1], "peer") == ["peer"]
    if isinstance(name, str) and name:
        os.unlink(name)


def test_unbound_unix_datagram_peer_is_not_answered(unixd_daemon: str, workdir: str) -> None:
    path = unixd_daemon.split(":", 1)[1]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unbound:
        # no address to answer to: the request runs, its reply is dropped (as ctl)
        unbound.sendto(encode_request("core.echo", ["lost"], 1), path)
    with RawClient(unixd_daemon, workdir) as c:
        assert c.call("core.echo", ["next"]) == ("reply", ["next"])


# --------------------------------------------------------------------------------------------
# the request size limit (point 15)


def _request_of(size: int, cookie: int) -> bytes:
    """A ``core.version`` request of exactly ``size`` bytes (its ignored parameter pads it)."""
    extra = size - len(encode_request("core.version", [""], cookie))
    while True:  # length fields grow with the string: shorten it until the size fits
        request = encode_request("core.version", ["x" * extra], cookie)
        if len(request) <= size:
            assert len(request) == size, size
            return request
        extra -= 1


def _first_reply_cookie(c: RawClient) -> int:
    p = c.recv_packet(10)
    assert p is not None, "no reply"
    assert p.type == MsgType.REPLY, decode_values(p.body)
    return p.cookie


def test_unixd_request_over_the_limit_is_dropped_before_decoding(
    server: ServerThread, endpoints: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    # the request of the issue: a 65,536-character method name
    huge = encode_request("k" * 65536, [], 1)
    with RawClient(endpoints.unixd, endpoints.workdir) as c, caplog.at_level(logging.WARNING):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        c.send(huge)
        c.send(_request_of(65536, 2))  # one byte over: dropped too
        c.send(_request_of(65535, 3))  # the largest request ctl runs
        # unix datagrams arrive in order: the first reply is the one to the third request
        assert _first_reply_cookie(c) == 3
    refusals = [r.getMessage() for r in caplog.records if "request over" in r.getMessage()]
    assert len(refusals) == 2, refusals
    assert "request over 65535 bytes" in refusals[0]


@pytest.mark.parametrize("transport", ["udp", "unixd"])
def test_datagram_request_limit_follows_max_request_size(
    endpoints: Endpoints, loop_name: str, transport: str
) -> None:
    ep = endpoints
    factory = loop_factory(loop_name)
    with (
        ServerThread(None, ep.unixd, ep.udp, max_request_size=1000, loop_factory=factory),
        RawClient(ep.by_transport(transport), ep.workdir) as c,
    ):
        c.send(_request_of(1001, 1))
        c.send(_request_of(1000, 2))
        assert _first_reply_cookie(c) == 2


def test_udp_port_is_free_after_the_daemon(workdir: str) -> None:
    # our own datagram transport closes the socket it was given, on SIGTERM too
    port = free_port()
    daemon = Daemon("--binrpc", f"udp:127.0.0.1:{port}")
    daemon.wait_ready(1)
    assert daemon.stop(signal.SIGTERM) == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
