"""kamcmd's reply rendering, byte for byte, and the ``--json`` rendering. No I/O here.

Everything works on raw reply bodies through :class:`binrpc.BodyReader`'s lenient token stream,
one record at a time, so that what was rendered before a malformed record is kept (kamcmd
prints it, then the parse error). Output is ``bytes``: strings are written as received.

* :func:`render_default` -- one record per line, TAB indentation (spec kamcmd 3.2, including
  the array-indent quirk); :func:`render_simple` (from ``_flat``) -- the same, fast, for
  flat replies;
* :class:`ReplyFormat` -- the ``-f`` language (spec 3.5): ``%v``, ``%%``, cycling, the
  empty-value tail. Deviation: kamcmd spins forever on any other ``%`` sequence (``%d``, a
  trailing ``%``); we print such a ``%`` literally;
* :func:`render_fault` -- ``error: `` + the fault body through ``"%v - %v\\n"`` (spec 3.3);
* :func:`hexdump` -- the ``-vvv`` dump; :func:`packet_line` -- the ``-vv`` line;
* :func:`to_json` -- reply values as JSON-ready data (see its docstring).
"""

from __future__ import annotations

from .._codec import (
    TOK_ARRAY_END,
    TOK_ARRAY_START,
    TOK_STRUCT_END,
    TOK_STRUCT_START,
    BodyReader,
)
from .._errors import DecodeError
from .._frozen import Frozen
from .._values import Struct
from ._flat import render_simple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, Final

    from .._values import Value

__all__ = [
    "FAULT_FORMAT",
    "RecordError",
    "Rendered",
    "ReplyFormat",
    "hexdump",
    "packet_line",
    "render_default",
    "render_fault",
    "render_simple",
    "to_json",
    "token_bytes",
    "unescape_format",
]

FAULT_FORMAT: Final = b"%v - %v\n"


class RecordError(Frozen):
    """A record that could not be decoded: kamcmd's
    ``ERROR:: while parsing the record <n>, @<offset>: <byte> : <text>``."""

    __match_args__ = ("index", "offset", "byte", "code", "text")
    __slots__ = __match_args__
    index: int
    offset: int
    byte: int
    code: int
    text: str

    def __init__(self, index: int, offset: int, byte: int, code: int, text: str) -> None:
        super().__init__(index, offset, byte, code, text)

    def message(self) -> str:
        return (
            f"ERROR:: while parsing the record {self.index}, @{self.offset}: "
            f"{self.byte:02x} : {self.text}"
        )


class Rendered(Frozen):
    """Output bytes for stdout, and the parse error that stopped the rendering (if any)."""

    __match_args__ = ("out", "error")
    __slots__ = __match_args__
    out: bytes
    error: RecordError | None

    def __init__(self, out: bytes, error: RecordError | None = None) -> None:
        super().__init__(out, error)


def _text(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    nul = raw.find(b"\0")
    return raw if nul < 0 else raw[:nul]  # printed with %s: stops at a NUL


def _scalar(value: object) -> bytes:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes):
        nul = value.find(b"\0")
        return value if nul < 0 else value[:nul]
    if isinstance(value, float):
        if value.is_integer():
            return b"%d" % int(value)
        return b"%f" % value
    if isinstance(value, int):
        return b"%d" % value
    return str(value).encode()


def token_bytes(kind: int, name: str | None, value: object) -> bytes:
    """One record as kamcmd prints it, without indentation or newline."""
    if kind == TOK_STRUCT_START:
        tok = b"{"
    elif kind == TOK_STRUCT_END:
        tok = b"}"
    elif kind == TOK_ARRAY_START:
        tok = b"["
    elif kind == TOK_ARRAY_END:
        tok = b"]"
    else:
        tok = _scalar(value)
    if name is not None:
        return _text(name) + b": " + tok
    return tok


def _name_record_size(body: bytes, pos: int) -> int:
    """Bytes taken by the member-name record at ``pos``."""
    tag = body[pos]
    if tag & 0x80:
        nlen = (tag >> 4) & 7
        return 1 + nlen + int.from_bytes(body[pos + 1 : pos + 1 + nlen], "big")
    return 1 + (tag >> 4)


class _Records:
    """kamcmd's view of a reply body: records one by one, with its error report.

    kamcmd's parse offset does not count member-name records (it only advances by the bytes of
    the values), so ``@<offset>`` in its error message is the body offset minus the names read
    so far; we reproduce that.
    """

    __slots__ = ("body", "error", "index", "names", "reader")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.reader = BodyReader(body, strict=False)
        self.index = 0
        self.names = 0
        self.error: RecordError | None = None

    def more(self) -> bool:
        return self.error is None and (not self.reader.at_end() or self.reader.depth > 0)

    def next(self) -> tuple[int, str | None, object, int] | None:
        """The next record (kind, name, value, depth after it), or None after an error."""
        reader = self.reader
        offset = reader.pos
        try:
            kind, name, value = reader.next_token()
        except DecodeError as exc:
            byte = self.body[offset] if offset < len(self.body) else 0
            self.error = RecordError(self.index, offset - self.names, byte, exc.code, exc.text)
            return None
        if name is not None:
            self.names += _name_record_size(self.body, offset)
        self.index += 1
        return kind, name, value, reader.depth


