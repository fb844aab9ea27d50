"""The ``binrpc`` command end to end (subprocesses) against the fake server."""

from __future__ import annotations

import json
import os
import re
import socket
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
        [sys.executable, "-m", "binrpc.cli.main", *args],
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
    if method == "notutf8":
        return [reply([b"a\xffb", "\u00e9"], cookie)]
    if method == "close":
        return [None]
    if method == "othercookie":
        return [reply(["x"], cookie ^ 1)]
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
    assert json.loads(r.stdout) == {
        "error": {
            "kind": "fault",
            "code": 500,
            "message": "command nope not found",
            "address": srv.address,
        }
    }
    r = binrpc("-s", srv.address, "--json", "core.echo", "a", "2", "1.5")
    assert json.loads(r.stdout) == {"result": ["a", 2, 1.5]}


def free_port() -> int:
    """A loopback port nobody listens on (chosen now; free for UDP too): connecting to it is
    refused."""
    with socket.socket() as sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:  # taken for UDP: draw again
            return free_port()
    return port


def json_docs(stdout: bytes) -> list[Any]:
    """Every stdout line as a JSON document (a line that is not one fails the test)."""
    return [json.loads(line) for line in stdout.decode().splitlines()]


def check_error_doc(doc: Any, kind: str, address: str) -> None:
    """The documented shape of an error document: exactly these keys, these types."""
    error = doc["error"]
    keys = {"kind", "message", "address"} | ({"code"} if kind == "fault" else set())
    assert set(doc) == {"error"} and set(error) == keys, doc
    assert error["kind"] == kind and error["address"] == address, doc
    assert isinstance(error["message"], str) and error["message"], doc
    assert not error["message"].startswith("ERROR"), doc  # not kamcmd's stderr line
    assert "[Errno 0]" not in error["message"], doc


def mask_cookies(stderr: bytes) -> bytes:
    """A cookie mismatch's message without the (random) cookies."""
    return re.sub(rb"(sent|received) +[0-9a-f]+", rb"\1 C", stderr)


def json_error_cases(srv_address: str, tmp: str) -> list[tuple[str, list[str], str]]:
    """(address, command line after ``-s address``, kind) for every kind of error."""
    missing = f"unixs:{tmp}/no-such.sock"
    return [
        (missing, ["core.echo", "a"], "connect"),
        (f"tcp:127.0.0.1:{free_port()}", ["core.echo"], "connect"),  # refused
        ("tcp:no-such-host.invalid:2049", ["core.echo"], "resolve"),
        ("tcp:[::1", ["core.echo"], "address"),
        (f"unixd:{tmp}/no-such.dgram", ["-R", f"{tmp}/no/dir", "core.echo"], "bind"),
        # a UDP port nobody listens on: ICMP refuses the request (-t: fail rather than hang)
        (f"udp:127.0.0.1:{free_port()}", ["-t", "10", "core.echo"], "receive"),
        (f"udp:127.0.0.1:{free_port()}", ["core.echo", "a" * 70000], "send"),  # > 64 KiB
        (srv_address, ["-t", "0.3", "late"], "timeout"),
        (srv_address, ["close"], "closed"),
        (srv_address, ["badrec"], "protocol"),  # a record that does not parse (*)
        (srv_address, ["othercookie"], "protocol"),
        (srv_address, ["nope"], "fault"),
        (srv_address, ["--typed", "core.echo", "i:x"], "argument"),
        (srv_address, ["core.echo", *["1"] * 257], "argument"),  # too many arguments
    ]


def test_json_prints_a_document_for_every_error(srv: FakeServer, tmp_path: Any) -> None:
    for address, args, kind in json_error_cases(srv.address, str(tmp_path)):
        plain = binrpc("-s", address, *args)
        r = binrpc("--json", "-s", address, *args)
        what = f"{address} {args[:3]}: {r.stdout!r} {r.stderr!r}"
        docs = json_docs(r.stdout)
        assert len(docs) == 1, what
        check_error_doc(docs[0], kind, address)
        # nothing else changes: the same exit status, kamcmd's message still on stderr
        # (*) except the message of a record error: JSON decodes the reply, not kamcmd
        # its records one by one
        assert r.returncode == plain.returncode, what
        assert mask_cookies(r.stderr) == mask_cookies(plain.stderr) or args == ["badrec"], what
        assert (b"ERROR" in r.stderr) == (kind != "fault"), what  # a fault is no error
        assert r.returncode == (1 if kind == "fault" else 255), what
    fault_doc = json_docs(binrpc("--json", "-s", srv.address, "nope").stdout)[0]
    assert fault_doc["error"]["code"] == 500
    assert fault_doc["error"]["message"] == "command nope not found"
    doc = json_docs(binrpc("--json", "-s", "tcp:no-such-host.invalid:2049", "m").stdout)[0]
    assert "no-such-host.invalid" in doc["error"]["message"]


