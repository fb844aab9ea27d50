"""Reply FIFOs that are not what they should be: the server refuses them (or gives up on
them) without blocking anybody else, and never writes through a symlink or into a file.

Each case: a bad reply target, then another client over the same FIFO file must get its
answer within 2 s while the bad one is being dealt with.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from binrpc.server import _fifo_listener as fifo_listener

from .conftest import FifoServer, make_reply_fifo, read_fifo_to_eof, reply_name, write_fifo


def other_client_latency(server: FifoServer) -> float:
    """Seconds another FIFO client waits for its answer."""
    start = time.monotonic()
    reply = server.peer("fifo").ask(b":core.echo:{R}\nother\n\n", timeout=2.0)
    elapsed = time.monotonic() - start
    assert reply == b"200 OK\nother\n", reply
    return elapsed


def send_with_reply_to(server: FifoServer, name: str, method: bytes = b"core.version") -> None:
    write_fifo(server.fifo_path, b":" + method + b":" + name.encode() + b"\n\n")


@pytest.fixture
def elsewhere() -> Iterator[str]:
    """A directory outside the reply directory (what a symlink would point into)."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="binrpc-elsewhere-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_symlink_to_a_fifo_is_not_followed(fifo_server: FifoServer, elsewhere: str) -> None:
    target, fd = make_reply_fifo(elsewhere)  # a FIFO with a reader: would accept data
    name = reply_name()
    os.symlink(target, os.path.join(fifo_server.workdir, name))
    try:
        send_with_reply_to(fifo_server, name)
        assert other_client_latency(fifo_server) < 2.0
        assert read_fifo_to_eof(fd, 0.5) is None  # nothing came through the link
    finally:
        os.close(fd)


def test_symlink_to_a_regular_file_is_not_followed(fifo_server: FifoServer, elsewhere: str) -> None:
    target = os.path.join(elsewhere, "precious")
    with open(target, "w") as fh:
        fh.write("keep me")
    name = reply_name()
    os.symlink(target, os.path.join(fifo_server.workdir, name))
    send_with_reply_to(fifo_server, name)
    assert other_client_latency(fifo_server) < 2.0
    time.sleep(0.3)
    with open(target) as fh:
        assert fh.read() == "keep me"


def test_regular_file_is_untouched(fifo_server: FifoServer) -> None:
    name = reply_name()
    path = os.path.join(fifo_server.workdir, name)
    with open(path, "w") as fh:
        fh.write("keep me")
    before = os.stat(path)
    send_with_reply_to(fifo_server, name)
    assert other_client_latency(fifo_server) < 2.0
    time.sleep(0.3)
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with open(path) as fh:
        assert fh.read() == "keep me"


def test_hard_linked_fifo_is_refused(fifo_server: FifoServer) -> None:
    name = reply_name()
    path, fd = make_reply_fifo(fifo_server.workdir, name)
    os.link(path, path + "_twin")
    try:
        assert os.stat(path).st_nlink == 2
        send_with_reply_to(fifo_server, name)
        assert other_client_latency(fifo_server) < 2.0
        assert read_fifo_to_eof(fd, 0.5) is None
    finally:
        os.close(fd)


def test_missing_reply_fifo(fifo_server: FifoServer) -> None:
    name = reply_name()
    send_with_reply_to(fifo_server, name)
    assert other_client_latency(fifo_server) < 2.0
    assert not os.path.exists(os.path.join(fifo_server.workdir, name))  # not created


def test_a_directory_is_refused(fifo_server: FifoServer) -> None:
    name = reply_name()
    os.mkdir(os.path.join(fifo_server.workdir, name))
    send_with_reply_to(fifo_server, name)
    assert other_client_latency(fifo_server) < 2.0