def render_default(body: bytes) -> Rendered:
    """kamcmd's default rendering of a reply body (spec kamcmd 3.2)."""
    out = bytearray()
    records = _Records(body)
    while records.more():
        rec = records.next()
        if rec is None:
            break
        kind, name, value, depth = rec
        indent = depth - 1 if kind == TOK_STRUCT_START else depth
        out += b"\t" * indent
        out += token_bytes(kind, name, value)
        out += b"\n"
    return Rendered(bytes(out), records.error)


def unescape_format(text: str | bytes) -> bytes:
    """kamcmd's ``-f`` preprocessing: ``\\n \\r \\t \\\\`` become LF, CR, TAB, backslash; any
    other backslash sequence is kept as written."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    out = bytearray()
    i = 0
    n = len(raw)
    table = {0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09, 0x5C: 0x5C}
    while i < n:
        c = raw[i]
        if c == 0x5C and i + 1 < n and raw[i + 1] in table:
            out.append(table[raw[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


_V: Final = 1
_PCT: Final = 2
_END: Final = 3


class ReplyFormat:
    """A compiled ``-f`` format (already unescaped, see :func:`unescape_format`).

    Rendering follows kamcmd's consumption algorithm exactly (spec kamcmd 3.5), except that a
    ``%`` not followed by ``v`` or ``%`` is printed literally instead of hanging.
    """

    __slots__ = ("fmt",)

    def __init__(self, fmt: bytes) -> None:
        self.fmt = fmt

    def _scan(self, pos: int) -> tuple[bytes, int, int]:
        """Literal text from ``pos`` up to the next ``%v``/``%%``/end; (text, kind, new pos)."""
        fmt = self.fmt
        start = pos
        while True:
            i = fmt.find(b"%", pos)
            if i < 0:
                return fmt[start:], _END, len(fmt)
            nxt = fmt[i + 1 : i + 2]
            if nxt == b"v":
                return fmt[start:i], _V, i + 2
            if nxt == b"%":
                return fmt[start:i], _PCT, i + 2
            pos = i + 1  # a lone '%' (kamcmd hangs here): keep it as text

    def tail(self, pos: int) -> bytes:
        """``fmt[pos:]`` with ``%v`` printed empty and ``%%`` as ``%``."""
        out = bytearray()
        n = len(self.fmt)
        while pos < n:
            text, kind, pos = self._scan(pos)
            out += text
            if kind == _PCT:
                out += b"%"
        return bytes(out)

    def render(self, body: bytes) -> Rendered:
        """Render a whole reply (or fault) body through the format."""
        out = bytearray()
        records = _Records(body)
        fmt_len = len(self.fmt)
        pos = 0
        seen_v = False
        while records.more():
            # kamcmd prints the format text up to the next %v before it parses the record
            while True:
                if pos == fmt_len:
                    pos = 0
                text, found, pos = self._scan(pos)
                out += text
                if found == _PCT:
                    out += b"%"
                elif found == _V:
                    seen_v = True
                    break
                if not (pos < fmt_len or seen_v):
                    break
            rec = records.next()
            if rec is None:
                return Rendered(bytes(out), records.error)
            kind, name, value, _depth = rec
            out += token_bytes(kind, name, value)
        if pos < fmt_len:
            out += self.tail(pos)
        return Rendered(bytes(out))


_FAULT = ReplyFormat(FAULT_FORMAT)


def render_fault(body: bytes) -> Rendered:
    """A fault as kamcmd prints it: ``error: `` then the body through ``"%v - %v\\n"``."""
    r = _FAULT.render(body)
    return Rendered(b"error: " + r.out, r.error)


def packet_line(msg_type: int, body_len: int, cookie: int) -> bytes:
    """The ``-vv`` line printed before a reply is rendered."""
    return b"new packet: type %02x, len %d, cookie %02x\n" % (msg_type, body_len, cookie)


def hexdump(chunk: bytes, offset: int) -> bytes:
    """The ``-vvv`` dump of one read: header line, then 16 bytes per line with ASCII.

    As kamcmd (observed): when the read's length is a multiple of 16, its last line has no
    ASCII column, only the hex bytes and the separating space.
    """
    size = len(chunk)
    out = bytearray(b"received %d bytes in reply (@offset %d):\n" % (size, offset))
    last = size - 16 if size % 16 == 0 else -1  # the line printed without its ASCII column
    for start in range(0, size, 16):
        row = chunk[start : start + 16]
        out += b"".join(b"%02x " % b for b in row)
        out += b"   " * (16 - len(row))
        out += b" "
        if start != last:
            out += bytes(b if 0x20 <= b < 0x7F else 0x2E for b in row)
        out += b"\n"
    return bytes(out)


# --------------------------------------------------------------------------------------------
# JSON


def _json_text(raw: str | bytes) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "surrogateescape")
    return raw


def to_json(value: Value) -> Any:
    """A reply value as JSON-ready data, the same shape whatever the content:

    * int, float -> number; str -> string; bytes -> string (UTF-8; invalid bytes as ``\\udcXX``);
    * a :class:`Struct` -> an **object whose values are lists**: every member, in order, under
      its name (``{"uptime": [7]}``; ``dispatcher.list`` keeps all its ``SET`` members). The
      unnamed values of the ctl module's "arrays" (structs of unnamed values) go under ``""``;
    * a binrpc array -> a JSON array.
    """
    if isinstance(value, Struct):
        obj: dict[str, list[Any]] = {}
        for name, member in value.items():
            obj.setdefault("" if name is None else name, []).append(to_json(member))
        return obj
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, str | bytes):
        return _json_text(value)
    return value
