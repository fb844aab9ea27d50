"""The ctl module's legacy FIFO text protocol, its wire format, sans-I/O: framing, requests,
escapes, status lines, and the client side (requests out, replies in).

A request (spec 8.1)::

    :<method>:<reply_name>\\n
    <param line>\\n
    ...
    \\n                       <- an empty line ends the request

and its reply (spec 8.3)::

    <code> <reason>\\n
    <body>

The same text runs over a real FIFO (replies go to a reply FIFO named in the request) and over
UDP, TCP and unix sockets (replies go back to the sender). The RPCs are those of the binrpc
registry; :class:`~binrpc._fifo_context.FifoContext` runs them over parameter lines.

Where Kamailio 5.6.3's FIFO is broken we implement the intended behaviour (the full list is
in docs/fifo.md): reply bodies are not corrupted; ``*`` does not eat a line (so
``core.echo`` works); a CRLF line ending does not end the request (``\\r`` before ``\\n``
is dropped); struct members come out in the order they were added, nested structs where
they belong, and a line always ends with ``\\n``; the 64-bit formats (``l j L J``) and
``u`` work (so ``core.shmmem`` does); ``.`` (autoconversion) is accepted; an invalid first
line, or a datagram without the empty line, gets a ``400`` reply (ctl: a bogus ``200 OK``,
or silence); a NUL (``\\0``) in a string is kept and escaped back, for ``s`` too (binrpc,
like C, cuts an ``s`` string at its NUL).
Kept as in Kamailio: the escapes (``\\c`` and ``\\o`` mean ``:`` and ``,`` on input but are
written for ``,`` and ``:`` on output), negative integers printed as their unsigned 64-bit
value, ``rpl_printf`` text without a newline, ``fault`` replacing only the status line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from ._errors import Fault, LocalProtocolError, RemoteProtocolError
from ._values import Double, Struct

__all__ = [
    "DEFAULT_MAX_REQUEST_SIZE",
    "MAX_REASON",
    "PIPE_BUF",
    "FifoFramer",
    "FifoReply",
    "FifoRequest",
    "FifoRequestError",
    "FifoTooLarge",
    "build_fifo_request",
    "datagram_request",
    "escape",
    "escape_param",
    "format_param",
    "parse_fifo_reply",
    "parse_fifo_request",
    "render_status",
    "status_line",
    "unescape",
]

DEFAULT_MAX_REQUEST_SIZE: Final = 65535
"""Largest request buffered: the ctl module reads each FIFO and connection into a 65535-byte
buffer. Unlike ctl (whose FIFO is dead for good once that buffer fills without a request in
it), we discard the buffer and go on."""

PIPE_BUF: Final = 4096
"""Writes of at most this many bytes to a pipe are atomic (POSIX PIPE_BUF on Linux): a FIFO
request bigger than this can interleave with other clients' requests."""

MAX_REASON: Final = 1023
"""The status line's reason is cut here (ctl formats it into 1024 bytes)."""


class FifoRequestError(RemoteProtocolError):
    """A FIFO request whose first line is not ``:method:reply_name``."""


class FifoTooLarge(RemoteProtocolError):
    """More than the limit was buffered without a complete request (the buffer is dropped)."""


# --------------------------------------------------------------------------------------------
# escapes

_UNESCAPE: Final = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\0", "c": ":", "o": ","}
# replies use \o for ':' and \c for ',' -- the reverse of requests (Kamailio does so)
_UNESCAPE_REPLY: Final = {**_UNESCAPE, "c": ",", "o": ":"}
_ESCAPE_BASIC: Final = str.maketrans(
    {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "\0": "\\0"}
)
_ESCAPE_FULL: Final = str.maketrans(
    {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "\0": "\\0", ":": "\\o", ",": "\\c"}
)


def unescape(text: str, *, reply: bool = False) -> str:
    """Resolve a parameter line's escapes: ``\\\\ \\n \\r \\t \\0``, ``\\c`` -> ``:``,
    ``\\o`` -> ``,``. With ``reply``, the escapes of a reply line, where ``\\o`` is ``:``
    and ``\\c`` is ``,`` (see :func:`escape`).

    Raises:
        ValueError: any other character after a backslash, or a trailing backslash.
    """
    if "\\" not in text:
        return text
    table = _UNESCAPE_REPLY if reply else _UNESCAPE
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n or text[i + 1] not in table:
            raise ValueError(f"bad escape at offset {i}")
        out.append(table[text[i + 1]])
        i += 2
    return "".join(out)


def escape(text: str, *, full: bool = False) -> str:
    """Escape reply text: the basic set (LF CR TAB backslash NUL), and with ``full`` (struct
    names and values) ``:`` -> ``\\o`` and ``,`` -> ``\\c`` as Kamailio writes them."""
    return text.translate(_ESCAPE_FULL if full else _ESCAPE_BASIC)


_ESCAPE_PARAM_STRUCT: Final = str.maketrans(
    {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "\0": "\\0", ":": "\\c", ",": "\\o"}
)


