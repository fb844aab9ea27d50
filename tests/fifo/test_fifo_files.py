"""The listener's FIFO file: creation, mode and owner, what is at the path already, removal
at shutdown (server close, binrpcd SIGTERM), address rules of the ``fifo`` parameter, and
the ``fifo`` option plumbing (serve, binrpcd flags and TOML)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from binrpc._address import parse_address
from binrpc.cli.daemon import build_parser, options_from
from binrpc.server import ListenerError, ServerOptions, serve
from tests.server.helpers import binrpcd_command

from .conftest import Peer, ServerThread, free_port


def run_briefly(**options: Any) -> tuple[list[tuple[str, str, str, str]], list[os.stat_result]]:
    """Start a server, return its ctl.listen rows and the stat of its FIFO files, stop it."""

    async def main() -> tuple[list[tuple[str, str, str, str]], list[os.stat_result]]:
        async with serve(None, **options) as srv:
            sts = [
                os.stat(listener.opened.path)  # type: ignore[union-attr]
                for listener in srv.listeners
                if listener.address.proto == "fifo"
            ]
            return srv.listener_rows(), sts

    return asyncio.run(main())


# ------------------------------------------------------------------------------------------
# address rules of the fifo parameter (spec 7.2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fifo:/tmp/ser_fifo", ("fifo", "/tmp/ser_fifo", 0)),
        ("/tmp/ser_fifo2", ("fifo", "/tmp/ser_fifo2", 0)),
        ("ser_fifo", ("fifo", "ser_fifo", 0)),  # relative to the working directory
        ("46181", ("fifo", "46181", 0)),  # a FIFO file named 46181, not a port
        ("127.0.0.1:2050", ("udp", "127.0.0.1", 2050)),  # host:port means udp
        ("udp:*:2050", ("udp", "*", 2050)),
        ("tcp:localhost:2050", ("tcp", "localhost", 2050)),
        ("unixs:/tmp/f.sock", ("unixs", "/tmp/f.sock", 0)),
        ("unixd:/tmp/f.dgram", ("unixd", "/tmp/f.dgram", 0)),
    ],
)
def test_fifo_parameter_syntax(text: str, expected: tuple[str, str, int]) -> None:
    a = parse_address(text, "fifo")
    assert (a.proto, a.host, a.port) == expected


def test_every_fifo_transport_with_its_default_forms(
    workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    port_udp, port_tcp = free_port(), free_port()
    fifo = (
        "ser_fifo",
        f"{workdir}/ser_fifo2",
        f"127.0.0.1:{port_udp}",
        f"tcp:localhost:{port_tcp}",
    )
    with ServerThread(None, fifo=fifo, fifo_reply_dir=workdir) as st:
        assert st.server is not None
        assert st.server.listener_rows() == [
            ("fifo", "fifo", "ser_fifo", ""),
            ("fifo", "fifo", f"{workdir}/ser_fifo2", ""),
            ("fifo", "udp", "127.0.0.1", str(port_udp)),
            ("fifo", "tcp", "localhost", str(port_tcp)),
        ]
        assert stat.S_ISFIFO(os.stat(f"{workdir}/ser_fifo").st_mode)
        for transport, address in [
            ("fifo", f"fifo:{workdir}/ser_fifo"),
            ("fifo", f"fifo:{workdir}/ser_fifo2"),
            ("udp", f"udp:127.0.0.1:{port_udp}"),
            ("tcp", f"tcp:127.0.0.1:{port_tcp}"),
        ]:
            assert Peer(transport, address, workdir).ask(b":core.echo:{R}\nx\n\n") == (
                b"200 OK\nx\n"
            )
    assert not os.path.exists(f"{workdir}/ser_fifo")
    assert not os.path.exists(f"{workdir}/ser_fifo2")


def test_no_default_binrpc_socket_when_only_fifo(
    workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = f"{workdir}/default.sock"
    monkeypatch.setenv("BINRPC_SOCKET", f"unixs:{default}")

    async def main(**kw: Any) -> list[str]:
        async with serve(None, **kw) as srv:
            assert os.path.exists(default) == (not kw)
            return [str(a) for a in srv.addresses]

    assert asyncio.run(main(fifo=f"{workdir}/f")) == [f"fifo:{workdir}/f"]
    assert asyncio.run(main()) == [f"unixs:{default}"]


def test_binrpc_and_fifo_together_in_order(workdir: str) -> None:
    async def main() -> list[tuple[str, str, str, str]]:
        async with serve(None, f"unixs:{workdir}/b.sock", fifo=[f"{workdir}/f"]) as srv:
            return srv.listener_rows()

    assert asyncio.run(main()) == [
        ("binrpc", "unix_stream", f"{workdir}/b.sock", ""),
        ("fifo", "fifo", f"{workdir}/f", ""),
    ]


# ------------------------------------------------------------------------------------------
# the FIFO file


def test_default_mode_and_removed_at_close(workdir: str) -> None:
    path = f"{workdir}/f"
    rows, (st,) = run_briefly(fifo=[path])
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert rows == [("fifo", "fifo", path, "")]
    assert not os.path.exists(path)


@pytest.mark.parametrize("mode", [0o620, 0o666, 0o400])
def test_mode(workdir: str, mode: int) -> None:
    old = os.umask(0o077)  # the mode is set exactly, whatever the umask
    try:
        _, (st,) = run_briefly(fifo=[f"{workdir}/f"], mode=mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE(st.st_mode) == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_and_group(workdir: str) -> None:
    _, (st,) = run_briefly(fifo=[f"{workdir}/f"], user=1234, group="5678")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    _, (st,) = run_briefly(fifo=[f"{workdir}/f"], group=4321)  # the group alone is enough
    assert (st.st_uid, st.st_gid) == (0, 4321)
    _, (st,) = run_briefly(fifo=[f"{workdir}/f"], user="nobody")
    assert st.st_uid == 65534


def test_stale_fifo_is_replaced(workdir: str) -> None:
    path = f"{workdir}/f"
    os.mkfifo(path)
    os.chmod(path, 0o644)
    with ServerThread(None, fifo=(path,), fifo_reply_dir=workdir):
        st = os.stat(path)
        assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600  # a new one
        assert Peer("fifo", f"fifo:{path}", workdir).ask(b":core.echo:{R}\nnew\n\n") == (
            b"200 OK\nnew\n"
        )
    assert not os.path.exists(path)


def test_live_fifo_is_not_stolen(workdir: str) -> None:
    path = f"{workdir}/f"
    with ServerThread(None, fifo=(path,), fifo_reply_dir=workdir):
        with pytest.raises(ListenerError, match="another server is reading"):
            run_briefly(fifo=[path])
        assert Peer("fifo", f"fifo:{path}", workdir).ask(b":core.echo:{R}\nmine\n\n") == (
            b"200 OK\nmine\n"
        )


@pytest.mark.parametrize("kind", ["regular", "directory", "symlink", "socket"])
def test_something_else_at_the_path_is_refused_and_untouched(workdir: str, kind: str) -> None:
    import socket as socketmod

    path = f"{workdir}/f"
    target = f"{workdir}/target"
    if kind == "regular":
        Path(path).write_text("keep me")
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "symlink":
        os.mkfifo(target)
        os.symlink(target, path)
    else:
        sock = socketmod.socket(socketmod.AF_UNIX)
        sock.bind(path)
        sock.close()
    before = os.lstat(path)
    with pytest.raises(ListenerError, match=f"{path} exists and is not a FIFO; not removing it"):
        run_briefly(fifo=[path])
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
        before.st_ino,
        before.st_mode,
        before.st_mtime_ns,
    )
    if kind == "regular":
        assert Path(path).read_text() == "keep me"
    if kind == "symlink":
        assert stat.S_ISFIFO(os.stat(target).st_mode)


def test_failed_start_removes_the_fifos_already_created(workdir: str) -> None:
    good = f"{workdir}/good"
    Path(f"{workdir}/bad").write_text("x")
    with pytest.raises(ListenerError):
        run_briefly(fifo=[good, f"{workdir}/bad"])
    assert not os.path.exists(good)
    with pytest.raises(ListenerError, match="cannot create the FIFO"):
        run_briefly(fifo=[good, f"{workdir}/no/such/dir/f"])
    assert not os.path.exists(good)


def test_a_replaced_fifo_is_not_removed_at_shutdown(workdir: str) -> None:
    path = f"{workdir}/f"

    async def main() -> None:
        async with serve(None, fifo=[path]):
            os.unlink(path)
            Path(path).write_text("somebody else's")

    asyncio.run(main())
    assert Path(path).read_text() == "somebody else's"


def test_the_write_end_keeps_the_fifo_open(workdir: str) -> None:
    # clients come and go: the server never sees EOF and keeps answering
    path = f"{workdir}/f"
    with ServerThread(None, fifo=(path,), fifo_reply_dir=workdir):
        peer = Peer("fifo", f"fifo:{path}", workdir)
        for i in range(5):
            assert peer.ask(f":core.echo:{{R}}\n{i}\n\n".encode()) == f"200 OK\n{i}\n".encode()
            time.sleep(0.05)


def test_options_normalise_fifo() -> None:
    assert ServerOptions(fifo="x").fifo == ("x",)  # type: ignore[arg-type]
    assert ServerOptions(fifo=["a", "b"]).fifo == ("a", "b")  # type: ignore[arg-type]
    assert ServerOptions().fifo_reply_dir == "/tmp"


# ------------------------------------------------------------------------------------------
# binrpcd


class Daemon:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            binrpcd_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, n: int) -> list[str]:
        assert self.proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while len(lines) < n:
            assert time.monotonic() < deadline
            line = self.proc.stdout.readline().decode()
            assert line, self.proc.stderr.read().decode() if self.proc.stderr else ""
            lines.append(line.strip())
        return lines

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            _, err = self.proc.communicate()
        return self.proc.returncode, err.decode()


def test_binrpcd_fifo_flags_and_sigterm(workdir: str) -> None:
    replies = f"{workdir}/replies"
    os.mkdir(replies)
    port = free_port()
    d = Daemon(
        "--fifo", f"{workdir}/ser_fifo", "--fifo", f"tcp:127.0.0.1:{port}",
        "--fifo-reply-dir", replies, "--mode", "0640",
    )  # fmt: skip
    try:
        assert d.wait_ready(2) == [
            f"listening on fifo:{workdir}/ser_fifo",
            f"listening on tcp:127.0.0.1:{port} (fifo)",
        ]
        st = os.stat(f"{workdir}/ser_fifo")
        assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
        peer = Peer("fifo", f"fifo:{workdir}/ser_fifo", replies)
        assert peer.ask(b":core.psx:{R}\n\n", timeout=5).startswith(  # type: ignore[union-attr]
            f"200 OK\nIDX:0,PID:{d.proc.pid},DSC:main process - binrpcd".encode()
        )
        tcp = Peer("tcp", f"tcp:127.0.0.1:{port}", replies)
        assert tcp.ask(b":ctl.listen:\n\n") == (
            f"200 OK\nfifo\nfifo\n{workdir}/ser_fifo\n\nfifo\ntcp\n127.0.0.1\n{port}\n".encode()
        )
    finally:
        rc, err = d.stop()
    assert rc == 0, err
    assert not os.path.exists(f"{workdir}/ser_fifo")
    # only FIFO listeners: no default binrpc socket
    assert "listening on unixs" not in err


def test_binrpcd_toml_fifo(workdir: str) -> None:
    cfg = Path(workdir) / "d.toml"
    cfg.write_text(
        f'fifo = ["{workdir}/a_fifo"]\nfifo-reply-dir = "{workdir}"\nfifo_reply_timeout = 2.5\n'
    )
    addresses, opts, _ = options_from(build_parser().parse_args(["--config", str(cfg)]))
    assert addresses == []
    assert opts.fifo == (f"{workdir}/a_fifo",)
    assert (opts.fifo_reply_dir, opts.fifo_reply_timeout) == (workdir, 2.5)
    d = Daemon("--config", str(cfg))
    try:
        assert d.wait_ready(1) == [f"listening on fifo:{workdir}/a_fifo"]
        assert Peer("fifo", f"fifo:{workdir}/a_fifo", workdir).ask(
            b":core.echo:{R}\ntoml\n\n", timeout=5
        ) == (b"200 OK\ntoml\n")
    finally:
        rc, err = d.stop()
    assert rc == 0, err
    assert not os.path.exists(f"{workdir}/a_fifo")


def test_binrpcd_refuses_a_regular_file(workdir: str) -> None:
    path = Path(workdir) / "plain"
    path.write_text("x")
    d = Daemon("--fifo", str(path))
    _, err_bytes = d.proc.communicate(timeout=20)
    rc, err = d.proc.returncode, err_bytes.decode()
    assert rc == 1 and "not a FIFO; not removing it" in err and str(path) in err
    assert path.read_text() == "x"
