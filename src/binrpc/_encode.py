"""Encoding Python values into binrpc records and packets. No I/O. Part of the codec
(:mod:`binrpc._codec`)."""

from __future__ import annotations

import math

# _collections_abc is what collections.abc re-exports; it is loaded at interpreter start-up,
# while importing collections.abc costs a few milliseconds (see _frozen's docstring)
from _collections_abc import Mapping

from ._errors import (
    LocalProtocolError,
)
from ._packet import (
    DEFAULT_MAX_DEPTH,
    T_ARRAY,
    T_AVP,
    T_BYTES,
    T_DOUBLE,
    T_STR,
    T_STRUCT,
    U32,
    U64,
    MsgType,
    encode_header,
    encode_packet,
    nbytes,
)
from ._values import Double, Struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Final

    from ._values import Value


__all__ = [
    "encode_fault",
    "encode_reply",
    "encode_request",
    "encode_text",
    "encode_values",
    "int_record",
    "record_head",
    "saturated_double_record",
    "str_record",
]

_BYTE: Final = tuple(bytes((i,)) for i in range(256))


def record_head(rtype: int, length: int) -> bytes:
    """The tag, and the length bytes if any, of a record of type ``rtype`` whose payload is
    ``length`` bytes (the length is carried in the tag below 8)."""
    if length < 8:
        return _BYTE[(length << 4) | rtype]
    nb = nbytes(length)
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
    if not -0x80000000 <= value < U32:
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
    u = milli & (U64 - 1)
    if u == 0:
        return _BYTE[T_DOUBLE]
    n = (u.bit_length() + 7) >> 3
    return _BYTE[(n << 4) | T_DOUBLE] + u.to_bytes(n, "big")


def _put_double(out: bytearray, value: float | int) -> None:
    u = _milli(value) & (U64 - 1)
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