def escape_param(text: str, *, struct: bool = False) -> str:
    """Escape request text (the inverse of :func:`unescape`): the basic set, and with
    ``struct`` (names and values of a struct line) ``:`` -> ``\\c`` and ``,`` -> ``\\o`` --
    the input meaning, the reverse of what :func:`escape` writes in replies."""
    return text.translate(_ESCAPE_PARAM_STRUCT if struct else _ESCAPE_BASIC)


# --------------------------------------------------------------------------------------------
# framing and parsing


class FifoFramer:
    """Cut a FIFO byte stream (a named pipe, a TCP or unix stream connection) into requests.

    A request ends at its first empty line (``\\n\\n`` or ``\\n\\r\\n``); blank lines before a
    request are skipped. The search resumes where the previous one stopped, so a request
    trickling in line by line costs linear time, not quadratic.

    Args:
        max_request_size: bytes buffered at most without a complete request; beyond it
            :meth:`next_request` raises :class:`FifoTooLarge` once and the buffer is dropped.
    """

    __slots__ = ("_buf", "_resume", "max_request_size")

    def __init__(self, max_request_size: int = DEFAULT_MAX_REQUEST_SIZE) -> None:
        self.max_request_size = max_request_size
        self._buf = bytearray()
        self._resume = 0  # every LF before this offset is known not to start an empty line

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def discard(self) -> int:
        """Drop whatever is buffered (an incomplete request); returns the bytes dropped."""
        size = len(self._buf)
        self._buf.clear()
        self._resume = 0
        return size

    def next_request(self) -> bytes | None:
        """The next whole request (without its empty line), or None while incomplete.

        Raises:
            FifoTooLarge: the buffer exceeded ``max_request_size`` without a request.
        """
        buf = self._buf
        start = _skip_blank_lines(buf)
        end = _find_blank_line(buf, max(start, self._resume))
        if end is None:
            if start:
                del buf[:start]
            # an LF in the last 2 bytes may still start "\n\n" / "\n\r\n": look again there
            self._resume = max(0, len(buf) - 2)
            if len(buf) > self.max_request_size:
                size = len(buf)
                buf.clear()
                self._resume = 0
                raise FifoTooLarge(f"{size} bytes without a complete FIFO request")
            return None
        request_end, consumed = end
        request = bytes(buf[start:request_end])
        del buf[:consumed]
        self._resume = 0
        return request


def datagram_request(data: bytes) -> bytes | None:
    """The request in one datagram, cut as :class:`FifoFramer` cuts a stream (blank lines
    before it skipped, what follows its empty line ignored), or None when the datagram has no
    empty line: a request cut short (a truncated datagram), never to be run."""
    start = _skip_blank_lines(data)
    end = _find_blank_line(data, start)
    return None if end is None else data[start : end[0]]


def _skip_blank_lines(buf: bytes | bytearray) -> int:
    """The offset of the first byte after the blank lines (LF, CR) ``buf`` starts with; a
    CR at the very end is not skipped (an LF may follow it)."""
    start = 0
    n = len(buf)
    while start < n and buf[start] in (0x0A, 0x0D):
        if buf[start] == 0x0D and start + 1 >= n:
            break
        start += 1
    return start


