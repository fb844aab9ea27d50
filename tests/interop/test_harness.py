"""Tests proving that the interop harness really runs Kamailio 5.6.3 and kamcmd 1.5."""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile

import pytest

from .conftest import KamailioEndpoints, KamailioFactory, KamcmdRunner
from .kamailio import (
    CtlAddress,
    Kamailio,
    KamailioError,
    free_ports,
    parse_ctl_address,
    session_processes,
)

VERSION_RE = re.compile(rb"^kamailio 5\.6\.3 \([A-Za-z0-9_]+/linux\) \n\Z")


@pytest.mark.parametrize("transport", ["unixs", "unixd", "udp", "tcp"])
def test_core_version_over_each_binrpc_transport(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner, transport: str
) -> None:
    """kamcmd core.version answers over every binrpc transport with the 5.6.3 banner."""
    address = kamailio.binrpc[transport]
    assert address.startswith(transport + ":")
    result = kamcmd(["core.version"], address)
    assert result.returncode == 0, result
    assert result.stdout.startswith(b"kamailio 5.6.3 ("), result.stdout
    assert VERSION_RE.match(result.stdout), result.stdout
    assert result.stderr == b""


def test_ctl_listen_lists_all_listeners_in_configuration_order(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner
) -> None:
    """ctl.listen reports the 7 configured listeners (payload, transport, name, port)."""

    def hostport(address: str) -> tuple[str, str]:
        _proto, host, port = address.split(":")
        return host, port

    udp_host, udp_port = hostport(kamailio.udp)
    tcp_host, tcp_port = hostport(kamailio.tcp)
    ftcp_host, ftcp_port = hostport(kamailio.fifo_tcp)
    fudp_host, fudp_port = hostport(kamailio.fifo_udp)
    expected = [
        ("binrpc", "unix_stream", kamailio.unixs_path, ""),
        ("binrpc", "unix_dgram", kamailio.unixd_path, ""),
        ("binrpc", "udp", udp_host, udp_port),
        ("binrpc", "tcp", tcp_host, tcp_port),
        ("fifo", "fifo", kamailio.fifo_path, ""),
        ("fifo", "tcp", ftcp_host, ftcp_port),
        ("fifo", "udp", fudp_host, fudp_port),
    ]
    # the harness's own address model agrees
    assert [a.listen_row for a in kamailio.server.addresses] == expected

    result = kamcmd(["ctl.listen"], kamailio.unixs)
    assert result.returncode == 0, result
    lines = result.stdout.decode().split("\n")
    assert lines[-1] == ""  # output ends with a newline
    rows = [tuple(lines[i : i + 4]) for i in range(0, len(lines) - 1, 4)]
    assert rows == expected


def test_session_instance_is_the_configured_process(kamailio: KamailioEndpoints) -> None:
    """The pid is the main process, leader of its own session, and matches the pidfile."""
    assert kamailio.server.running
    procs = session_processes(kamailio.pid)
    assert kamailio.pid in [p.pid for p in procs]
    assert len(procs) >= 3  # main + ctl handler + at least one more child
    assert all(p.comm == "kamailio" for p in procs)
    with open(kamailio.server.pidfile, encoding="ascii") as fh:
        assert int(fh.read().strip()) == kamailio.pid
    assert stat.S_ISFIFO(os.stat(kamailio.fifo_path).st_mode)
    assert stat.S_ISSOCK(os.stat(kamailio.unixs_path).st_mode)
    assert kamailio.workdir.startswith("/tmp/binrpc-kam-")


