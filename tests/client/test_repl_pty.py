"""The interactive mode on a pseudo-terminal: prompt_toolkit, completion, persistent history."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from typing import Any

import pytest

from .fakeserver import FakeServer

pytest.importorskip("prompt_toolkit")


class Pty:
    """binrpc running on a pty (the pty module only; no pexpect dependency)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "binrpc.cli.client", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        os.close(slave)
        self.buf = b""

    def expect(self, needle: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.buf[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"EOF before {needle!r}; got {self.buf[-500:]!r}")
                self.buf += chunk
        idx = self.buf.index(needle) + len(needle)
        seen, self.buf = self.buf[:idx], self.buf[idx:]
        return seen

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=10)
        finally:
            os.close(self.master)
            if self.proc.poll() is None:
                self.proc.kill()


def _env(tmp_path: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TERM="xterm",
        PROMPT_TOOLKIT_NO_CPR="1",
        BINRPC_HISTORY=str(tmp_path / "history"),
        HOME=str(tmp_path),
    )
    env.pop("POSIXLY_CORRECT", None)
    return env


def test_completion_and_history_across_runs(tmp_path: Any) -> None:
    with FakeServer("unixs") as srv:
        env = _env(tmp_path)
        p = Pty(["-s", srv.address], env)
        p.expect(b"For details type `warranty'.")
        p.expect(b"kamcmd>")
        # TAB completes the method name from system.listMethods (unique match)
        p.send(b"core.ver\t")
        p.expect(b"core.version")
        p.send(b"\r")
        p.expect(b"fake 1.0")
        p.expect(b"kamcmd>")
        # TAB also completes aliases/builtins; several matches are offered in a menu
        p.send(b"core.\t")
        p.expect(b"core.uptime")
        p.send(b"\x15")  # Ctrl-U: clear the line
        p.send(b"core.echo hist-marker\r")
        p.expect(b"hist-marker\r\n")
        p.expect(b"kamcmd>")
        p.send(b"quit\r")
        assert p.close() == 0
        history = (tmp_path / "history").read_text()
        assert "core.version" in history and "core.echo hist-marker" in history

        # a second run finds the previous commands with the Up arrow
        p = Pty(["-s", srv.address], env)
        p.expect(b"kamcmd>")
        p.send(b"\x1b[A")  # Up: the last command of the previous session ("quit")
        p.send(b"\x1b[A")  # Up again: core.echo hist-marker
        p.expect(b"hist-marker")
        p.send(b"\r")
        p.expect(b"hist-marker\r\n")
        p.expect(b"kamcmd>")
        p.send(b"\x04")  # Ctrl-D: end of session
        assert p.close() == 0
        echo_requests = [params for m, params in srv.requests if m == "core.echo"]
        assert echo_requests == [["hist-marker"], ["hist-marker"]]
