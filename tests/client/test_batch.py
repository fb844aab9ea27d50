"""``binrpc --batch``: pipelined, printed strictly in input order, same rendering as one command
at a time; faults, errors, quit, a server closing mid-batch, datagram transports."""

from __future__ import annotations

import functools
import io
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from binrpc import Struct
from binrpc.cli import _batch
from binrpc.cli._batch import run_batch, split_line
from binrpc.cli._options import parse_args
from binrpc.cli._runner import Runner
from binrpc.cli.main import _open
from binrpc.client import Client
from binrpc.client._pipeline import open_pipeline

from .fakeserver import FakeServer, fault, raw_reply, reply

TRANSPORTS = ["unixs", "unixd", "udp", "tcp"]


def binrpc(*args: str, input: bytes | None = None, env: dict[str, str] | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("POSIXLY_CORRECT", None)
    return subprocess.run(
        [sys.executable, "-m", "binrpc.cli.main", *args],
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output="stderr" not in kw,
        timeout=60,
        env=full_env,
        check=False,
        **kw,
    )


def handler(method: str, params: list[Any], cookie: int) -> list[Any]:
    if method == "core.echo":
        return [reply(params, cookie)]
    if method == "core.psx":
        return [reply([Struct(IDX=0, PID=7, DSC="main"), Struct(IDX=1, PID=8, DSC="x")], cookie)]
    if method == "slow":
        return [0.02, reply(["slow"], cookie)]
    if method == "big":
        return [reply(["b" * 200_000, *params], cookie)]
    if method == "badrec":
        return [raw_reply(bytes.fromhex("0345616263000484" + "83"), cookie)]
    if method == "system.listMethods":
        return [reply(["core.echo", "core.psx"], cookie)]
    if method == "system.methodHelp":
        return [reply([f"help for {params[0]}"], cookie)]
    return [fault(500, f"command {method} not found", cookie)]


class Reversed:
    """Answers in groups of ``n`` requests, each group in reverse order (any transport)."""

    def __init__(self, n: int = 4) -> None:
        self.n = n
        self.held: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, method: str, params: list[Any], cookie: int) -> list[Any]:
        with self.lock:
            self.held.extend(handler(method, params, cookie)[-1:])
            if len(self.held) < self.n:
                return []
            out, self.held = self.held[::-1], []
            return out


def _runner(address: str, *options: str) -> tuple[Runner, io.BytesIO, list[str]]:
    opts = parse_args(["-s", address, *options, "--batch", "-"], {})
    out = io.BytesIO()
    errs: list[str] = []
    runner = _open(opts, address, out, errs.append, b"")
    assert isinstance(runner, Runner)
    return runner, out, errs


def _both_ways(address: str, lines: list[str], *options: str) -> tuple[Any, Any]:
    """(status, stdout, stderr) of the pipelined batch and of one command at a time."""
    results = []
    for sequential in (False, True):
        runner, out, errs = _runner(address, *options)
        try:
            if sequential:
                status = _batch._one_at_a_time(runner, lines, None)
            else:
                status = run_batch(runner, lines)
        finally:
            runner.client.close()
        # -vv prints the cookies, random from run to run
        printed = re.sub(rb"cookie [0-9a-f]+", b"cookie X", out.getvalue())
        printed = re.sub(rb"(?m)^(?:[0-9a-f]{2} )+.*$", b"(hex)", printed)  # -vvv dumps
        results.append((status, printed, "".join(errs)))
    return results[0], results[1]


MIXED = [
    "core.echo a 'b c' 1 -2 0x10 1.5",
    "nope",  # a fault
    "  # a comment",
    "",
    "core.psx",
    "ps",  # an alias with its own format
    "psx",
    "badrec",  # a parse error in the reply: what was printed, then the error
    "core.echo 'unbalanced",  # a line that does not parse
    "core.echo " + " ".join(["x"] * 257),  # too many arguments
    "help",
    "help core.psx",
    "help ps",
    "help quit",
    "license",
    "version",
    "core.echo 2147483648 s:12 ''",
    "core.echo \\# '#' x#y",
    "nope again",
    "core.echo last",
]


