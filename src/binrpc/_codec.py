"""binrpc packets and records <-> Python values. No I/O here.

Wire format (see the project spec, sections 1-3): a header ``a1 <type|LL|CC> <len> <cookie>``
with big-endian, minimally sized length and cookie fields, then a body of records. Each record
starts with a tag byte: high nibble = size (bit 3 set: that many length bytes follow, except for
DOUBLE whose whole nibble is its byte count), low nibble = type.

Decoding is total: any byte string either decodes or raises :class:`DecodeError` (whose
``code`` is the binrpc error number Kamailio would report). Limits (nesting depth) are
parameters.
"""

from __future__ import annotations

import math

# _collections_abc is what collections.abc re-exports; it is loaded at interpreter start-up,
# while importing collections.abc costs a few milliseconds (see _frozen's docstring)
from _collections_abc import Mapping

from ._errors import (
    E_BAD_RECORD,
    E_CORRUPTED,
    E_END_OF_PACKET,
    E_MORE_DATA,
    E_TYPE,
    DecodeError,
    LocalProtocolError,
)
from ._frozen import Frozen
from ._values import Double, Struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any, Final

    from ._values import Value

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAGIC_VERSION",
    "MAX_HEADER_SIZE",
    "TOK_ARRAY_END",
    "TOK_ARRAY_START",
    "TOK_STRUCT_END",
    "TOK_STRUCT_START",
    "TOK_VALUE",
    "T_ARRAY",
    "T_AVP",
    "T_BYTES",
    "T_DOUBLE",
    "T_INT",
    "T_STR",
    "T_STRUCT",
    "BodyReader",
    "Header",
    "MsgType",
    "Packet",
    "decode_fault",
    "decode_values",
    "encode_fault",
    "encode_header",
    "encode_packet",
    "encode_reply",
    "encode_request",
    "encode_text",
    "encode_values",
    "header_fields",
    "int_record",
    "parse_header",
    "parse_packet",
    "parse_request",
    "record_head",
    "saturated_double_record",
    "str_record",
]

MAGIC_VERSION: Final = 0xA1
"""First byte of every packet: magic 0xA, version 1."""

MAX_HEADER_SIZE: Final = 10
"""2 fixed bytes + up to 4 length bytes + up to 4 cookie bytes."""

DEFAULT_MAX_DEPTH: Final = 256
"""Deepest struct/array nesting the decoder accepts. Kamailio has no limit; no real RPC nests
more than a handful of levels, and a bound keeps hostile input from costing memory."""

# record types (low nibble of the tag)
T_INT: Final = 0
T_STR: Final = 1
T_DOUBLE: Final = 2
T_STRUCT: Final = 3
T_ARRAY: Final = 4
T_AVP: Final = 5
T_BYTES: Final = 6

# token kinds produced by BodyReader.next_token(): a prefix of their own, since their numbers
# overlap the record types' (TOK_VALUE == T_INT == 0)
TOK_VALUE: Final = 0
TOK_STRUCT_START: Final = 1
TOK_STRUCT_END: Final = 2
TOK_ARRAY_START: Final = 3
TOK_ARRAY_END: Final = 4

_U32: Final = 1 << 32
_U64: Final = 1 << 64
_SCALARS: Final = frozenset((T_INT, T_STR, T_DOUBLE, T_BYTES))


class MsgType:
    """Message types (high nibble of the second header byte); plain ints."""

    REQUEST: Final = 0
    REPLY: Final = 1
    FAULT: Final = 3


_VALID_TYPES: Final = frozenset((MsgType.REQUEST, MsgType.REPLY, MsgType.FAULT))


_set = object.__setattr__


class Header(Frozen):
    """A decoded packet header (immutable). ``size`` is the header's own length (4..10)."""

    __match_args__ = ("type", "body_len", "cookie", "size")
    __slots__ = __match_args__
    type: int
    body_len: int
    cookie: int
    size: int

    def __init__(self, type: int, body_len: int, cookie: int, size: int) -> None:
        _set(self, "type", type)
        _set(self, "body_len", body_len)
        _set(self, "cookie", cookie)
        _set(self, "size", size)


