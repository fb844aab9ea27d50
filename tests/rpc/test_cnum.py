"""The C number parsing module: what each of its callers accepts.

Callers: binrpc autoconversion (``strict_int32``, ``strtod_lenient``), the FIFO context
(``strtol_prefix``, ``auto_int``, ``strtod_lenient``) and kamcmd's argument typing
(``c_strtol``, ``c_strtod``). The tables pin their results; the properties compare them with
the implementations each caller had before they shared this module (kept below as oracles).
"""

from __future__ import annotations

import ast
import math
import re
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from binrpc import _cnum
from binrpc._cnum import (
    auto_int,
    c_int_of_double,
    c_long_of_double,
    c_strtod,
    c_strtol,
    strict_int32,
    strtod,
    strtod_lenient,
    strtol,
    strtol_prefix,
    wrap_int32,
)

INF = math.inf
NAN = math.nan


def same(a: object, b: object) -> bool:
    """Equal, a float to the bit (-0.0 is not 0.0, NaN is NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


def outcome(func: Callable[[str], Any], text: str) -> Any:
    try:
        return func(text)
    except ValueError as exc:  # compared by type: the messages are float()'s
        return type(exc)


# -- the tables --------------------------------------------------------------------------------

STRICT_INT32 = [
    ("", 0),
    ("+", 0),
    ("-", 0),
    ("0", 0),
    ("42", 42),
    ("+42", 42),
    ("-42", -42),
    ("007", 7),
    ("2147483647", 2147483647),
    ("-2147483648", -2147483648),
    ("2147483648", None),  # out of range: not wrapped
    ("-2147483649", None),
    (" 1", None),  # no white space
    ("1 ", None),
    ("--1", None),
    ("+-1", None),
    ("0x10", None),
    ("1.0", None),
    ("1_000", None),
    ("\u0663", None),  # ARABIC-INDIC THREE: ASCII digits only
]

STRTOL_PREFIX = [
    ("", None),
    ("   ", None),
    ("+", None),
    ("x", None),
    ("12", 12),
    ("12abc", 12),
    ("  \t-12", -12),
    ("+7", 7),
    ("010", 8),  # octal
    ("09", 0),  # octal: the 9 ends it
    ("0x1f", 31),
    ("0X1Fg", 31),
    ("0x", 0),  # "0" then garbage
    ("0xg", 0),
    ("-0x10", -16),
    ("99999999999999999999", 99999999999999999999),  # no clamp (the caller wraps)
    ("\u0663", None),
    ("\u00a01", None),  # NO-BREAK SPACE is not C white space
    ("1_0", 1),
]

C_STRTOL = [
    ("", 0),
    ("0", 0),
    ("123", 123),
    (" 123", 123),
    ("\t\n\v\f\r-5", -5),
    ("+5", 5),
    ("123 ", None),  # the whole word
    ("12a", None),
    ("-", None),
    ("  ", None),
    ("0x10", None),  # base 10
    ("010", 10),
    ("2147483648", -2147483648),  # wraps to 32 bits
    ("4294967296", 0),
    ("99999999999999999999", -1),  # saturates to LONG_MAX, then wraps
    ("-99999999999999999999", 0),
    ("\u0663", None),
]

AUTO_INT = [
    ("", None),
    ("  ", None),
    ("5", 5),
    (" 5 ", 5),
    ("-5", -5),
    ("+5", 5),
    ("--5", None),
    ("0x1f", 31),
    ("-0x1f", -31),
    ("017", 15),
    ("0o17", 15),  # Python's int(base 8) reads the 0o prefix
    ("08", None),
    ("0", 0),
    ("1_000", 1000),
    ("\u0663", 3),
    ("5x", None),
    ("1.5", None),
]

STRTOD_LENIENT = [
    ("", None),
    ("x", None),
    (".", None),
    ("1", 1.0),
    ("1.5", 1.5),
    ("-1.5", -1.5),
    ("-0", -0.0),
    (" \u00a0\u20031.5", 1.5),  # Unicode white space
    ("1.5abc", 1.5),  # a prefix
    ("1e3", 1000.0),
    ("1E+3x", 1000.0),
    ("1e", 1.0),
    ("1e+", 1.0),
    (".5", 0.5),
    ("5.", 5.0),
    ("1e999", INF),
    ("0x10", 16.0),
    ("0x1.8p1", 3.0),
    ("-0x.8", -0.5),
    ("0x1p", 1.0),
    ("0xg", 0.0),
    ("0x1p99999", None),  # a hex value out of range
    ("0x1p\u0663", None),  # Unicode exponent digits: refused by float.fromhex
    ("inf", INF),
    ("-Infinity", -INF),
    ("INFINITx", INF),
    ("nan", NAN),
    ("-nan", NAN),
    ("nan(abc_1)", NAN),
    ("nan(", NAN),
    ("\u0663.5", 3.5),  # Unicode decimal digits
    ("1\u0663e\u0661", 130.0),
    ("\u0131nf", ValueError),  # dotless i: re.IGNORECASE matched it, float() refuses it
    ("\u0130nfinity", ValueError),
    ("nan(\u212a)", NAN),  # KELVIN SIGN matched [A-Za-z] too
]

C_STRTOD = [
    ("", None),
    ("  ", None),
    ("1", 1.0),
    (" 1.5", 1.5),
    ("1.5 ", None),  # the whole word
    ("-1e3", -1000.0),
    ("1e", None),
    (".5", 0.5),
    ("5.", 5.0),
    (".", None),
    ("1e999", INF),
    ("0x1p3", 8.0),
    ("-0X.8P1", -1.0),
    ("0x", None),
    ("0x1p", None),
    ("0x1p99999", INF),  # HUGE_VAL
    ("-0x1p99999", -INF),
    ("inf", INF),
    ("-INF", -INF),
    ("Infinity", INF),
    ("infinit", None),
    ("nan", NAN),
    ("-NaN", NAN),
    ("nan()", NAN),
    ("nan(abc_1)", NAN),
    ("nan(a-b)", None),
    ("nan(", None),
    ("\u0663", None),
    ("\u00a01", None),
    ("\u0131nf", None),
]

CASES: list[tuple[Callable[[str], Any], list[tuple[str, Any]]]] = [
    (strict_int32, STRICT_INT32),
    (strtol_prefix, STRTOL_PREFIX),
    (c_strtol, C_STRTOL),
    (auto_int, AUTO_INT),
    (strtod_lenient, STRTOD_LENIENT),
    (c_strtod, C_STRTOD),
]


@pytest.mark.parametrize(
    ("func", "text", "expected"),
    [(func, text, expected) for func, table in CASES for text, expected in table],
    ids=[f"{func.__name__}-{text!r}" for func, table in CASES for text, _ in table],
)
def test_table(func: Callable[[str], Any], text: str, expected: Any) -> None:
    got = outcome(func, text)
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(got, float) and math.isnan(got)
        assert math.copysign(1.0, got) == 1.0  # a NaN is positive, as the callers had it
    else:
        assert same(got, expected), (text, got, expected)


def test_strtol_and_strtod_report_where_they_stopped() -> None:
    assert strtol("  -12xyz") == (-12, 5)
    assert strtol("0x1fz", 0) == (31, 4)
    assert strtol("0x1f", 10) == (0, 1)
    assert strtol("nope", 0) == (0, 0)
    assert strtod("  1.5e3xyz") == (1500.0, 7)
    assert strtod("-inf!") == (-INF, 4)
    assert strtod("infinity") == (INF, 8)
    assert strtod("nope") == (None, 0)
    assert strtod("\u00a01") == (None, 0)  # C white space only
    assert strtod("\u00a01", wide=True) == (1.0, 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (0x7FFFFFFF, 0x7FFFFFFF), (0x80000000, -0x80000000), (-1, -1), (1 << 32, 0)],
)
def test_wrap_int32(value: int, expected: int) -> None:
    assert wrap_int32(value) == expected


def test_double_to_integer_conversions() -> None:
    assert c_long_of_double(-2.9) == -2
    assert c_long_of_double(INF) == c_long_of_double(NAN) == -(1 << 63)
    assert c_int_of_double(2147483647.9) == 2147483647
    assert c_int_of_double(2147483648.0) == c_int_of_double(NAN) == -0x80000000


def test_imports_neither_re_nor_typing() -> None:
    """The one-shot ``binrpc`` start-up path imports this module: no ``re``, no ``typing``
    (``typing`` only under ``if TYPE_CHECKING``, which is False at run time)."""
    source = _cnum.__loader__.get_source(_cnum.__name__)  # type: ignore[union-attr]
    assert source is not None
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.parse(source).body  # top level only: not the TYPE_CHECKING block
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == {"__future__", "math"}


# -- the callers' earlier implementations, as oracles ------------------------------------------

_OLD_STRTOD = re.compile(
    r"\s*([+-]?)(?:(0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?)"
    r"|(inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)"
    r"|((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))",
    re.IGNORECASE,
)


def old_strtod(text: str) -> float | None:
    m = _OLD_STRTOD.match(text)
    if m is None:
        return None
    sign = -1.0 if m.group(1) == "-" else 1.0
    if m.group(2):
        hexpart = m.group(2)
        if "p" not in hexpart.lower():
            hexpart += "p0"
        try:
            return sign * float.fromhex(hexpart)
        except (ValueError, OverflowError):
            return None
    if m.group(3):
        return sign * float(m.group(3).split("(")[0])
    try:
        return sign * float(m.group(4))
    except ValueError:
        return None


def old_str_to_int(text: str) -> int | None:
    if not re.match(r"[+-]?[0-9]*\Z", text):
        return None
    digits = text.lstrip("+-")
    n = int(digits) if digits else 0
    if text.startswith("-"):
        n = -n
    return n if -0x80000000 <= n <= 0x7FFFFFFF else None


def old_fifo_strtol(text: str) -> int | None:
    s = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        digits, base, allowed = s[2:], 16, "0123456789abcdefABCDEF"
    elif s.startswith("0"):
        digits, base, allowed = s, 8, "01234567"
    else:
        digits, base, allowed = s, 10, "0123456789"
    k = 0
    while k < len(digits) and digits[k] in allowed:
        k += 1
    return None if k == 0 else sign * int(digits[:k], base)


def old_c_strtol(word: str) -> int | None:
    if word == "":
        return 0
    text = word.lstrip(" \t\n\v\f\r")
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if not text or text.strip("0123456789"):
        return None
    value = max(-(1 << 63), min((1 << 63) - 1, sign * int(text)))
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


_C_SPACE = " \t\n\v\f\r"
_DEC = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_NAN_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def _all_of(text: str, chars: str) -> bool:
    return text != "" and not text.strip(chars)


def _split_sign(text: str) -> tuple[str, str]:
    if text[:1] in ("+", "-"):
        return text[0], text[1:]
    return "", text


def _is_fixed_point(text: str, digits: str) -> bool:
    whole, _, frac = text.partition(".")
    if not whole and not frac:
        return False
    return (not whole or _all_of(whole, digits)) and (not frac or _all_of(frac, digits))


def _is_scaled(text: str, digits: str, marks: str) -> bool:
    for i, char in enumerate(text):
        if char in marks:
            _, exponent = _split_sign(text[i + 1 :])
            return _is_fixed_point(text[:i], digits) and _all_of(exponent, _DEC)
    return _is_fixed_point(text, digits)


def old_c_strtod(word: str) -> float | None:
    text = word.lstrip(_C_SPACE)
    if not text:
        return None
    sign, body = _split_sign(text)
    if _is_scaled(body, _DEC, "eE"):
        return float(text)
    if body[:2] in ("0x", "0X") and _is_scaled(body[2:], _HEX, "pP"):
        try:
            value = float.fromhex("0x" + body[2:])
        except OverflowError:
            value = math.inf
        return -value if sign == "-" else value
    if not body.isascii():
        return None
    lower = body.lower()
    if lower in ("inf", "infinity"):
        return -math.inf if sign == "-" else math.inf
    if lower == "nan" or (
        lower.startswith("nan(") and lower.endswith(")") and _NAN_CHARS.issuperset(body[4:-1])
    ):
        return math.nan
    return None


# characters where the syntaxes differ
ALPHABET = st.sampled_from(
    [
        *"0123456789+-.eEpPxXaAfFiInNtTyY_() \t\n\v\f\r",
        *"\u00a0\u2003\u0663\u0661\u0130\u0131\u017f\u212a\x1c",
    ]
)
TEXT = st.text(ALPHABET, max_size=14)


def agree(new: Callable[[str], Any], old: Callable[[str], Any], text: str) -> None:
    got, want = outcome(new, text), outcome(old, text)
    assert same(got, want) or (
        isinstance(got, float) and isinstance(want, float) and math.isnan(got) and math.isnan(want)
    ), (text, got, want)


@given(TEXT)
@example("-nan")
@example("0x1p99999")
def test_strtod_lenient_is_the_binrpc_and_fifo_strtod(text: str) -> None:
    agree(strtod_lenient, old_strtod, text)


@given(TEXT)
def test_strict_int32_is_the_binrpc_autoconversion(text: str) -> None:
    agree(strict_int32, old_str_to_int, text)


@given(TEXT)
def test_strtol_prefix_is_the_fifo_strtol(text: str) -> None:
    agree(strtol_prefix, old_fifo_strtol, text)


@given(TEXT)
@example("99999999999999999999")
def test_c_strtol_is_kamcmds(text: str) -> None:
    agree(c_strtol, old_c_strtol, text)


@given(TEXT)
@example("-0x1p99999")
@example("NaN(x)")
def test_c_strtod_is_kamcmds(text: str) -> None:
    agree(c_strtod, old_c_strtod, text)
