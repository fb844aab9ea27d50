"""Pure units of the CLI: kamcmd argument typing, rendering, -f, getopt emulation."""

from __future__ import annotations

import math

import pytest

from binrpc import Struct, encode_request, encode_values
from binrpc.cli._argtype import (
    GARBAGE_DOUBLE,
    TypedArgError,
    c_strtod,
    kamcmd_value,
    typed_value,
)
from binrpc.cli._options import UsageExit, parse_args
from binrpc.cli._render import (
    ReplyFormat,
    hexdump,
    packet_line,
    render_default,
    render_fault,
    to_json,
    unescape_format,
)

# ---------------------------------------------------------------------------------------------
# argument typing (spec kamcmd 2.2)

TYPING = [
    ("", 0),
    (" 5", 5),
    ("5 ", "5 "),
    ("007", 7),
    ("+7", 7),
    ("-7", -7),
    ("-0", 0),
    ("0x10", 16.0),
    ("1e3", 1000.0),
    ("1.", 1.0),
    (".5", 0.5),
    (" 3.5", 3.5),
    ("1,5", "1,5"),
    ("0b1", "0b1"),
    ("abc", "abc"),
    ("a b", "a b"),
    ("s:", ""),
    ("s:s:x", "s:x"),
    ("s:1", "1"),
    ("s:-3", "-3"),
    ("S:1", "S:1"),
    ("i:5", "i:5"),
    ("d:1.5", "d:1.5"),
    ("tab\tx", "tab\tx"),
    ("4294967296", 0),
    ("2147483648", -2147483648),
    ("-2147483649", 2147483647),
    ("2147483647", 2147483647),
    ("-2147483648", -2147483648),
    ("99999999999999999999", -1),
    ("0x1p3", 8.0),
    ("0x", "0x"),
    ("-", "-"),
    (" ", " "),
    ("1e", "1e"),
    ("1e+", "1e+"),
    ("+.5e-1", 0.05),
    ("0x.8p1", 1.0),
    ("-0XaP-1", -5.0),
    ("0x1p", "0x1p"),
    ("0x1.8.p1", "0x1.8.p1"),
    (".", "."),
    ("e5", "e5"),
    ("1.2.3", "1.2.3"),
    ("infinit", "infinit"),
    ("nan(", "nan("),
    ("nan(a b)", "nan(a b)"),
    ("nan(a)b)", "nan(a)b)"),
    ("\u0661", "\u0661"),  # an Arabic-Indic digit: not a C digit
    # strtod's inf/nan are matched case-insensitively in ASCII only (checked against kamcmd 1.5:
    # these go out as strings, where Unicode case folding would have made them numbers)
    ("\u0131nf", "\u0131nf"),
    ("\u0130nfinity", "\u0130nfinity"),
    ("nan(\u212a)", "nan(\u212a)"),
    ("nan(\u017f)", "nan(\u017f)"),
]


@pytest.mark.parametrize(("word", "expected"), TYPING)
def test_kamcmd_typing(word: str, expected: object) -> None:
    value = kamcmd_value(word)
    assert type(value) is type(expected)
    assert value == expected


@pytest.mark.parametrize(
    "word",
    [
        "inf",
        "nan",
        "infinity",
        "-INF",
        "1e400",
        "NaN(x1)",
        "1e17",
        "nan()",
        "nAn(a_Z9)",
        "0x1p99999",
    ],
)
def test_garbage_doubles_reproduce_kamcmds_wire_value(word: str) -> None:
    assert kamcmd_value(word) == GARBAGE_DOUBLE
    assert encode_values([kamcmd_value(word)]) == bytes.fromhex("828000000000000000")


def test_worked_example_request_bytes() -> None:
    # spec kamcmd 6.1: `kamcmd -- core.echo a 1 -2 1.5 s:3 '' 300 70000 -1.5`
    words = ["a", "1", "-2", "1.5", "s:3", "", "300", "70000", "-1.5"]
    packet = encode_request("core.echo", [kamcmd_value(w) for w in words], 0x7D89B3A0)
    assert packet.hex() == (
        "a1032d7d89b3a0910a636f72652e6563686f00216100100140fffffffe2205dc2133000020012c"
        "3001117082fffffffffffffa24"
    )


def test_double_truncation() -> None:
    assert encode_values([kamcmd_value("1.23456")]) == encode_values([1.234])
    assert c_strtod("nan") is not None and math.isnan(c_strtod("nan") or 0)


