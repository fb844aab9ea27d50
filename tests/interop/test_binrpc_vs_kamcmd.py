"""``binrpc`` against the real kamcmd 1.5: the same command line, run by both, gives the same
stdout bytes, stderr bytes and exit status (faults excepted: kamcmd exits 0, we exit 1, our
documented change).

Two peers: the real Kamailio 5.6.3 on its four binrpc transports, and a fake server (from
tests/client) for replies Kamailio never sends; the fake server also records the request bytes
both clients send, to compare argument typing on the wire. Nothing is frozen: every expected
output is produced by the real kamcmd during the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from binrpc import Struct, encode_values, parse_header

from ..client.fakeserver import FakeServer, fault, raw_reply, reply
from .conftest import KamailioEndpoints, KamcmdRunner

TRANSPORTS = ["unixs", "unixd", "udp", "tcp"]


def run_binrpc(
    args: Sequence[str], socket: str | None, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "binrpc.cli.main"]
    argv += (["-s", socket] if socket is not None else []) + list(args)
    env = {k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"}
    return subprocess.run(
        argv,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        timeout=30,
        check=False,
        cwd="/tmp",
        env=env,
    )


def is_fault_output(stdout: bytes) -> bool:
    """A fault was printed (``error: no such command X`` is help's transport failure, not a
    fault: it keeps kamcmd's status 0)."""
    return any(
        line.startswith(b"error: ") and not line.startswith(b"error: no such command ")
        for line in stdout.split(b"\n")
    )


def expected_status(kam: subprocess.CompletedProcess[bytes]) -> int:
    """kamcmd's status, with our documented change: 1 after a fault."""
    if kam.returncode == 0 and is_fault_output(kam.stdout):
        return 1
    return kam.returncode


_DIGITS = re.compile(rb"\d+")
_COOKIE = re.compile(rb"cookie [0-9a-f]+")


def mask(data: bytes, dynamic: bool) -> bytes:
    data = _COOKIE.sub(b"cookie C", data)
    if dynamic:
        data = _DIGITS.sub(b"N", data)
    return data


_RECEIVED = re.compile(rb"received (\d+) bytes in reply \(@offset (\d+)\):")


def _vvv_without_header(out: bytes) -> tuple[bytes, list[bytes]]:
    """A -vvv output as (the packet's body bytes from the hex dumps, the other lines with the
    cookie masked): what must be the same whatever cookie each client drew."""
    dumped = bytearray()
    rest: list[bytes] = []
    for line in out.split(b"\n"):
        if _RECEIVED.fullmatch(line):
            continue
        hexpart = line[: 16 * 3]
        words = hexpart.split()
        if words and all(len(w) == 2 for w in words) and len(line) > 16 * 3:
            try:
                dumped += bytes.fromhex(hexpart.decode())
                continue
            except ValueError:
                pass
        rest.append(mask(line, False))
    header = parse_header(bytes(dumped))
    assert header is not None, out
    return bytes(dumped[header.size :]), rest


def assert_same(
    kam: subprocess.CompletedProcess[bytes],
    ours: subprocess.CompletedProcess[bytes],
    *,
    dynamic: bool = False,
    what: str = "",
) -> None:
    assert mask(ours.stdout, dynamic) == mask(kam.stdout, dynamic), what
    assert mask(ours.stderr, dynamic) == mask(kam.stderr, dynamic), what
    assert ours.returncode == expected_status(kam), what


# command lines compared byte for byte on every transport
STATIC: list[list[str]] = [
    ["core.version"],
    ["ver"],
    ["version"],
    ["ps"],
    ["psx"],
    ["core.ps"],
    ["core.psx"],
    ["core.pwd"],
    ["core.info"],
    ["core.flags"],
    ["core.modules"],
    ["core.sockets_list"],
    ["core.tcp_info"],
    ["core.tcp_options"],
    ["core.udp4_raw_info"],
    ["core.aliases_list"],
    ["core.ppdefines"],
    ["core.arg"],
    ["ls"],
    ["list"],
    ["system.listMethods"],
    ["system.methodHelp", "core.uptime"],
    ["system.methodSignature", "core.uptime"],
    ["listen"],
    ["ctl.listen"],
    ["dns_mem_info"],
    ["dns_debug"],
    ["dns_debug_all"],
    ["dns.mem_info"],
    ["dst_blocklist.mem_info"],
    ["help", "ps"],
    ["help", "who"],
    ["help", "dns_debug_all"],
    ["help", "ls"],
    ["help", "version"],
    ["help", "?"],
    ["help", "help"],
    ["help", "quit"],
    ["help", "exit"],
    ["help", "warranty"],
    ["help", "license"],
    ["help", "core.ps"],
    ["help", "core.ps", "extra"],
    ["help", "no.such.method"],
    ["help", "s:ps"],
    ["?", "listen"],
    ["quit"],
    ["exit"],
    ["h"],
    ["no.such.method"],
    ["123"],
    [""],
    ["core.echo"],
    ["core.echo", "hello", "42", "s:7", "", "two words"],
    ["core.echo", "2147483647", "2147483648", "4294967296", "4294967295", "99999999999999999999"],
    ["core.echo", " 5", "5 ", "007", "+7", "0b1", "1,5", "abc", "s:", "s:s:x", "S:1", "i:5"],
    ["core.echo", "a", "1", "2.5", "b"],
    ["core.echo", "0x10"],
    ["core.echo", "inf"],
    ["--", "core.echo", "-3", "-2147483648", "-2147483649"],
    ["core.printi", "abc"],
    ["core.printi", "s:5"],
    ["core.printi", "5.7"],
    ["core.printi", "5"],
    ["core.prints", "5"],
    ["core.prints", "five"],
    ["-f", "%v|", "core.psx"],
    ["-f", r"PID=%v DSC=%v\n", "core.ps"],
    ["-f", "%v;", "ps"],
    ["-f", r"%v\n", "core.echo", "a", "b"],
    ["-f", "%v", "core.echo", "a", "b"],
    ["-f", r"%v-%v\n", "core.echo", "1", "2", "3"],
    ["-f", r"[%v|%v|%v]\n", "core.echo", "1", "one", "2", "two", "3"],
    ["-f", r"hello\n", "core.echo", "1", "2"],
    ["-f", "", "core.echo", "1", "2"],
    ["-f", r"%v %%v 100%% %v\n", "core.echo", "1", "2", "3"],
    ["-f", r"a\tb\\n\r\q%v\n", "core.echo", "1", "2"],
    ["-f", r"x=%v y=%v\n", "core.echo"],
    ["-f", r"%v\n", "no.such.method"],
    ["-f", r"%v\n", "help", "ps"],
    ["core.echo", "a", "-v", "b"],
    ["-v", "core.version"],
    ["-v", "no.such.method"],
    ["-v", "-f", "%v|", "core.echo", "a"],
    ["-vv", "core.version"],
    ["-vv", "no.such.method"],
    ["-vvv", "core.version"],
    ["-vvv", "core.psx"],
    ["-x", "core.version"],
    ["core.version", "-Z"],
]

DYNAMIC: list[list[str]] = [
    ["core.uptime"],
    ["-f", r"%v\n", "core.uptime"],
    ["core.shmmem"],
    ["who"],
    ["ctl.who"],
    ["ctl.connections"],
    ["pkg.stats"],
    ["shm.stats"],
]


def _id(args: list[str]) -> str:
    return " ".join(repr(a) if not a or " " in a else a for a in args)[:60]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("args", STATIC, ids=_id)
def test_same_output_as_kamcmd(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner, transport: str, args: list[str]
) -> None:
    address = kamailio.binrpc[transport]
    kam = kamcmd(args, address)
    ours = run_binrpc(args, address)
    assert_same_command(args, kam, ours, what=f"{transport} {args}")


# command lines whose whole reply (a 7-byte header with a 4-byte cookie, then the body) is 16,
# 32 and 48 bytes long: kamcmd ends such a -vvv dump with a line without its ASCII column
WHOLE_LINE_REPLIES: dict[int, list[str]] = {
    16: ["core.printi", "0", "1", "1", "1", "1"],  # 5 ints: 1 + 4 * 2 bytes
    32: ["core.echo", "abcdefghijklmnopqrstuv"],  # a 22-character string: 2 + 23 bytes
    48: ["core.echo", "abcdefghijklmnopqrstuvwxyz0123456789AB"],  # 38 characters: 2 + 39
}


def _mask_dumped_cookie(out: bytes) -> bytes:
    """A -vvv output with the reply cookie masked where the first dump line shows it: in the
    hex bytes (``CC``) and in the ASCII column (``C``), if that line has one."""
    lines = out.split(b"\n")
    first = lines[1]
    header = parse_header(bytes.fromhex(first[: 16 * 3].decode()))
    assert header is not None, out
    masked = bytearray(first)
    length_size = (int(first[3:5], 16) >> 2 & 3) + 1  # the second byte's LL bits, + 1
    for k in range(2 + length_size, header.size):
        masked[3 * k : 3 * k + 2] = b"CC"
        if len(masked) > 16 * 3 + 1 + k:
            masked[16 * 3 + 1 + k] = ord("C")
    return b"\n".join([lines[0], bytes(masked), *lines[2:]])


def _run_with_wide_cookie(
    run: Any, args: list[str], address: str, size: int
) -> subprocess.CompletedProcess[bytes]:
    """Run the client until its random cookie takes 4 bytes: the server echoes the cookie's
    value minimally encoded, so a cookie below 2**24 (1 in 128 for kamcmd, 1 in 256 for us)
    shortens the reply; 8 such draws in a row are out of reach."""
    for _ in range(8):
        result: subprocess.CompletedProcess[bytes] = run(["-vvv", *args], address)
        if result.stdout.startswith(b"received %d bytes " % size):
            return result
    raise AssertionError(f"no {size}-byte reply in 8 runs: {result.stdout!r}")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("size", sorted(WHOLE_LINE_REPLIES))
def test_vvv_dump_of_whole_lines_like_kamcmd(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner, transport: str, size: int
) -> None:
    address = kamailio.binrpc[transport]
    args = WHOLE_LINE_REPLIES[size]
    kam = _run_with_wide_cookie(kamcmd, args, address, size)
    ours = _run_with_wide_cookie(run_binrpc, args, address, size)
    assert mask(_mask_dumped_cookie(ours.stdout), False) == mask(
        _mask_dumped_cookie(kam.stdout), False
    )
    assert (ours.stderr, ours.returncode) == (kam.stderr, kam.returncode) == (b"", 0)


def assert_same_command(
    args: list[str],
    kam: subprocess.CompletedProcess[bytes],
    ours: subprocess.CompletedProcess[bytes],
    what: str,
) -> None:
    """assert_same, except that -vvv dumps are compared without their packet headers: they
    hold the random cookie, minimally encoded in 1-4 bytes, so the header's width (and with it
    the byte count and the dump's line breaks) may differ by chance."""
    if args[:1] == ["-vvv"]:
        assert _vvv_without_header(ours.stdout) == _vvv_without_header(kam.stdout), what
        assert ours.returncode == kam.returncode, what
        return
    assert_same(kam, ours, what=what)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("args", DYNAMIC, ids=_id)
def test_same_shape_as_kamcmd_for_dynamic_replies(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner, transport: str, args: list[str]
) -> None:
    address = kamailio.binrpc[transport]
    kam = kamcmd(args, address)
    ours = run_binrpc(args, address)
    assert_same(kam, ours, dynamic=True, what=f"{transport} {args}")


def test_help_lists_the_same_plus_new_alias_names(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner
) -> None:
    for args in (["help"], ["?"], ["help", "5"]):
        kam = kamcmd(args, kamailio.unixs)
        ours = run_binrpc(args, kamailio.unixs)
        added = {b"alias: dst_blocklist_mem_info", b"alias: dst_blocklist_debug"}
        kept = [x for x in ours.stdout.split(b"\n") if x not in added]
        assert kept == kam.stdout.split(b"\n")
        assert len(ours.stdout.split(b"\n")) == len(kam.stdout.split(b"\n")) + 2
        assert ours.returncode == kam.returncode == 0


def test_dst_blacklist_aliases_reach_the_renamed_methods(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner
) -> None:
    # kamcmd 1.5's dst_blacklist_* aliases name methods Kamailio 5.6 no longer has; ours reach
    # dst_blocklist.* with the alias format, as kamcmd >= 5.7 does with dst_blocklist_*
    for alias, fmt, method in (
        ("dst_blacklist_mem_info", r"%v / %v\n", "dst_blocklist.mem_info"),
        ("dst_blocklist_mem_info", r"%v / %v\n", "dst_blocklist.mem_info"),
        ("dst_blacklist_debug", r"%v:%v:%v expire:%v flags: %v\n", "dst_blocklist.debug"),
    ):
        kam = kamcmd(["-f", fmt, method], kamailio.unixs)
        ours = run_binrpc([alias], kamailio.unixs)
        assert_same(kam, ours, what=alias)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_piped_interactive_session(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner, transport: str
) -> None:
    script = (
        b"ver\n\n  \nps\nhelp ps\ncore.echo a 5 s:6\n  core.echo   x\tb  \nno.such\n"
        b'core.echo "a b"\nhelp core.ps\ncore.vers\t\nquit\nver\n'
    )
    kam = kamcmd([], kamailio.binrpc[transport], input=script)
    ours = run_binrpc([], kamailio.binrpc[transport], input=script)
    k_lines, o_lines = kam.stdout.split(b"\n"), ours.stdout.split(b"\n")
    # the banner names the program (4 lines as kamcmd's; the last two are kamcmd's words)
    assert o_lines[2:4] == k_lines[2:4]
    assert o_lines[4:] == k_lines[4:]
    # stderr: readline's bell for the TAB that completed nothing
    assert (ours.returncode, ours.stderr) == (kam.returncode, kam.stderr) == (0, b"\a")
    # EOF without quit: the last prompt stays without a newline
    kam = kamcmd([], kamailio.binrpc[transport], input=b"ver\n")
    ours = run_binrpc([], kamailio.binrpc[transport], input=b"ver\n")
    assert ours.stdout.split(b"\n")[4:] == kam.stdout.split(b"\n")[4:]


ERROR_CASES: list[list[str]] = [
    ["-s", "unixs:/tmp/binrpc-nonexistent/ctl", "core.version"],
    ["-s", "unixs:/tmp/binrpc-nonexistent/ctl", "warranty"],
    ["-s", "unixd:/tmp/binrpc-nonexistent/ctl", "core.version"],
    ["-s", "/tmp/binrpc-nonexistent/ctl", "core.version"],
    ["-s", "tcp:127.0.0.1:1", "core.version"],
    ["-s", "tcp:no-such-host.invalid:2049", "core.version"],
    ["-s", "tcp:23049", "core.version"],
    ["-s", "foo:bar:baz", "core.version"],
    ["-s", "unixs:/tmp/" + "x" * 120, "core.version"],
    ["-s", "udp:127.0.0.1:1", "help", "core.ps"],
    ["-s", "udp:127.0.0.1:1", "help", "ps"],
    ["-s", "udp:127.0.0.1:1", "help"],
    ["-s", "udp:127.0.0.1:1", "core.version"],
    ["-x"],
    ["-s"],
    ["core.ps", "-f"],
    ["--", "core.echo", *[str(i) for i in range(257)]],
]


@pytest.mark.parametrize("args", ERROR_CASES, ids=_id)
def test_error_messages_and_status(kamcmd: KamcmdRunner, args: list[str]) -> None:
    kam = kamcmd(args, None)
    ours = run_binrpc(args, None)
    assert_same(kam, ours, what=str(args))


def test_reply_socket_options(
    kamailio: KamailioEndpoints, kamcmd: KamcmdRunner, tmp_path: Any
) -> None:
    exact = str(tmp_path / "reply.sock")
    kam = kamcmd(["-R", exact, "core.version"], kamailio.unixd)
    ours = run_binrpc(["-R", exact, "core.version"], kamailio.unixd)
    assert_same(kam, ours)
    assert not os.path.exists(exact)
    kam = kamcmd(["-D", str(tmp_path), "core.version"], kamailio.unixd)
    ours = run_binrpc(["-D", str(tmp_path), "core.version"], kamailio.unixd)
    assert_same(kam, ours)
    assert os.listdir(tmp_path) == []
    open(exact, "w").close()
    kam = kamcmd(["-R", exact, "core.version"], kamailio.unixd)
    ours = run_binrpc(["-R", exact, "core.version"], kamailio.unixd)
    assert_same(kam, ours)
    assert os.path.exists(exact)


# --------------------------------------------------------------------------------------------
# the fake server: replies Kamailio never sends, and the request bytes of both clients

SYNTHETIC: dict[str, bytes] = {
    "ints": encode_values([0, 1, -1, 2147483647, -2147483648, 255, 256]),
    "strings": encode_values(["", "hello", "tab\there", "multi\nline"]),
    "nul": encode_values(["ab\0cd", b"xy\0z", "after"]),
    "bytes": encode_values([b"abc", b""]),
    "doubles": encode_values([1.5, 2.0, -0.25, 0.001, 12345.678, -3.0, 1e12, 0.0]),
    "array": encode_values([[1, "a", [2, 3]]]),
    "struct": encode_values([Struct(a=1, b="x", c=Struct(d=2, e=Struct(f=3)), g=2.5)]),
    "unnamed": encode_values([Struct([(None, 1), (None, 2), (None, "x")])]),
    "sos": encode_values([Struct([(None, Struct(a=1)), (None, Struct(a=2))])]),
    "arrstruct": encode_values([[Struct(x=1)]]),
    "mixed": encode_values([7, Struct(k="v"), "tail"]),
    "empty_struct": encode_values([Struct(items=Struct())]),
    "unnamed_array_in_struct": encode_values([Struct([(None, [1, 2])])]),
    "named_array": bytes.fromhex("0345616263000484" + "83"),
    "named_array_later": bytes.fromhex(
        "10 07 03 25 61 00 10 01 45 61 62 63 00 04 84 83".replace(" ", "")
    ),
    "unknown_type": bytes.fromhex("10 01 17 41".replace(" ", "")),
    "big_int": bytes.fromhex("50 01 00 00 00 05"),
    "empty": b"",
}
FAULTS: dict[str, bytes] = {
    "f_normal": encode_values([404, "not here"]),
    "f_code_only": encode_values([499]),
    "f_three": encode_values([1, "a", "b"]),
    "f_string": encode_values(["only a string"]),
    "f_empty": b"",
}


def synthetic_handler(method: str, params: list[Any], cookie: int) -> list[Any]:
    if method in SYNTHETIC:
        return [raw_reply(SYNTHETIC[method], cookie)]
    if method in FAULTS:
        return [raw_reply(FAULTS[method], cookie, msg_type=3)]
    if method == "core.echo":
        return [reply(params, cookie)]
    return [fault(500, f"command {method} not found", cookie)]


@pytest.fixture(scope="module")
def fake_servers():  # type: ignore[no-untyped-def]
    servers = {p: FakeServer(p, synthetic_handler).__enter__() for p in TRANSPORTS}
    yield servers
    for s in servers.values():
        s.close()


FORMATS = [None, r"%v\n", "%v|", r"%v-%v\n", r"<%v>"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("method", [*SYNTHETIC, *FAULTS])
def test_synthetic_replies_render_like_kamcmd(
    fake_servers: dict[str, FakeServer], kamcmd: KamcmdRunner, method: str, fmt: str | None
) -> None:
    address = fake_servers["unixs"].address
    args = ([] if fmt is None else ["-f", fmt]) + [method]
    kam = kamcmd(args, address)
    ours = run_binrpc(args, address)
    assert_same(kam, ours, what=str(args))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_request_bytes_identical_to_kamcmds(
    fake_servers: dict[str, FakeServer], kamcmd: KamcmdRunner, transport: str
) -> None:
    srv = fake_servers[transport]
    words = [
        "a", "1", "-2", "1.5", "s:3", "", "300", "70000", "-1.5", " 5", "5 ", "007", "+7",
        "0x10", "0x1p3", "1e3", "1.", ".5", "1,5", "0b1", "s:", "s:s:x", "S:1", "i:5", "d:1.5",
        "inf", "-inf", "nan", "infinity", "1e400", "1e17", "4294967296", "2147483648",
        "-2147483649", "99999999999999999999", "1.23456", "-1.0009", "0.0001", "tab\tx",
        "-0", "  -12  ", " ", "-", "+", "0x", "1e", "NaN(abc)", "0X1P-2",
    ]  # fmt: skip
    before = len(srv.bodies)
    kam = kamcmd(["--", "core.echo", *words], srv.address)
    assert len(srv.bodies) == before + 1
    ours = run_binrpc(["core.echo", *words], srv.address)
    assert len(srv.bodies) == before + 2
    assert srv.bodies[-1] == srv.bodies[-2]
    assert ours.stdout == kam.stdout and ours.returncode == kam.returncode == 0


# --------------------------------------------------------------------------------------------
# the client library against the real Kamailio


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_library_against_kamailio(kamailio: KamailioEndpoints, transport: str) -> None:
    from binrpc import Fault
    from binrpc.client import Client

    with Client(kamailio.binrpc[transport], timeout=5) as c:
        assert str(c.call_one("core.version")).startswith("kamailio 5.6.3 (")
        up = c.call_one("core.uptime")
        assert isinstance(up, Struct) and isinstance(up["uptime"], int)
        procs = c.call("core.psx")
        assert procs and all(isinstance(p, Struct) and "PID" in p for p in procs)
        assert "core.version" in c.call("system.listMethods")
        assert c.call("core.echo", "a", 1, -5) == ["a", "1", "18446744073709551611"]
        with pytest.raises(Fault) as info:
            c.call("no.such.method")
        assert (info.value.code, info.value.message) == (500, "command no.such.method not found")
        with pytest.raises(Fault) as info:
            c.call("core.printi", "x")
        assert info.value.code == 400
        # the connection survives faults and is reused
        assert c.call("core.printi", 5) == [5]
        shm = c.call_one("core.shmmem")
        assert isinstance(shm, Struct)
        assert isinstance(total := shm["total"], int | float) and total > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_client_pipelines_against_kamailio(
    kamailio: KamailioEndpoints, transport: str
) -> None:
    import asyncio

    from binrpc.client import AsyncClient

    async with AsyncClient(kamailio.binrpc[transport], timeout=10) as c:
        results = await asyncio.gather(*(c.call("core.echo", f"v{i}") for i in range(200)))
        assert results == [[f"v{i}"] for i in range(200)]
        assert str(await c.call_one("core.version")).startswith("kamailio 5.6.3")
