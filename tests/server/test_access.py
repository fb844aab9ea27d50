"""Access control (issue #7 part 4): peer uids/gids on unix sockets, client networks on
udp/tcp, method allow/deny lists, TLS listeners. Everything on /tmp, 127.0.0.x and ::1."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap

import pytest

from binrpc import encode_request, parse_packet
from binrpc._codec import MsgType, decode_values
from binrpc.client import Client
from binrpc.server import Listen, ListenerError, serve
from tests.pki import Pki

from .conftest import RawClient, ServerThread, free_port

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as nobody")


def _values(packet: object) -> list[object]:
    assert packet is not None
    return list(decode_values(packet.body))  # type: ignore[attr-defined]


def _call(address: str, method: str, *params: str, workdir: str | None = None) -> object:
    c = RawClient(address, workdir)
    try:
        c.send(encode_request(method, list(params), 7))
        return c.recv_packet(2.0)
    finally:
        c.sock.close()


_AS_NOBODY = textwrap.dedent(
    """
    import socket, sys
    kind = socket.SOCK_STREAM if sys.argv[1] == "s" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_UNIX, kind)
    s.settimeout(1.5)
    if kind == socket.SOCK_DGRAM:
        s.bind("")  # autobind: the server can answer
    s.connect(sys.argv[2])
    try:
        s.send(bytes.fromhex(sys.argv[3]))
    except (BrokenPipeError, ConnectionResetError):
        print("closed")
        sys.exit(0)
    try:
        data = s.recv(65536)
        print("reply" if data else "eof", data.hex())
    except TimeoutError:
        print("timeout")
    except ConnectionResetError:
        print("reset")
    """
)


def _python_for_others() -> str:
    """A Python another user can run (the venv may live under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            return candidate
    return sys.executable


def _as_user(uid: int, kind: str, path: str, request: bytes) -> str:
    try:
        out = _run_as(uid, kind, path, request)
    except PermissionError:
        pytest.skip("no Python that uid 65534 may run")
    return out


def _run_as(uid: int, kind: str, path: str, request: bytes) -> str:
    out = subprocess.run(
        [_python_for_others(), "-I", "-c", _AS_NOBODY, kind, path, request.hex()],
        user=uid,
        group=uid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=20,
        cwd="/",
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


# -- unix peer credentials ------------------------------------------------------------------


@root_only
@pytest.mark.parametrize("kind", ["unixs", "unixd"])
def test_unix_uid_allow_list(workdir: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    os.chmod(workdir, 0o755)
    path = f"{workdir}/ctl.{kind}"
    req = encode_request("core.version", [], 42)
    with ServerThread(None, Listen(f"{kind}:{path}", allow_uids=[0]), mode=0o666):  # type: ignore[arg-type]
        caplog.set_level(logging.WARNING, "binrpc.server")
        # nobody can open the socket (mode 0666) but is not in the list: no reply at all
        result = _as_user(NOBODY, kind[-1], path, req)
        assert result.split()[0] in ("closed", "eof", "reset", "timeout"), result
        if kind == "unixd":
            assert result == "timeout"
        assert any(
            "refused" in r.message and f"uid {NOBODY}" in r.message and path in r.message
            for r in caplog.records
        ), caplog.text
        # root (uid 0) is allowed
        reply = _call(f"{kind}:{path}", "core.version", workdir=workdir)
        assert reply is not None and reply.type == MsgType.REPLY  # type: ignore[attr-defined]


@root_only
@pytest.mark.parametrize("kind", ["unixs", "unixd"])
def test_unix_allowed_uid_and_gid(workdir: str, kind: str) -> None:
    os.chmod(workdir, 0o755)
    path = f"{workdir}/ctl.{kind}"
    req = encode_request("core.version", [], 42)
    for rule in ({"allow_uids": [NOBODY]}, {"allow_uids": [0], "allow_gids": ["nogroup"]}):
        with ServerThread(None, Listen(f"{kind}:{path}", **rule), mode=0o666):  # type: ignore[arg-type]
            result = _as_user(NOBODY, kind[-1], path, req)
            assert result.startswith("reply "), (rule, result)
            packet = parse_packet(bytes.fromhex(result.split()[1]))
            assert packet is not None and _values(packet)[0].startswith("binrpc")  # type: ignore[attr-defined]


# -- client networks ------------------------------------------------------------------------


def _inet_call(proto: str, host: str, port: int, source: str) -> object:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
        s.settimeout(1.0)
        s.bind((source, 0))
        s.connect((host, port))
        s.sendall(encode_request("core.version", [], 9))
        try:
            data = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return None
        return parse_packet(data) if data else None


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_network_allow_list_ipv4(proto: str, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    addr = Listen(f"{proto}:127.0.0.1:{port}", allow_networks=["127.0.0.1/32", "::1/128"])
    with ServerThread(None, addr):  # type: ignore[arg-type]
        caplog.set_level(logging.WARNING, "binrpc.server")
        ok = _inet_call(proto, "127.0.0.1", port, "127.0.0.1")
        assert ok is not None and ok.type == MsgType.REPLY  # type: ignore[attr-defined]
        assert _inet_call(proto, "127.0.0.1", port, "127.0.0.2") is None
        assert any("refused" in r.message and "127.0.0.2" in r.message for r in caplog.records)
        # the server keeps serving the allowed network
        assert _inet_call(proto, "127.0.0.1", port, "127.0.0.1") is not None


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_network_allow_list_ipv6(proto: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port(host="::1")
    with ServerThread(None, Listen(f"{proto}:[::1]:{port}", allow_networks=["::1/128"])):  # type: ignore[arg-type]
        assert _inet_call(proto, "::1", port, "::1") is not None
    with ServerThread(None, Listen(f"{proto}:[::1]:{port}", allow_networks=["127.0.0.0/8"])):  # type: ignore[arg-type]
        assert _inet_call(proto, "::1", port, "::1") is None


def test_rules_that_do_not_fit_are_refused(workdir: str) -> None:
    import asyncio

    async def start(item: Listen) -> None:
        srv = serve(None, item)
        await srv.start()
        srv.close()
        await srv.wait_closed()

    for bad in (
        Listen(f"tcp:127.0.0.1:{free_port()}", allow_uids=[0]),
        Listen(f"unixs:{workdir}/x.sock", allow_networks=["127.0.0.0/8"]),
        Listen(f"tcp:127.0.0.1:{free_port()}", tls_cert="/nonexistent.pem"),
        Listen(f"tls:127.0.0.1:{free_port()}"),
        Listen(f"{workdir}/fifo", fifo=True, allow_uids=[0]),
    ):
        with pytest.raises(ListenerError):
            asyncio.run(start(bad))
    with pytest.raises(ValueError):
        Listen("tcp:127.0.0.1:1", allow_networks=["not-a-net"])


# -- method allow/deny lists ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unixs", "unixd", "tcp", "udp"])
def test_read_only_listener(workdir: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    ro = (
        f"{kind}:{workdir}/ro.{kind}"
        if kind.startswith("unix")
        else f"{kind}:127.0.0.1:{free_port()}"
    )
    rw = f"unixs:{workdir}/rw.sock"
    policy = Listen(ro, allow_methods=["core.*", "system.*"], deny_methods=["core.kill"])
    with ServerThread(None, policy, rw) as st:  # type: ignore[arg-type]
        caplog.set_level(logging.WARNING, "binrpc.server")
        version = _call(ro, "core.version", workdir=workdir)
        assert _values(version)[0].startswith("binrpc")  # type: ignore[attr-defined]
        for name in ("core.kill", "ctl.who", "no.such"):
            fault = _call(ro, name, workdir=workdir)
            assert fault is not None and fault.type == MsgType.FAULT  # type: ignore[attr-defined]
            assert _values(fault) == [403, f"method {name} not allowed on this listener"]
        assert any("refused method core.kill" in r.message for r in caplog.records)
        assert st.server is not None and not st.server.closing
        names = _values(_call(ro, "system.listMethods", workdir=workdir))
        assert "core.version" in names and "system.listMethods" in names
        assert "core.kill" not in names and not [n for n in names if str(n).startswith("ctl.")]
        assert _values(_call(ro, "system.methodHelp", "core.kill", workdir=workdir)) == [
            400,
            "command not found",
        ]
        # an allowed name that does not exist keeps ctl's fault
        assert _values(_call(ro, "core.nosuch", workdir=workdir)) == [
            500,
            "command core.nosuch not found",
        ]
        # the other listener has no rules
        all_names = _values(_call(rw, "system.listMethods"))
        assert "core.kill" in all_names and "ctl.who" in all_names


def test_fifo_listener_method_list(workdir: str) -> None:
    port = free_port()
    fifo = Listen(f"tcp:127.0.0.1:{port}", fifo=True, deny_methods=["core.kill"])
    with ServerThread(None, fifo=(fifo,)):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b":core.kill:\n\n:core.version:\n\n")
            data = b""
            while data.count(b"\n") < 3:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"403 method core.kill not allowed on this listener\n")
        assert b"200 OK\n" in data and b"binrpc" in data


# -- TLS ------------------------------------------------------------------------------------


def _tls_ctx(pki: Pki, cafile: str | None = None, cert: str | None = None,
             key: str | None = None) -> ssl.SSLContext:  # fmt: skip
    ctx = ssl.create_default_context(cafile=cafile or pki.ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def test_tls_listener(pki: Pki) -> None:
    port = free_port()
    addr = f"tls:127.0.0.1:{port}"
    with ServerThread(None, Listen(addr, tls_cert=pki.server_cert, tls_key=pki.server_key)):  # type: ignore[arg-type]
        with Client(addr, tls=_tls_ctx(pki), timeout=3) as c:
            assert str(c.call_one("core.version")).startswith("binrpc")
            assert c.call("core.echo", "a", "b") == ["a", "b"]
        # a plain binrpc client on the TLS port gets nothing useful
        reply = _inet_call("tcp", "127.0.0.1", port, "127.0.0.1")
        assert reply is None


def test_mutual_tls(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    addr = f"tls:127.0.0.1:{port}"
    listen = Listen(
        addr, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=pki.ca,
        tls_allow_cns=["ops"],
    )  # fmt: skip
    from binrpc import TransportError

    with ServerThread(None, listen):  # type: ignore[arg-type]
        caplog.set_level(logging.WARNING, "binrpc.server")
        with Client(addr, tls=_tls_ctx(pki, cert=pki.client_cert, key=pki.client_key),
                    timeout=3) as c:  # fmt: skip
            assert str(c.call_one("core.version")).startswith("binrpc")
        for cert, key in ((None, None), (pki.intruder_cert, pki.intruder_key),
                          (pki.foreign_cert, pki.foreign_key)):  # fmt: skip
            ctx = _tls_ctx(pki, cert=cert, key=key)
            with Client(addr, tls=ctx, timeout=3) as c, pytest.raises(TransportError):
                c.call("core.version")
        messages = [r.message for r in caplog.records]
        assert any("no client certificate" in m for m in messages), messages
        assert any("CN 'intruder' not allowed" in m for m in messages), messages


# -- binrpcd --------------------------------------------------------------------------------


def test_binrpcd_toml_listeners(workdir: str, pki: Pki) -> None:
    from .test_daemon import Daemon

    ro = f"unixs:{workdir}/ro.sock"
    rw_port, tls_port = free_port(), free_port()
    rw, tls = f"tcp:127.0.0.1:{rw_port}", f"tls:127.0.0.1:{tls_port}"
    config = os.path.join(workdir, "binrpcd.toml")
    with open(config, "w") as fh:
        fh.write(
            textwrap.dedent(
                f"""
                allow_networks = ["127.0.0.1/32"]   # global: every udp/tcp/tls listener
                [[listener]]
                address = "{ro}"
                allow_methods = ["core.*", "system.*"]
                deny_methods = ["core.kill"]
                allow_uids = [0]
                [[listener]]
                address = "{rw}"
                [[listener]]
                address = "{tls}"
                tls_cert = "{pki.server_cert}"
                tls_key = "{pki.server_key}"
                allow_methods = ["core.echo"]
                """
            )
        )
    d = Daemon("--config", config)
    try:
        assert d.wait_ready(3) == [ro, rw, tls]
        assert _values(_call(ro, "core.version"))[0].startswith("binrpc")  # type: ignore[attr-defined]
        assert _values(_call(ro, "core.kill")) == [
            403,
            "method core.kill not allowed on this listener",
        ]
        assert "ctl.who" not in _values(_call(ro, "system.listMethods"))
        assert "ctl.who" in _values(_call(rw, "system.listMethods"))
        assert _inet_call("tcp", "127.0.0.1", rw_port, "127.0.0.2") is None  # global rule
        ctx = ssl.create_default_context(cafile=pki.ca)
        with Client(tls, tls=ctx, timeout=3) as c:
            assert c.call("core.echo", "x") == ["x"]
            with pytest.raises(Exception, match="403"):
                c.call("core.version")
        assert d.proc.poll() is None
        assert d.stop() == 0
        assert d.proc.stderr is not None
        err = d.proc.stderr.read().decode()
        assert "refused method core.kill" in err and "refused connection from 127.0.0.2" in err
    finally:
        if d.proc.poll() is None:
            d.stop()


def test_binrpcd_flags_apply_where_they_fit(workdir: str) -> None:
    from binrpc.cli.daemon import build_parser, options_from

    args = build_parser().parse_args([
        "--binrpc", f"unixs:{workdir}/a.sock", "--binrpc", "tcp:127.0.0.1:2049",
        "--fifo", f"{workdir}/fifo", "--allow-uid", "0", "--allow-network", "127.0.0.0/8",
        "--deny-method", "core.kill",
    ])  # fmt: skip
    addresses, options, _ = options_from(args)
    unix, tcp = addresses
    assert isinstance(unix, Listen) and isinstance(tcp, Listen)
    assert unix.policy.allow_uids == frozenset({0}) and unix.policy.allow_networks is None
    assert tcp.policy.allow_uids is None and tcp.policy.allow_networks is not None
    (fifo,) = options.fifo
    assert isinstance(fifo, Listen) and fifo.fifo and fifo.policy.deny_methods == ("core.kill",)
    assert fifo.policy.allow_uids is None  # a FIFO file relies on its mode/owner
    plain, _, _ = options_from(build_parser().parse_args(["--binrpc", "tcp:127.0.0.1:2049"]))
    assert plain == ["tcp:127.0.0.1:2049"]  # no option: nothing changes