class Packet(Frozen):
    """One whole binrpc packet (immutable): its type, cookie and raw body bytes."""

    __match_args__ = ("type", "cookie", "body")
    __slots__ = __match_args__
    type: int
    cookie: int
    body: bytes

    def __init__(self, type: int, cookie: int, body: bytes) -> None:
        # one Packet per request on the server: explicit assignments cost 0.25 us where
        # Frozen's generic zip loop costs 0.8 us (bench, Python 3.11)
        _set(self, "type", type)
        _set(self, "cookie", cookie)
        _set(self, "body", body)


# --------------------------------------------------------------------------------------------
# header


def _nbytes(n: int) -> int:
    """Minimal number of big-endian bytes for the unsigned ``n`` (0 takes one byte)."""
    return (n.bit_length() + 7) >> 3 or 1


def encode_header(msg_type: int, body_len: int, cookie: int) -> bytes:
    """Encode a header with minimal length and cookie widths.

    Raises:
        LocalProtocolError: ``msg_type`` is not a :class:`MsgType` (request, reply, fault),
            or ``body_len`` or ``cookie`` does not fit 32 unsigned bits.
    """
    if msg_type not in _VALID_TYPES:
        raise LocalProtocolError(
            f"message type {msg_type!r} is not a binrpc message type (0, 1 or 3)"
        )
    if not 0 <= body_len < _U32:
        raise LocalProtocolError(f"body length {body_len} does not fit a binrpc header")
    if not 0 <= cookie < _U32:
        raise LocalProtocolError(f"cookie {cookie} is not a 32-bit unsigned number")
    ll = _nbytes(body_len)
    cc = _nbytes(cookie)
    return (
        bytes((MAGIC_VERSION, (msg_type << 4) | ((ll - 1) << 2) | (cc - 1)))
        + body_len.to_bytes(ll, "big")
        + cookie.to_bytes(cc, "big")
    )


def header_fields(
    data: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, int, int, int] | None:
    """:func:`parse_header` without the :class:`Header` object: ``(type, body_len, cookie,
    size)``, or None while incomplete. The framers' per-packet path (0.3 us where building a
    Header costs 1.5 us; bench, Python 3.11).

    Raises:
        DecodeError: ``E_CORRUPTED`` (cookie 0) for a bad magic/version or message type.
    """
    avail = len(data) - offset
    if avail < 4:
        return None
    b0 = data[offset]
    b1 = data[offset + 1]
    mtype = b1 >> 4
    if b0 != MAGIC_VERSION or mtype not in _VALID_TYPES:
        raise DecodeError(E_CORRUPTED, f"bad header bytes {b0:02x} {b1:02x}")
    ll = ((b1 >> 2) & 3) + 1
    cc = (b1 & 3) + 1
    size = 2 + ll + cc
    if avail < size:
        return None
    p = offset + 2
    q = p + ll
    # one-byte fields (short bodies, small cookies) without slicing
    body_len = data[p] if ll == 1 else int.from_bytes(data[p:q], "big")
    cookie = data[q] if cc == 1 else int.from_bytes(data[q : q + cc], "big")
    return mtype, body_len, cookie, size


def parse_header(data: bytes | bytearray | memoryview, offset: int = 0) -> Header | None:
    """Decode the header at ``data[offset:]``.

    Returns ``None`` while fewer than 4 bytes, or fewer than the whole header, are available
    (the magic and type are checked as soon as 4 bytes are there).

    Raises:
        DecodeError: ``E_CORRUPTED`` (cookie 0) for a bad magic/version or message type.
    """
    fields = header_fields(data, offset)
    return None if fields is None else Header(*fields)


def encode_packet(msg_type: int, body: bytes, cookie: int) -> bytes:
    """Header + ``body``."""
    return encode_header(msg_type, len(body), cookie) + body


def parse_packet(data: bytes | bytearray | memoryview) -> Packet | None:
    """Decode the first packet in ``data`` (a datagram, say); bytes after it are ignored.

    Returns ``None`` when ``data`` holds less than a whole packet.

    Raises:
        DecodeError: bad magic/version/type (``E_CORRUPTED``, cookie 0).
    """
    fields = header_fields(data)
    if fields is None:
        return None
    mtype, body_len, cookie, size = fields
    end = size + body_len
    if len(data) < end:
        return None
    return Packet(mtype, cookie, bytes(data[size:end]))