def test_typed_values() -> None:
    assert typed_value("i:5") == 5
    assert typed_value("i:0x10") == 16
    assert typed_value("d:2") == 2.0 and isinstance(typed_value("d:2"), float)
    assert typed_value("b:ab") == b"ab"
    assert typed_value("s:5") == "5"
    assert typed_value("7") == 7
    for bad in ["i:x", "i:4294967296", "d:inf", "d:x"]:
        with pytest.raises(TypedArgError):
            typed_value(bad)


# ---------------------------------------------------------------------------------------------
# rendering (spec kamcmd 3.2)


def T(text: str) -> bytes:
    return text.replace("⇥", "\t").encode()


def test_render_scalars() -> None:
    body = encode_values([0, 1, -1, 2147483647, -2147483648, 255, 256])
    assert render_default(body).out == b"0\n1\n-1\n2147483647\n-2147483648\n255\n256\n"
    body = encode_values(["", "hello", "tab\there", "multi\nline", b"abc", b""])
    assert render_default(body).out == b"\nhello\ntab\there\nmulti\nline\nabc\n\n"
    body = encode_values([1.5, 2.0, -0.25, 0.001, 12345.678, -3.0, 1e12, 0.0])
    assert render_default(body).out == (
        b"1.500000\n2\n-0.250000\n0.001000\n12345.678000\n-3\n1000000000000\n0\n"
    )


def test_render_nested() -> None:
    s = Struct(a=1, b="x", c=Struct(d=2, e=Struct(f=3)), g=2.5)
    assert render_default(encode_values([s])).out == T(
        "{\n⇥a: 1\n⇥b: x\n⇥c: {\n⇥⇥d: 2\n⇥⇥e: {\n⇥⇥⇥f: 3\n⇥⇥}\n⇥}\n⇥g: 2.500000\n}\n"
    )


def test_render_array_indent_quirk() -> None:
    assert render_default(encode_values([[1, "a", [2, 3]]])).out == T(
        "⇥[\n⇥1\n⇥a\n⇥⇥[\n⇥⇥2\n⇥⇥3\n⇥]\n]\n"
    )
    assert render_default(encode_values([[Struct(x=1)]])).out == T("⇥[\n⇥{\n⇥⇥x: 1\n⇥}\n]\n")


def test_render_unnamed_members_and_mixed_top_level() -> None:
    unnamed = Struct([(None, 1), (None, 2), (None, "x")])
    assert render_default(encode_values([unnamed])).out == T("{\n⇥1\n⇥2\n⇥x\n}\n")
    sos = Struct([(None, Struct(a=1)), (None, Struct(a=2))])
    assert render_default(encode_values([sos])).out == T("{\n⇥{\n⇥⇥a: 1\n⇥}\n⇥{\n⇥⇥a: 2\n⇥}\n}\n")
    assert render_default(encode_values([7, Struct(k="v"), "tail"])).out == T(
        "7\n{\n⇥k: v\n}\ntail\n"
    )


def test_render_parse_error_keeps_prefix() -> None:
    # a named member whose value is an array: kamcmd's "bad record" (spec 3.4)
    body = bytes.fromhex("0345616263000484" + "83")
    r = render_default(body)
    assert r.out == b"{\n"
    assert r.error is not None
    assert r.error.message() == "ERROR:: while parsing the record 1, @1: 45 : bad record"


def test_string_with_nul_is_cut() -> None:
    assert render_default(encode_values(["ab\0cd"])).out == b"ab\n"


# ---------------------------------------------------------------------------------------------
# -f (spec kamcmd 3.5)

FIVE = encode_values([1, 2, 3, 4, 5])


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (r"%v\n", b"1\n2\n3\n4\n5\n"),
        ("%v", b"12345"),
        ("%v,", b"1,2,3,4,5,"),
        (r"%v-%v\n", b"1-2\n3-4\n5-\n"),
        (r"hello\n", b"hello\n1hello\n2hello\n3hello\n4hello\n5"),
        ("", b"12345"),
        (r"%v %%v 100%% %v\n", b"1 %v 100% 2\n3 %v 100% 4\n5 %v 100% \n"),
        (
            r"a\tb\\n\r\q%v\n",
            b"a\tb\\n\r\\q1\na\tb\\n\r\\q2\na\tb\\n\r\\q3\na\tb\\n\r\\q4\na\tb\\n\r\\q5\n",
        ),
        # deviations: kamcmd hangs on these; we print the '%' literally
        (r"%d %v\n", b"%d 1\n%d 2\n%d 3\n%d 4\n%d 5\n"),
        ("%v %", b"1 %2 %3 %4 %5 %"),
    ],
)
def test_format_language(fmt: str, expected: bytes) -> None:
    assert ReplyFormat(unescape_format(fmt)).render(FIVE).out == expected


