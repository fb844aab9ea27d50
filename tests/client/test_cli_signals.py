"""How the ``binrpc`` command ends on ^C (SIGINT) and when its stdout's reader goes away
(SIGPIPE): quietly, as kamcmd, by the signal itself (subprocesses against the fake server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from . import test_cli
from .fakeserver import FakeServer, Gate, reply


def handler(method: str, params: list[Any], cookie: int) -> list[Any]:
    if method == "big":  # more than any pipe holds: its writer meets a reader gone away
        return [reply(["x" * (1 << 20)], cookie)]
    return test_cli.handler(method, params, cookie)


@pytest.fixture(scope="module")
def srv():  # type: ignore[no-untyped-def]
    with FakeServer("unixs", handler) as s:
        yield s


def _spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("POSIXLY_CORRECT", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen(
        [sys.executable, "-m", "binrpc.cli.main", *args],
        env=env,
        preexec_fn=default_sigint,  # noqa: PLW1509 - one system call, no lock taken
        **kwargs,
    )


def default_sigint() -> None:
    """SIGINT to its default in the child: a background job of a non-interactive shell (CI)
    inherits it ignored, and Python keeps it so."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("nodes", ["unixs", "unixd", "unixs+unixd"])
def test_ctrl_c_during_a_one_shot_call(nodes: str, tmp_path: Any) -> None:
    """^C while the server has not answered: no traceback, a death by SIGINT (the shell's
    status 130, as kamcmd), every connection closed (the unixd reply socket file removed)."""
    gates = [Gate(handler) for _ in nodes.split("+")]
    servers = [FakeServer(proto, gate) for proto, gate in zip(nodes.split("+"), gates, strict=True)]
    reply_dir = tmp_path / "replies"
    reply_dir.mkdir()
    try:
        for srv in servers:
            srv.__enter__()
        args = [a for srv in servers for a in ("-s", srv.address)]
        p = _spawn(
            [*args, "-D", str(reply_dir), "slow"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for gate in gates:
            assert gate.arrived.wait(20)
        if "unixd" in nodes:
            assert os.listdir(reply_dir)  # the reply socket, bound while the call waits
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        for gate in gates:
            gate.release.set()
        for srv in servers:
            srv.close()
    assert (p.returncode, out, err) == (-signal.SIGINT, b"", b"")
    assert os.listdir(reply_dir) == []


# every mode, its stdout's reader gone before the first write ("| true") or in the middle
# ("| head -c 300"): a quiet death by SIGPIPE, as kamcmd's (a shell shows 141)
PIPE_MODES: dict[str, tuple[list[str], bytes | None]] = {
    "one-shot": (["big"], None),
    "json": (["--json", "big"], None),
    "fan-out": (["-s", "{other}", "big"], None),
    "batch": (["--batch", "-"], b"big\ncore.echo a\nbig\n"),
    "interactive": ([], b"big\ncore.echo a\nbig\n"),
    "help": (["-h"], None),
}


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize(
    ("mode", "reader"),
    # -h fits in a pipe: its writer never meets a reader going away in the middle
    [(m, r) for m in PIPE_MODES for r in ("true", "head") if (m, r) != ("help", "head")],
)
def test_a_reader_gone_away_ends_in_sigpipe(
    srv: FakeServer, mode: str, reader: str, unbuffered: str
) -> None:
    with FakeServer("tcp", handler) as other:
        words, stdin = PIPE_MODES[mode]
        args = ["-s", srv.address, *(w.format(other=other.address) for w in words)]
        env = {"PYTHONUNBUFFERED": unbuffered}
        if reader == "true":  # the read end closed before binrpc starts
            r, w = os.pipe()
            os.close(r)
            p = _spawn(args, stdin=subprocess.PIPE, stdout=w, stderr=subprocess.PIPE, env=env)
            os.close(w)
            _, err = p.communicate(stdin, timeout=30)
        else:
            p = _spawn(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
            assert p.stdout is not None and p.stdin is not None and p.stderr is not None
            head = subprocess.Popen(["head", "-c", "300"], stdin=p.stdout, stdout=subprocess.PIPE)
            p.stdout.close()
            p.stdin.write(stdin or b"")
            p.stdin.close()
            shown, _ = head.communicate(timeout=30)
            err = p.stderr.read()
            p.stderr.close()
            p.wait(timeout=30)
            assert len(shown) == 300
    assert (p.returncode, err) == (-signal.SIGPIPE, b"")
