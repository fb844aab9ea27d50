"""Create, secure and remove listening sockets. Blocking calls, used at start-up only."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass

from .._address import Address
from .._errors import ListenerError

__all__ = [
    "ListenerError",
    "OpenedFifo",
    "OpenedSocket",
    "open_fifo",
    "open_socket",
    "remove_fifo_file",
    "remove_socket_file",
    "resolve_ids",
]

_UNIX_DGRAM_SNDBUF = 1 << 18
"""Unix datagram replies up to 64 KiB must fit the send buffer in one piece."""


@dataclass(frozen=True, slots=True)
class OpenedSocket:
    """A bound socket and, for unix sockets, the identity of the file we created."""

    sock: socket.socket
    address: Address
    file_id: tuple[int, int] | None = None  # (st_dev, st_ino)


MAX_ID = 2**32 - 2
"""Largest uid/gid: ``(uid_t)-1`` (2**32 - 1) means "leave unchanged" to chown."""


def _resolve_id(value: str | int, kind: str, lookup: Callable[[str], int]) -> int:
    if isinstance(value, bool):  # `user = true` in TOML is not uid 1
        raise ListenerError(f"bad {kind} {value!r}: expected a name or an id")
    if isinstance(value, int):
        number = value
    else:
        text = str(value)
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()):
            try:
                return lookup(text)
            except (KeyError, ValueError):  # ValueError: a NUL in the name
                raise ListenerError(f"unknown {kind} {value!r}") from None
        number = int(text)
    if not 0 <= number <= MAX_ID:
        raise ListenerError(f"bad {kind} id {value!r}: expected 0 to {MAX_ID}")
    return number


def resolve_ids(user: str | int | None, group: str | int | None) -> tuple[int, int]:
    """User/group names or ids -> (uid, gid), -1 for "leave unchanged".

    Raises:
        ListenerError: an unknown user or group name, an id outside 0..2**32 - 2, a bool.
    """
    uid = gid = -1
    if user is not None and user != "":
        uid = _resolve_id(user, "user", lambda name: pwd.getpwnam(name).pw_uid)
    if group is not None and group != "":
        gid = _resolve_id(group, "group", lambda name: grp.getgrnam(name).gr_gid)
    return uid, gid


def _alive(path: str) -> bool:
    """Does a live socket answer at ``path``? (stream first, then datagram)"""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError as exc:
                if exc.errno == errno.EPROTOTYPE:
                    continue  # a socket of the other kind: try that one
                # EAGAIN: the backlog is full, so somebody is listening
                return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
            return True
    return False


def _prepare_unix_path(address: Address) -> None:
    _prepare_path(
        address,
        address.path,
        is_ours=stat.S_ISSOCK,
        kind="a socket",
        in_use=_alive,
        use="listening on",
    )


def _prepare_path(
    address: Address,
    path: str,
    *,
    is_ours: Callable[[int], bool],
    kind: str,
    in_use: Callable[[str], bool],
    use: str,
) -> None:
    """Make ``path`` free for a new socket or FIFO: remove a stale one left by a dead server;
    refuse (ListenerError) a live one, or anything else at the path (ctl unlinks whatever is
    there; we never delete a file that is not of our kind)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenerError(f"{address}: cannot check {path}: {exc.strerror}") from None
    if not is_ours(st.st_mode):
        raise ListenerError(f"{address}: {path} exists and is not {kind}; not removing it")
    if in_use(path):
        raise ListenerError(f"{address}: another server is {use} {path}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # stale: left by a dead server


def _inet_family(address: Address, kind: int) -> tuple[int, tuple[object, ...]]:
    host = address.bind_host
    try:
        infos = socket.getaddrinfo(host, address.port, 0, kind, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenerError(f"{address}: cannot resolve {address.host!r}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _same_file(path: str, file_id: tuple[int, int]) -> bool:
    st = os.lstat(path)
    return (st.st_dev, st.st_ino) == file_id


def _set_mode_owner(
    address: Address, file_id: tuple[int, int], mode: int, uid: int, gid: int
) -> None:
    """chmod/chown the socket file that bind() just created, never through a path that could
    have been swapped for a symlink meanwhile (whoever can write the directory could): the
    path is opened O_PATH|O_NOFOLLOW, checked to be our single-link socket (same st_dev and
    st_ino as right after bind), and changed through ``/proc/self/fd/N``, which names that
    inode (fchmod/fchown refuse O_PATH descriptors).

    Raises:
        ListenerError: the path is no longer our socket (nothing is changed), or chmod/chown
            failed.
    """
    path = address.path
    if not mode and uid == -1 and gid == -1:
        return
    if not 0 <= mode <= 0o7777:  # chmod would mask it: -1 is 07777
        raise ListenerError(f"{address}: cannot set mode {mode:o} of {path}: not 0 to 7777")
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ListenerError(f"{address}: cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISSOCK(st.st_mode) or st.st_nlink != 1 or (st.st_dev, st.st_ino) != file_id:
            raise ListenerError(
                f"{address}: {path} is no longer the socket just bound (replaced?); "
                "not changing its mode/owner"
            )
        target = f"/proc/self/fd/{fd}"
        if mode:
            os.chmod(target, mode)
        if uid != -1 or gid != -1:
            os.chown(target, uid, gid)
    except ListenerError:
        raise
    except (OSError, OverflowError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, FileNotFoundError):
            reason += " (is /proc mounted?)"
        raise ListenerError(
            f"{address}: cannot set mode {mode:o}/owner {uid}:{gid} of {path}: {reason}"
        ) from None
    finally:
        os.close(fd)


def open_socket(address: Address, mode: int, uid: int, gid: int) -> OpenedSocket:
    """Create and bind the socket for ``address`` (unixs, unixd, udp, tcp); streams are not
    yet listening (asyncio does that).

    Raises:
        ListenerError: the socket cannot be created, bound, chmod-ed or chown-ed.
    """
    proto = address.proto
    if proto in ("unixs", "unixd"):
        kind = socket.SOCK_STREAM if proto == "unixs" else socket.SOCK_DGRAM
        _prepare_unix_path(address)
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            if kind == socket.SOCK_DGRAM:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _UNIX_DGRAM_SNDBUF)
            sock.bind(address.path)
            st = os.lstat(address.path)
            file_id = (st.st_dev, st.st_ino)
            try:
                _set_mode_owner(address, file_id, mode, uid, gid)
            except ListenerError:
                with contextlib.suppress(OSError):
                    if _same_file(address.path, file_id):
                        os.unlink(address.path)
                raise
            sock.setblocking(False)
        except ListenerError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise ListenerError(f"{address}: cannot bind: {exc.strerror or exc}") from None
        return OpenedSocket(sock, address, file_id)
    if proto in ("udp", "tcp", "tls"):
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        family, sockaddr = _inet_family(address, kind)
        sock = socket.socket(family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ListenerError(f"{address}: cannot bind: {exc.strerror or exc}") from None
        return OpenedSocket(sock, address)
    raise ListenerError(f"{address}: {proto} listeners are not supported")


def remove_socket_file(opened: OpenedSocket) -> None:
    """Unlink a unix socket file if it is still the one we created."""
    if opened.file_id is None:
        return
    path = opened.address.path
    try:
        st = os.lstat(path)
    except OSError:
        return
    if (st.st_dev, st.st_ino) == opened.file_id:
        with contextlib.suppress(OSError):
            os.unlink(path)


# --------------------------------------------------------------------------------------------
# FIFO files (the ctl ``fifo`` parameter's ``fifo:`` listeners)


@dataclass(frozen=True, slots=True)
class OpenedFifo:
    """A FIFO file we created: its read end (non-blocking) and a write end we keep open so
    that the reader never sees EOF when the last client closes (as ctl does).

    Attributes:
        address: the address as configured (``ctl.listen`` shows its path as written).
        path: the absolute path (a relative FIFO name resolves against the working directory
            at start-up, like ctl's; we remember where it went).
        file_id: (st_dev, st_ino) of the FIFO, so that only our own file is removed.
    """

    address: Address
    path: str
    rfd: int
    wfd: int
    file_id: tuple[int, int]


def _fifo_has_reader(path: str) -> bool:
    """Is some process reading the FIFO at ``path`` (a live server)?"""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # ENXIO: nobody reads it
    os.close(fd)
    return True


def _prepare_fifo_path(address: Address, path: str) -> None:
    _prepare_path(
        address,
        path,
        is_ours=stat.S_ISFIFO,
        kind="a FIFO",
        in_use=_fifo_has_reader,
        use="reading the FIFO",
    )


def open_fifo(address: Address, mode: int, uid: int, gid: int) -> OpenedFifo:
    """Create the FIFO file of a ``fifo:`` listener and open both of its ends.

    A stale FIFO at the path (nobody reading it) is replaced; anything that is not a FIFO
    (a regular file, a directory, a socket, a symlink ...) is left alone and refused, and so
    is a FIFO that a live server reads. The FIFO gets ``mode`` (0600 when ``mode`` is 0) and,
    if either is set, the owner ``uid``/``gid``, through the opened descriptor (never through
    a path that could have been swapped for a symlink).

    Raises:
        ListenerError: the FIFO cannot be created, opened, chmod-ed or chown-ed.
    """
    path = os.path.abspath(address.path)
    _prepare_fifo_path(address, path)
    perms = mode if mode else 0o600
    try:
        os.mkfifo(path, perms)
        created = os.lstat(path)
    except OSError as exc:
        raise ListenerError(f"{address}: cannot create the FIFO {path}: {exc.strerror}") from None
    file_id = (created.st_dev, created.st_ino)
    rfd = wfd = -1
    try:
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        st = os.fstat(rfd)
        if not stat.S_ISFIFO(st.st_mode) or (st.st_dev, st.st_ino) != file_id:
            raise ListenerError(f"{address}: {path} was replaced while being created")
        os.fchmod(rfd, perms)
        if uid != -1 or gid != -1:
            os.fchown(rfd, uid, gid)
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        wst = os.fstat(wfd)
        if (wst.st_dev, wst.st_ino) != file_id:
            raise ListenerError(f"{address}: {path} was replaced while being created")
    except BaseException as exc:
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
        with contextlib.suppress(OSError):
            cur = os.lstat(path)
            if (cur.st_dev, cur.st_ino) == file_id:
                os.unlink(path)
        if isinstance(exc, OSError) and not isinstance(exc, ListenerError):
            raise ListenerError(
                f"{address}: cannot open/set mode/owner of the FIFO {path}: {exc.strerror}"
            ) from None
        raise
    return OpenedFifo(address, path, rfd, wfd, file_id)


def remove_fifo_file(opened: OpenedFifo) -> None:
    """Unlink a listener's FIFO file if it is still the one we created."""
    try:
        st = os.lstat(opened.path)
    except OSError:
        return
    if (st.st_dev, st.st_ino) == opened.file_id:
        with contextlib.suppress(OSError):
            os.unlink(opened.path)