def test_format_cycles_and_tail() -> None:
    body = encode_values([1, "one", 2, "two", 3])
    assert ReplyFormat(b"[%v|%v|%v]\n").render(body).out == b"[1|one|2]\n[two|3|]\n"
    assert ReplyFormat(b"x=%v y=%v\n").render(b"").out == b"x= y=\n"


def test_format_flattens_structs() -> None:
    body = encode_values([Struct(IDX=0, PID=7), [1]])
    assert ReplyFormat(b"%v|").render(body).out == b"{|IDX: 0|PID: 7|}|[|1|]|"


def test_faults_through_the_format_engine() -> None:
    assert render_fault(encode_values([404, "not here"])).out == b"error: 404 - not here\n"
    assert render_fault(encode_values([499])).out == b"error: 499 - \n"
    assert render_fault(encode_values([1, "a", "b"])).out == b"error: 1 - a\nb - \n"
    assert render_fault(encode_values(["only a string"])).out == b"error: only a string - \n"


def test_verbose_lines() -> None:
    assert packet_line(1, 82, 0x2B09E4FF) == b"new packet: type 01, len 82, cookie 2b09e4ff\n"
    data = bytes.fromhex("a113522b09e4ff03456e6f770091194670746960650010" + "5a83")
    dump = hexdump(data, 0).decode()
    lines = dump.splitlines()
    assert lines[0] == f"received {len(data)} bytes in reply (@offset 0):"
    assert lines[1] == "a1 13 52 2b 09 e4 ff 03 45 6e 6f 77 00 91 19 46  ..R+....Enow...F"
    assert lines[2] == "70 74 69 60 65 00 10 5a 83" + " " * 23 + "pti`e..Z."
    assert lines[2].index("p") == lines[1].index(".")


@pytest.mark.parametrize("size", [16, 32, 48])
def test_hexdump_of_whole_lines_ends_without_ascii(size: int) -> None:
    # kamcmd (observed): a read whose length is a multiple of 16 ends with a line of 16 hex
    # bytes and the separating space, without its ASCII column; the lines before keep theirs
    data = bytes(range(0x41, 0x41 + size))
    lines = hexdump(data, 7).decode().split("\n")
    assert lines[0] == f"received {size} bytes in reply (@offset 7):"
    rows = [data[k : k + 16] for k in range(0, size, 16)]
    for line, row in zip(lines[1:-2], rows, strict=False):
        assert line == " ".join(f"{b:02x}" for b in row) + "  " + row.decode()
    assert lines[-2] == " ".join(f"{b:02x}" for b in rows[-1]) + "  "
    assert lines[-1] == "" and len(lines) == 2 + len(rows)


def test_json_error_kinds_are_the_documented_ones() -> None:
    from binrpc import (
        ConnectError,
        ConnectionClosed,
        DecodeError,
        LocalProtocolError,
        TransportTimeout,
    )
    from binrpc._address import AddressError
    from binrpc.cli._jsondoc import ERROR_KINDS, error_kind
    from binrpc.client._errors import (
        BindError,
        CookieMismatch,
        ReceiveError,
        ReplyLost,
        ResolveError,
        SendError,
    )

    cases = {
        AddressError("x"): "address",
        ResolveError("h", "tcp:h:1"): "resolve",
        BindError(2, "x"): "bind",
        TransportTimeout(0, "x"): "timeout",
        ConnectError(111, "x"): "connect",
        SendError(32, "x"): "send",
        ConnectionClosed(0, "x"): "closed",
        ReplyLost("a", ValueError()): "closed",
        ReceiveError(104, "x"): "receive",
        CookieMismatch(1, 2): "protocol",
        DecodeError(1): "protocol",
        LocalProtocolError("x"): "request",
    }
    for exc, kind in cases.items():
        assert error_kind(exc) == kind and kind in ERROR_KINDS, exc


