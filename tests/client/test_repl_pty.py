"""The interactive mode on a pseudo-terminal: prompt_toolkit, completion, persistent history."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import stat
import subprocess
import sys
import termios
import time
from typing import Any

import pytest

from .fakeserver import FakeServer, Gate
from .test_cli_signals import default_sigint

pytest.importorskip("prompt_toolkit")


class Pty:
    """binrpc running on a pty (the pty module only; no pexpect dependency)."""

    def __init__(self, args: list[str], env: dict[str, str], umask: int = -1) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "binrpc.cli.main", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            start_new_session=True,
            # the pty becomes the controlling terminal: ^C typed there sends SIGINT
            preexec_fn=_take_terminal,  # noqa: PLW1509 - an ioctl, no lock taken
            umask=umask,
        )
        os.close(slave)
        self.buf = b""

    def expect(self, needle: bytes, timeout: float = 60) -> bytes:
        # waits for the text; the timeout only guards against a hang (a loaded CI machine
        # can take seconds to start the interpreter and prompt_toolkit)
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


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    default_sigint()


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


@pytest.mark.parametrize("proto", ["unixs", "unixd", "unixs+tcp"])
def test_ctrl_c_abandons_the_call_and_clears_the_prompt(tmp_path: Any, proto: str) -> None:
    """^C during a call: ``^C`` shown once, back to the prompt, and the late reply is never
    taken for the next command's; ^C at the prompt clears the line. With several ``-s``
    (``unixs+tcp``: the first node is the slow one) the same."""
    gate = Gate()
    first, *others = proto.split("+")
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(FakeServer(first, gate))
        rest = [stack.enter_context(FakeServer(o)) for o in others]
        args = [a for s in (srv, *rest) for a in ("-s", s.address)]
        prefix = f"[{srv.address}] ".encode() if rest else b""
        p = Pty(args, _env(tmp_path))
        try:
            p.expect(b"kamcmd>")
            p.send(b"slow\r")
            assert gate.arrived.wait(20)
            p.send(b"\x03")  # the terminal is in line mode during a call: SIGINT
            seen = p.expect(b"^C")
            seen += p.expect(b"kamcmd>")
            assert seen.count(b"^C") == 1 and b"Traceback" not in seen, seen
            gate.release.set()
            assert gate.sent.wait(20)  # the late reply is gone out before the next command
            p.send(b"core.echo next\r")
            seen = p.expect(prefix + b"next\r\n") + p.expect(b"kamcmd>")
            assert b"late" not in seen, seen
            p.send(b"core.ver")
            p.expect(b"core.ver")
            p.send(b"\x03")  # at the prompt: prompt_toolkit's, the line is dropped
            p.expect(b"kamcmd>")
            p.send(b"core.echo after\r")
            seen = p.expect(prefix + b"after\r\n") + p.expect(b"kamcmd>")
            assert b"late" not in seen, seen
            p.send(b"quit\r")
            assert p.close() == 0
        finally:
            gate.release.set()
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
        asked = [(m, a) for m, a in srv.requests if m != "system.listMethods"]
        assert asked == [("slow", []), ("core.echo", ["next"]), ("core.echo", ["after"])]
        for other in rest:  # the line abandoned at the first node never reached the others
            asked = [(m, a) for m, a in other.requests if m != "system.listMethods"]
            assert asked == [("core.echo", ["next"]), ("core.echo", ["after"])]


def test_history_file_is_private(tmp_path: Any) -> None:
    """It holds everything typed: created 0600 (whatever the umask allows); an existing
    file keeps its mode."""
    history = tmp_path / "history"

    def session(line: bytes, before_line: Any = None) -> None:
        p = Pty(["-s", srv.address], _env(tmp_path), umask=0o022)
        p.expect(b"kamcmd>")
        if before_line is not None:
            before_line()
        p.send(line + b"\r")
        p.expect(b"kamcmd>")
        p.send(b"quit\r")
        assert p.close() == 0

    def mode() -> int:
        return stat.S_IMODE(os.stat(history).st_mode)

    with FakeServer("unixs") as srv:
        session(b"core.echo secret")
        assert mode() == 0o600 and "secret" in history.read_text()
        history.chmod(0o640)  # the user's choice stands
        session(b"core.echo other")
        assert mode() == 0o640 and "other" in history.read_text()
        session(b"core.echo again", before_line=history.unlink)  # removed meanwhile
        assert mode() == 0o600 and "again" in history.read_text()
