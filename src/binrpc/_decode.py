"""Decoding binrpc records into Python values. No I/O. Part of the codec (:mod:`binrpc._codec`).

Decoding is total: any byte string either decodes or raises :class:`DecodeError` (whose
``code`` is the binrpc error number Kamailio would report). Limits (nesting depth) are
parameters.
"""

from __future__ import annotations

# _collections_abc is what collections.abc re-exports; it is loaded at interpreter start-up,
# while importing collections.abc costs a few milliseconds (see _frozen's docstring)
from ._errors import (
    E_BAD_RECORD,
    E_END_OF_PACKET,
    E_MORE_DATA,
    E_TYPE,
    DecodeError,
)
from ._packet import (
    DEFAULT_MAX_DEPTH,
    SCALAR_TYPES,
    T_ARRAY,
    T_AVP,
    T_BYTES,
    T_DOUBLE,
    T_INT,
    T_STR,
    T_STRUCT,
    TOK_ARRAY_END,
    TOK_ARRAY_START,
    TOK_STRUCT_END,
    TOK_STRUCT_START,
    TOK_VALUE,
    U32,
    U64,
)
from ._values import Struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Final

    from ._values import Value


__all__ = [
    "BodyReader",
    "decode_fault",
    "decode_values",
    "parse_request",
]

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
        acc -= U64
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
            return T_INT, acc - U32 if acc >= 0x80000000 else acc, nxt
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
            elif not (rtype in SCALAR_TYPES or (rtype in (T_STRUCT, T_ARRAY) and value is _START)):
                raise DecodeError(E_BAD_RECORD, "bad record inside a struct")
        elif rtype == T_AVP:
            raise DecodeError(E_TYPE, "struct member name outside a struct")
        elif value is _END:
            if rtype == T_ARRAY and top == T_ARRAY:
                stack.pop()
                self.pos = nxt
                return TOK_ARRAY_END, None, None
            raise DecodeError(E_BAD_RECORD, "end marker without an open container")
        elif rtype not in SCALAR_TYPES and value is not _START:
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
        if not (rtype in SCALAR_TYPES or (rtype == T_STRUCT and value is _START)):
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
        return (acc - U64 if acc >= 1 << 63 else acc) / 1000.0, nxt
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
        return acc - U32 if acc >= 0x80000000 else acc, nxt
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
                value = acc - U32 if acc >= 0x80000000 else acc
            else:
                stop = nxt - 1 if length and body[nxt - 1] == 0 else nxt
                value = body[pos:stop].decode("utf-8", "surrogateescape")
                if rtype == T_AVP:
                    # a member name, inside a struct only; the member's value follows: a
                    # scalar or a struct (no array, no end marker)
                    name = value
                    pos = nxt
                    if not in_struct or (
                        body[pos] & 0x0F not in SCALAR_TYPES and body[pos] & 0x8F != T_STRUCT
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
            value = (acc - U64 if acc >= 1 << 63 else acc) / 1000.0
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
