"""A blocking client for the ctl module's legacy FIFO text protocol (spec 8).

::

    from binrpc.client._fifo_client import FifoClient

    FifoClient("/tmp/kamailio_fifo").call("core.version")      # ["kamailio 5.6.3 ..."]
    code, reason, lines = FifoClient("udp:127.0.0.1:2050").request("core.echo", "a b", 7)

``call`` has the contract of ``Client.call``: the reply's values (its body lines, unescaped),
:class:`~binrpc.Fault` for a non-2xx status. ``request`` returns the raw
:class:`~binrpc.client.FifoReply` (status, reason, lines, bytes), whatever its status.

The address uses the syntax of ctl's ``fifo`` parameter (:func:`binrpc.parse_address` with
``"fifo"``): a path or a bare name is a FIFO file, ``host:port`` is UDP, ``tcp:``/``udp:``/
``unixs:``/``unixd:`` pick the socket.

How each transport is used (the protocol has no length field, so the end of a reply is
where the transport says it is):

* **FIFO file.** The client creates its own reply FIFO ``binrpc_<pid>_<random>`` (no dots)
  in ``reply_dir`` with mode 0600 and opens it for reading *before* it sends anything; it
  writes the request to the server's FIFO in one ``write()`` -- at most PIPE_BUF (4096)
  bytes, the size the kernel keeps atomic among concurrent writers, bigger requests are
  refused -- then reads the reply until the server closes the reply FIFO (EOF). The reply
  FIFO is always removed. Kamailio writes replies to ``/tmp/<name>`` only, so keep
  ``reply_dir="/tmp"`` (the default) for Kamailio; binrpcd follows its
  ``fifo_reply_dir``.
* **TCP / unix stream.** One connection per call: the request is sent, the client shuts
  down its sending side, and the reply ends when the server closes the connection. Both
  Kamailio and binrpcd answer what they have read and then close on that end-of-file, so
  no quiet-time guessing is needed.
* **UDP / unix datagram.** One request datagram, one reply datagram (for unix datagram the
  client binds a socket ``binrpc_<random>`` in ``reply_dir``, removed after the call).

``timeout`` bounds each whole call. Sockets are resolved, connected and bound by the binrpc
client's code (:func:`binrpc.client._sync.open_socket`), and every failure is the exception
:class:`~binrpc.client.Client` raises for it (``ResolveError``, ``ConnectError``,
``BindError``, ``SendError``, ``ReceiveError``, ``ConnectionClosed``, ``TransportTimeout``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import selectors
import socket
import stat
import time
from types import TracebackType
from typing import Any, Final

from .._address import Address
from .._errors import (
    ConnectError,
    ConnectionClosed,
    LocalProtocolError,
    TransportError,
    TransportTimeout,
)
from .._fifo_wire import PIPE_BUF, FifoReply, build_fifo_request, parse_fifo_reply
from ._config import ClientConfig
from ._core import argument_error
from ._errors import (
    FIFO_CREATE,
    FIFO_OPEN,
    FIFO_READ,
    FIFO_WRITE,
    RECEIVE,
    SEND,
    BindError,
    ReceiveError,
    SendError,
    timeout_error,
    transport_error,
)
from ._link import open_socket

__all__ = ["DEFAULT_FIFO_TIMEOUT", "DEFAULT_MAX_FIFO_REPLY", "FifoClient"]

DEFAULT_FIFO_TIMEOUT: Final = 5.0
"""Seconds a whole call may take."""
DEFAULT_MAX_FIFO_REPLY: Final = 16 << 20
"""Bytes of reply read at most over a FIFO file or a stream (a guard against a runaway peer;
datagram replies are limited by the datagram size)."""
_MAX_STREAM_REQUEST: Final = 65535
"""ctl reads each connection into a 65535-byte buffer and closes it when a request does not
fit (binrpcd: ``max_request_size``)."""
_MIN_SCANNED: Final = 6
"""ctl looks for the end of a request only once 6 bytes are buffered: ``:x:\\n\\n`` alone would
never be answered."""


def _unique_name() -> str:
    return f"binrpc_{os.getpid()}_{secrets.token_hex(6)}"


class FifoClient:
    """Calls RPCs over the FIFO text protocol. Every call is self-contained (no connection
    is kept), so one client may be used from several threads.

    Args:
        address: the server, in ctl ``fifo`` parameter syntax (see the module docstring).
        reply_dir: where reply FIFOs (and unix datagram reply sockets) are created.
        timeout: seconds per call (None: wait forever).
        max_reply_size: bytes of reply accepted over a FIFO file or a stream.

    Raises:
        AddressError: a bad address.
        TypeError, ValueError: an argument of the wrong type, a timeout or size out of range
            (as for :class:`~binrpc.client.Client`).
    """

    def __init__(
        self,
        address: str | Address,
        *,
        reply_dir: str = "/tmp",
        timeout: float | None = DEFAULT_FIFO_TIMEOUT,
        max_reply_size: int = DEFAULT_MAX_FIFO_REPLY,
    ) -> None:
        self.config = ClientConfig.fifo(
            address, timeout=timeout, max_reply_size=max_reply_size, reply_dir=reply_dir
        )

    @property
    def address(self) -> Address:
        return self.config.address

    @property
    def reply_dir(self) -> str:
        return self.config.reply_dir or "/tmp"

    @property
    def timeout(self) -> float | None:
        """Seconds per call (None: wait forever)."""
        return self.config.timeouts.read

    @property
    def max_reply_size(self) -> int:
        return self.config.max_reply_size

    def __repr__(self) -> str:
        return f"<FifoClient {self.address}>"

    def __enter__(self) -> FifoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    # -- API --------------------------------------------------------------------------------
    def call(self, method: str, *params: Any) -> list[str]:
        """Call ``method`` with ``params`` and return the reply's values: its body lines,
        unescaped (as ``Client.call`` returns a binrpc reply's values).

        Raises:
            Fault: the reply's status is not 2xx (``.code``, ``.message``: its status line).
            and everything :meth:`request` raises.
        """
        return self.request(method, *params).check().values()

    def request(self, method: str, *params: Any) -> FifoReply:
        """Call ``method`` with ``params`` (see :func:`binrpc._fifo_wire.format_param` for how
        values become lines) and return the raw reply, whatever its status
        (:meth:`FifoReply.check` turns a non-2xx status into :class:`~binrpc.Fault`).

        Raises:
            LocalProtocolError: a parameter that cannot be sent, or a request too big for the
                transport (> 4096 bytes for a FIFO file).
            ConnectError: the server FIFO/socket is missing or nobody reads it.
            TransportTimeout: no complete reply within ``timeout``.
            TransportError: other I/O errors; RemoteProtocolError: not a FIFO reply.
            TypeError: ``method`` is not a ``str``.
        """
        if not isinstance(method, str):
            raise argument_error("method", "a str", method)
        if self.address.proto == "fifo":
            name = _unique_name()
            data = build_fifo_request(method, params, name)
            raw = self._call_fifo(data, name)
        else:
            data = build_fifo_request(method, params)
            if len(data) < _MIN_SCANNED:
                data += b"\n"  # a blank line before the next request, which both servers skip
            send = self._call_stream if self.address.is_stream else self._call_datagram
            raw = send(data)
        return parse_fifo_reply(raw)

    # -- helpers ----------------------------------------------------------------------------
    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return max(0.0, deadline - time.monotonic())

    def _timed_out(self, what: str) -> TransportTimeout:
        return timeout_error(what, str(self.address), self.timeout)

    def _error(self, step: str, exc: OSError) -> TransportError:
        return transport_error(step, str(self.address), exc, self.timeout)

    # -- FIFO file --------------------------------------------------------------------------
    def _call_fifo(self, data: bytes, name: str) -> bytes:
        if len(data) > PIPE_BUF:
            raise LocalProtocolError(
                f"FIFO request of {len(data)} bytes: at most {PIPE_BUF} bytes can be written "
                "atomically to a FIFO (a bigger one could mix with other clients' requests)"
            )
        deadline = self._deadline()
        path = os.path.join(self.reply_dir, name)
        try:
            os.mkfifo(path, 0o600)
        except OSError as exc:
            # the reply FIFO is what a unixd reply socket is to the other transports
            err = transport_error(FIFO_CREATE, path, exc)
            assert isinstance(err, BindError)
            err.path = path
            raise err from None
        rfd = -1
        try:
            # open our end first: the server gives up on a reply FIFO nobody reads
            rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._write_request_fifo(data, deadline)
            return self._read_to_eof_fd(rfd, deadline)
        except OSError as exc:
            if isinstance(exc, TransportError):
                raise
            raise transport_error(FIFO_READ, path, exc, self.timeout) from None
        finally:
            if rfd >= 0:
                os.close(rfd)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _write_request_fifo(self, data: bytes, deadline: float | None) -> None:
        target = self.address.path
        try:
            wfd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise ConnectError(errno.ENXIO, f"no server is reading the FIFO {target}") from None
            raise transport_error(FIFO_OPEN, target, exc) from None
        try:
            if not stat.S_ISFIFO(os.fstat(wfd).st_mode):
                raise ConnectError(errno.EINVAL, f"{target} is not a FIFO")
            with selectors.DefaultSelector() as sel:
                sel.register(wfd, selectors.EVENT_WRITE)
                while True:
                    try:
                        # <= PIPE_BUF: all or nothing (EAGAIN while the pipe lacks room)
                        os.write(wfd, data)
                        return
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        raise SendError(
                            errno.EPIPE, f"cannot send to {target}: the server stopped reading"
                        ) from None
                    except OSError as exc:
                        raise transport_error(FIFO_WRITE, target, exc, self.timeout) from None
                    remaining = self._remaining(deadline)
                    if remaining == 0 or not sel.select(remaining):
                        raise self._timed_out("writing to")
        finally:
            os.close(wfd)

    def _read_to_eof_fd(self, fd: int, deadline: float | None) -> bytes:
        """Read the reply FIFO until the server closes it (EOF after some data)."""
        chunks: list[bytes] = []
        size = 0
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                remaining = self._remaining(deadline)
                if remaining == 0 or not sel.select(remaining):
                    raise self._timed_out("waiting for the reply from")
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.max_reply_size:
                        raise ReceiveError(
                            errno.EMSGSIZE,
                            f"reply from {self.address} exceeds {self.max_reply_size} bytes",
                        )
                    continue
                if chunks:
                    return b"".join(chunks)
                # EOF before any data: no writer yet (some systems report that as readable),
                # or a writer that left without writing; wait a little and look again
                time.sleep(0.01)

    # -- sockets ----------------------------------------------------------------------------
    def _open(self, deadline: float | None) -> tuple[Any, str | None]:
        """The connected socket (and the reply socket file to remove), as ``Client`` opens it."""
        return open_socket(
            self.address,
            connect_timeout=self._remaining(deadline),
            reply_dir=self.reply_dir if self.address.proto == "unixd" else None,
        )

    def _call_stream(self, data: bytes) -> bytes:
        if len(data) > _MAX_STREAM_REQUEST:
            raise LocalProtocolError(
                f"FIFO request of {len(data)} bytes: servers read at most "
                f"{_MAX_STREAM_REQUEST} bytes per request"
            )
        deadline = self._deadline()
        sock, _ = self._open(deadline)
        try:
            try:
                sock.settimeout(self._remaining(deadline))
                sock.sendall(data)
                # the reply ends where the server closes the connection, which it does once
                # it has answered everything before our end-of-file
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                raise self._error(SEND, exc) from None
            chunks: list[bytes] = []
            size = 0
            while True:
                sock.settimeout(self._remaining(deadline))
                try:
                    chunk = sock.recv(65536)
                except OSError as exc:
                    if chunks and exc.errno == errno.ECONNRESET:
                        break
                    raise self._error(RECEIVE, exc) from None
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_reply_size:
                    raise ReceiveError(
                        errno.EMSGSIZE,
                        f"reply from {self.address} exceeds {self.max_reply_size} bytes",
                    )
            if not chunks:
                raise ConnectionClosed(0, f"{self.address} closed the connection before replying")
            return b"".join(chunks)
        finally:
            sock.close()

    def _call_datagram(self, data: bytes) -> bytes:
        deadline = self._deadline()
        # a unix datagram server can only answer a bound client: open_socket binds one
        sock, bound = self._open(deadline)
        try:
            try:
                sock.send(data)  # too big for the transport: EMSGSIZE, as for Client
            except OSError as exc:
                raise self._error(SEND, exc) from None
            sock.settimeout(self._remaining(deadline))
            try:
                return bytes(sock.recv(1 << 17))
            except OSError as exc:
                raise self._error(RECEIVE, exc) from None
        finally:
            sock.close()
            if bound is not None:
                with contextlib.suppress(OSError):
                    os.unlink(bound)
