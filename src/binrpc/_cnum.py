"""C number semantics: ``strtol``/``strtod``-like parsing and C's integer conversions. No I/O.

One scanner per syntax serves every caller; each caller keeps the acceptance rules it has always
had (what Kamailio's scan, its autoconversion or kamcmd accept):

=========================  =================================================================
:func:`strtol`             C ``strtol`` (base 10, or 0: ``0x`` hex, ``0`` octal) on a prefix
:func:`strtol_prefix`      FIFO integer lines (``d u t b l j L J`` scan): base 0, a prefix
:func:`c_strtol`           kamcmd's argument typing: base 10, the whole word, a C ``int``
:func:`strict_int32`       binrpc autoconversion string -> int: ``[+-]?[0-9]*``, 32-bit
:func:`auto_int`           FIFO lines for a Pythonic ``int`` parameter: the whole line
:func:`strtod`             C ``strtod`` on a prefix: decimal and hex floats, inf, nan
:func:`strtod_lenient`     binrpc autoconversion and FIFO lines -> double: a prefix
:func:`c_strtod`           kamcmd's argument typing: the whole word
=========================  =================================================================

``strtod``'s syntax is scanned by hand, not with regular expressions: ``binrpc``'s one-shot
start-up path uses this module and never imports ``re`` (nor ``typing``).

The *lenient* syntax (``wide=True``) is the one the server has always accepted in strings and
FIFO lines: Unicode white space and decimal digits (``str.isspace``/``str.isdecimal``), and the
case-insensitive matches of Python's ``re`` for the letters (``i`` also matches ``İ`` and ``ı``,
which ``float`` then refuses with ValueError). The C syntax is ASCII only, as in C's "C" locale.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "C_SPACE",
    "INT_MAX",
    "INT_MIN",
    "LONG_MAX",
    "LONG_MIN",
    "auto_int",
    "c_int_of_double",
    "c_long_of_double",
    "c_strtod",
    "c_strtol",
    "strict_int32",
    "strtod",
    "strtod_lenient",
    "strtol",
    "strtol_prefix",
    "wrap_int32",
]

C_SPACE: Final = " \t\n\v\f\r"
"""What C's ``isspace`` accepts in the "C" locale."""

INT_MIN: Final = -0x80000000
INT_MAX: Final = 0x7FFFFFFF
LONG_MIN: Final = -(1 << 63)
LONG_MAX: Final = (1 << 63) - 1

_DEC_DIGITS: Final = "0123456789"
_OCT_DIGITS: Final = "01234567"
_HEX_DIGITS: Final = "0123456789abcdefABCDEF"
_NAN_CHARS: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
# what re.IGNORECASE adds to [0-9A-Za-z_] and to "i" (the lenient syntax)
_NAN_CHARS_WIDE: Final = _NAN_CHARS | frozenset("\u0130\u0131\u017f\u212a")
_LETTERS_WIDE: Final = {"i": "iI\u0130\u0131"}

# kinds of number strtod's scanner finds
_NONE: Final = 0
_DEC: Final = 1
_HEX: Final = 2
_INF: Final = 3
_NAN: Final = 4


# --------------------------------------------------------------------------------------------
# C integer conversions


def wrap_int32(value: int) -> int:
    """C conversion to a 32-bit ``int`` (two's complement wrap)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value > INT_MAX else value


def c_long_of_double(value: float) -> int:
    """C's double -> 64-bit integer conversion (truncation toward zero; inf/nan: LONG_MIN)."""
    if not math.isfinite(value):
        return LONG_MIN
    return int(value)


def c_int_of_double(value: float) -> int:
    """C's double -> int conversion as x86-64 does it: out of range gives INT_MIN."""
    if not math.isfinite(value):
        return INT_MIN
    n = int(value)
    return n if INT_MIN <= n <= INT_MAX else INT_MIN


# --------------------------------------------------------------------------------------------
# strtol


