"""kamcmd's command-line argument typing, reproduced exactly, plus opt-in explicit types.

No I/O here. kamcmd 1.5 converts each word after the method in this order (spec kamcmd 2.2):

1. C ``strtol(word, 10)`` consuming the *whole* word -> INT, stored in a C ``int``: leading
   white space and a sign are accepted, ``""`` is 0, out-of-range values saturate to the C
   ``long`` range and then wrap to 32 bits (``4294967296`` -> 0, ``99999999999999999999`` -> -1);
2. else C ``strtod`` consuming the whole word -> DOUBLE, sent as ``(long long)(x * 1000)``:
   decimal and hexadecimal floats, ``inf``, ``infinity``, ``nan``; values whose x1000 does not fit
   64 bits (and inf/nan) produce the x86 "indefinite" integer -2**63, which we reproduce;
3. else a string, with one leading ``s:`` removed.

The C parsing itself is :mod:`binrpc._cnum`'s (shared with the server).
"""

from __future__ import annotations

import math

from .._cnum import c_strtod, c_strtol

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

    from .._values import Value

__all__ = [
    "GARBAGE_DOUBLE",
    "TypedArgError",
    "c_strtod",
    "c_strtol",
    "kamcmd_value",
    "looks_numeric",
    "typed_value",
]

GARBAGE_DOUBLE: Final = -9223372036854775.808
"""A float whose x1000 truncation is exactly -2**63: what kamcmd puts on the wire for inf, nan
and out-of-range doubles (x86 ``cvttsd2si`` returns 0x8000000000000000)."""


def _wire_double(value: float) -> float:
    """The float the codec must encode to send what kamcmd sends for ``value``."""
    if math.isfinite(value):
        milli = value * 1000.0
        if -(2.0**63) <= milli < 2.0**63:
            return value
    return GARBAGE_DOUBLE


def kamcmd_value(word: str) -> Value:
    """The binrpc value kamcmd 1.5 sends for the command-line word ``word``."""
    number = c_strtol(word)
    if number is not None:
        return number
    real = c_strtod(word)
    if real is not None:
        return _wire_double(real)
    if len(word) >= 2 and word.startswith("s:"):
        return word[2:]
    return word


def looks_numeric(word: str) -> bool:
    """A word kamcmd would send as a number (used to keep ``-5`` from being an option)."""
    return c_strtol(word) is not None or c_strtod(word) is not None


class TypedArgError(ValueError):
    """An explicitly typed argument (``i:``/``d:``/``b:``) that cannot be converted."""


def typed_value(word: str) -> Value:
    """``--typed`` arguments: ``i:N`` INT (decimal, 0x.., 0o.., 0b..; no wrap-around),
    ``d:X`` DOUBLE (finite), ``b:TEXT`` BYTES (the UTF-8 of TEXT), ``s:TEXT`` STR;
    any other word is typed as kamcmd does.

    Raises:
        TypedArgError: the value does not fit its type.
    """
    prefix, _, rest = word.partition(":")
    if _ and prefix == "i":
        try:
            number = int(rest.strip(), 0)
        except ValueError:
            raise TypedArgError(f"{word!r}: not an integer") from None
        if not -(1 << 31) <= number < (1 << 32):
            raise TypedArgError(f"{word!r}: does not fit a 32-bit binrpc integer")
        return number
    if _ and prefix == "d":
        try:
            real = float(rest)
        except ValueError:
            raise TypedArgError(f"{word!r}: not a number") from None
        if not math.isfinite(real) or not -(2.0**63) <= real * 1000.0 < 2.0**63:
            raise TypedArgError(f"{word!r}: out of the binrpc double range")
        return real
    if _ and prefix == "b":
        return rest.encode("utf-8", "surrogateescape")
    return kamcmd_value(word)
