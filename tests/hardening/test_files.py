"""Issue #7, part 3: files on disk. Socket and FIFO modes and owners exactly as configured;
a symlink, a regular file, a directory or another server's live socket at a configured path is
never followed, deleted or taken; files swapped in while we run are not removed at shutdown.

Tests run as root here, so chown to other ids works (skipped otherwise).
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from binrpc.server import ListenerError, ServerOptions, serve
from binrpc.server import _sockets as sockets_module

from .conftest import RawClient, ServerThread, assert_healthy

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
HAS_FIFO = "fifo" in ServerOptions.field_names()


def start_stat(*addresses: str, **options: Any) -> list[os.stat_result]:
    """Start a server, lstat every filesystem listener, stop it."""

    async def main() -> list[os.stat_result]:
        async with serve(None, *addresses, **options) as srv:
            return [os.lstat(os.path.abspath(a.path)) for a in srv.addresses if a.is_unix]

    return asyncio.run(main())


def start_fails(*addresses: str, **options: Any) -> str:
    with pytest.raises(ListenerError) as info:
        start_stat(*addresses, **options)
    return str(info.value)


def snapshot(path: str) -> tuple[Any, ...]:
    """What must not change: type, mode, owner, size, mtime, content (for regular files)."""
    st = os.lstat(path)
    content = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ino, content, link)


def kinds(workdir: str) -> list[str]:
    out = [f"unixs:{workdir}/s.sock", f"unixd:{workdir}/d.sock"]
    return out


# ---------------------------------------------------------------------------------------------
# modes and owners


@pytest.mark.parametrize("mode", [0o600, 0o660, 0o640, 0o666, 0o700, 0o777, 0o400, 0o2770])
def test_socket_modes_exactly_as_configured(workdir: str, mode: int) -> None:
    fifo = {"fifo": [f"{workdir}/f.fifo"]} if HAS_FIFO else {}
    sts = start_stat(*kinds(workdir), mode=mode, **fifo)
    assert [stat.S_IMODE(s.st_mode) for s in sts] == [mode] * len(sts)
    assert stat.S_ISSOCK(sts[0].st_mode) and stat.S_ISSOCK(sts[1].st_mode)
    if HAS_FIFO:
        assert stat.S_ISFIFO(sts[2].st_mode)


def test_mode_zero_leaves_sockets_as_created(workdir: str) -> None:
    umask = os.umask(0o022)
    try:
        sts = start_stat(*kinds(workdir), mode=0)
    finally:
        os.umask(umask)
    assert [stat.S_IMODE(s.st_mode) for s in sts] == [0o755, 0o755]


@root_only
@pytest.mark.parametrize(
    ("user", "group", "expected"),
    [
        (1, 1, (1, 1)),
        ("1", "1", (1, 1)),
        ("nobody", "nogroup", None),
        (65534, None, (65534, 0)),
        (None, 65534, (0, 65534)),
        ("daemon", 12345, None),
    ],
)
def test_owners_exactly_as_configured(
    workdir: str, user: Any, group: Any, expected: tuple[int, int] | None
) -> None:
    if expected is None:
        try:
            uid = pwd.getpwnam(user).pw_uid
            gid = grp.getgrnam(group).gr_gid if isinstance(group, str) else group
        except KeyError:
            pytest.skip(f"no user {user!r} / group {group!r} on this machine")
        expected = (uid, gid)
    fifo = {"fifo": [f"{workdir}/f.fifo"]} if HAS_FIFO else {}
    sts = start_stat(*kinds(workdir), user=user, group=group, mode=0o640, **fifo)
    assert [(s.st_uid, s.st_gid) for s in sts] == [expected] * len(sts)
    assert [stat.S_IMODE(s.st_mode) for s in sts] == [0o640] * len(sts)


# ---------------------------------------------------------------------------------------------
# what is at the path already


def _victims(workdir: str) -> dict[str, str]:
    """Things a symlink can point at; each is checked unchanged afterwards."""
    d = Path(workdir) / "victims"
    d.mkdir()
    (d / "file").write_text("keep me\n")
    os.chmod(d / "file", 0o644)
    (d / "dir").mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(d / "stale.sock"))
    stale.close()
    os.mkfifo(d / "fifo", 0o644)
    return {
        "file": str(d / "file"),
        "dir": str(d / "dir"),
        "stale-socket": str(d / "stale.sock"),
        "fifo": str(d / "fifo"),
        "dangling": str(d / "does-not-exist"),
    }


@pytest.mark.parametrize("proto", ["unixs", "unixd", "fifo"])
def test_symlink_at_the_path_is_never_followed(workdir: str, proto: str) -> None:
    if proto == "fifo" and not HAS_FIFO:
        pytest.skip("no FIFO listeners")
    victims = _victims(workdir)
    for name, target in victims.items():
        link = f"{workdir}/{proto}-{name}.link"
        os.symlink(target, link)
        before = {p: snapshot(p) for p in (link, target) if os.path.lexists(p)}
        if proto == "fifo":
            message = start_fails(fifo=[link], mode=0o666, user=1, group=1)
        else:
            message = start_fails(f"{proto}:{link}", mode=0o666, user=1, group=1)
        assert link in message
        after = {p: snapshot(p) for p in (link, target) if os.path.lexists(p)}
        assert after == before, f"{name}: something changed"
        assert os.path.lexists(target) == (name != "dangling")


@pytest.mark.parametrize("proto", ["unixs", "unixd", "fifo"])
def test_other_files_at_the_path_are_never_deleted(workdir: str, proto: str) -> None:
    if proto == "fifo" and not HAS_FIFO:
        pytest.skip("no FIFO listeners")
    victims = _victims(workdir)
    candidates = ["file", "dir"] + (["stale-socket"] if proto == "fifo" else ["fifo"])
    for name in candidates:
        path = victims[name]
        before = snapshot(path)
        if proto == "fifo":
            message = start_fails(fifo=[path], mode=0o666)
        else:
            message = start_fails(f"{proto}:{path}", mode=0o666)
        assert path in message
        assert snapshot(path) == before, name


def test_live_socket_of_another_server_is_never_taken(workdir: str) -> None:
    # our own server, and a foreign listener that is not binrpc at all
    ours = f"{workdir}/ours.sock"
    foreign = f"{workdir}/foreign.sock"
    fdgram = f"{workdir}/foreign.dgram"
    f1 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    f1.bind(foreign)
    f1.listen(1)
    f2 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    f2.bind(fdgram)
    try:
        with ServerThread(None, f"unixs:{ours}", f"unixd:{workdir}/ours.dgram"):
            for path, proto in ((ours, "unixs"), (foreign, "unixs"), (fdgram, "unixd"),
                                (f"{workdir}/ours.dgram", "unixd"), (ours, "unixd")):  # fmt: skip
                before = snapshot(path)
                message = start_fails(f"{proto}:{path}")
                assert path in message
                assert snapshot(path) == before
            assert_healthy(f"unixs:{ours}")
            assert_healthy(f"unixd:{workdir}/ours.dgram", workdir)
        # a foreign listener with a full backlog is alive too
        clients = []
        for _ in range(8):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(foreign)
            except BlockingIOError:
                c.close()
                break
            clients.append(c)
        assert foreign in start_fails(f"unixs:{foreign}")
        for c in clients:
            c.close()
    finally:
        f1.close()
        f2.close()
    assert os.path.exists(foreign) and os.path.exists(fdgram)


@pytest.mark.skipif(not HAS_FIFO, reason="no FIFO listeners")
def test_live_fifo_of_another_server_is_never_taken(workdir: str) -> None:
    path = f"{workdir}/live.fifo"
    os.mkfifo(path, 0o600)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        before = snapshot(path)
        assert path in start_fails(fifo=[path])
        assert snapshot(path) == before
    finally:
        os.close(reader)


def test_files_swapped_in_while_running_are_not_removed(workdir: str) -> None:
    """At shutdown only our own socket files are removed: a file or symlink that replaced one
    while the server ran stays, and so does its target."""
    s, d = f"{workdir}/s.sock", f"{workdir}/d.sock"
    victim = Path(workdir) / "victim"
    victim.write_text("keep")
    with ServerThread(None, f"unixs:{s}", f"unixd:{d}"):
        os.unlink(s)
        os.symlink(victim, s)
        os.unlink(d)
        Path(d).write_text("not a socket")
    assert os.path.islink(s) and victim.read_text() == "keep"
    assert Path(d).read_text() == "not a socket"


class _SwapAfterBind:
    """Stands in for ``os`` inside binrpc.server._sockets: the first successful stat or lstat
    of the socket path (right after bind) swaps the socket for a symlink to ``victim``, as an
    attacker who can write the socket's directory could between bind() and chmod()/chown()."""

    def __init__(self, path: str, victim: str) -> None:
        self._path = path
        self._victim = victim
        self._done = threading.Event()

    def _swap(self, path: Any) -> None:
        if path == self._path and not self._done.is_set():
            self._done.set()
            os.unlink(path)
            os.symlink(self._victim, path)

    def stat(self, path: Any, *args: Any, **kw: Any) -> os.stat_result:
        st = os.stat(path, *args, **kw)
        self._swap(path)
        return st

    def lstat(self, path: Any, *args: Any, **kw: Any) -> os.stat_result:
        st = os.lstat(path, *args, **kw)
        self._swap(path)
        return st

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@root_only
def test_chmod_chown_never_follow_a_symlink_swapped_in_after_bind(
    workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"{workdir}/s.sock"
    victim = Path(workdir) / "shadow"
    victim.write_text("secret")
    os.chmod(victim, 0o600)
    before = snapshot(str(victim))
    swapper = _SwapAfterBind(path, str(victim))
    monkeypatch.setattr(sockets_module, "os", swapper)
    with pytest.raises(ListenerError, match="no longer the socket"):
        start_stat(f"unixs:{path}", mode=0o666, user=1, group=1)
    monkeypatch.undo()
    assert swapper._done.is_set()  # the swap did happen
    after = snapshot(str(victim))
    assert after == before, (
        f"victim now mode {stat.S_IMODE(os.lstat(victim).st_mode):o} "
        f"owner {os.lstat(victim).st_uid}:{os.lstat(victim).st_gid}"
    )
    assert os.readlink(path) == str(victim)  # the symlink is not ours: left alone
    assert victim.read_text() == "secret"


def test_healthy_after_refusals(workdir: str) -> None:
    """A refused start leaves nothing behind: the same paths work for a proper server."""
    path = f"{workdir}/x.sock"
    Path(path).write_text("x")
    start_fails(f"unixs:{path}", f"unixs:{workdir}/ok.sock")
    assert not os.path.exists(f"{workdir}/ok.sock")
    os.unlink(path)
    with ServerThread(None, f"unixs:{path}"), RawClient(f"unixs:{path}") as c:
        assert c.call("core.echo", ["ok"]) == ("reply", ["ok"])
