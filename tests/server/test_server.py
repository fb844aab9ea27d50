"""Raw-socket tests of the server: framing, limits, concurrency, listeners, lifecycle."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import threading
import time
from typing import Any

import pytest

from binrpc import StreamFramer, Struct, decode_values, encode_request, parse_address
from binrpc._address import AddressError
from binrpc._context import RpcContext
from binrpc._registry import Registry
from binrpc.server import ListenerError, ServerOptions, serve

from .conftest import Endpoints, RawClient, ServerThread, free_port

TRANSPORTS = ["unixs", "unixd", "udp", "tcp"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_basic_call_each_transport(
    server: ServerThread, endpoints: Endpoints, transport: str
) -> None:
    with RawClient(endpoints.by_transport(transport), endpoints.workdir) as c:
        assert c.call("core.echo", ["a", 7, -5]) == (
            "reply",
            ["a", "7", "18446744073709551611"],
        )
        assert c.call("no.such") == ("fault", (500, "command no.such not found"))
        assert c.call("core.printi", [1, 2], cookie=0xDEADBEEF) == ("reply", [1, 2])


def test_ipv6_listeners(workdir: str) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = free_port(host="::1")
    tcp, udp = f"tcp:[::1]:{port}", f"udp:[::1]:{port}"
    with ServerThread(None, tcp, udp) as st:
        for addr in (tcp, udp):
            with RawClient(addr) as c:
                assert c.call("core.echo", ["v6"]) == ("reply", ["v6"])
                _, rows = c.call("ctl.listen")
                assert rows == [
                    "binrpc",
                    "tcp",
                    "[::1]",
                    str(port),
                    "binrpc",
                    "udp",
                    "[::1]",
                    str(port),
                ]
        with RawClient(tcp) as c:
            _kind, who = c.call("ctl.who")
            assert who[:3] == ["binrpc", "tcp", "::1"] and who[4:] == ["::1", str(port)]
        assert [str(a) for a in st.server.addresses] == [f"tcp:[::1]:{port}", f"udp:[::1]:{port}"]  # type: ignore[union-attr]


def test_pipelined_requests_in_one_write(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.unixs) as c:
        c.send(b"".join(encode_request("core.echo", [str(i)], i) for i in range(50)))
        for i in range(50):
            p = c.recv_packet()
            assert p is not None and p.cookie == i


def test_byte_at_a_time(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.tcp) as c:
        for b in encode_request("core.echo", ["slow"], 77):
            c.send(bytes([b]))
        p = c.recv_packet()
        assert p is not None and p.cookie == 77


def test_oversize_request_closed_without_reply(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.unixs) as c:
        # header announcing 70000 body bytes: refused as soon as the header is read
        c.send(bytes.fromhex("a10801117001"))
        assert c.recv_packet(1.0) is None
        assert c.closed_by_server()


def test_request_of_exactly_max_size_is_processed(
    server: ServerThread, endpoints: Endpoints
) -> None:
    base = encode_request("core.prints", ["x"], 1)
    pad = 65535 - len(base)
    req = encode_request("core.prints", ["x" * (1 + pad)], 1)
    # lengths grow by one extra length byte once past 255; adjust to exactly 65535
    req = encode_request("core.prints", ["x" * (1 + pad - (len(req) - 65535))], 1)
    assert len(req) == 65535
    with RawClient(endpoints.unixs) as c:
        c.send(req)
        p = c.recv_packet()
        assert p is not None
    with RawClient(endpoints.unixs) as c:
        c.send(encode_request("core.prints", ["x" * (1 + pad + 5)], 1))
        assert c.closed_by_server()


def test_long_fault_is_cut_and_delivered(server: ServerThread, endpoints: Endpoints) -> None:
    name = "m" * 300  # ctl sends nothing at all for a 237+ character name
    with RawClient(endpoints.unixs) as c:
        kind, (code, text) = c.call(name)
        assert (kind, code) == ("fault", 500)
        assert text == f"command {name} not found"[:254]
        assert c.call("core.echo", ["still"]) == ("reply", ["still"])


def test_half_close_still_gets_reply(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.unixs) as c:
        c.send(encode_request("core.echo", ["bye"], 5))
        c.sock.shutdown(socket.SHUT_WR)
        p = c.recv_packet()
        assert p is not None and p.cookie == 5
        assert c.closed_by_server()


def test_unbound_unix_datagram_sender_gets_nothing(
    server: ServerThread, endpoints: Endpoints
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(encode_request("core.echo", ["x"], 1), endpoints.unixd.split(":", 1)[1])
    with RawClient(endpoints.unixd, endpoints.workdir) as c:
        assert c.call("core.echo", ["ok"]) == ("reply", ["ok"])


def test_datagram_trailing_bytes_ignored(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.udp) as c:
        c.send(encode_request("core.echo", ["one"], 1) + encode_request("core.echo", ["two"], 2))
        p = c.recv_packet()
        assert p is not None and p.cookie == 1
        assert c.recv_packet(0.3) is None


def big_registry() -> Registry:
    reg = Registry()

    @reg.rpc("t.big")
    def big(n: int) -> list[Any]:
        return [{"v": "x" * 1000} for _ in range(n)]

    return reg


@pytest.mark.parametrize("transport", ["udp", "unixd"])
def test_datagram_reply_too_big_becomes_fault(transport: str, endpoints: Endpoints) -> None:
    ep = endpoints
    with (
        ServerThread(big_registry(), ep.unixd, ep.udp, binrpc_struct_max_body_size=1024),
        RawClient(ep.by_transport(transport), ep.workdir) as c,
    ):
        kind, _values = c.call("t.big", [50])
        assert kind == "reply"
        kind, (code, text) = c.call("t.big", [80])
        assert (kind, code) == ("fault", 500)
        assert "too big" in text


def test_big_stream_reply_is_complete(endpoints: Endpoints) -> None:
    ep = endpoints
    with (
        ServerThread(big_registry(), ep.unixs, binrpc_struct_max_body_size=4096),
        RawClient(ep.unixs) as c,
    ):
        kind, values = c.call("t.big", [1000])  # ~1 MB in one reply
        assert kind == "reply" and len(values[0]) == 1000


def slow_registry(release: threading.Event) -> Registry:
    reg = Registry()

    @reg.rpc("t.wait")
    async def wait(tag: str) -> str:
        while not release.is_set():
            await asyncio.sleep(0.01)
        return tag

    @reg.rpc("t.sleep")
    async def sleep(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    return reg


def test_async_handler_does_not_stall_other_clients_and_order_is_kept(endpoints: Endpoints) -> None:
    release = threading.Event()
    ep = endpoints
    with (
        ServerThread(slow_registry(release), ep.unixs, ep.tcp, ep.udp),
        RawClient(ep.unixs) as a,
        RawClient(ep.tcp) as b,
        RawClient(ep.udp) as u,
    ):
        # on connection a: a waiting RPC then a fast one, pipelined
        a.send(encode_request("t.wait", ["first"], 1) + encode_request("core.echo", ["second"], 2))
        # other clients are served meanwhile
        assert b.call("core.echo", ["b"]) == ("reply", ["b"])
        assert u.call("core.echo", ["u"]) == ("reply", ["u"])
        # the fast reply on a is held back behind the waiting one
        assert a.recv_packet(0.3) is None
        release.set()
        p1, p2 = a.recv_packet(), a.recv_packet()
        assert p1 is not None and p2 is not None
        assert (p1.cookie, p2.cookie) == (1, 2)


def test_max_connections(endpoints: Endpoints) -> None:
    ep = endpoints
    with ServerThread(None, ep.unixs, ep.tcp, max_connections=2):
        with RawClient(ep.unixs) as a, RawClient(ep.tcp) as b:
            assert b.call("core.echo", ["b"]) == ("reply", ["b"])
            assert a.call("ctl.connections") == ("reply", [2])
            with RawClient(ep.unixs) as c:
                assert c.closed_by_server()
            assert b.call("core.echo", ["ok"]) == ("reply", ["ok"])
        time.sleep(0.1)
        with RawClient(ep.tcp) as d:
            assert d.call("core.echo", ["again"]) == ("reply", ["again"])


def test_idle_timeout(endpoints: Endpoints) -> None:
    ep = endpoints
    with ServerThread(None, ep.unixs, idle_timeout=0.3), RawClient(ep.unixs) as c:
        assert c.call("core.echo", ["x"]) == ("reply", ["x"])
        t0 = time.monotonic()
        assert c.closed_by_server(3.0)
        assert 0.2 < time.monotonic() - t0 < 2.5


def test_no_idle_timeout_by_default(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.unixs) as c:
        c.send(bytes.fromhex("a1010f"))  # half a header, like vector 87
        assert not c.closed_by_server(0.5)


def test_write_timeout_closes_a_client_that_does_not_read(endpoints: Endpoints) -> None:
    ep = endpoints
    with (
        ServerThread(big_registry(), ep.unixs, write_timeout=0.3, binrpc_struct_max_body_size=4096),
        RawClient(ep.unixs) as c,
    ):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send(encode_request("t.big", [3000], 1))  # ~3 MB reply, never read
        time.sleep(1.0)
        received = 0
        c.sock.settimeout(2.0)
        try:
            while chunk := c.sock.recv(1 << 20):
                received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        assert received < 3_000_000  # closed, not delivered


# ------------------------------------------------------------------------------------------
# built-in RPCs over the wire


def test_ctl_listen_connections_who(server: ServerThread, endpoints: Endpoints) -> None:
    ep = endpoints
    udp_port = ep.udp.rsplit(":", 1)[1]
    tcp_port = ep.tcp.rsplit(":", 1)[1]
    with RawClient(ep.udp) as u:
        assert u.call("ctl.connections") == ("reply", [0])
        assert u.call("ctl.who") == ("fault", (400, "no open stream connection"))
        assert u.call("ctl.listen") == (
            "reply",
            [
                "binrpc", "unix_stream", ep.unixs.split(":", 1)[1], "",
                "binrpc", "unix_dgram", ep.unixd.split(":", 1)[1], "",
                "binrpc", "udp", "127.0.0.1", udp_port,
                "binrpc", "tcp", "127.0.0.1", tcp_port,
            ],
        )  # fmt: skip
        with RawClient(ep.unixs) as s, RawClient(ep.tcp) as t:
            # make sure both are accepted (the kernel completes connect() before asyncio runs)
            assert t.call("core.echo", ["t"]) == ("reply", ["t"])
            assert s.call("ctl.connections") == ("reply", [2])
            _kind, rows = u.call("ctl.who")
            local_port = str(t.sock.getsockname()[1])
            path = ep.unixs.split(":", 1)[1]
            assert rows == [
                "binrpc", "unix_stream", "<anonymous unix socket>", "", path, "",
                "binrpc", "tcp", "127.0.0.1", local_port, "127.0.0.1", tcp_port,
            ]  # fmt: skip


def test_system_rpcs(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.unixs) as c:
        _kind, names = c.call("system.listMethods")
        assert names == sorted(names, key=lambda n: n.encode())
        assert {"core.echo", "ctl.who", "system.methodHelp", "core.kill"} <= set(names)
        assert c.call("system.methodHelp", ["ctl.who"]) == ("reply", ["list open connections"])
        assert c.call("system.methodHelp") == ("fault", (400, "Method Name Expected"))
        assert c.call("system.methodHelp", [1.5]) == ("fault", (400, "Method Name Expected"))
        assert c.call("system.methodHelp", ["nope"]) == ("fault", (400, "command not found"))
        assert c.call("system.methodSignature") == ("fault", (500, "Not Implemented Yet"))
        assert c.call("system.methodSignature", ["core.printi"]) == (
            "reply",
            [Struct([(None, "array"), (None, "int...")])],
        )


def test_core_rpcs_shapes(server: ServerThread, endpoints: Endpoints) -> None:
    with RawClient(endpoints.unixs) as c:
        _, (version,) = c.call("core.version")
        assert version.startswith("binrpc ") and version.endswith(") ")
        _, ps = c.call("core.ps")
        assert ps[0] == os.getpid() and isinstance(ps[1], str) and len(ps) % 2 == 0
        _, psx = c.call("core.psx")
        assert list(psx[0].keys()) == ["IDX", "PID", "DSC"]
        _, psa = c.call("core.psa")
        assert list(psa[0].keys()) == ["index", "pid", "status", "rank", "description"]
        _, (up,) = c.call("core.uptime")
        assert list(up.keys()) == ["now", "up_since", "uptime"]
        _, (ri,) = c.call("core.runinfo")
        assert list(ri.keys())[-2:] == ["uptime_secs", "utime_days"]
        _, (info,) = c.call("core.info")
        assert list(info.keys()) == ["version", "id", "compiler", "compiled", "flags"]
        assert c.call("core.pwd") == ("reply", [os.getcwd()])
        _, args = c.call("core.arg")
        assert args and all(isinstance(a, str) for a in args)
        _, (mem,) = c.call("core.shmmem")
        assert list(mem.keys()) == ["total", "free", "used", "real_used", "max_used", "fragments"]
        _kind, (memk,) = c.call("core.shmmem", ["kb"])
        assert memk["total"] == mem["total"] // 1024
        assert c.call("core.shmmem", ["x"]) == ("fault", (500, "bad param, (use b|k|m|g)"))
        assert c.call("core.shmmem", ["mk"]) == ("fault", (500, "bad param, (use b|k|m|g)"))


def test_core_kill_replies_then_stops(endpoints: Endpoints) -> None:
    ep = endpoints
    st = ServerThread(None, ep.unixs, ep.unixd)
    with st:
        with RawClient(ep.unixs) as c:
            c.send(encode_request("core.kill", [], 0x77))
            p = c.recv_packet()
            assert p is not None
            assert (p.type, p.cookie, p.body) == (1, 0x77, b"")
            assert c.closed_by_server(3.0)
        st._thread.join(5)
        assert not st._thread.is_alive()
    assert not os.path.exists(ep.unixs.split(":", 1)[1])
    assert not os.path.exists(ep.unixd.split(":", 1)[1])


# ------------------------------------------------------------------------------------------
# listeners: addresses, files, permissions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unixs:/tmp/x.sock", ("unixs", "/tmp/x.sock", 0)),
        ("unix:/tmp/x.sock", ("unixs", "/tmp/x.sock", 0)),
        ("UNIXD:/tmp/x.dgram", ("unixd", "/tmp/x.dgram", 0)),
        ("/tmp/x.sock", ("unixs", "/tmp/x.sock", 0)),
        ("udp:127.0.0.1:2046", ("udp", "127.0.0.1", 2046)),
        ("tcp:127.0.0.1:2046", ("tcp", "127.0.0.1", 2046)),
        ("tcp:3012", ("tcp", "*", 3012)),
        ("2050", ("udp", "*", 2050)),
        ("127.0.0.1:2051", ("udp", "127.0.0.1", 2051)),
        ("localhost", ("udp", "localhost", 2049)),
        ("tcp:", ("tcp", "*", 2049)),
        ("tcp:*:0", ("tcp", "*", 2049)),
        ("udp:*:70000", ("udp", "*", 4464)),
        ("tcp:127.0.0.1:http", ("tcp", "127.0.0.1", 80)),
        ("tcp:[::1]:2046", ("tcp", "::1", 2046)),
    ],
)
def test_address_syntax(text: str, expected: tuple[str, str, int]) -> None:
    a = parse_address(text, "binrpc")
    assert (a.proto, a.host, a.port) == expected


@pytest.mark.parametrize(
    "text", ["foo:/tmp/x", "unix:/tmp/a:b", "tcp:1.2.3.4:nosuchservice", "udp:*:123456"]
)
def test_bad_addresses_refused_naming_the_value(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text, "binrpc")

    async def start() -> None:
        async with serve(None, text):
            pass

    with pytest.raises(ListenerError) as info:
        asyncio.run(start())
    assert repr(text) in str(info.value)


def test_fifo_listeners_accepted(workdir: str) -> None:
    # the FIFO protocol itself is tested in tests/fifo
    async def start(*addrs: str, **kw: Any) -> list[tuple[str, str, str, str]]:
        async with serve(None, *addrs, **kw) as srv:
            return srv.listener_rows()

    assert asyncio.run(start(f"fifo:{workdir}/f")) == [("fifo", "fifo", f"{workdir}/f", "")]
    assert asyncio.run(start(fifo=(f"{workdir}/f",))) == [("fifo", "fifo", f"{workdir}/f", "")]
    assert not os.path.exists(f"{workdir}/f")


def run_briefly(*addresses: str, **options: Any) -> list[os.stat_result]:
    """Start a server, stat its unix socket files, stop it."""

    async def main() -> list[os.stat_result]:
        async with serve(None, *addresses, **options) as srv:
            return [os.stat(a.path) for a in srv.addresses if a.is_unix]

    return asyncio.run(main())


def test_default_mode_0600_and_files_removed(workdir: str) -> None:
    s, d = f"{workdir}/s.sock", f"{workdir}/d.sock"
    sts = run_briefly(f"unixs:{s}", f"unixd:{d}")
    assert [stat.S_IMODE(x.st_mode) for x in sts] == [0o600, 0o600]
    assert all(stat.S_ISSOCK(x.st_mode) for x in sts)
    assert not os.path.exists(s) and not os.path.exists(d)


def test_custom_mode(workdir: str) -> None:
    (st,) = run_briefly(f"unixs:{workdir}/s.sock", mode=0o660)
    assert stat.S_IMODE(st.st_mode) == 0o660


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_and_group(workdir: str) -> None:
    (st,) = run_briefly(f"unixs:{workdir}/s.sock", user=1234, group="5678")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    (st,) = run_briefly(f"unixs:{workdir}/s.sock", group=4321)
    assert (st.st_uid, st.st_gid) == (0, 4321)
    import grp
    import pwd

    user = pwd.getpwuid(65534).pw_name
    group = grp.getgrgid(next(g.gr_gid for g in grp.getgrall())).gr_name
    (st,) = run_briefly(f"unixs:{workdir}/s.sock", user=user, group=group)
    assert st.st_uid == 65534 and st.st_gid == grp.getgrnam(group).gr_gid


def test_unknown_user_refused(workdir: str) -> None:
    with pytest.raises(ListenerError, match="no-such-user-xyz"):
        run_briefly(f"unixs:{workdir}/s.sock", user="no-such-user-xyz")


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ({"user": -5}, "bad user id -5"),
        ({"group": "-3"}, "bad group id '-3'"),
        ({"user": 2**32 - 1}, "bad user id 4294967295"),  # (uid_t)-1: "unchanged" to chown
        ({"group": 10**20}, "bad group id"),
        ({"user": True}, "bad user True"),  # TOML `user = true` is not uid 1
        ({"user": "a\0b"}, "unknown user"),  # was ValueError from getpwnam
        ({"group": "\udcff"}, "unknown group"),  # undecodable argv bytes
    ],
)
def test_bad_user_group_refused_before_any_file(
    workdir: str, ids: dict[str, Any], message: str
) -> None:
    with pytest.raises(ListenerError, match=re.escape(message)):
        run_briefly(f"unixs:{workdir}/s.sock", f"unixd:{workdir}/d.sock", **ids)
    assert os.listdir(workdir) == []


@pytest.mark.parametrize("mode", [-1, 0o10000, 2**70, True, "0600", 6.0])
def test_mode_outside_0_to_07777_refused(mode: Any) -> None:
    # chmod masks the mode: -1 would make the socket 07777 (world-writable, setuid, ...)
    with pytest.raises(ValueError, match="mode"):
        ServerOptions(mode=mode)
    with pytest.raises(ValueError, match="mode"):
        serve(None, "unixs:/tmp/never.sock", mode=mode)
    with pytest.raises(ValueError, match="mode"):
        ServerOptions().with_changes(mode=mode)
    assert ServerOptions(mode=0o7777).mode == 0o7777 and ServerOptions(mode=0).mode == 0


@pytest.mark.parametrize(("mode", "uid"), [(2**70, -1), (-2, -1), (0o600, 2**40), (0o600, -7)])
def test_open_socket_chmod_chown_errors_are_listener_errors(
    workdir: str, mode: int, uid: int
) -> None:
    """open_socket called directly with values ServerOptions/resolve_ids refuse: a clean
    ListenerError (not OverflowError) and no file left behind."""
    from binrpc.server._sockets import open_socket

    address = parse_address(f"unixs:{workdir}/s.sock", "binrpc")
    with pytest.raises(ListenerError, match="cannot set mode"):
        open_socket(address, mode, uid, -1)
    assert os.listdir(workdir) == []


def test_stale_socket_replaced(workdir: str) -> None:
    path = f"{workdir}/s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # file left behind, nobody listening
    assert os.path.exists(path)
    run_briefly(f"unixs:{path}")
    assert not os.path.exists(path)


def test_live_socket_not_stolen(workdir: str) -> None:
    path = f"{workdir}/s.sock"
    with ServerThread(None, f"unixs:{path}"):
        with pytest.raises(ListenerError, match="another server"):
            run_briefly(f"unixs:{path}")
        with RawClient(f"unixs:{path}") as c:
            assert c.call("core.echo", ["mine"]) == ("reply", ["mine"])
    dpath = f"{workdir}/d.sock"
    with ServerThread(None, f"unixd:{dpath}"), pytest.raises(ListenerError, match="another server"):
        run_briefly(f"unixd:{dpath}")


def test_non_socket_path_never_deleted(workdir: str) -> None:
    path = f"{workdir}/file"
    with open(path, "w") as fh:
        fh.write("keep me")
    with pytest.raises(ListenerError, match="not a socket"):
        run_briefly(f"unixs:{path}")
    with open(path) as fh:
        assert fh.read() == "keep me"


def test_failed_start_closes_earlier_listeners(workdir: str) -> None:
    good = f"{workdir}/good.sock"
    with pytest.raises(ListenerError):
        run_briefly(f"unixs:{good}", "foo:/bad")
    with pytest.raises(ListenerError):
        run_briefly(f"unixs:{good}", f"unixs:{workdir}/nodir/x.sock")
    assert not os.path.exists(good)


def test_busy_tcp_port_refused() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(ListenerError, match=str(port)):
            run_briefly(f"tcp:127.0.0.1:{port}")


def test_default_listener(workdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"{workdir}/sub/default.sock"
    monkeypatch.setenv("BINRPC_SOCKET", f"unixs:{path}")

    async def main() -> str:
        async with serve(None) as srv:
            assert os.path.exists(path)
            return str(srv.addresses[0])

    assert asyncio.run(main()) == f"unixs:{path}"


def test_options_limits_fallbacks() -> None:
    lim = ServerOptions(binrpc_max_body_size=0, binrpc_struct_max_body_size=-1).limits()
    assert (lim.max_body_size, lim.struct_max_body_size) == (4096, 1024)
    lim = ServerOptions().limits()
    assert (lim.max_body_size, lim.struct_max_body_size, lim.buffer_size) == (32768, 8192, 1024)


async def test_embedded_api_in_running_loop(workdir: str) -> None:
    reg = Registry()

    @reg.rpc("t.ctx", context=True)
    def handler(ctx: RpcContext) -> None:
        ctx.add("d", ctx.server.connection_count())  # type: ignore[union-attr]

    path = f"{workdir}/e.sock"
    async with serve(reg, f"unixs:{path}") as srv:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(encode_request("t.ctx", [], 3))
        data = await reader.read(100)
        assert data == bytes.fromhex("a11002031001")
        writer.close()
        srv.close()
        await srv.wait_closed()
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    ("process_name", "shown"),
    [("myapp", "myapp"), (None, os.path.basename(__import__("sys").argv[0] or "python"))],
)
async def test_core_ps_names_the_process_from_the_options(
    workdir: str, process_name: str | None, shown: str
) -> None:
    """The name core.ps shows goes through ServerOptions (binrpcd sets "binrpcd"), not a
    module global; without one it is the program's file name."""
    path = f"{workdir}/ps.sock"
    opts = ServerOptions(process_name=process_name)
    async with serve(Registry(), f"unixs:{path}", options=opts):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(encode_request("core.ps", [], 5))
        await writer.drain()
        framer = StreamFramer()
        while (packet := framer.next_packet()) is None:
            framer.feed(await reader.read(65536))
        writer.close()
    values = decode_values(packet.body)
    assert values[:2] == [os.getpid(), f"main process - {shown}"]