# --------------------------------------------------------------------------------------------
# encoding values


_BYTE: Final = tuple(bytes((i,)) for i in range(256))


def record_head(rtype: int, length: int) -> bytes:
    """The tag, and the length bytes if any, of a record of type ``rtype`` whose payload is
    ``length`` bytes (the length is carried in the tag below 8)."""
    if length < 8:
        return _BYTE[(length << 4) | rtype]
    nb = _nbytes(length)
    return _BYTE[0x80 | (nb << 4) | rtype] + length.to_bytes(nb, "big")


def _put_sized(out: bytearray, rtype: int, payload: bytes) -> None:
    """A record whose length is carried in the tag (< 8) or in explicit length bytes."""
    out += record_head(rtype, len(payload))
    out += payload


def encode_text(text: str) -> bytes:
    """``text`` as UTF-8 (surrogateescape: undecodable bytes received come back as they were).

    Raises:
        LocalProtocolError: ``text`` holds a surrogate that UTF-8 cannot carry.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"string cannot be encoded as UTF-8: {exc}") from None


def _put_str(out: bytearray, rtype: int, text: str) -> None:
    _put_sized(out, rtype, encode_text(text) + b"\0")


def str_record(text: str, rtype: int = T_STR) -> bytes:
    """One whole STR record (or AVP, the struct member name) holding ``text``.

    What ``encode_values((text,))`` gives, without its bytearray and type dispatch: the
    server builds replies from these (0.5 us less per value; bench, Python 3.11).

    Raises:
        LocalProtocolError: ``text`` holds a lone surrogate that UTF-8 cannot carry.
    """
    raw = encode_text(text)
    return record_head(rtype, len(raw) + 1) + raw + b"\0"


def int_record(value: int) -> bytes:
    """One whole INT record: minimal big-endian two's complement (0 is the bare tag).

    Raises:
        LocalProtocolError: ``value`` is outside -2**31 .. 2**32-1.
    """
    if not -0x80000000 <= value < _U32:
        raise LocalProtocolError(
            f"{value} does not fit a 32-bit binrpc INT; wrap it in Double() to send it "
            "as a 64-bit number the way the ctl module does"
        )
    u = value & 0xFFFFFFFF
    if u == 0:
        return b"\x00"
    n = (u.bit_length() + 7) >> 3
    return _BYTE[n << 4] + u.to_bytes(n, "big")


def _put_int(out: bytearray, value: int) -> None:
    out += int_record(value)


def _milli(value: float | int) -> int:
    if isinstance(value, int):
        milli = value * 1000
    else:
        if not math.isfinite(value):
            raise LocalProtocolError(f"{value!r} cannot be sent as a binrpc DOUBLE")
        milli = int(value * 1000.0)  # C's conversion: truncation toward zero
    if not -(1 << 63) <= milli < (1 << 63):
        raise LocalProtocolError(f"{value!r} is out of the binrpc DOUBLE range (|x| < 9.2e15)")
    return milli


def saturated_double_record(value: float | int) -> bytes:
    """A DOUBLE record for ``value`` that never fails: beyond the DOUBLE range (|x| >= 2**63
    milli-units, inf included) it is clamped to the nearest end, NaN is 0.

    ctl's ``add("f")`` is ``(long long)(f * 1000)``, undefined in C for these values: AArch64
    saturates like this (NaN -> 0), x86-64 gives INT64_MIN for all of them (so +inf became
    the most negative DOUBLE). The server's ``add`` uses this when :func:`encode_values`
    refuses the value; :func:`encode_values` itself still raises for them.
    """
    if isinstance(value, int):
        milli = value * 1000
    elif math.isnan(value):
        milli = 0
    elif math.isinf(value):
        milli = (1 << 63) if value > 0 else -(1 << 63)
    else:
        milli = int(value * 1000.0)
    milli = max(-(1 << 63), min(milli, (1 << 63) - 1))
    u = milli & (_U64 - 1)
    if u == 0:
        return _BYTE[T_DOUBLE]
    n = (u.bit_length() + 7) >> 3
    return _BYTE[(n << 4) | T_DOUBLE] + u.to_bytes(n, "big")


def _put_double(out: bytearray, value: float | int) -> None:
    u = _milli(value) & (_U64 - 1)
    if u == 0:
        out.append(T_DOUBLE)
        return
    n = (u.bit_length() + 7) >> 3
    out.append((n << 4) | T_DOUBLE)
    out += u.to_bytes(n, "big")


def _put_value(out: bytearray, value: Value, depth: int, max_depth: int) -> None:
    t = type(value)
    if t is str:
        _put_str(out, T_STR, value)  # type: ignore[arg-type]
    elif t is int or t is bool:
        _put_int(out, value)  # type: ignore[arg-type]
    elif t is float:
        _put_double(out, value)  # type: ignore[arg-type]
    elif isinstance(value, bytes | bytearray | memoryview):
        _put_sized(out, T_BYTES, bytes(value))
    elif isinstance(value, Struct | Mapping):
        _put_struct(out, value, depth, max_depth)
    elif isinstance(value, list | tuple):
        if depth >= max_depth:
            raise LocalProtocolError(f"values nested deeper than {max_depth} levels")
        out.append(T_ARRAY)
        for item in value:
            _put_value(out, item, depth + 1, max_depth)
        out.append(0x80 | T_ARRAY)
    else:
        _put_other(out, value)


def _put_struct(
    out: bytearray, value: Struct | Mapping[str, Value], depth: int, max_depth: int
) -> None:
    if depth >= max_depth:
        raise LocalProtocolError(f"values nested deeper than {max_depth} levels")
    out.append(T_STRUCT)
    for name, member in value.items():
        if name is not None:
            if not isinstance(name, str):
                raise LocalProtocolError(f"struct member name {name!r} is not a str")
            if isinstance(member, list | tuple):
                raise LocalProtocolError(
                    f"struct member {name!r}: binrpc peers reject a named ARRAY inside a "
                    "struct; use a Struct of unnamed values (name None) instead"
                )
            _put_str(out, T_AVP, name)
        _put_value(out, member, depth + 1, max_depth)
    out.append(0x80 | T_STRUCT)


def _put_other(out: bytearray, value: object) -> None:
    """Double, and subclasses of int, float and str (an IntEnum, say), as their base type."""
    if isinstance(value, Double):
        _put_double(out, value.value)
    elif isinstance(value, bool | int):
        _put_int(out, int(value))
    elif isinstance(value, float):
        _put_double(out, float(value))
    elif isinstance(value, str):
        _put_str(out, T_STR, str(value))
    else:
        raise LocalProtocolError(f"binrpc cannot carry a value of type {type(value).__name__}")


def encode_values(values: Iterable[Value], *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode a sequence of values as a packet body (the Python mapping is in ``_values``).

    Raises:
        LocalProtocolError: a value binrpc cannot carry (int beyond 32 bits, NaN, ...).
    """
    out = bytearray()
    for value in values:
        _put_value(out, value, 0, max_depth)
    return bytes(out)


