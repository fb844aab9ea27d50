"""Unit tests for the RPC layer (_registry, _context, _binrpc_context, _dispatch): registry,
both handler styles, scan/add semantics, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from binrpc import Double, Fault, Struct
from binrpc._context import RpcContext, ScanResult
from binrpc._limits import RpcLimits
from binrpc._registry import Registry
from binrpc.rpcs import builtin_registry

from .helpers import decode_reply, one, run

# ------------------------------------------------------------------------------------------
# Pythonic handlers


def make_py() -> Registry:
    reg = Registry()

    @reg.rpc("t.add")
    def add(a: int, b: int = 10) -> int:
        """Add two integers.

        More text that is not part of the help."""
        return a + b

    @reg.rpc("t.concat")
    def concat(sep: str, *parts: str) -> str:
        return sep.join(parts)

    @reg.rpc("t.scale")
    def scale(x: float, factor: float = 2.0) -> float:
        return x * factor

    @reg.rpc("t.none")
    def nothing() -> None:
        return None

    @reg.rpc("t.tuple")
    def tup() -> tuple[int, str]:
        return 1, "two"

    @reg.rpc("t.dict")
    def dct() -> dict[str, Any]:
        return {"a": 1, "b": "x", "sub": {"c": 2.5}, "lst": [1, 2]}

    @reg.rpc("t.list")
    def lst() -> list[Any]:
        return [1, "a", {"k": 1}, [2, 3]]

    @reg.rpc("t.fault")
    def fault() -> None:
        raise Fault(404, "nothing here")

    @reg.rpc("t.boom")
    def boom() -> None:
        raise ZeroDivisionError("x")

    @reg.rpc("t.big")
    def big() -> int:
        return 1 << 40

    @reg.rpc("t.bytes")
    def byt(b: bytes) -> bytes:
        return b[::-1]

    @reg.rpc("t.struct")
    def st(s: Struct, n: int | None = None) -> Struct:
        return Struct([*s.items(), ("n", n if n is not None else -1)])

    @reg.rpc("t.any")
    def anything(*values: Any) -> tuple[Any, ...]:
        return tuple(values)

    @reg.rpc("t.ctx")
    def with_ctx(ctx: RpcContext, x: int) -> str:
        return f"{ctx.method}:{x}"

    @reg.rpc("t.async")
    async def slow(x: int) -> int:
        await asyncio.sleep(0)
        return x * 3

    @reg.rpc("t.asyncfault")
    async def slow_fault() -> None:
        await asyncio.sleep(0)
        raise Fault(401, "later")

    return reg


PY = make_py()


def test_pythonic_ints_and_defaults() -> None:
    assert one(PY, "t.add", [1, 2]) == ("reply", [3])
    assert one(PY, "t.add", [1]) == ("reply", [11])
    # extra parameters are ignored, as ctl's scan ignores unread records
    assert one(PY, "t.add", [1, 2, "x"]) == ("reply", [3])


def test_pythonic_missing_and_wrong_type_use_ctl_texts() -> None:
    assert one(PY, "t.add", []) == (
        "fault",
        (400, "error at parameter 0: expected integer type but end of packet encountered"),
    )
    assert one(PY, "t.add", [1, "x"]) == (
        "fault",
        (400, "error at parameter 1: expected integer type but record doesn't match type"),
    )


def test_pythonic_varargs_and_str() -> None:
    assert one(PY, "t.concat", ["-", "a", "b", "c"]) == ("reply", ["a-b-c"])
    assert one(PY, "t.concat", ["-"]) == ("reply", [""])
    kind, (code, text) = one(PY, "t.concat", ["-", "a", 5])
    assert (kind, code) == ("fault", 400)
    assert text == "error at parameter 2: expected string type but record doesn't match type"


def test_pythonic_float_accepts_int_and_double() -> None:
    assert one(PY, "t.scale", [1.5]) == ("reply", [3.0])
    assert one(PY, "t.scale", [2, 0.5]) == ("reply", [1.0])


def test_pythonic_return_shapes() -> None:
    assert one(PY, "t.none") == ("reply", [])
    assert run(PY, "t.none")[0] == bytes.fromhex("a1110012 34".replace(" ", ""))
    assert one(PY, "t.tuple") == ("reply", [1, "two"])
    kind, values = one(PY, "t.dict")
    assert kind == "reply"
    assert values == [
        Struct(
            [
                ("a", 1),
                ("b", "x"),
                ("sub", Struct([("c", 2.5)])),
                ("lst", Struct([(None, 1), (None, 2)])),
            ]
        )
    ]
    kind, values = one(PY, "t.list")
    # a list is what ctl calls an array: a STRUCT of unnamed values, never an ARRAY record
    assert values == [
        Struct(
            [
                (None, 1),
                (None, "a"),
                (None, Struct([("k", 1)])),
                (None, Struct([(None, 2), (None, 3)])),
            ]
        )
    ]
    sent = run(PY, "t.list")[0]
    assert b"\x04" not in sent[5:6]  # first record is a struct start 03
    assert sent[5] == 0x03


def test_pythonic_big_int_goes_out_as_double() -> None:
    assert one(PY, "t.big") == ("reply", [float(1 << 40)])


def test_pythonic_fault_and_exception(caplog: pytest.LogCaptureFixture) -> None:
    assert one(PY, "t.fault") == ("fault", (404, "nothing here"))
    kind, (code, text) = one(PY, "t.boom")
    assert (kind, code) == ("fault", 500)
    assert "ZeroDivisionError" in text
    assert "t.boom" in caplog.text


def test_pythonic_bytes_struct_any() -> None:
    assert one(PY, "t.bytes", [b"abc"]) == ("reply", [b"cba"])
    assert one(PY, "t.bytes", ["abc"]) == ("reply", [b"cba"])
    assert one(PY, "t.struct", [Struct(a=1)]) == ("reply", [Struct([("a", 1), ("n", -1)])])
    assert one(PY, "t.struct", [Struct(a=1), 5]) == ("reply", [Struct([("a", 1), ("n", 5)])])
    kind, (code, text) = one(PY, "t.struct", [5])
    assert (kind, code) == ("fault", 400)
    assert "expected structure type" in text
    assert one(PY, "t.any", [1, "a", 2.5, Struct(x=1)]) == ("reply", [1, "a", 2.5, Struct(x=1)])


def test_pythonic_context_parameter() -> None:
    assert one(PY, "t.ctx", [7]) == ("reply", ["t.ctx:7"])


def test_pythonic_async() -> None:
    assert one(PY, "t.async", [5]) == ("reply", [15])
    assert one(PY, "t.asyncfault") == ("fault", (401, "later"))


def test_help_and_signatures() -> None:
    m = PY.get("t.add")
    assert m is not None
    assert m.doc == "Add two integers."
    assert m.signature == ["int", "int", "[int]"]
    assert PY.get("t.concat").signature == ["string", "string", "string..."]  # type: ignore[union-attr]
    assert PY.get("t.none").signature == ["nil"]  # type: ignore[union-attr]
    assert PY.get("t.ctx").signature == ["string", "int"]  # type: ignore[union-attr]


def test_registry_names_bytewise_and_chain() -> None:
    reg = Registry()
    for name in ("b", "B", "a.z", "a.Z", "_x"):
        reg.register(name, lambda: None)
    assert reg.names() == ["B", "_x", "a.Z", "a.z", "b"]
    chained = Registry.chain(reg, builtin_registry())
    assert chained.get("core.echo") is not None
    assert "B" in chained.names() and "core.echo" in chained.names()


def test_registration_errors() -> None:
    reg = Registry()

    def opt_then_req(a: int = 1, *, b: int) -> None: ...

    with pytest.raises(TypeError):
        reg.register("x", opt_then_req)
    with pytest.raises(ValueError):
        reg.register("", lambda: None)


# ------------------------------------------------------------------------------------------
# context style: scan


def ctx_registry(handler: Any, name: str = "t.h") -> Registry:
    reg = Registry()
    reg.register(name, handler, context=True)
    return reg


def capture(fmt_calls: list[str], params: list[Any], **kw: Any) -> tuple[list[Any], Any]:
    """Run a handler doing the given scans; return (scan results, reply)."""
    results: list[Any] = []

    def handler(ctx: RpcContext) -> None:
        results.extend(ctx.scan(fmt) for fmt in fmt_calls)

    reply = one(ctx_registry(handler), "t.h", params, **kw)
    return results, reply


def test_scan_success_returns_count_and_values() -> None:
    (r,), reply = capture(["dsf"], [1, "a", 1.5])
    assert isinstance(r, ScanResult)
    assert r == 3 and r.values == [1, "a", 1.5]
    a, b, c = r
    assert (a, b, c) == (1, "a", 1.5)
    assert reply == ("reply", [])


def test_scan_optional_end_of_packet_is_positive_without_fault() -> None:
    (r,), reply = capture(["d*ds"], [5])
    assert r == 1 and r.values == [5]
    assert reply == ("reply", [])


def test_scan_missing_without_star_is_minus_k_and_deferred_fault() -> None:
    (r,), reply = capture(["dd"], [5])
    assert r == -1
    assert reply == (
        "fault",
        (400, "error at parameter 1: expected integer type but end of packet encountered"),
    )


def test_scan_type_error_after_star_still_faults_negative() -> None:
    (r,), reply = capture(["*dd"], [5, "x"])
    assert r == -1
    assert reply[1] == (
        400,
        "error at parameter 1: expected integer type but record doesn't match type",
    )


def test_scan_zero_is_minus_zero() -> None:
    (r,), reply = capture(["d"], ["x"])
    assert r == 0 and r.values == []
    assert reply[0] == "fault"


def test_type_mismatch_not_consumed_retry_other_type_clears_fault() -> None:
    (r1, r2), reply = capture(["d", "s"], ["abc"])
    assert r1 == 0 and r2 == 1 and r2.values == ["abc"]
    assert reply == ("reply", [])  # the second scan cleared the deferred fault


def test_record_no_spans_scan_calls() -> None:
    (_r1, r2), reply = capture(["d", "d"], [1, "x"])
    assert r2 == 0
    assert reply[1][1].startswith("error at parameter 1:")


def test_deferred_fault_dropped_when_body_not_empty() -> None:
    # core.printi 1 "abc" -> [1]
    assert one(builtin_registry(), "core.printi", [1, "abc"]) == ("reply", [1])


@pytest.mark.parametrize("method", ["core.echo", "core.prints"])
def test_binrpc_str_is_cut_at_its_first_nul(method: str) -> None:
    # as Kamailio 5.6.3 (tests/interop: test_nul_in_a_string): its C strings end at the NUL;
    # over FIFO the NUL survives (tests/fifo: test_exact_replies[echo-nul])
    assert one(builtin_registry(), method, ["n\0u\rl", "\0x", "a"]) == ("reply", ["n", "", "a"])


def test_explicit_fault_takes_precedence() -> None:
    def handler(ctx: RpcContext) -> None:
        if ctx.scan("s") < 1:
            ctx.fault(400, "Method Name Expected")

    assert one(ctx_registry(handler), "t.h", [1]) == ("fault", (400, "Method Name Expected"))


def test_scan_bad_format_chars_fault_immediately() -> None:
    results: list[Any] = []

    def handler(ctx: RpcContext) -> None:
        results.append(ctx.scan("d{"))
        ctx.add("d", 1)

    assert one(ctx_registry(handler), "t.h", [1]) == (
        "fault",
        (500, "internal server error, type 3 not supported"),
    )
    assert results[0] < 0

    def handler2(ctx: RpcContext) -> None:
        ctx.scan("x")

    assert one(ctx_registry(handler2), "t.h", [1]) == (
        "fault",
        (500, "internal server error, invalid format char 'x'"),
    )


def test_scan_s_stops_at_nul_but_S_keeps_it() -> None:
    (r,), _ = capture(["sS"], ["a\0b", "c\0d"])
    assert r.values == ["a", "c\0d"]


def test_scan_64bit_formats_take_double() -> None:
    (r,), _ = capture(["jf"], [Double(67108864), 2.5])
    assert r.values == [67108864, 2.5]
    # 5.6.3: an INT is not accepted for a double format
    (r,), reply = capture(["f"], [5])
    assert r == 0
    assert reply[1][1] == "error at parameter 0: expected float type but record doesn't match type"


def test_truncated_record_behaves_like_end_for_star() -> None:
    # STR announcing 5 bytes with only 2 present
    sent = run(builtin_registry(), "core.prints", raw_params=bytes.fromhex("216100" + "516162"))
    assert decode_reply(sent[0])[2] == ["a"]


# ------------------------------------------------------------------------------------------
# autoconversion (spec 5.4; texts checked against a real 5.6.3 with autoconversion=1)

AUTO = RpcLimits(autoconversion=True)

NOMATCH = "record doesn't match type"
INT_CASES = [
    (12, ("reply", [12])),
    ("12", ("reply", [12])),
    ("+5", ("reply", [5])),
    ("", ("reply", [0])),
    ("-", ("reply", [0])),
    ("-2147483648", ("reply", [-2147483648])),
    (2.7, ("reply", [2])),
    (-2.7, ("reply", [-2])),
    (Double(3e12), ("reply", [-2147483648])),
    ("abc", ("fault", (400, f"error at parameter 0: expected string type but {NOMATCH}"))),
    (" 12", ("fault", (400, f"error at parameter 0: expected string type but {NOMATCH}"))),
    ("12abc", ("fault", (400, f"error at parameter 0: expected string type but {NOMATCH}"))),
    ("2147483648", ("fault", (400, f"error at parameter 0: expected string type but {NOMATCH}"))),
    ("99999999999", ("fault", (400, f"error at parameter 0: expected string type but {NOMATCH}"))),
    (b"\x01", ("fault", (400, f"error at parameter 0: expected bytes array type but {NOMATCH}"))),
    (Struct(a=1), ("fault", (400, f"error at parameter 0: expected structure type but {NOMATCH}"))),
    ([1], ("fault", (400, f"error at parameter 0: expected array type but {NOMATCH}"))),
]  # fmt: skip


@pytest.mark.parametrize(("param", "expected"), INT_CASES)
def test_autoconversion_to_int(param: Any, expected: Any) -> None:
    assert one(builtin_registry(), "core.printi", [param], limits=AUTO) == expected


STR_CASES = [
    (5, ("reply", ["5"])),
    (-1, ("reply", ["18446744073709551615"])),
    (-5, ("reply", ["18446744073709551611"])),
    (-2147483648, ("reply", ["18446744071562067968"])),
    ("abc", ("reply", ["abc"])),
    (1.5, ("fault", (400, "error at parameter 0: expected float type but bug -- internal error"))),
    (b"x", ("fault", (400, f"error at parameter 0: expected bytes array type but {NOMATCH}"))),
]  # fmt: skip


@pytest.mark.parametrize(("param", "expected"), STR_CASES)
def test_autoconversion_to_string(param: Any, expected: Any) -> None:
    # core.echo uses ".s"; the same with the global option on core.prints ("*s")
    assert one(builtin_registry(), "core.echo", [param]) == expected
    assert one(builtin_registry(), "core.prints", [param], limits=AUTO) == expected


def test_autoconversion_to_double() -> None:
    results: list[Any] = []

    def handler(ctx: RpcContext) -> None:
        while (r := ctx.scan("*.f")) > 0:
            results.append(r.values[0])

    reg = ctx_registry(handler)
    assert one(reg, "t.h", [3, 2.5, "1.5x", " 2", "0x10", "inf"]) == ("reply", [])
    assert results == [3.0, 2.5, 1.5, 2.0, 16.0, float("inf")]
    results.clear()
    assert one(reg, "t.h", ["abc"])[0] == "fault"
    _k, (_c, text) = one(reg, "t.h", ["abc"])
    assert text == f"error at parameter 0: expected string type but {NOMATCH}"


def test_failed_autoconversion_consumes_the_record() -> None:
    seen: list[Any] = []

    def handler(ctx: RpcContext) -> None:
        seen.append(ctx.scan(".d"))
        seen.append(ctx.scan("s"))

    assert one(ctx_registry(handler), "t.h", ["abc", "next"]) == ("reply", [])
    assert seen[0] == 0 and seen[1].values == ["next"]


# ------------------------------------------------------------------------------------------
# adding and limits


def build(handler: Any, **kw: Any) -> tuple[str, Any]:
    return one(ctx_registry(handler), "t.h", [], **kw)


def test_add_formats() -> None:
    def handler(ctx: RpcContext) -> None:
        ctx.add("dutbfjsS", 1, 0xFFFFFFFF, 3, 7, 1.5, 67108864, None, "a\0b")

    assert build(handler) == (
        "reply",
        [1, -1, 3, 7, 1.5, 67108864.0, "<null string>", "a\0b"],
    )
    sent = run(ctx_registry(handler), "t.h")[0]
    assert bytes.fromhex("520fa000000000") not in sent  # j is value x 1000
    assert bytes.fromhex("520fa0000000") in sent


def test_add_bad_char_faults() -> None:
    def handler(ctx: RpcContext) -> None:
        ctx.add("d", 1)
        assert ctx.add("o", 1) == -1

    assert build(handler) == (
        "fault",
        (500, "Internal server error: invalid formatting character 'o'"),
    )


def test_structs_and_arrays() -> None:
    def handler(ctx: RpcContext) -> None:
        h = ctx.add("{")
        ctx.struct_add(h, "ds", "a", 1, "b", "x")
        sub = ctx.struct_add(h, "{d", "sub", "ignored", 5)  # '{' ends the call
        ctx.struct_add(sub, "d", "c", 2)
        arr = ctx.add("[")
        nested = ctx.array_add(arr, "d{s", 1, "z")  # array_add continues after '{'
        ctx.array_add(nested, "d", 9)
        ctx.struct_printf(h, "p", "%d-%s", 4, "q")

    _kind, values = build(handler)
    assert values == [
        Struct([("a", 1), ("b", "x"), ("sub", Struct([("c", 2)])), ("p", "4-q")]),
        Struct([(None, 1), (None, Struct([(None, 9)])), (None, "z")]),
    ]


def test_top_level_overflow_faults_with_the_char() -> None:
    def handler(ctx: RpcContext) -> None:
        ctx.add("s", "y" * 1020)  # record of 1024 bytes fits exactly (checked against 5.6.3)

    assert build(handler, limits=RpcLimits(max_body_size=1024))[0] == "reply"

    def handler2(ctx: RpcContext) -> None:
        ctx.add("s", "y" * 1021)

    assert build(handler2, limits=RpcLimits(max_body_size=1024)) == (
        "fault",
        (500, "Internal server error processing 's': buffer too small (overflow) (-2)"),
    )


def test_struct_content_does_not_count_for_top_level() -> None:
    def handler(ctx: RpcContext) -> None:
        for _ in range(3):
            h = ctx.add("{")
            ctx.struct_add(h, "s", "n", "x" * 900)

    kind, values = build(handler, limits=RpcLimits(max_body_size=1024))
    assert kind == "reply" and len(values) == 3


def test_struct_overflow_is_silent_and_rolled_back() -> None:
    rets: list[Any] = []

    def handler(ctx: RpcContext) -> None:
        h = ctx.add("{")
        rets.append(ctx.struct_add(h, "ss", "a", "x" * 500, "b", "y" * 600))
        rets.append(ctx.array_add(h, "s", "z" * 600))
        rets.append(ctx.struct_printf(h, "c", "%s", "w" * 10))

    kind, values = build(handler, limits=RpcLimits(struct_max_body_size=1024))
    assert kind == "reply"
    assert rets == [-1, -1, 0]
    assert values == [Struct([("a", "x" * 500), ("c", "w" * 10)])]


def test_printf_limits() -> None:
    rets: list[int] = []

    def handler(ctx: RpcContext) -> None:
        rets.append(ctx.rpl_printf("%s", "a" * 15))
        rets.append(ctx.rpl_printf("%s", "b" * 16))
        h = ctx.add("{")
        rets.append(ctx.struct_printf(h, "n", "%s", "c" * 16))

    _kind, values = build(handler, limits=RpcLimits(buffer_size=16))
    assert rets == [0, -1, -1]
    assert values == ["a" * 15, Struct()]


def test_rpl_printf_top_overflow_is_silent() -> None:
    def handler(ctx: RpcContext) -> None:
        ctx.add("s", "x" * 1000)
        assert ctx.rpl_printf("%s", "y" * 100) == -1

    kind, values = build(handler, limits=RpcLimits(max_body_size=1024))
    assert (kind, values) == ("reply", ["x" * 1000])


def test_send_then_act_and_fault_after_send_ignored() -> None:
    events: list[str] = []

    def handler(ctx: RpcContext) -> None:
        ctx.add("d", 1)
        assert ctx.send() == 0
        events.append("after send")
        ctx.add("d", 2)  # never sent
        ctx.fault(500, "ignored")
        assert ctx.send() == -1

    sent = run(ctx_registry(handler), "t.h")
    assert len(sent) == 1
    assert decode_reply(sent[0])[2] == [1]
    assert events == ["after send"]


def test_fault_discards_body_and_is_cut_to_254() -> None:
    def handler(ctx: RpcContext) -> None:
        ctx.add("d", 1)
        ctx.fault(499, "%s", "x" * 1000)

    kind, (code, text) = build(handler)
    assert (kind, code) == ("fault", 499)
    assert text == "x" * 254


def test_datagram_reply_too_big_becomes_fault() -> None:
    def handler(ctx: RpcContext) -> None:
        for _ in range(10):
            h = ctx.add("{")
            ctx.struct_add(h, "s", "n", "x" * 8000)

    kind, (code, text) = build(handler, max_reply_size=65535)
    assert (kind, code) == ("fault", 500)
    assert "too big for a datagram" in text


def test_context_exception_is_500() -> None:
    def handler(ctx: RpcContext) -> None:
        ctx.add("d", 1)
        raise RuntimeError("no")

    kind, (code, _text) = build(handler)
    assert (kind, code) == ("fault", 500)


def test_async_context_handler() -> None:
    async def handler(ctx: RpcContext) -> None:
        await asyncio.sleep(0)
        ctx.add("s", "late")

    assert build(handler) == ("reply", ["late"])


# ------------------------------------------------------------------------------------------
# add() of doubles outside the DOUBLE range never fails (bug 5): clamped, NaN is 0

DOUBLE_MAX = 9223372036854775.807
DOUBLE_MIN = -9223372036854775.808


def test_add_double_clamps_nan_inf_and_huge() -> None:
    reg = Registry()
    values: list[tuple[str, Any]] = [
        ("f", float("nan")),
        ("f", float("inf")),
        ("f", float("-inf")),
        ("f", 1e300),
        ("f", -1e300),
        ("f", 1.5),
        ("f", Double(1 << 70)),
        ("l", 1 << 70),
        ("J", -(1 << 70)),
        ("l", 7),
    ]

    def adder(ctx: RpcContext) -> None:
        for fmt, value in values:
            ctx.add(fmt, value)

    reg.register("t.doubles", adder, context=True)

    @reg.rpc("t.inf")
    def inf() -> list[float]:
        return [float("inf"), float("nan"), 2.25]

    assert one(reg, "t.doubles") == (
        "reply",
        [0.0, DOUBLE_MAX, DOUBLE_MIN, DOUBLE_MAX, DOUBLE_MIN, 1.5, DOUBLE_MAX, DOUBLE_MAX,
         DOUBLE_MIN, 7.0],
    )  # fmt: skip
    kind, payload = one(reg, "t.inf")
    assert kind == "reply" and list(payload[0].values()) == [DOUBLE_MAX, 0.0, 2.25]