@pytest.mark.parametrize("proto", TRANSPORTS)
@pytest.mark.parametrize(
    "options", [(), ("-f", "%v|"), ("--json",), ("-v",), ("-vv",), ("--typed",)]
)
def test_pipelined_output_is_the_one_at_a_time_output(proto: str, options: tuple[str]) -> None:
    lines = MIXED * 3
    with FakeServer(proto, handler) as srv:
        pipelined, sequential = _both_ways(srv.address, lines, *options)
    assert pipelined == sequential
    assert pipelined[0] == 255  # errors happened (and faults)
    assert pipelined[1].count(b"help for core.psx") == 3


@pytest.mark.parametrize("proto", TRANSPORTS)
def test_replies_out_of_order_are_printed_in_order(proto: str) -> None:
    lines = [f"core.echo {i}" for i in range(400)]
    # A server that holds n requests before answering needs n of them in flight at once.
    # On unixd the client keeps at most 4 in flight and sends more only once no more than 2
    # are unanswered (refill by halves), so only n <= 3 is always reached there: with 4, a
    # batch sent as 3 + 1 (a busy machine) would wait for a reply the server never sends.
    with FakeServer(proto, Reversed(2 if proto == "unixd" else 4)) as srv:
        runner, out, errs = _runner(srv.address)
        assert run_batch(runner, lines) == 0
    assert out.getvalue() == "".join(f"{i}\n" for i in range(400)).encode()
    assert errs == []
    assert [p for _m, p in srv.requests] == [[i] for i in range(400)]  # each sent once


def test_slow_replies_keep_their_place() -> None:
    lines = [("slow" if i % 7 == 3 else f"core.echo {i}") for i in range(60)]
    with FakeServer("unixs", handler) as srv:
        pipelined, sequential = _both_ways(srv.address, lines)
    assert pipelined == sequential
    assert pipelined[1].count(b"slow\n") == 9


@pytest.mark.parametrize("proto", ["unixs", "tcp"])
def test_server_closing_mid_batch(proto: str) -> None:
    """The requests in flight when the server closes are reported as errors, one per line, in
    order; the following lines go on a new connection; no line is sent twice or dropped."""
    closed = threading.Event()

    def closing(method: str, params: list[Any], cookie: int) -> list[Any]:
        if params == [10] and not closed.is_set():
            closed.set()
            return [None]
        return [reply(params, cookie)]

    n = 300
    lines = "".join(f"core.echo {i}\n" for i in range(n)).encode()
    with FakeServer(proto, closing) as srv:
        r = binrpc("-s", srv.address, "--batch", "-", input=lines)
        connections = srv.connections
        sent = [p[0] for _m, p in srv.requests]
    printed = [int(w) for w in r.stdout.split()]
    errors = r.stderr.decode().splitlines()
    assert r.returncode == 255
    assert printed[:10] == list(range(10))
    lost = n - len(printed)
    assert lost >= 1 and errors == [errors[0]] * lost
    # an EOF, or a reset when the server closed with our requests unread (unix sockets)
    assert errors[0] in (
        "ERROR: read reply failed: Success (0)",
        "ERROR: read reply failed: Connection reset by peer (104)",
    )
    assert printed[10:] == list(range(10 + lost, n))  # the rest, after a reconnect
    assert connections == 2
    assert len(sent) == len(set(sent))  # never sent twice
    assert set(range(10 + lost, n)) <= set(sent)


def test_connection_lost_before_the_batch_is_reopened() -> None:
    with FakeServer("unixs", handler) as srv:
        runner, out, errs = _runner(srv.address)
        runner.client.call("core.echo", "warm")
        srv.close_clients()
        assert run_batch(runner, ["core.echo a", "core.echo b"]) == 0
        runner.client.close()
    assert (out.getvalue(), errs) == (b"a\nb\n", [])


@pytest.mark.parametrize("proto", TRANSPORTS)
def test_quit_in_the_middle(proto: str) -> None:
    lines = [f"core.echo {i}" for i in range(100)] + ["quit"] + ["core.echo after"] * 50
    with FakeServer(proto, handler) as srv:
        runner, out, errs = _runner(srv.address)
        assert run_batch(runner, lines) == 0
        runner.client.close()
        sent = [p for _m, p in srv.requests]
    assert (out.getvalue(), errs) == ("".join(f"{i}\n" for i in range(100)).encode(), [])
    assert sent == [[i] for i in range(100)]  # nothing after quit is sent