def encode_request(
    method: str,
    params: Sequence[Value] = (),
    cookie: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> bytes:
    """A whole request packet: method name (STR) then the parameters."""
    out = bytearray()
    _put_str(out, T_STR, method)
    for value in params:
        _put_value(out, value, 0, max_depth)
    return encode_header(MsgType.REQUEST, len(out), cookie) + out


def encode_reply(
    values: Iterable[Value], cookie: int, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> bytes:
    """A whole reply packet (no values: the empty reply ``a1 10 00 <cookie>``)."""
    return encode_packet(MsgType.REPLY, encode_values(values, max_depth=max_depth), cookie)


def encode_fault(code: int, message: str, cookie: int) -> bytes:
    """A whole fault packet: INT code then STR message."""
    out = bytearray()
    _put_int(out, code)
    _put_str(out, T_STR, message)
    return encode_header(MsgType.FAULT, len(out), cookie) + out


# --------------------------------------------------------------------------------------------
# decoding values

_START: Final = object()
_END: Final = object()


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _double_at(body: bytes, pos: int, size: int) -> tuple[float, int]:
    """The DOUBLE payload of ``size`` bytes at ``pos``: ``(value, next pos)``. DOUBLE never
    uses the S flag: the whole nibble of its tag is the byte count (0..15).

    Raises:
        DecodeError: E_MORE_DATA when the payload runs past the body.
    """
    nxt = pos + size
    if nxt > len(body):
        raise DecodeError(E_MORE_DATA, "truncated double")
    acc = int.from_bytes(body[max(pos, nxt - 8) : nxt], "big")
    if acc >= 1 << 63:
        acc -= _U64
    return acc / 1000.0, nxt


class BodyReader:
    """A cursor over a packet body that decodes records one value at a time.

    Args:
        body: the packet body.
        strict: the server's request rules (no unnamed values, arrays or unnamed structs inside
            structs); ``False`` gives the lenient rules clients use for replies.
        max_depth: deepest nesting accepted.
        offset: where to start reading.

    :meth:`read_value` reads one whole top-level value; :meth:`next_token` reads record by
    record (struct/array start and end markers are tokens of their own). On a
    :class:`DecodeError` from :meth:`read_value` the cursor stays where it was.
    """

    __slots__ = ("_body", "_end", "_stack", "max_depth", "pos", "strict")

    def __init__(
        self,
        body: bytes,
        *,
        strict: bool = True,
        max_depth: int = DEFAULT_MAX_DEPTH,
        offset: int = 0,
    ) -> None:
        self._body = body
        self._end = len(body)
        self.pos = offset
        self.strict = strict
        self.max_depth = max_depth
        self._stack: list[int] = []  # T_STRUCT / T_ARRAY for each open container

    # -- state ------------------------------------------------------------------------------
    def at_end(self) -> bool:
        """True when every byte of the body has been read."""
        return self.pos >= self._end

    @property
    def depth(self) -> int:
        """Number of structs/arrays open at the cursor."""
        return len(self._stack)

    def peek_type(self) -> int | None:
        """The record type at the cursor (low nibble of the tag), or None at the end."""
        if self.pos >= self._end:
            return None
        return self._body[self.pos] & 0x0F

    # -- one record -------------------------------------------------------------------------
    def _record(self, pos: int) -> tuple[int, object, int]:
        """Decode the record at ``pos``: (type, value or _START/_END or None, next pos)."""
        body = self._body
        end = self._end
        if pos >= end:
            raise DecodeError(E_END_OF_PACKET)
        tag = body[pos]
        rtype = tag & 0x0F
        size = tag >> 4
        pos += 1
        if rtype == T_DOUBLE:
            return T_DOUBLE, *_double_at(body, pos, size)
        extended = size & 8
        if extended:
            nlen = size & 7
            if pos + nlen > end:
                raise DecodeError(E_MORE_DATA, "truncated record length")
            length = int.from_bytes(body[pos : pos + nlen], "big")
            pos += nlen
        else:
            length = size
        if rtype == T_STRUCT or rtype == T_ARRAY:
            if extended:
                return rtype, _END, pos
            # a start tag's size bytes must be present but are not skipped
            if pos + length > end:
                raise DecodeError(E_MORE_DATA, "truncated container start")
            return rtype, _START, pos
        if pos + length > end:
            raise DecodeError(E_MORE_DATA, f"record of {length} bytes runs past the body")
        nxt = pos + length
        if rtype == T_INT:
            acc = int.from_bytes(body[max(pos, nxt - 4) : nxt], "big")
            return T_INT, acc - _U32 if acc >= 0x80000000 else acc, nxt
        if rtype == T_STR or rtype == T_AVP:
            # the length counts a terminating NUL; tolerate a record without it
            stop = nxt - 1 if length and body[nxt - 1] == 0 else nxt
            return rtype, _text(body[pos:stop]), nxt
        if rtype == T_BYTES:
            return T_BYTES, body[pos:nxt], nxt
        return rtype, None, nxt  # unknown type: the caller decides which error

    # -- tokens -----------------------------------------------------------------------------
    def next_token(self) -> tuple[int, str | None, object]:
        """Read the next record as a token ``(kind, member name or None, value)``.

        ``kind`` is TOK_VALUE (value is the scalar), TOK_STRUCT_START, TOK_STRUCT_END,
        TOK_ARRAY_START or TOK_ARRAY_END (value None). Nesting rules are those of the spec's
        table 2.5; containers must close in order.

        Raises:
            DecodeError: E_END_OF_PACKET at the end of the body (E_MORE_DATA if a container
                is still open), E_TYPE / E_BAD_RECORD / E_MORE_DATA for bad records.
        """
        stack = self._stack
        if self.pos >= self._end and stack:
            raise DecodeError(E_MORE_DATA, "struct or array not terminated")
        rtype, value, nxt = self._record(self.pos)
        top = stack[-1] if stack else None
        name: str | None = None
        if top == T_STRUCT:
            if rtype == T_AVP:
                name = value  # type: ignore[assignment]
                rtype, value, nxt = self._member_value(nxt)
            elif rtype == T_STRUCT and value is _END:
                stack.pop()
                self.pos = nxt
                return TOK_STRUCT_END, None, None
            elif self.strict:
                raise DecodeError(E_BAD_RECORD, "unnamed value inside a struct")
            elif not (rtype in _SCALARS or (rtype in (T_STRUCT, T_ARRAY) and value is _START)):
                raise DecodeError(E_BAD_RECORD, "bad record inside a struct")
        elif rtype == T_AVP:
            raise DecodeError(E_TYPE, "struct member name outside a struct")
        elif value is _END:
            if rtype == T_ARRAY and top == T_ARRAY:
                stack.pop()
                self.pos = nxt
                return TOK_ARRAY_END, None, None
            raise DecodeError(E_BAD_RECORD, "end marker without an open container")
        elif rtype not in _SCALARS and value is not _START:
            raise DecodeError(E_TYPE, f"unknown record type {rtype}")
        if value is _START:
            return self._open(rtype, name, nxt)
        self.pos = nxt
        return TOK_VALUE, name, value

    def _member_value(self, pos: int) -> tuple[int, object, int]:
        """The record at ``pos``, after a member name: as :meth:`_record`.

        Raises:
            DecodeError: E_MORE_DATA at the end of the body, E_BAD_RECORD when it is not a
                scalar or a struct start.
        """
        if pos >= self._end:
            raise DecodeError(E_MORE_DATA, "struct member without a value")
        rtype, value, nxt = self._record(pos)
        if not (rtype in _SCALARS or (rtype == T_STRUCT and value is _START)):
            raise DecodeError(E_BAD_RECORD, "bad struct member value")
        return rtype, value, nxt

    def _open(self, rtype: int, name: str | None, nxt: int) -> tuple[int, str | None, None]:
        """Enter the struct or array whose start record ends at ``nxt``: its start token.

        Raises:
            DecodeError: E_BAD_RECORD beyond ``max_depth``.
        """
        if len(self._stack) >= self.max_depth:
            raise DecodeError(E_BAD_RECORD, f"nesting deeper than {self.max_depth}")
        self._stack.append(rtype)
        self.pos = nxt
        return (TOK_STRUCT_START if rtype == T_STRUCT else TOK_ARRAY_START), name, None

    def tokens(self) -> Iterator[tuple[int, str | None, object]]:
        """Every remaining token, until the end of the body."""
        while self.pos < self._end or self._stack:
            yield self.next_token()

    # -- whole values -----------------------------------------------------------------------
    def read_value(self) -> Value:
        """Read one complete top-level value (a whole struct or array with its content).

        Raises:
            DecodeError: as :meth:`next_token`; the cursor is then left unchanged.
        """
        if not self._stack:
            fast = _fast_value(self._body, self.pos, self._end, self.strict, self.max_depth)
            if fast is not None:
                self.pos = fast[1]
                return fast[0]
        return self._read_value_tokens()

    def _read_value_tokens(self) -> Value:
        """read_value() through next_token(): the reference for every rule and error."""
        start = self.pos
        depth0 = len(self._stack)
        try:
            kind, _, value = self.next_token()
            if kind == TOK_VALUE:
                return value  # type: ignore[return-value]
            if kind != TOK_STRUCT_START and kind != TOK_ARRAY_START:
                raise DecodeError(E_BAD_RECORD, "unexpected end marker")
            root: Struct | list[Value] = Struct() if kind == TOK_STRUCT_START else []
            containers: list[Struct | list[Value]] = [root]
            while containers:
                kind, name, value = self.next_token()
                parent = containers[-1]
                if kind == TOK_STRUCT_END or kind == TOK_ARRAY_END:
                    containers.pop()
                    continue
                if kind == TOK_STRUCT_START:
                    value = Struct()
                    containers.append(value)
                elif kind == TOK_ARRAY_START:
                    value = []
                    containers.append(value)
                if isinstance(parent, Struct):
                    parent.append(name, value)  # type: ignore[arg-type]
                else:
                    parent.append(value)  # type: ignore[arg-type]
            return root
        except DecodeError:
            self.pos = start
            del self._stack[depth0:]
            raise

    def read_all(self) -> list[Value]:
        """Every remaining top-level value."""
        out: list[Value] = []
        while self.pos < self._end:
            out.append(self.read_value())
        return out


class _Slow(Exception):
    """Raised inside the fast decoder: the input is not its common well-formed case."""


def _fast_value(
    body: bytes, pos: int, end: int, strict: bool, max_depth: int
) -> tuple[Value, int] | None:
    """Decode one well-formed top-level value quickly: ``(value, next pos)``, or None.

    None means "not the common well-formed case": the caller then runs the token decoder,
    which is the reference for every rule and error. This path accepts nothing that the
    token decoder refuses and yields the same values (a differential test checks it).

    The helpers below do not check each record against the end of the body: a record that
    runs past it leaves the cursor beyond ``end`` (positions only grow), so the next tag read
    raises IndexError, or the final check here sees it. Every such value is thrown away.
    ``end`` is ``len(body)``.
    """
    value: Value
    try:
        tag = body[pos]
        if tag & 0x0F == T_STRUCT or tag & 0x0F == T_ARRAY:
            # a start tag's size bytes must be present (they are not skipped)
            if tag & 0x80 or pos + 1 + (tag >> 4) > end or max_depth <= 0:
                return None
            value, pos = _fast_container(body, pos + 1, tag, strict, max_depth)
        else:
            value, pos = _fast_scalar(body, pos + 1, tag)
    except (_Slow, IndexError, RecursionError):
        # RecursionError: nesting deeper than the interpreter's stack, within max_depth
        return None
    return (value, pos) if pos <= end else None


def _fast_scalar(body: bytes, pos: int, tag: int) -> tuple[Value, int]:
    """The INT, STR, BYTES or DOUBLE record whose tag ``tag`` ends at ``pos``: ``(value,
    next pos)``; _Slow for any other record."""
    rtype = tag & 0x0F
    size = tag >> 4
    if rtype == T_DOUBLE:
        nxt = pos + size
        acc = int.from_bytes(body[max(pos, nxt - 8) : nxt], "big")
        return (acc - _U64 if acc >= 1 << 63 else acc) / 1000.0, nxt
    if size & 8:
        nlen = size & 7
        length = int.from_bytes(body[pos : pos + nlen], "big")
        pos += nlen
    else:
        length = size
    nxt = pos + length
    if rtype == T_STR:
        stop = nxt - 1 if length and body[nxt - 1] == 0 else nxt
        return body[pos:stop].decode("utf-8", "surrogateescape"), nxt
    if rtype == T_INT:
        acc = int.from_bytes(body[max(pos, nxt - 4) : nxt], "big")
        return acc - _U32 if acc >= 0x80000000 else acc, nxt
    if rtype == T_BYTES:
        return body[pos:nxt], nxt
    raise _Slow


def _fast_container(
    body: bytes, pos: int, tag: int, strict: bool, depth_left: int
) -> tuple[Struct | list[Value], int]:
    """The struct or array whose start tag ``tag`` ends at ``pos``, with everything in it:
    ``(value, next pos)``; _Slow (or IndexError) when not the common well-formed case.

    The per-record hot path: STR, AVP, INT and DOUBLE records are decoded inline (a call per
    record cost 11% on struct-heavy bodies), the rare BYTES by :func:`_fast_scalar`.
    """
    from_bytes = int.from_bytes
    in_struct = tag & 0x0F == T_STRUCT
    items: list[Any] = []
    name: str | None = None
    value: Value
    while True:
        tag = body[pos]
        pos += 1
        rtype = tag & 0x0F
        if rtype == T_STR or rtype == T_AVP or rtype == T_INT:
            size = tag >> 4
            if size & 8:
                nlen = size & 7
                length = from_bytes(body[pos : pos + nlen], "big")
                pos += nlen
            else:
                length = size
            nxt = pos + length
            if rtype == T_INT:
                acc = from_bytes(body[max(pos, nxt - 4) : nxt], "big")
                value = acc - _U32 if acc >= 0x80000000 else acc
            else:
                stop = nxt - 1 if length and body[nxt - 1] == 0 else nxt
                value = body[pos:stop].decode("utf-8", "surrogateescape")
                if rtype == T_AVP:
                    # a member name, inside a struct only; the member's value follows: a
                    # scalar or a struct (no array, no end marker)
                    name = value
                    pos = nxt
                    if not in_struct or (
                        body[pos] & 0x0F not in _SCALARS and body[pos] & 0x8F != T_STRUCT
                    ):
                        raise _Slow
                    continue
            pos = nxt
        elif tag == 0x80 | T_STRUCT and in_struct:
            struct = Struct.__new__(Struct)
            struct._pairs = items
            return struct, pos
        elif tag & 0x8F == 0x80 | T_ARRAY and not in_struct:
            return items, pos + ((tag >> 4) & 7)
        elif rtype == T_DOUBLE:
            nxt = pos + (tag >> 4)
            acc = from_bytes(body[max(pos, nxt - 8) : nxt], "big")
            value = (acc - _U64 if acc >= 1 << 63 else acc) / 1000.0
            pos = nxt
        elif (
            (rtype == T_STRUCT or rtype == T_ARRAY)
            and not tag & 0x80
            and pos + (tag >> 4) <= len(body)
            and depth_left > 1
        ):  # a start the fast path takes (see _fast_value), else _fast_scalar gives up
            value, pos = _fast_container(body, pos, tag, strict, depth_left - 1)
        else:
            # BYTES; _Slow for the other end markers, a container that cannot open, AVP
            # outside a struct and unknown types
            value, pos = _fast_scalar(body, pos, tag)
        if strict and in_struct and name is None:
            raise _Slow  # the server's rules: no unnamed value in a struct
        items.append((name, value) if in_struct else value)
        name = None


def decode_values(
    body: bytes, *, strict: bool = False, max_depth: int = DEFAULT_MAX_DEPTH
) -> list[Value]:
    """Decode a whole body into its top-level values (lenient rules by default, as for replies).

    Raises:
        DecodeError: on any malformed record.
    """
    return BodyReader(body, strict=strict, max_depth=max_depth).read_all()


def parse_request(body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, BodyReader]:
    """Split a request body into its method name and a strict reader over the parameters.

    The name ends at its first NUL, as in Kamailio 5.6.3 (which looks names up with strlen).

    Raises:
        DecodeError: E_END_OF_PACKET (empty body), E_TYPE (first record not a STR),
            E_MORE_DATA (truncated method record). Kamailio prefixes these texts with
            "bad request method: " in its fault.
    """
    reader = BodyReader(body, strict=True, max_depth=max_depth)
    rtype, value, nxt = reader._record(0)
    if rtype != T_STR:
        raise DecodeError(E_TYPE, "method name is not a string")
    reader.pos = nxt
    method: str = value  # type: ignore[assignment]
    nul = method.find("\0")
    if nul >= 0:
        method = method[:nul]
    return method, reader


def decode_fault(body: bytes) -> tuple[int, str]:
    """Decode a fault body into ``(code, message)``.

    Bodies other than INT + STR are tolerated: a missing code is 0, a missing message "".

    Raises:
        DecodeError: on malformed records.
    """
    values = decode_values(body)
    code = 0
    message = ""
    rest = values
    if rest and isinstance(rest[0], int):
        code = rest[0]
        rest = rest[1:]
    for value in rest:
        if isinstance(value, str):
            message = value
            break
    return code, message