def test_json_shape_keeps_duplicates() -> None:
    s = Struct([("SET", 1), ("SET", 2), (None, "x"), ("k", Struct(a=1))])
    assert to_json(s) == {"SET": [1, 2], "": ["x"], "k": [{"a": [1]}]}
    assert to_json([1, b"ab"]) == [1, "ab"]


# ---------------------------------------------------------------------------------------------
# getopt emulation (spec kamcmd 1.2)


def P(*argv: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse_args(list(argv), env or {})


def test_permutation_and_clusters() -> None:
    o = P("core.echo", "a", "-v", "b", "-f", "%v|", "-s", "unixs:/x")
    assert o.words == ["core.echo", "a", "b"]
    assert o.verbose == 1 and o.format == b"%v|" and o.sockets == ["unixs:/x"]
    o = P("-vvf%v\\n", "-sunixs:/y", "x")
    assert o.verbose == 2 and o.format == b"%v\n" and o.sockets == ["unixs:/y"]


def test_double_dash_and_posix() -> None:
    assert P("--", "core.echo", "-x", "--").words == ["core.echo", "-x", "--"]
    o = P("-s", "X", "core.echo", "a", "-v", env={"POSIXLY_CORRECT": "1"})
    assert o.words == ["core.echo", "a", "-v"] and o.verbose == 0


def test_negative_numbers_after_the_method_are_arguments() -> None:
    assert P("core.echo", "-4", "-1.5", "-0x10", "-inf").words == [
        "core.echo",
        "-4",
        "-1.5",
        "-0x10",
        "-inf",
    ]
    with pytest.raises(UsageExit) as info:
        P("-4", "core.echo")
    assert info.value.stderr == "Unknown option `-4'.\n" and info.value.status == 255


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        (["-x"], "Unknown option `-x'.\n"),
        (["-s"], "Unknown option `-s'.\n"),
        (["core.ps", "-f"], "Unknown option `-f'.\n"),
        (["-\x01"], "Unknown option character `\\x1'.\n"),
        (["--nope"], "Unknown option `--nope'.\n"),
        (["--nope=1"], "Unknown option `--nope'.\n"),
        (["-t"], "Unknown option `-t'.\n"),  # short options: kamcmd's (getopt's '?') wording
        (["core.ps", "--timeout"], "Option `--timeout' requires an argument.\n"),
        (["--batch"], "Option `--batch' requires an argument.\n"),
        (["--json=yes", "core.ps"], "Option `--json' doesn't allow an argument.\n"),
        (["--json=", "core.ps"], "Option `--json' doesn't allow an argument.\n"),
        (["--help=x"], "Option `--help' doesn't allow an argument.\n"),
    ],
)
def test_option_errors(argv: list[str], stderr: str) -> None:
    with pytest.raises(UsageExit) as info:
        P(*argv)
    assert info.value.status == 255 and info.value.stderr == stderr


def test_help_and_version_act_when_met() -> None:
    with pytest.raises(UsageExit) as info:
        P("-h", "-x")
    assert info.value.status == 0 and "Usage:" in info.value.stdout
    with pytest.raises(UsageExit) as info:
        P("-V", "-h")
    assert info.value.stdout.startswith("version: binrpc ")
    with pytest.raises(UsageExit) as info:
        P("-x", "-h")
    assert info.value.status == 255


def test_extensions() -> None:
    o = P("--json", "-t", "2.5", "--typed", "--kamcmd-exit", "--max-reply=100", "m")
    assert o.json and o.timeout == 2.5 and o.typed and o.kamcmd_exit and o.max_reply == 100
    o = P("-s", "a", "-s", "b", "m")
    assert o.sockets == ["a", "b"]
    with pytest.raises(UsageExit):
        P("-t", "0", "m")


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan", "-1", "0", "0.0", "1e300", "abc", ""])
def test_timeout_option_refuses_what_is_not_a_timeout(bad: str) -> None:
    for argv in (("-t", bad), (f"-t{bad}",), ("--timeout", bad), (f"--timeout={bad}",)):
        if not bad and len(argv) == 1 and not argv[0].startswith("--"):
            continue  # "-t" alone takes the next word
        with pytest.raises(UsageExit) as info:
            P(*argv, "m")
        assert info.value.status == 255
        assert info.value.stderr == (
            f"ERROR: bad timeout {bad!r} (seconds > 0 and <= 2147483 expected; "
            "without -t there is none)\n"
        )
    assert P("-t", "2147483", "m").timeout == 2147483.0
