"""kamcmd's command-line argument typing, reproduced exactly, plus opt-in explicit types.

No I/O here. kamcmd 1.5 converts each word after the method in this order (spec kamcmd 2.2):

1. C ``strtol(word, 10)`` consuming the *whole* word -> INT, stored in a C ``int``: leading
   white space and a sign are accepted, ``""`` is 0, out-of-range values saturate to the C
   ``long`` range and then wrap to 32 bits (``4294967296`` -> 0, ``99999999999999999999`` -> -1);
2. else C ``strtod`` consuming the whole word -> DOUBLE, sent as ``(long long)(x * 1000)``:
   decimal and hexadecimal floats, ``inf``, ``infinity``, ``nan``; values whose x1000 does not fit
   64 bits (and inf/nan) produce the x86 "indefinite" integer -2**63, which we reproduce;
3. else a string, with one leading ``s:`` removed.
"""

from __future__ import annotations

import math

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

_C_SPACE: Final = " \t\n\v\f\r"
_LONG_MIN: Final = -(1 << 63)
_LONG_MAX: Final = (1 << 63) - 1

GARBAGE_DOUBLE: Final = -9223372036854775.808
"""A float whose x1000 truncation is exactly -2**63: what kamcmd puts on the wire for inf, nan
and out-of-range doubles (x86 ``cvttsd2si`` returns 0x8000000000000000)."""

# strtod's syntax is parsed by hand below rather than with regular expressions: importing re
# costs milliseconds of a one-shot call's start-up. Only ASCII counts, as in C's "C" locale.
_DEC_DIGITS: Final = "0123456789"
_HEX_DIGITS: Final = "0123456789abcdefABCDEF"
_NAN_CHARS: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def _all_of(text: str, chars: str) -> bool:
    """``text`` is one or more characters of ``chars``."""
    return text != "" and not text.strip(chars)


def _split_sign(text: str) -> tuple[str, str]:
    """``[+-]?`` then the rest."""
    if text[:1] in ("+", "-"):
        return text[0], text[1:]
    return "", text


def _is_fixed_point(text: str, digits: str) -> bool:
    """``D+ [.] D*`` or ``. D+`` (at least one digit), ``D`` from ``digits``."""
    whole, _, frac = text.partition(".")
    if not whole and not frac:
        return False
    return (not whole or _all_of(whole, digits)) and (not frac or _all_of(frac, digits))


def _is_scaled(text: str, digits: str, marks: str) -> bool:
    """A fixed-point mantissa, then optionally a mark (``e``/``p``) and ``[+-]? [0-9]+``."""
    for i, char in enumerate(text):
        if char in marks:
            _, exponent = _split_sign(text[i + 1 :])
            return _is_fixed_point(text[:i], digits) and _all_of(exponent, _DEC_DIGITS)
    return _is_fixed_point(text, digits)


def c_strtol(word: str) -> int | None:
    """C ``strtol(word, &end, 10)`` when ``*end == 0`` afterwards, as a C ``int``; else None."""
    if word == "":
        return 0  # nothing consumed, but the end pointer already sits on the NUL
    text = word.lstrip(_C_SPACE)
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if not text or text.strip("0123456789"):
        return None
    value = max(_LONG_MIN, min(_LONG_MAX, sign * int(text)))
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def c_strtod(word: str) -> float | None:
    """C ``strtod(word, &end)`` when it consumes the whole (non-empty) word; else None."""
    text = word.lstrip(_C_SPACE)
    if not text:
        return None
    sign, body = _split_sign(text)
    if _is_scaled(body, _DEC_DIGITS, "eE"):
        return float(text)
    if body[:2] in ("0x", "0X") and _is_scaled(body[2:], _HEX_DIGITS, "pP"):
        try:
            value = float.fromhex("0x" + body[2:])
        except OverflowError:
            value = math.inf
        return -value if sign == "-" else value
    if not body.isascii():  # no case-insensitive match below outside ASCII (C's tolower)
        return None
    lower = body.lower()
    if lower in ("inf", "infinity"):
        return -math.inf if sign == "-" else math.inf
    if lower == "nan" or (
        lower.startswith("nan(") and lower.endswith(")") and _NAN_CHARS.issuperset(body[4:-1])
    ):
        return math.nan
    return None


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