def test_quit_as_the_command_line_method(tmp_path: Any) -> None:
    script = tmp_path / "cmds"
    script.write_text("core.echo x\n")
    with FakeServer("unixs", handler) as srv:
        r = binrpc("-s", srv.address, "--batch", str(script), "quit")
        assert (r.returncode, r.stdout, srv.requests) == (0, b"", [])
        r = binrpc("-s", srv.address, "--batch", str(script), "core.echo", "first word")
        assert (r.returncode, r.stdout) == (0, b"first word\nx\n")


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_stdout_and_stderr_keep_their_order(unbuffered: str) -> None:
    lines = b"core.echo 1\ncore.echo 'oops\ncore.echo 2\nnope\ncore.echo 3\n"
    with FakeServer("unixs", handler) as srv:
        r = binrpc(
            "-s",
            srv.address,
            "--batch",
            "-",
            input=lines,
            env={"PYTHONUNBUFFERED": unbuffered},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    assert r.stdout == (
        b"1\nERROR: line 2: No closing quotation\n2\nerror: 500 - command nope not found\n3\n"
    )


def test_big_replies_and_a_byte_budget() -> None:
    lines = [f"big {i}" for i in range(40)]
    with FakeServer("unixs", handler) as srv:
        runner, out, errs = _runner(srv.address, "-f", "%v/")
        assert run_batch(runner, lines) == 0
        runner.client.close()
    assert out.getvalue() == b"".join(b"b" * 200_000 + b"/%d/" % i for i in range(40))
    assert errs == []


@pytest.mark.parametrize("proto", ["udp", "unixd"])
def test_datagram_reply_lost_times_out_alone(proto: str) -> None:
    def lossy(method: str, params: list[Any], cookie: int) -> list[Any]:
        if params == [5]:
            return []  # no reply at all
        return [reply(params, cookie)]

    lines = [f"core.echo {i}" for i in range(12)]
    with FakeServer(proto, lossy) as srv:
        runner, out, errs = _runner(srv.address, "-t", "0.3")
        assert run_batch(runner, lines) == 255
        runner.client.close()
    assert out.getvalue() == b"".join(b"%d\n" % i for i in range(12) if i != 5)
    assert len(errs) == 1 and errs[0].startswith("ERROR: timeout: waiting for the reply")


@pytest.mark.parametrize("proto", ["udp", "unixd"])
def test_datagram_reply_lost_without_timeout_ends_the_batch(
    proto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fake server drops one reply on purpose: without -t, nothing but the datagram reply
    # deadline (made short here) can end the wait for it
    def lossy(method: str, params: list[Any], cookie: int) -> list[Any]:
        return [] if params == [5] else [reply(params, cookie)]

    monkeypatch.setattr(
        _batch, "open_pipeline", functools.partial(open_pipeline, datagram_deadline=0.3)
    )
    lines = [f"core.echo {i}" for i in range(40)]
    with FakeServer(proto, lossy) as srv:
        runner, out, errs = _runner(srv.address)
        assert runner.client.timeouts.read is None
        assert run_batch(runner, lines) == 255
        runner.client.close()
    assert out.getvalue() == b"".join(b"%d\n" % i for i in range(40) if i != 5)
    assert errs == [
        f"ERROR: timeout: waiting for the reply from {proto}:"
        f"{srv.address.split(':', 1)[1]} timed out after 0.3 s\n"
    ]
    assert [p for _m, p in srv.requests] == [[i] for i in range(40)]  # each sent once


def test_datagram_reply_deadline_applies_only_without_a_read_timeout() -> None:
    with FakeServer("udp") as srv:
        assert open_pipeline(Client(srv.address, timeout=None), [], 64).read_timeout == 10.0
        assert open_pipeline(Client(srv.address, timeout=2), [], 64).read_timeout == 2.0
        assert (
            open_pipeline(Client(srv.address, timeout=None), [], 64, None, None).read_timeout
            is None
        )
    with FakeServer("unixs") as srv:
        assert open_pipeline(Client(srv.address, timeout=None), [], 64).read_timeout is None


@pytest.mark.parametrize("proto", ["udp", "unixd"])
def test_datagram_window_fits_the_receive_buffer(proto: str, tmp_path: Any) -> None:
    size = len(reply(["r" * 3000], 0))

    def big(method: str, params: list[Any], cookie: int) -> list[Any]:
        return [reply(["r" * 3000], cookie)]

    in_flight: list[int] = []
    with FakeServer(proto, big) as srv, Client(srv.address, timeout=None) as c:
        c.connect()
        assert c.link.sock is not None
        c.link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        rcvbuf = c.link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)  # doubled: 16384
        pipeline = open_pipeline(c, (("m", []) for _ in range(100)), 64)
        pipeline.on_wait = lambda: in_flight.append(len(pipeline.inflight))
        results = list(pipeline.results())
    assert all(not isinstance(r, Exception) for r in results) and len(results) == 100
    # never more replies due than half the buffer holds (the other half: the kernel's)
    assert 0 < max(in_flight) * size <= rcvbuf // 2


def test_verbose_3_runs_one_at_a_time() -> None:
    with FakeServer("unixs", handler) as srv:
        pipelined, sequential = _both_ways(srv.address, ["core.echo a", "nope"], "-vvv")
    assert pipelined == sequential
    assert b"received" in pipelined[1]


def test_many_lines_one_connection_and_a_file(tmp_path: Any) -> None:
    script = tmp_path / "cmds"
    script.write_text("".join(f"core.echo {i}\n" for i in range(3000)))
    with FakeServer("tcp", handler) as srv:
        r = binrpc("-s", srv.address, "--batch", str(script))
        assert srv.connections == 1
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == "".join(f"{i}\n" for i in range(3000)).encode()


# -- split_line is shlex.split -------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "core.version",
        "a\tb  c ",
        "a 'b c' d",
        'a "b c"',
        "a#b c",
        "a # c",
        "a\\ b",
        "x\x0by",  # not shlex whitespace
        "x\x1fy",
        "x\xa0y",
        "x\u2003y",
        "é ü",
    ],
)
def test_split_line_cases(line: str) -> None:
    assert split_line(line) == shlex.split(line, comments=True)


