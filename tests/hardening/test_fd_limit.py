"""binrpcd at its file-descriptor limit (issue 10, point 13), on each event loop: no flood of
tracebacks, one warning line every few seconds at most, the connected clients served, and
the waiting ones accepted as soon as descriptors are free."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from binrpc import encode_request, parse_packet
from binrpc._codec import MsgType, decode_values
from binrpc.server._accept import WARN_INTERVAL
from tests.loops import LOOPS, require_loop
from tests.server.helpers import binrpcd_command

FD_LIMIT = 40
CLIENTS = 80  # about twice what binrpcd can hold at once, under the listen backlog (128)
WARNING = re.compile(
    r"WARNING: unixs:\S+: cannot accept connections: Too many open files; "
    r"\d+ accept\(\) refused since the last warning"
)


class StderrLines:
    """The lines binrpcd writes on stderr, collected by a thread; ``wait_for`` blocks until
    one matches."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> None:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(pattern.search(line) for line in self.lines), timeout
            )
        assert found, "\n".join(self.lines[-20:])

    def join(self) -> None:
        self._thread.join(10)


def with_fd_limit(limit: int, argv: list[str]) -> list[str]:
    """``argv`` run with RLIMIT_NOFILE = ``limit`` (set in the child, before the exec)."""
    code = (
        "import os, resource, sys; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]),) * 2); "
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    return [sys.executable, "-c", code, str(limit), *argv]


@pytest.fixture(params=LOOPS)
def starved_daemon(
    request: pytest.FixtureRequest, workdir: str
) -> Iterator[tuple[str, tuple[subprocess.Popen[bytes], StderrLines]]]:
    loop: str = request.param
    require_loop(loop)
    path = f"{workdir}/ctl.sock"
    proc = subprocess.Popen(
        with_fd_limit(FD_LIMIT, binrpcd_command("--loop", loop, "--binrpc", f"unixs:{path}")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"listening on ")
        yield path, (proc, StderrLines(proc))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_at_the_fd_limit_clients_wait_then_are_served(
    starved_daemon: tuple[str, tuple[subprocess.Popen[bytes], StderrLines]],
) -> None:
    path, (proc, stderr) = starved_daemon
    started = time.monotonic()
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, bytes] = {}
    try:
        for index in range(CLIENTS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)  # into the listen backlog: accepted or not, it connects
            sock.sendall(encode_request("core.echo", [f"client {index}"], index))
            sock.setblocking(False)
            pending[sock] = b""
            sel.register(sock, selectors.EVENT_READ, index)
        # binrpcd runs out of descriptors before it has accepted them all
        stderr.wait_for(WARNING)
        answered = 0
        deadline = time.monotonic() + 120  # a hang guard only
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} clients never answered"
            for key, _ in sel.select(timeout=1):
                assert isinstance(key.fileobj, socket.socket)
                sock = key.fileobj
                chunk = sock.recv(4096)  # a reset here: a waiting client was dropped
                assert chunk, f"client {key.data} closed unanswered"
                pending[sock] += chunk
                packet = parse_packet(pending[sock])
                if packet is None:
                    continue
                assert (packet.type, packet.cookie) == (MsgType.REPLY, key.data)
                assert decode_values(packet.body) == [f"client {key.data}"]
                # served: closing it frees a descriptor of binrpcd for a waiting client
                sel.unregister(sock)
                sock.close()
                del pending[sock]
                answered += 1
        assert answered == CLIENTS
    finally:
        for sock in pending:
            sock.close()
        sel.close()
    elapsed = time.monotonic() - started
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 0
    stderr.join()
    assert not [line for line in stderr.lines if "Traceback" in line], stderr.lines[:20]
    warnings = [line for line in stderr.lines if "WARNING" in line]
    assert all(WARNING.search(line) for line in warnings), warnings
    # at most one line per WARN_INTERVAL (and the first one at once)
    assert len(warnings) <= 1 + elapsed / WARN_INTERVAL, (elapsed, warnings)