def _find_blank_line(buf: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """(end of the request's last line incl. its LF, end of the empty line) or None."""
    i = buf.find(b"\n", start)
    while i >= 0:
        j = i + 1
        if j < len(buf) and buf[j] == 0x0D:
            j += 1
        if j < len(buf) and buf[j] == 0x0A:
            return i + 1, j + 1
        i = buf.find(b"\n", i + 1)
    return None


@dataclass(frozen=True, slots=True)
class FifoRequest:
    """A parsed FIFO request.

    Attributes:
        method: the RPC name.
        reply_name: the reply FIFO's name ("" when none was given).
        params: the parameter lines, still escaped.
    """

    method: str
    reply_name: str
    params: tuple[str, ...]


def _lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def parse_fifo_request(data: bytes) -> FifoRequest:
    """Parse one request (the bytes :class:`FifoFramer` or :func:`datagram_request` returns).

    Parameter lines end at the first empty line; anything after it is ignored.

    Raises:
        FifoRequestError: the first line is not ``:method:reply_name`` (its message says why:
            the reply name may not contain ``.``, ``/`` or ``\\``).
    """
    lines = _lines(data)
    while lines and lines[0] == "":
        lines.pop(0)
    if not lines:
        raise FifoRequestError("empty request")
    first = lines[0]
    if len(first) < 3 or not first.startswith(":"):
        raise FifoRequestError("the first line must be :method:reply_name")
    second = first.find(":", 1)
    if second < 0:
        raise FifoRequestError("reply file separator ':' missing in the first line")
    method = first[1:second]
    reply = first[second + 1 :]
    if not method:
        raise FifoRequestError("empty method name")
    if any(c in reply for c in "./\\"):
        raise FifoRequestError(f"bad reply file name {reply!r} (no '.', '/' or '\\' allowed)")
    if "\0" in reply:
        raise FifoRequestError(f"bad reply file name {reply!r} (NUL)")
    params: list[str] = []
    for line in lines[1:]:
        if line == "":
            break
        params.append(line)
    return FifoRequest(method, reply, tuple(params))


def status_line(code: int, reason: str) -> str:
    """A reply's status line, with its LF (the reason escaped, cut at ``MAX_REASON``)."""
    return f"{code} {escape(reason[:MAX_REASON])}\n"


def render_status(code: int, reason: str) -> bytes:
    """A status line alone (for replies sent without running a method)."""
    return status_line(code, reason).encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------------------------
# the client side: requests out, replies in


def _scalar_text(value: Any, *, struct: bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Double):
        value = value.value
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        return escape_param(value, struct=struct)
    raise LocalProtocolError(
        f"a FIFO parameter cannot be a {type(value).__name__} "
        "(use str, int, float, bool, bytes, or a Struct/dict of those)"
    )


def format_param(value: Any) -> str:
    """One parameter line for ``value`` (without its LF).

    ``str`` (and ``bytes``, decoded as UTF-8) is escaped with the FIFO escapes; ``int``,
    ``float``, :class:`~binrpc.Double` and ``bool`` (``1``/``0``) are written as text (the
    server converts lines to what the RPC asks for); a :class:`~binrpc.Struct` or ``dict``
    becomes a struct line ``name:value,name:value`` with ``:`` and ``,`` escaped as ``\\c``
    and ``\\o``.

    Raises:
        LocalProtocolError: a value the FIFO protocol cannot carry: an empty string or struct
            (an empty line ends the request), a list, a nested struct, None.
    """
    if isinstance(value, Struct | dict):
        items = value.items()
        parts: list[str] = []
        for name, member in items:
            if isinstance(member, Struct | dict | list | tuple):
                raise LocalProtocolError("a FIFO struct line cannot hold a nested struct or list")
            parts.append(
                f"{escape_param('' if name is None else str(name), struct=True)}:"
                f"{_scalar_text(member, struct=True)}"
            )
        line = ",".join(parts)
    else:
        line = _scalar_text(value, struct=False)
    if line == "":
        raise LocalProtocolError(
            "an empty FIFO parameter cannot be sent: an empty line ends the request"
        )
    return line


def build_fifo_request(method: str, params: Iterable[Any] = (), reply_name: str = "") -> bytes:
    """The request text: ``:method:reply_name``, a line per parameter, an empty line.

    Raises:
        LocalProtocolError: a bad method or reply name, or a parameter :func:`format_param`
            refuses.
    """
    if not method or any(c in method for c in ":\n\r"):
        raise LocalProtocolError(f"bad FIFO method name {method!r}")
    if any(c in reply_name for c in "./\\:\n\r\0"):
        raise LocalProtocolError(f"bad reply FIFO name {reply_name!r}")
    lines = [f":{method}:{reply_name}", *(format_param(p) for p in params), "", ""]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class FifoReply:
    """A FIFO reply: ``code, reason, lines = reply`` works.

    Attributes:
        code: the status code (200 for success; a fault's code otherwise).
        reason: the status text (unescaped).
        lines: the body lines as sent, still escaped (a struct is one line
            ``name:value,...``); :meth:`values` unescapes them. A body that does not end
            with LF (``rpl_printf`` output) keeps its last, unterminated line.
        raw: the reply bytes as received.
    """

    code: int
    reason: str
    lines: tuple[str, ...]
    raw: bytes = b""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.code, self.reason, list(self.lines)))

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.code < 300

    def values(self) -> list[str]:
        """The body lines unescaped (a line with a bad escape is returned as is)."""
        out: list[str] = []
        for line in self.lines:
            try:
                out.append(unescape(line, reply=True))
            except ValueError:
                out.append(line)
        return out

    def check(self) -> FifoReply:
        """Return self for a 2xx status, else raise :class:`~binrpc.Fault` (code, reason)."""
        if not self.ok:
            raise Fault(self.code, self.reason)
        return self


def parse_fifo_reply(data: bytes) -> FifoReply:
    """Parse a whole reply: the status line ``<code> <reason>``, then the body lines.

    Raises:
        RemoteProtocolError: the first line is not a status line.
    """
    text = data.decode("utf-8", "surrogateescape")
    status, _, body = text.partition("\n")
    if status.endswith("\r"):
        status = status[:-1]
    code_text, _, reason = status.partition(" ")
    if not code_text.isdigit() or not code_text.isascii():
        raise RemoteProtocolError(f"not a FIFO reply: bad status line {status[:80]!r}")
    try:
        reason = unescape(reason, reply=True)
    except ValueError:
        pass
    lines = body.split("\n") if body else []
    if lines and lines[-1] == "":
        lines.pop()
    return FifoReply(int(code_text), reason, tuple(lines), bytes(data))