def test_split_line_random() -> None:
    rng = random.Random(7)
    alphabet = "ab .\t'\"\\#\x0b\x1f\xa0\u2003é-0"
    for _ in range(5000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        try:
            expected: object = shlex.split(line, comments=True)
        except ValueError as exc:
            expected = str(exc)
        try:
            got: object = split_line(line)
        except ValueError as exc:
            got = str(exc)
        assert got == expected, repr(line)


# -- on a real Kamailio 5.6.3 (skipped when it is not installed) ---------------------------


@pytest.fixture(scope="module")
def kamailio() -> Any:
    from tests.interop.kamailio import (
        Kamailio,
        KamailioError,
        ensure_kamailio,
        free_ports,
        make_workdir,
    )

    try:
        ensure_kamailio()
    except KamailioError as exc:
        pytest.skip(str(exc))
    workdir = make_workdir()
    udp, tcp = free_ports(2)
    listeners = [
        f"unixs:{workdir}/ctl.sock",
        f"unixd:{workdir}/ctl.dgram",
        f"udp:127.0.0.1:{udp}",
        f"tcp:127.0.0.1:{tcp}",
    ]
    with Kamailio(binrpc=listeners, workdir=workdir) as k:
        yield {a.kamcmd.split(":", 1)[0]: a.kamcmd for a in k.addresses}


KAMAILIO_LINES = [
    "core.version",
    "core.echo a 'b c' 1 -2 1.5",
    "no.such.method",
    "core.psx",  # several datagrams on UDP/unixd
    "ps",
    "system.listMethods",
    "help core.psx",
    "cfg.get core debug",
    "core.echo 'unbalanced",
    "core.echo " + " ".join(["x"] * 257),
    "dst_blacklist_debug",
]


@pytest.mark.parametrize("proto", TRANSPORTS)
@pytest.mark.parametrize("options", [(), ("--json",), ("-f", "%v:")])
def test_kamailio_pipelined_is_one_at_a_time(
    kamailio: dict[str, str], proto: str, options: tuple[str]
) -> None:
    pipelined, sequential = _both_ways(kamailio[proto], KAMAILIO_LINES * 5, *options)
    assert pipelined == sequential
    assert pipelined[0] == 255


@pytest.mark.parametrize("proto", TRANSPORTS)
def test_kamailio_thousand_lines(kamailio: dict[str, str], proto: str) -> None:
    runner, out, errs = _runner(kamailio[proto])
    version = runner.client.call_one("core.version")
    assert isinstance(version, str)
    assert run_batch(runner, ["core.version"] * 1000) == 0
    runner.client.close()
    assert (out.getvalue(), errs) == (f"{version}\n".encode() * 1000, [])