def test_stop_leaves_no_process_and_no_socket_file(kamcmd: KamcmdRunner) -> None:
    """After stop(): main pid and all children gone, sockets/FIFO unlinked, port free."""
    sockdir = tempfile.mkdtemp(prefix="binrpc-kam-", dir="/tmp")
    try:
        (tcp_port,) = free_ports(1)
        server = Kamailio(
            binrpc=[
                f"unixs:{sockdir}/s.sock",
                f"unixd:{sockdir}/d.sock",
                f"tcp:127.0.0.1:{tcp_port}",
            ],
            fifo=[f"fifo:{sockdir}/f.fifo"],
        )
        with server:
            assert server.pid is not None
            pid, workdir = server.pid, server.workdir
            pids = [p.pid for p in server.processes()]
            assert pid in pids and len(pids) >= 3
            assert sorted(os.listdir(sockdir)) == ["d.sock", "f.fifo", "s.sock"]
            assert kamcmd(["core.version"], f"tcp:127.0.0.1:{tcp_port}").stdout.startswith(
                b"kamailio 5.6.3 ("
            )
        # __exit__ ran stop()
        assert not server.running
        assert server.returncode is not None
        assert [p for p in pids if os.path.exists(f"/proc/{p}")] == []
        assert session_processes(pid, include_zombies=True) == []
        assert os.listdir(sockdir) == []  # Kamailio unlinked its sockets and FIFO itself
        assert not os.path.exists(workdir)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", tcp_port))  # the ctl TCP port was released
        server.stop()  # idempotent
    finally:
        for name in os.listdir(sockdir):
            os.unlink(os.path.join(sockdir, name))
        os.rmdir(sockdir)


def test_factory_instance_with_autoconversion(
    kamailio_factory: KamailioFactory, kamailio: KamailioEndpoints, kamcmd: KamcmdRunner
) -> None:
    """params={"autoconversion": 1} reaches the ctl module: core.printi s:12 prints 12."""
    server = kamailio_factory(params={"autoconversion": 1})
    assert server.pid is not None and server.pid != kamailio.pid
    with open(server.cfg_path, encoding="utf-8") as fh:
        assert 'modparam("ctl", "autoconversion", 1)' in fh.read()
    address = server.addresses[0].kamcmd
    assert address == f"unixs:{server.workdir}/ctl.sock"
    result = kamcmd(["core.printi", "s:12"], address)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"12\n", b"")
    # contrast: the session instance runs without autoconversion and refuses the string
    plain = kamcmd(["core.printi", "s:12"], kamailio.unixs)
    assert plain.returncode == 0
    assert plain.stdout.startswith(b"error: 400 - "), plain.stdout


def test_startup_failure_raises_with_log_tail() -> None:
    """A listener Kamailio rejects makes start() raise with the log; nothing is left behind."""
    server = Kamailio(binrpc=["foo:/tmp/binrpc-kam-nonexistent/x"])
    assert server.unparsed == ["foo:/tmp/binrpc-kam-nonexistent/x"]
    with pytest.raises(KamailioError, match="bad listen socket") as info:
        server.start()
    assert "exited during startup" in str(info.value)
    assert server.pid is not None
    assert session_processes(server.pid, include_zombies=True) == []
    assert not os.path.exists(server.workdir)


def test_free_ports_are_distinct_and_free_for_tcp_and_udp() -> None:
    """free_ports(n) gives distinct ports bindable for both TCP and UDP."""
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("value", "payload", "expected"),
    [
        ("unixs:/tmp/a", "binrpc", ("binrpc", "unix_stream", "/tmp/a", "")),
        ("unix:/tmp/a", "binrpc", ("binrpc", "unix_stream", "/tmp/a", "")),
        ("/tmp/a", "binrpc", ("binrpc", "unix_stream", "/tmp/a", "")),
        ("/tmp/a", "fifo", ("fifo", "fifo", "/tmp/a", "")),
        ("127.0.0.1:7000", "fifo", ("fifo", "udp", "127.0.0.1", "7000")),
        ("TCP:3012", "binrpc", ("binrpc", "tcp", "*", "3012")),
        ("udp:127.0.0.1:70000", "binrpc", ("binrpc", "udp", "127.0.0.1", "4464")),
        ("2050", "binrpc", ("binrpc", "udp", "*", "2050")),
        ("46181", "fifo", ("fifo", "fifo", "46181", "")),
    ],
)
def test_parse_ctl_address(value: str, payload: str, expected: tuple[str, str, str, str]) -> None:
    """The harness's model of ctl's address syntax (spec 7.2) used for probing."""
    address: CtlAddress = parse_ctl_address(value, "fifo" if payload == "fifo" else "binrpc")
    assert address.listen_row == expected


def test_parse_ctl_address_rejects_what_563_rejects() -> None:
    """Bracketed IPv6 and non-numeric unknown ports are errors."""
    for bad in ("tcp:[::1]:2049", "foo:/tmp/x", "unixs:/tmp/a:zz"):
        with pytest.raises(ValueError):
            parse_ctl_address(bad)