class _Logged(logging.Handler):
    """Sets ``event`` when a record whose message contains ``text`` is logged."""

    def __init__(self, text: str, event: threading.Event) -> None:
        super().__init__()
        self.text, self.event = text, event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_reader_that_never_opens(fifo_server: FifoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # the server retries (4 x 80 ms) without blocking anybody meanwhile: with endless retries,
    # another client is answered while they go on, and a late reader still gets its reply
    name = reply_name()
    path = os.path.join(fifo_server.workdir, name)
    os.mkfifo(path, 0o600)
    monkeypatch.setattr(fifo_listener, "REPLY_OPEN_RETRIES", 1 << 30)
    send_with_reply_to(fifo_server, name)
    other_client_latency(fifo_server)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        late = read_fifo_to_eof(fd, 10.0)
        assert late is not None and late.startswith(b"200 OK\n"), late
    finally:
        os.close(fd)
    # with the real number of retries: given up (logged); a reader opening then gets nothing
    monkeypatch.undo()
    given_up = threading.Event()
    handler = _Logged(f"reply FIFO {path} has no reader", given_up)
    logging.getLogger("binrpc.server").addHandler(handler)
    try:
        send_with_reply_to(fifo_server, name)
        assert given_up.wait(10)
    finally:
        logging.getLogger("binrpc.server").removeHandler(handler)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert read_fifo_to_eof(fd, 0.3) is None
    finally:
        os.close(fd)


def test_reader_that_opens_late_within_the_retries(fifo_server: FifoServer) -> None:
    name = reply_name()
    path = os.path.join(fifo_server.workdir, name)
    os.mkfifo(path, 0o600)
    send_with_reply_to(fifo_server, name, b"core.echo")
    time.sleep(0.15)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert read_fifo_to_eof(fd, 1.0) == b"200 OK\n"
    finally:
        os.close(fd)


def test_reader_that_opens_but_never_reads_a_big_reply(fifo_server: FifoServer) -> None:
    # the reply (~490 KB) cannot fit the pipe: the server waits fifo_reply_timeout (1 s in
    # this fixture) without blocking others, then gives up and closes its end
    name = reply_name()
    _, fd = make_reply_fifo(fifo_server.workdir, name)
    try:
        write_fifo(fifo_server.fifo_path, f":t.big:{name}\n5000\n\n".encode())
        time.sleep(0.2)
        assert other_client_latency(fifo_server) < 2.0
        assert other_client_latency(fifo_server) < 2.0
        time.sleep(1.2)
        # the server has given up and closed its end: what is in the pipe, then EOF
        got = read_fifo_to_eof(fd, 2.0)
        assert got is not None
        assert got.startswith(b"200 OK\n0000000")
        assert 0 < len(got) < 490_000
    finally:
        os.close(fd)


def test_many_dead_readers_do_not_slow_the_server(fifo_server: FifoServer) -> None:
    for _ in range(20):
        name = reply_name()
        os.mkfifo(os.path.join(fifo_server.workdir, name), 0o600)
        send_with_reply_to(fifo_server, name)
    assert other_client_latency(fifo_server) < 1.0
    results: list[float] = []
    errors: list[BaseException] = []

    def ask(fn: Callable[[FifoServer], float]) -> None:
        try:
            results.append(fn(fifo_server))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(other_client_latency,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and len(results) == 5 and max(results) < 2.0


def test_default_reply_dir_is_tmp(workdir: str) -> None:
    from .conftest import Peer, ServerThread, fifo_addresses

    address = fifo_addresses(workdir)["fifo"]
    with ServerThread(None, fifo=(address,)) as st:
        assert st.server is not None and st.server.options.fifo_reply_dir == "/tmp"
        assert Peer("fifo", address, "/tmp").ask(b":core.echo:{R}\ntmp\n\n") == b"200 OK\ntmp\n"
        # a reply FIFO in another directory is not found there
        assert Peer("fifo", address, workdir).ask(b":core.echo:{R}\nx\n\n", timeout=0.6) is None
    assert stat.S_ISDIR(os.stat("/tmp").st_mode)
