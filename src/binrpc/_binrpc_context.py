"""The binrpc context: :class:`~binrpc._context.RpcContext` for one binrpc request, reading a
strict :class:`~binrpc.BodyReader` (scan, autoconversion) and building the reply with the ctl
module's size limits. No I/O here.

Version target: Kamailio **5.6.3** wherever HEAD differs (INT records are rejected for the
``f``/``l``/``j``/``L``/``J`` scan formats; method names end at their first NUL), except for
two deliberate fixes: printf output that does not fit ``binrpc_buffer_size`` with its NUL is
dropped (HEAD's rule; 5.6.3 adds it truncated with an embedded NUL), and fault texts are cut
to 254 characters so that they are always delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from ._binrpc_reply import (
    FMT_DOUBLE,
    FMT_INT,
    Buffer,
    Part,
    ReplyStruct,
    encode_name,
    encode_parts,
    encode_scalar,
    fault_packet,
)
from ._cnum import c_int_of_double, c_long_of_double, strict_int32, strtod_lenient
from ._codec import (
    T_ARRAY,
    T_AVP,
    T_BYTES,
    T_DOUBLE,
    T_INT,
    T_STR,
    T_STRUCT,
    TOK_STRUCT_START,
    TOK_VALUE,
    BodyReader,
    MsgType,
    encode_header,
    str_record,
)
from ._context import MISSING, RpcContext, ScanResult, ServerInfo
from ._errors import (
    E_BUG,
    E_END_OF_PACKET,
    E_MORE_DATA,
    E_TYPE,
    DecodeError,
    Fault,
    LocalProtocolError,
    binrpc_error_text,
)
from ._limits import DEFAULT_LIMITS, RpcLimits
from ._registry import MethodTable

__all__ = ["BinrpcContext"]

log = logging.getLogger("binrpc.server")

_U64: Final = 1 << 64

# record type -> the name ctl uses in "expected <name> type but ..." (spec 5.3)
_TYPE_NAMES: Final = {
    T_INT: "integer",
    T_STR: "string",
    T_DOUBLE: "float",
    T_STRUCT: "structure",
    T_ARRAY: "array",
    T_AVP: "structure member",
    T_BYTES: "bytes array",
    15: "any",
}


def _type_name(rtype: int | None) -> str:
    return _TYPE_NAMES.get(rtype, "<unknown/error>") if rtype is not None else "any"


_FMT_STR: Final = frozenset("sS")
_SCAN_TYPES: Final = {
    **dict.fromkeys(FMT_INT, T_INT),
    **dict.fromkeys(FMT_DOUBLE, T_DOUBLE),
    **dict.fromkeys(_FMT_STR, T_STR),
}
"""Scan format char -> the record type it reads."""
_FMT_SCAN: Final = frozenset(_SCAN_TYPES)
_ADD_CHARS: Final = frozenset("dutbfljLJsSy")


class _Overflow(Exception):
    pass


class _ScanError(Exception):
    """A failed value read: binrpc error code and the type name for the fault text."""

    def __init__(self, code: int, type_name: str) -> None:
        self.code = code
        self.type_name = type_name


class BinrpcContext(RpcContext):
    """:class:`RpcContext` for one binrpc request.

    Args:
        reader: strict reader positioned on the first parameter (from ``parse_request``).
        cookie: the request's cookie, echoed in the reply.
        sink: called exactly once with the whole reply or fault packet.
        limits: reply-size limits and autoconversion.
        max_reply_size: largest packet ``sink`` can carry (a datagram); a bigger reply is
            replaced by fault 500 instead of being lost. None: unlimited (streams).
        chunk_sink: if given, a reply holding a large BYTES or STR value (``LARGE_RECORD``
            bytes or more) goes here instead of ``sink``, as a list of buffers that make the
            packet when concatenated: the value itself is one of them, not copied.
    """

    __slots__ = (
        "_chunk_sink",
        "_deferred",
        "_limits",
        "_parts",
        "_reader",
        "_record_no",
        "_replied",
        "_sink",
        "_size",
        "connection",
        "cookie",
        "max_reply_size",
        "method",
        "registry",
        "server",
    )

    # made per request (the hot path): a record grouping the per-connection arguments would
    # cost an object per connection and an indirection per use; they are keyword-only
    def __init__(  # noqa: PLR0913
        self,
        reader: BodyReader,
        cookie: int,
        sink: Callable[[bytes], object],
        limits: RpcLimits = DEFAULT_LIMITS,
        *,
        method: str = "",
        registry: MethodTable | None = None,
        server: ServerInfo | None = None,
        connection: object | None = None,
        max_reply_size: int | None = None,
        chunk_sink: Callable[[list[Buffer]], object] | None = None,
    ) -> None:
        self._reader = reader
        self.cookie = cookie
        self._sink = sink
        self._chunk_sink = chunk_sink
        self._limits = limits
        self.method = method
        self.registry = registry
        self.server = server
        self.connection = connection
        self.max_reply_size = max_reply_size
        self._parts: list[Part] = []
        self._size = 0
        self._record_no = 0
        self._deferred: tuple[int, str] | None = None
        self._replied = False

    def set_sink(
        self,
        sink: Callable[[bytes], object],
        chunk_sink: Callable[[list[Buffer]], object] | None = None,
    ) -> None:
        """Send the reply, when it comes, to ``sink`` / ``chunk_sink`` instead."""
        self._sink = sink
        self._chunk_sink = chunk_sink

    # -- scanning ---------------------------------------------------------------------------
    def _read(self, ch: str, auto: bool) -> Any:
        """Read one value for scan char ``ch``; raises _ScanError.

        The record of the type asked for (the same with or without autoconversion) is read
        here; any other goes to :meth:`_read_converted`.
        """
        reader = self._reader
        want = _SCAN_TYPES[ch]
        rtype = reader.peek_type()
        if rtype != want:
            return self._read_converted(ch, want, rtype, auto)
        try:
            _, _, value = reader.next_token()
        except DecodeError as exc:
            raise _ScanError(exc.code, _TYPE_NAMES[want]) from None
        if want == T_STR:
            return value if ch == "S" else _cstr(value)  # type: ignore[arg-type]
        if want == T_INT:
            return value
        return value if ch == "f" else c_long_of_double(value)  # type: ignore[arg-type]

    def _read_converted(self, ch: str, want: int, rtype: int | None, auto: bool) -> Any:
        """Read a record of type ``rtype`` (not ``want``, None at the end) for scan char
        ``ch``: with ``auto``, read any record and convert it; raises _ScanError (the fault
        names the actual type)."""
        if not auto:
            raise _ScanError(E_END_OF_PACKET if rtype is None else E_TYPE, _TYPE_NAMES[want])
        try:
            kind, _, value = self._reader.next_token()
        except DecodeError as exc:
            raise _ScanError(
                exc.code, _type_name(rtype) if rtype is not None else _TYPE_NAMES[want]
            ) from None
        if kind != TOK_VALUE:
            # a struct/array start was consumed (and stays open), like ctl
            raise _ScanError(E_TYPE, "structure" if kind == TOK_STRUCT_START else "array")
        return _CONVERTERS[want](ch, rtype if rtype is not None else want, value)

    def scan(self, fmt: str) -> ScanResult:
        self._deferred = None
        values: list[Any] = []
        optional = False
        auto_next = False
        auto_all = self._limits.autoconversion
        reader = self._reader
        for ch in fmt:
            if ch == "*":
                optional = True
                continue
            if ch == ".":
                auto_next = True
                continue
            if ch in _FMT_SCAN:
                auto = auto_next or auto_all
                if reader.at_end():
                    # the usual end of a "*" loop: no exception raised and caught (1.5 us per
                    # scan; bench, Python 3.11); the codes _read would give
                    code = E_MORE_DATA if auto and reader.depth else E_END_OF_PACKET
                    type_name = _TYPE_NAMES[_SCAN_TYPES[ch]]
                else:
                    try:
                        values.append(self._read(ch, auto))
                    except _ScanError as err:
                        code, type_name = err.code, err.type_name
                    else:
                        self._record_no += 1
                        auto_next = False
                        continue
                k = len(values)
                if optional and (code == E_END_OF_PACKET or code == E_MORE_DATA):
                    return ScanResult(k, values)
                self._deferred = (
                    400,
                    f"error at parameter {self._record_no}: expected {type_name} type "
                    f"but {binrpc_error_text(code)}",
                )
                return ScanResult(-k, values)
            if ch == "{":
                self.fault(500, "internal server error, type 3 not supported")
            else:
                self.fault(500, "internal server error, invalid format char '%s'", ch)
            return ScanResult(-max(len(values), 1), values)
        return ScanResult(len(values), values)

    def read_param(self, kind: str, index: int) -> Any:
        reader = self._reader
        if reader.at_end() and reader.depth == 0:
            return MISSING
        auto = self._limits.autoconversion
        try:
            if kind == "int" or kind == "bool":
                value = self._read("d", auto)
                return bool(value) if kind == "bool" else value
            if kind == "str":
                return self._read("S", auto)
            if kind == "float":
                if reader.peek_type() == T_INT:  # like Kamailio HEAD: an INT is fine
                    try:
                        return float(reader.next_token()[2])  # type: ignore[arg-type]
                    except DecodeError as exc:
                        raise _ScanError(exc.code, "double") from None
                return self._read("f", auto)
            return self._read_record(kind)
        except _ScanError as err:
            raise Fault(
                400,
                f"error at parameter {index}: expected {err.type_name} type "
                f"but {binrpc_error_text(err.code)}",
            ) from None

    def _read_record(self, kind: str) -> Any:
        """Read a whole record for param kind ``bytes`` (BYTES or STR, as bytes), ``struct``,
        ``array`` or ``any``; raises _ScanError."""
        reader = self._reader
        rtype = reader.peek_type()
        if kind == "bytes":
            if rtype != T_BYTES and rtype != T_STR:
                raise _ScanError(E_TYPE, "bytes array")
            try:
                raw = reader.read_value()
            except DecodeError as exc:
                raise _ScanError(exc.code, "bytes array") from None
            return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        if kind == "struct" and rtype != T_STRUCT:
            raise _ScanError(E_TYPE, "structure")
        if kind == "array" and rtype != T_ARRAY:
            raise _ScanError(E_TYPE, "array")
        try:
            return reader.read_value()
        except DecodeError as exc:
            raise _ScanError(exc.code, _type_name(rtype)) from None

    # -- adding -----------------------------------------------------------------------------
    def _append_top(self, rec: Part, size: int, ch: str) -> None:
        if self._size + size > self._limits.max_body_size:
            raise _Overflow(ch)
        self._parts.append(rec)
        self._size += size

    def add(self, fmt: str, *values: Any) -> Any:
        handles: list[ReplyStruct] = []
        i = 0
        try:
            for ch in fmt:
                if ch == "{" or ch == "[":
                    handle = ReplyStruct()
                    self._append_top(handle, 2, ch)
                    handles.append(handle)
                    continue
                if ch not in _ADD_CHARS:
                    self.fault(500, "Internal server error: invalid formatting character '%s'", ch)
                    return -1
                try:
                    value = values[i]
                except IndexError:
                    raise LocalProtocolError(f"add({fmt!r}): too few values") from None
                i += 1
                rec = encode_scalar(ch, value)
                self._append_top(rec, len(rec), ch)
        except _Overflow as ov:
            self.fault(
                500,
                "Internal server error processing '%s': buffer too small (overflow) (-2)",
                ov.args[0],
            )
            return -1
        if handles:
            return handles[0] if len(handles) == 1 else tuple(handles)
        return 0

    def _struct_append(self, handle: ReplyStruct, rec: Part, size: int) -> bool:
        if handle.size + size > self._limits.struct_max_body_size:
            return False
        handle.parts.append(rec)
        handle.size += size
        return True

    def array_add(self, handle: Any, fmt: str, *values: Any) -> Any:
        if not isinstance(handle, ReplyStruct):
            return -1
        handles: list[ReplyStruct] = []
        i = 0
        for ch in fmt:
            if ch == "{" or ch == "[":
                sub = ReplyStruct()
                if not self._struct_append(handle, sub, 2):
                    return -1
                handles.append(sub)
                continue
            if i >= len(values):
                return -1
            value = values[i]
            i += 1
            try:
                rec = encode_scalar(ch, value)
            except (ValueError, LocalProtocolError):
                log.error("array_add: cannot add %r with format char %r", value, ch)
                return -1
            if not self._struct_append(handle, rec, len(rec)):
                return -1
        if handles:
            return handles[0] if len(handles) == 1 else tuple(handles)
        return 0

    def struct_add(self, handle: Any, fmt: str, *names_and_values: Any) -> Any:
        if not isinstance(handle, ReplyStruct):
            return -1
        args = names_and_values
        i = 0
        for ch in fmt:
            if i >= len(args):
                return -1
            name = args[i]
            i += 1
            if ch == "{" or ch == "[":
                name_rec = encode_name(name)
                sub = ReplyStruct()
                if handle.size + len(name_rec) + 2 > self._limits.struct_max_body_size:
                    return -1
                handle.parts.append(name_rec)
                handle.parts.append(sub)
                handle.size += len(name_rec) + 2
                return sub  # ctl stops processing this call here
            if i >= len(args):
                return -1
            value = args[i]
            i += 1
            try:
                value_rec = encode_scalar(ch, value)
                name_rec = encode_name(name)
            except (ValueError, LocalProtocolError):
                log.error("struct_add: cannot add %r with format char %r", value, ch)
                return -1
            rec = (
                name_rec + value_rec if type(value_rec) is bytes else value_rec.prefixed(name_rec)  # type: ignore[union-attr]
            )
            if not self._struct_append(handle, rec, len(rec)):
                return -1
        return 0

    def _printf(self, fmt: str, args: tuple[Any, ...]) -> str | None:
        text = fmt % args if args else fmt
        if len(text.encode("utf-8", "surrogateescape")) >= self._limits.buffer_size:
            return None
        return text

    def rpl_printf(self, fmt: str, *args: Any) -> int:
        text = self._printf(fmt, args)
        if text is None:
            return -1
        rec = str_record(text)
        if self._size + len(rec) > self._limits.max_body_size:
            return -1
        self._parts.append(rec)
        self._size += len(rec)
        return 0

    def struct_printf(self, handle: Any, name: str, fmt: str, *args: Any) -> int:
        if not isinstance(handle, ReplyStruct):
            return -1
        text = self._printf(fmt, args)
        if text is None:
            return -1
        rec = encode_name(name) + str_record(_cstr(text))
        return 0 if self._struct_append(handle, rec, len(rec)) else -1

    # -- sending ----------------------------------------------------------------------------
    @property
    def replied(self) -> bool:
        return self._replied

    def fault(self, code: int, fmt: str, *args: Any) -> None:
        if self._replied:
            log.debug("%s: fault after the reply was sent (ignored)", self.method)
            return
        text = fmt % args if args else fmt
        self._replied = True
        self._sink(fault_packet(code, text, self.cookie))

    def send(self) -> int:
        if self._replied:
            log.debug("%s: send after the reply was sent (ignored)", self.method)
            return -1
        self._replied = True
        # chunks only where nothing caps the packet's size (a datagram checks the whole)
        chunked = self._chunk_sink is not None and self.max_reply_size is None
        chunks: list[Buffer] | None = [] if chunked else None
        body = encode_parts(self._parts, bytearray(), chunks)
        if chunks:  # a large value: the header and buffers, the value's bytes not copied
            chunks.append(body)
            size = sum(len(chunk) for chunk in chunks)
            chunks[0] = encode_header(MsgType.REPLY, size, self.cookie) + chunks[0]
            self._chunk_sink(chunks)  # type: ignore[misc]
            return 0
        packet = encode_header(MsgType.REPLY, len(body), self.cookie) + body
        if self.max_reply_size is not None and len(packet) > self.max_reply_size:
            packet = fault_packet(
                500,
                f"Internal server error: reply too big for a datagram ({len(packet)} bytes)",
                self.cookie,
            )
        self._sink(packet)
        return 0

    def finish(self) -> None:
        if self._replied:
            return
        if not self._parts and self._deferred is not None:
            self.fault(*self._deferred)
        else:
            self.send()


def _cstr(value: str) -> str:
    """What a C string sees: the text up to the first NUL."""
    nul = value.find("\0")
    return value if nul < 0 else value[:nul]


def _convert_to_int(ch: str, actual: int, value: Any) -> int:
    """Autoconversion of a record of type ``actual`` for an int scan char."""
    if actual == T_INT:
        return value  # type: ignore[no-any-return]
    if actual == T_DOUBLE:
        return c_int_of_double(value)
    if actual == T_STR:
        parsed = strict_int32(_cstr(value))
        if parsed is not None:
            return parsed
    raise _ScanError(E_TYPE, _type_name(actual))


def _convert_to_double(ch: str, actual: int, value: Any) -> float | int:
    """Autoconversion for ``f`` (a float) or ``l j L J`` (the C long of the double)."""
    if actual == T_DOUBLE or actual == T_INT:
        number = float(value)
    elif actual == T_STR:
        parsed = strtod_lenient(_cstr(value))
        if parsed is None:
            raise _ScanError(E_TYPE, _type_name(actual))
        number = parsed
    else:
        raise _ScanError(E_TYPE, _type_name(actual))
    return number if ch == "f" else c_long_of_double(number)


def _convert_to_str(ch: str, actual: int, value: Any) -> str:
    """Autoconversion for ``s`` (up to the first NUL) or ``S``: an INT is its unsigned
    decimal text; a DOUBLE is ctl's internal error."""
    if actual == T_STR:
        return value if ch == "S" else _cstr(value)
    if actual == T_INT:
        return str(value % _U64)
    raise _ScanError(E_BUG if actual == T_DOUBLE else E_TYPE, _type_name(actual))


_CONVERTERS: Final[dict[int, Callable[[str, int, Any], Any]]] = {
    T_INT: _convert_to_int,
    T_DOUBLE: _convert_to_double,
    T_STR: _convert_to_str,
}
"""Wanted record type -> its autoconversion (scan char, actual record type, value)."""
