"""The real kamcmd against binrpcd, compared with the real kamcmd against a real Kamailio.

Deterministic RPCs must print exactly the same (stdout, stderr, exit status) on every
transport; RPCs whose content differs by nature (processes, versions, paths) are compared by
the shape of their lines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.loops import LOOPS, require_loop
from tests.server.helpers import binrpcd_command

from .kamailio import free_ports, run_kamcmd

TRANSPORTS = ("unixs", "unixd", "udp", "tcp")


@dataclass
class Binrpcd:
    proc: subprocess.Popen[bytes]
    binrpc: dict[str, str]  # transport -> kamcmd -s address
    workdir: str
    loop: str


@pytest.fixture(scope="module", params=LOOPS)
def binrpcd(request: pytest.FixtureRequest) -> Iterator[Binrpcd]:
    """binrpcd on the four transports, once per event loop (the transports differ by loop)."""
    loop: str = request.param
    require_loop(loop)
    workdir = tempfile.mkdtemp(prefix="binrpcd-interop-", dir="/tmp")
    udp, tcp = free_ports(2)
    addrs = {
        "unixs": f"unixs:{workdir}/ctl.sock",
        "unixd": f"unixd:{workdir}/ctl.dgram",
        "udp": f"udp:127.0.0.1:{udp}",
        "tcp": f"tcp:127.0.0.1:{tcp}",
    }
    args = [x for a in addrs.values() for x in ("--binrpc", a)]
    proc = subprocess.Popen(
        binrpcd_command("--loop", loop, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready = 0
        deadline = time.monotonic() + 15
        while ready < len(addrs):
            assert time.monotonic() < deadline, "binrpcd did not start"
            line = proc.stdout.readline()
            assert line, f"binrpcd exited: {proc.stderr.read() if proc.stderr else b''!r}"
            ready += line.startswith(b"listening on ")
        yield Binrpcd(proc, addrs, workdir, loop)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                assert proc.wait(10) == 0
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def both(
    kamailio: object, binrpcd: Binrpcd, transport: str, args: list[str]
) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    ref = run_kamcmd(args, kamailio.binrpc[transport])  # type: ignore[attr-defined]
    ours = run_kamcmd(args, binrpcd.binrpc[transport])
    return ref, ours


DETERMINISTIC = [
    ["core.echo", "abc", "7", "s:7", "hello world"],
    ["core.echo", "abc", "7", "1.5", "x"],  # echo stops at the double
    ["core.echo", "1.5"],  # deferred fault
    ["core.echo"],
    ["--", "core.echo", "-5", "0", "255", "2147483647", "-2147483648", "99999999999"],
    ["core.echo", "0x10"],
    ["core.printi", "1", "-1", "300"],
    ["core.printi", "abc"],
    ["core.printi", "1", "abc"],
    ["core.prints", "a", "", "b"],
    ["core.prints", "5"],
    ["no.such.method"],
    ["no.such.method", "with", "params"],
    ["system.methodHelp", "ctl.who"],
    ["system.methodHelp", "ctl.connections"],
    ["system.methodHelp", "ctl.listen"],
    ["system.methodHelp", "core.echo"],
    ["system.methodHelp", "core.shmmem"],
    ["system.methodHelp"],
    ["system.methodHelp", "5"],
    ["system.methodHelp", "no.such"],
    ["system.methodSignature"],
    ["help", "core.printi"],
    ["ctl.connections"],
    ["core.shmmem", "x"],
    ["-f", "%v %v\n", "core.echo", "a", "b", "c", "d"],
    ["-f", "[%v]\n", "core.printi", "1", "2", "3"],
    ["-f", "%v|%v\n", "core.prints", "x", "y"],
    ["-f", "%v\n", "system.methodHelp", "ctl.who"],
    ["-f", "%v\n", "core.printi", "abc"],
    ["-f", "%v\n", "ctl.connections"],
    ["-f", "<%v>\n", "no.such.method"],
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("args", DETERMINISTIC, ids=" ".join)
def test_same_output_as_kamailio(
    kamailio: object, binrpcd: Binrpcd, transport: str, args: list[str]
) -> None:
    ref, ours = both(kamailio, binrpcd, transport, args)
    assert (ours.returncode, ours.stdout, ours.stderr) == (ref.returncode, ref.stdout, ref.stderr)


def test_who_over_datagram_same_fault(kamailio: object, binrpcd: Binrpcd) -> None:
    for transport in ("udp", "unixd"):
        ref, ours = both(kamailio, binrpcd, transport, ["who"])
        assert ours.stdout == ref.stdout == b"error: 400 - no open stream connection\n"


def lines(out: bytes) -> list[str]:
    return out.decode().splitlines()


def shape(out: bytes, patterns: dict[str, str]) -> list[str]:
    """Replace each line by the name of the first pattern it matches ('?' otherwise)."""
    result = []
    for line in lines(out):
        for name, pat in patterns.items():
            if re.fullmatch(pat, line):
                result.append(name)
                break
        else:
            result.append(f"? {line}")
    return result


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_shapes(kamailio: object, binrpcd: Binrpcd, transport: str) -> None:
    # version: one line "<name> <ver> (<arch>/<os>) "
    for args in (["core.version"], ["ver"], ["version"]):
        ref, ours = both(kamailio, binrpcd, transport, args)
        pat = {"version": r"\S+ \S+ \(\S+/\S+\) ?"}
        assert shape(ref.stdout, pat) == shape(ours.stdout, pat) == ["version"]
    # ps: "<pid>\t<description>" per process
    ref, ours = both(kamailio, binrpcd, transport, ["ps"])
    pat = {"ps": r"\d+\t.+"}
    assert set(shape(ref.stdout, pat)) == set(shape(ours.stdout, pat)) == {"ps"}
    # psx: one struct per process
    ref, ours = both(kamailio, binrpcd, transport, ["psx"])
    pat = {"{": r"\{", "}": r"\}", "IDX": r"\tIDX: \d+", "PID": r"\tPID: \d+", "DSC": r"\tDSC: .+"}
    assert shape(ours.stdout, pat)[:5] == shape(ref.stdout, pat)[:5] == [
        "{", "IDX", "PID", "DSC", "}",
    ]  # fmt: skip
    assert set(shape(ours.stdout, pat)) == set(shape(ref.stdout, pat))
    # who
    ref, ours = both(kamailio, binrpcd, transport, ["who"])
    if transport in ("unixs", "tcp"):
        pat = {"who": r"\[binrpc\] (tcp|unix_stream): .+ \S* -> \S+ \S*"}
        assert shape(ref.stdout, pat) == shape(ours.stdout, pat) == ["who"]
    else:
        assert ref.stdout == ours.stdout
    # listen: "[binrpc] <transport>: <name> <port>" per listener, the same transports in order
    ref, ours = both(kamailio, binrpcd, transport, ["listen"])
    pat = {
        "unix_stream": r"\[binrpc\] unix_stream: /\S+ ",
        "unix_dgram": r"\[binrpc\] unix_dgram: /\S+ ",
        "udp": r"\[binrpc\] udp: \S+ \d+",
        "tcp": r"\[binrpc\] tcp: \S+ \d+",
        "fifo": r"\[fifo\] .*",
    }
    ref_shape = [s for s in shape(ref.stdout, pat) if s != "fifo"]
    assert ref_shape == shape(ours.stdout, pat) == ["unix_stream", "unix_dgram", "udp", "tcp"]
    # ls: one method per line; the ctl/system/core methods we implement are in both
    ref, ours = both(kamailio, binrpcd, transport, ["ls"])
    ours_names, ref_names = lines(ours.stdout), lines(ref.stdout)
    assert ours_names == sorted(ours_names, key=str.encode)
    common = {
        "ctl.who", "ctl.listen", "ctl.connections", "system.listMethods", "system.methodHelp",
        "system.methodSignature", "core.echo", "core.printi", "core.prints", "core.version",
        "core.ps", "core.psx", "core.psa", "core.uptime", "core.runinfo", "core.info",
        "core.kill", "core.shmmem", "core.pwd", "core.arg", "core.flags",
    }  # fmt: skip
    assert common <= set(ours_names) and common <= set(ref_names)
    # structs of the same member names
    for method in ("core.uptime", "core.runinfo", "core.info", "core.shmmem", "core.psa"):
        ref, ours = both(kamailio, binrpcd, transport, [method])
        names = re.compile(r"^\t?(\w+): ", re.M)
        n = 5 if method == "core.psa" else 9  # psa: the first process only
        assert names.findall(ours.stdout.decode())[:n] == names.findall(ref.stdout.decode())[:n]
    # the same help for every method we share with Kamailio
    for method in sorted(common):
        ref, ours = both(kamailio, binrpcd, transport, ["help", method])
        assert ours.stdout == ref.stdout, method