def test_json_with_several_nodes_one_document_each(srv: FakeServer, tmp_path: Any) -> None:
    refused = f"tcp:127.0.0.1:{free_port()}"
    missing = f"unixs:{tmp_path}/no-such.sock"
    nodes = [srv.address, refused, "tcp:no-such-host.invalid:2049", missing, "tcp:[::1"]
    r = binrpc("--json", *[a for n in nodes for a in ("-s", n)], "core.echo", "hi")
    docs = json_docs(r.stdout)
    assert [d.pop("node") for d in docs] == nodes
    assert docs[0] == {"result": ["hi"]}
    for doc, node, kind in zip(
        docs[1:], nodes[1:], ["connect", "resolve", "connect", "address"], strict=True
    ):
        check_error_doc(doc, kind, node)
    assert r.returncode == 255
    r = binrpc("--json", "-s", srv.address, "-s", srv.address, "--typed", "core.echo", "i:x")
    docs = json_docs(r.stdout)
    assert [d.pop("node") for d in docs] == [srv.address] * 2
    for doc in docs:
        check_error_doc(doc, "argument", srv.address)


def test_json_batch_documents_every_line(srv: FakeServer, tmp_path: Any) -> None:
    script = tmp_path / "cmds"
    script.write_text("core.echo a\nnope\ncore.echo 'unbalanced\ncore.echo b\nclose\n")
    for verbose in ([], ["-vvv"]):  # pipelined, and one command at a time
        r = binrpc("--json", "-s", srv.address, "--batch", str(script), *verbose)
        docs = json_docs(
            b"".join(line + b"\n" for line in r.stdout.splitlines() if line[:1] == b"{")
        )
        assert docs[0] == {"result": ["a"]} and docs[3] == {"result": ["b"]}, r.stdout
        for doc, kind in zip(docs[1:3] + docs[4:], ["fault", "argument", "closed"], strict=True):
            check_error_doc(doc, kind, srv.address)
        assert len(docs) == 5 and r.returncode == 255


def test_json_interactive_too_many_arguments_is_a_document(srv: FakeServer) -> None:
    line = "core.echo " + " ".join(["1"] * 257) + "\n"
    r = binrpc("--json", "-s", srv.address, input=line.encode())
    # interactive kamcmd writes this message on stdout: with --json, its document instead
    assert b"ERROR" not in r.stdout and r.stderr == b""
    after_echo = r.stdout.split(line.encode(), 1)[1]
    doc_line, prompt = after_echo.split(b"\n")
    check_error_doc(json.loads(doc_line), "argument", srv.address)
    assert prompt == b"kamcmd> "


def test_json_is_valid_utf8_with_escapes_for_other_bytes(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, "--json", "notutf8")
    # what is not UTF-8 is written as the escape of its lone surrogate, as documented
    assert r.stdout == '{"result": ["a\\udcffb", "\u00e9"]}\n'.encode()
    assert json.loads(r.stdout.decode("utf-8")) == {"result": ["a\udcffb", "\u00e9"]}


def test_timeout_option(srv: FakeServer) -> None:
    r = binrpc("-s", srv.address, "-t", "0.3", "late")
    assert r.returncode == 255
    assert r.stderr.startswith(b"ERROR: timeout: waiting for the reply from unixs:")


@pytest.mark.parametrize("bad", ["inf", "nan", "-1", "0"])
def test_timeout_option_out_of_range(srv: FakeServer, bad: str) -> None:
    r = binrpc("-s", srv.address, "-t", bad, "core.echo", "x")
    assert (r.returncode, r.stdout) == (255, b"")
    assert r.stderr.startswith(f"ERROR: bad timeout '{bad}' (seconds > 0".encode())
    assert r.stderr.count(b"\n") == 1  # one line, no traceback


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
            "import sys; from binrpc.cli.main import main; "
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
