"""The ``binrpc`` command end to end (subprocesses) against the fake server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from binrpc import Struct

from .fakeserver import FakeServer, fault, raw_reply, reply


def binrpc(*args: str, input: bytes | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("POSIXLY_CORRECT", None)
    return subprocess.run(
        [sys.executable, "-m", "binrpc.cli.client", *args],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        timeout=30,
        env=full_env,
        check=False,
    )


def handler(method: str, params: list[Any], cookie: int) -> list[Any]:
    if method == "core.echo":
        return [reply(params, cookie)]
    if method == "core.psx":
        return [reply([Struct(IDX=0, PID=7, DSC="main"), Struct(IDX=1, PID=8, DSC="x")], cookie)]
    if method == "dups":
        return [reply([Struct([("SET", 1), ("SET", 2), (None, "u")])], cookie)]
    if method == "late":
        return [2.0, reply(["late"], cookie)]
    if method == "badrec":
        return [raw_reply(bytes.fromhex("0345616263000484" + "83"), cookie)]
    if method == "system.listMethods":
        return [reply(["core.echo", "core.psx"], cookie)]
    if method == "system.methodHelp":
        return [reply([f"help for {params[0]}"], cookie)]
    return [fault(500, f"command {method} not found", cookie)]


@pytest.fixture(scope="module")
def srv():  # type: ignore[no-untyped-def]
    with FakeServer("unixs", handler) as s:
        yield s


def test_one_shot_and_exit_codes(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, "core.echo", "a", "1")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"a\n1\n", b"")
    r = binrpc("-s", srv.address, "nope")
    assert (r.returncode, r.stdout) == (1, b"error: 500 - command nope not found\n")
    r = binrpc("-s", srv.address, "--kamcmd-exit", "nope")
    assert r.returncode == 0
    r = binrpc("-s", srv.address, "badrec")
    assert r.returncode == 255 and r.stdout == b"{\n"
    assert r.stderr == b"ERROR:: while parsing the record 1, @1: 45 : bad record\n"
    r = binrpc("-s", "unixs:/tmp/binrpc-no-such-dir/x", "core.echo")
    assert r.returncode == 255
    assert r.stderr == (
        b"ERROR: connect_unix_sock: connect(/tmp/binrpc-no-such-dir/x): "
        b"No such file or directory [2]\n"
    )


def test_negative_numbers_and_typed_args(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, "core.echo", "-4", "-1.5", "x")
    assert r.returncode == 0 and r.stdout == b"-4\n-1.500000\nx\n"
    r = binrpc("-s", srv.address, "--typed", "core.echo", "i:5", "d:2", "b:xy", "s:3", "i:7")
    assert r.stdout == b"5\n2\nxy\n3\n7\n"
    r = binrpc("-s", srv.address, "core.echo", "i:5")
    assert r.stdout == b"i:5\n"  # kamcmd's default: a string
    r = binrpc("-s", srv.address, "--typed", "core.echo", "i:x")
    assert r.returncode == 255 and b"bad typed argument" in r.stderr


def test_json(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, "--json", "dups")
    assert json.loads(r.stdout) == {"result": [{"SET": [1, 2], "": ["u"]}]}
    r = binrpc("-s", srv.address, "--json", "nope")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"error": {"code": 500, "message": "command nope not found"}}
    r = binrpc("-s", srv.address, "--json", "core.echo", "a", "2", "1.5")
    assert json.loads(r.stdout) == {"result": ["a", 2, 1.5]}


def test_timeout_option(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, "-t", "0.3", "late")
    assert r.returncode == 255
    assert r.stderr.startswith(b"ERROR: timeout: waiting for the reply from unixs:")


def test_several_servers(srv: FakeServer) -> None:
    with FakeServer("tcp", handler) as other:
        r = binrpc("-s", srv.address, "-s", other.address, "core.echo", "hi")
        assert r.returncode == 0
        assert r.stdout == f"[{srv.address}] hi\n[{other.address}] hi\n".encode()
        r = binrpc("-s", srv.address, "-s", "tcp:127.0.0.1:1", "core.echo", "hi")
        assert r.returncode == 255
        assert r.stdout == f"[{srv.address}] hi\n".encode()
        assert r.stderr == b"[tcp:127.0.0.1:1] ERROR: connect: Connection refused\n"


def test_batch_mode_one_connection(tmp_path: Any) -> None:
    with FakeServer("tcp", handler) as s:
        script = tmp_path / "cmds"
        script.write_text("core.echo 'a b' 1\n# comment\n\nnope\npsx\n" * 3)
        r = binrpc("-s", s.address, "--batch", str(script), "-f", "%v|")
        assert r.returncode == 1  # a fault happened
        one = (
            b"a b|1|error: 500 - command nope not found\n"
            b"{|IDX: 0|PID: 7|DSC: main|}|{|IDX: 1|PID: 8|DSC: x|}|"
        )
        assert r.stdout == one * 3
        assert s.connections == 1
        lines = "\n".join(f"core.echo {i}" for i in range(1000))
        r = binrpc("-s", s.address, "--batch", "-", input=lines.encode())
        assert r.returncode == 0
        assert r.stdout == "".join(f"{i}\n" for i in range(1000)).encode()
        assert s.connections == 2


def test_piped_interactive_session(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, input=b"core.echo a\n\n  \nhelp core.psx\nquit\ncore.echo b\n")
    lines = r.stdout.split(b"\n")
    assert r.returncode == 0
    assert lines[0].startswith(b"binrpc ") and lines[3] == b"For details type `warranty'."
    assert b"\n".join(lines[4:]) == (
        b"kamcmd> core.echo a\na\nkamcmd> \nkamcmd>   \nkamcmd> help core.psx\nhelp for core.psx\n"
        b"kamcmd> quit\n"
    )
    r = binrpc("-s", srv.address, input=b"core.echo a\n")
    assert r.stdout.endswith(b"kamcmd> core.echo a\na\nkamcmd> ")


def test_help_lists_methods_aliases_builtins(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, "help")
    out = r.stdout.decode().splitlines()
    assert out[:3] == ["core.echo", "core.psx", "alias: ps"]
    assert out[-7:] == [
        f"builtin: {b}" for b in ("?", "help", "version", "quit", "exit", "warranty", "license")
    ]
    assert "alias: dst_blacklist_debug" in out and "alias: dst_blocklist_debug" in out


# modules a one-shot call must not import: each costs start-up time (asyncio, prompt_toolkit:
# tens of ms; the others: typing, dataclasses, re, socket.py ... a few ms together, the whole
# budget of a one-shot call above the bare interpreter's start-up)
ONE_SHOT_UNWANTED = (
    "asyncio",
    "prompt_toolkit",
    "typing",
    "dataclasses",
    "re",
    "socket",
    "selectors",
    "enum",
    "inspect",
    "argparse",
    "collections",
    "contextlib",
    "random",
    "threading",
    "json",
    "shlex",
    "ssl",  # only when TLS is used
)


@pytest.mark.parametrize("proto", ["unixs", "unixd", "tcp", "udp"])
def test_one_shot_imports_nothing_heavy(proto: str) -> None:
    with FakeServer(proto, handler) as srv:
        code = (
            "import sys; from binrpc.cli.client import main; "
            f"rc = main(['-s', {srv.address!r}, 'core.echo', 'x']); "
            f"bad = [m for m in {ONE_SHOT_UNWANTED!r} if m in sys.modules]; "
            "print(bad, rc, file=sys.stderr)"
        )
        r = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
        )
    assert r.stderr.strip() == b"[] 0", r.stderr
    assert r.stdout == b"x\n"


def test_entry_point_and_help() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "binrpc")
    r = subprocess.run([exe, "-h"], capture_output=True, timeout=30, check=False)
    assert r.returncode == 0
    for opt in (b"--json", b"--timeout", b"--typed", b"--batch", b"--max-reply", b"--kamcmd-exit"):
        assert opt in r.stdout
    r = binrpc("-V")
    assert r.stdout.startswith(b"version: binrpc ")


def test_interactive_with_several_servers_asks_every_node(srv: FakeServer) -> None:
    """Each line goes to every node, printed exactly as the one-shot fan-out prints it."""
    with FakeServer("tcp", handler) as other:
        nodes = ["-s", srv.address, "-s", "tcp:127.0.0.1:1", "-s", other.address]
        echo = binrpc(*nodes, "core.echo", "hi")
        nope = binrpc(*nodes, "nope")
        assert echo.stdout and nope.stdout and echo.stderr == nope.stderr  # the refused node
        before = len(other.requests)
        r = binrpc(*nodes, input=b"core.echo hi\nnope\nquit\ncore.echo never\n")
        assert r.returncode == 0
        session = r.stdout.split(b"For details type `warranty'.\n", 1)[1]
        assert session == (
            b"kamcmd> core.echo hi\n"
            + echo.stdout
            + b"kamcmd> nope\n"
            + nope.stdout
            + b"kamcmd> quit\n"
        )
        # the refused node: once when the session opens, then once per line
        assert r.stderr == echo.stderr * 3
        asked = [m for m, params in other.requests[before:] if m != "system.listMethods"]
        assert asked == ["core.echo", "nope"]