def strtol(text: str, base: int = 10) -> tuple[int, int]:
    """C ``strtol(text, &end, base)`` without the range clamp: ``(value, end)``.

    Leading C white space and one sign are accepted; ``base`` is 10, or 0 (``0x`` + a hex digit:
    hexadecimal, a leading ``0``: octal, else decimal). ASCII digits only. ``end`` is the offset
    after the last digit, 0 (and the value 0) when no digit was read.
    """
    s = text.lstrip(C_SPACE)
    i = len(text) - len(s)
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
        i += 1
    allowed = _DEC_DIGITS
    radix = 10
    if base == 0:
        if s[:2] in ("0x", "0X") and len(s) > 2 and s[2] in _HEX_DIGITS:
            s = s[2:]
            i += 2
            allowed, radix = _HEX_DIGITS, 16
        elif s.startswith("0"):
            allowed, radix = _OCT_DIGITS, 8
    k = 0
    while k < len(s) and s[k] in allowed:
        k += 1
    if k == 0:
        return 0, 0
    return sign * int(s[:k], radix), i + k


def strtol_prefix(text: str) -> int | None:
    """``strtol(text, base 0)`` on a prefix (what follows is ignored); None when no digit."""
    value, end = strtol(text, 0)
    return value if end else None


def c_strtol(word: str) -> int | None:
    """C ``strtol(word, &end, 10)`` when ``*end == 0`` afterwards, as a C ``int``; else None.

    ``""`` is 0 (nothing consumed, but the end pointer already sits on the NUL); out-of-range
    values saturate to the C ``long`` range, then wrap to 32 bits.
    """
    if word == "":
        return 0
    value, end = strtol(word)
    if end == 0 or end != len(word):
        return None
    return wrap_int32(max(LONG_MIN, min(LONG_MAX, value)))


def strict_int32(text: str) -> int | None:
    """A strict signed decimal: an optional sign then ASCII digits only (``""``, ``"+"`` and
    ``"-"`` are 0), within the 32-bit range; else None. (ctl's string -> int autoconversion.)"""
    if text in ("", "+", "-"):
        return 0
    if text[0] in C_SPACE:
        return None
    value, end = strtol(text)
    if end == 0 or end != len(text) or not INT_MIN <= value <= INT_MAX:
        return None
    return value


def auto_int(text: str) -> int | None:
    """A whole-line integer, base auto like strtol (``0x`` hex, ``0`` octal), surrounding white
    space allowed, nothing else after it; else None. Digits as Python's ``int`` reads them."""
    s = text.strip()
    if not s:
        return None
    body = s.lstrip("+-")
    if len(s) - len(body) > 1:
        return None
    try:
        if body[:2].lower() == "0x":
            value = int(body[2:], 16)
        elif len(body) > 1 and body.startswith("0"):
            value = int(body, 8)
        else:
            value = int(body, 10)
    except ValueError:
        return None
    return -value if s.startswith("-") else value


# --------------------------------------------------------------------------------------------
# strtod


def _span(text: str, i: int, digits: str, wide: bool) -> int:
    """The offset after the run of ``digits`` (Unicode decimals too when ``wide`` and
    ``digits`` is decimal) starting at ``i``."""
    n = len(text)
    if wide and digits is _DEC_DIGITS:
        while i < n and text[i].isdecimal():
            i += 1
    else:
        while i < n and text[i] in digits:
            i += 1
    return i


def _mantissa(text: str, i: int, digits: str, wide: bool) -> int:
    """``D+ [.] D*`` or ``. D+`` at ``i``: the offset after it, or ``i`` when absent."""
    j = _span(text, i, digits, wide)
    if j > i:
        return _span(text, j + 1, digits, wide) if text[j : j + 1] == "." else j
    if text[i : i + 1] == ".":
        k = _span(text, i + 1, digits, wide)
        if k > i + 1:
            return k
    return i


def _exponent(text: str, i: int, marks: str, wide: bool) -> int:
    """``mark [+-]? [0-9]+`` at ``i``: the offset after it, or ``i`` when absent."""
    if i >= len(text) or text[i] not in marks:
        return i
    j = i + 1
    if j < len(text) and text[j] in ("+", "-"):
        j += 1
    k = _span(text, j, _DEC_DIGITS, wide)
    return k if k > j else i


