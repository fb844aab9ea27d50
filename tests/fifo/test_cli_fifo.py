"""``binrpc --fifo``: one call over the FIFO text protocol from the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from .conftest import FifoServer

BINRPC = [sys.executable, "-m", "binrpc.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*BINRPC, *args], capture_output=True, timeout=30, check=False)


@pytest.mark.parametrize("transport", ["fifo", "udp", "tcp", "unixs", "unixd"])
def test_echo_over_every_fifo_transport(fifo_server: FifoServer, transport: str) -> None:
    address = fifo_server.addresses[transport]
    r = run("--fifo", address, "--fifo-reply-dir", fifo_server.workdir, "t.echo", "a b", "x:y")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"a b\nx:y\n", b"")


def test_struct_lines(fifo_server: FifoServer) -> None:
    # an argument is a text value; "name:value,..." is what a struct parameter reads
    r = run("--fifo", fifo_server.addresses["udp"], "t.struct", "when:10,list:ab")
    assert (r.returncode, r.stdout) == (0, b"when:10,list:ab\n")


def test_struct_replies_are_unescaped_with_the_reply_meaning(fifo_server: FifoServer) -> None:
    # the server writes the time's ':' as \o inside a struct; the command shows ':' again
    r = run("--fifo", fifo_server.addresses["tcp"], "core.uptime")
    assert r.returncode == 0
    assert re.fullmatch(
        rb"now:\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4},up_since:[^,]+,uptime:\d+\n", r.stdout
    ), r.stdout


def test_fault_status_prints_error_and_exits_1(fifo_server: FifoServer) -> None:
    r = run("--fifo", fifo_server.addresses["tcp"], "no.such")
    assert (r.returncode, r.stdout) == (1, b"error: 500 - Command 'no.such' not found\n")
    r = run("--kamcmd-exit", "--fifo", fifo_server.addresses["tcp"], "no.such")
    assert r.returncode == 0


def test_json_and_raw(fifo_server: FifoServer) -> None:
    r = run("--json", "--fifo", fifo_server.addresses["udp"], "t.add", "40", "2")
    assert json.loads(r.stdout) == {"code": 200, "reason": "OK", "lines": ["42"]}
    r = run("--raw", "--fifo", fifo_server.addresses["udp"], "t.fault")
    assert (r.returncode, r.stdout) == (1, b"404 no thing here\nkept\n")


def test_errors_exit_255(fifo_server: FifoServer) -> None:
    missing = os.path.join(fifo_server.workdir, "nope.fifo")
    r = run("--fifo", missing, "core.version")
    assert r.returncode == 255
    assert r.stderr.startswith(b"ERROR: ")
    r = run("--fifo", fifo_server.addresses["udp"])
    assert r.returncode == 255
    assert b"needs a method" in r.stderr