def _word(text: str, i: int, word: str, wide: bool) -> bool:
    """``text[i:]`` starts with ``word``, ASCII letters compared case-insensitively."""
    if len(text) - i < len(word):
        return False
    for k, letter in enumerate(word):
        ch = text[i + k]
        if (
            ch != letter
            and ch != letter.upper()
            and not (wide and ch in _LETTERS_WIDE.get(letter, ""))
        ):
            return False
    return True


def _skip_space(text: str, wide: bool) -> int:
    """The offset of the first character of ``text`` that is not white space (C's, or
    Unicode's when ``wide``)."""
    # str.lstrip() without an argument strips what str.isspace() accepts
    return len(text) - len(text.lstrip() if wide else text.lstrip(C_SPACE))


def _nan_end(text: str, end: int, wide: bool) -> int:
    """The offset after ``nan`` ending at ``end`` and its optional ``(chars)``."""
    if text[end : end + 1] != "(":
        return end
    chars = _NAN_CHARS_WIDE if wide else _NAN_CHARS
    k = end + 1
    while k < len(text) and text[k] in chars:
        k += 1
    return k + 1 if text[k : k + 1] == ")" else end


def _scan_strtod(text: str, wide: bool) -> tuple[int, bool, int, int]:
    """Where strtod's syntax matches at the start of ``text``: ``(kind, negative, start,
    end)``, ``text[start:end]`` being the number without its sign (``_NONE``: no number)."""
    i = _skip_space(text, wide)
    negative = False
    if text[i : i + 1] in ("+", "-"):
        negative = text[i] == "-"
        i += 1
    if text[i : i + 2] in ("0x", "0X"):
        end = _mantissa(text, i + 2, _HEX_DIGITS, wide)
        if end > i + 2:
            return _HEX, negative, i, _exponent(text, end, "pP", wide)
    if _word(text, i, "inf", wide):
        return _INF, negative, i, i + (8 if _word(text, i, "infinity", wide) else 3)
    if _word(text, i, "nan", wide):
        return _NAN, negative, i, _nan_end(text, i + 3, wide)
    end = _mantissa(text, i, _DEC_DIGITS, wide)
    if end == i:
        return _NONE, False, 0, 0
    return _DEC, negative, i, _exponent(text, end, "eE", wide)


def strtod(text: str, *, wide: bool = False) -> tuple[float | None, int]:
    """C ``strtod(text, &end)`` on a prefix: ``(value, end)``; ``(None, 0)`` when no number.

    Decimal and hexadecimal floats (``0x1.8p3``), ``inf``, ``infinity``, ``nan`` and
    ``nan(chars)``, case-insensitively, after C white space and one sign. A hexadecimal value
    beyond the double range is ±inf (C's HUGE_VAL), or None with ``wide``, which also selects
    the lenient syntax (see the module docstring). A NaN is always positive.

    Raises:
        ValueError: ``wide`` only: ``inf``/``nan`` spelt with ``İ`` or ``ı``.
    """
    kind, negative, start, end = _scan_strtod(text, wide)
    if kind == _NONE:
        return None, 0
    token = text[start:end]
    if kind == _HEX:
        try:
            value = float.fromhex(token)
        except OverflowError:
            if wide:
                return None, end
            value = math.inf
        except ValueError:  # wide: exponent digits float.fromhex does not read
            return None, end
    elif kind == _DEC:
        try:
            value = float(token)
        except ValueError:  # wide: a decimal float does not read (none known)
            return None, end
    else:
        value = float(token.partition("(")[0])
        if kind == _NAN:
            return value, end
    return (-value if negative else value), end


def strtod_lenient(text: str) -> float | None:
    """``strtod`` in the lenient syntax on a prefix (what follows is ignored); None when no
    number or a hexadecimal value out of range.

    Raises:
        ValueError: ``inf``/``nan`` spelt with ``İ`` or ``ı`` (see :func:`strtod`).
    """
    return strtod(text, wide=True)[0]


def c_strtod(word: str) -> float | None:
    """C ``strtod(word, &end)`` when it consumes the whole (non-empty) word; else None."""
    value, end = strtod(word)
    return value if end and end == len(word) else None
