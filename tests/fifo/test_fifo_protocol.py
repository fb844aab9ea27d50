"""The FIFO text protocol, sans-I/O: framing, request parsing, escapes, context, replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binrpc._context import RpcContext
from binrpc._dispatch import call_method
from binrpc._fifo_context import FifoContext
from binrpc._fifo_wire import (
    FifoFramer,
    FifoRequest,
    FifoRequestError,
    FifoTooLarge,
    datagram_request,
    escape,
    parse_fifo_request,
    unescape,
)
from binrpc._registry import Registry
from binrpc._values import Struct
from binrpc.rpcs import builtin_registry

# -- framing -------------------------------------------------------------------------------------


def drain(framer: FifoFramer) -> list[bytes]:
    out = []
    while (r := framer.next_request()) is not None:
        out.append(r)
    return out


def test_request_ends_at_the_empty_line() -> None:
    framer = FifoFramer()
    framer.feed(b":core.echo:r\na\nb\n")
    assert drain(framer) == []
    framer.feed(b"\n:core.version:\n\n")
    assert drain(framer) == [b":core.echo:r\na\nb\n", b":core.version:\n"]
    assert framer.buffered == 0


def test_crlf_lines_do_not_end_the_request() -> None:
    # Kamailio ends the request at the first CRLF; the intended format accepts CRLF lines
    framer = FifoFramer()
    framer.feed(b":core.echo:\r\na\r\nb\r\n\r\n")
    (req,) = drain(framer)
    assert parse_fifo_request(req) == FifoRequest("core.echo", "", ("a", "b"))


def test_the_shortest_request_is_complete_at_five_bytes() -> None:
    framer = FifoFramer()
    framer.feed(b":a:\n\n")
    assert drain(framer) == [b":a:\n"]


def test_blank_lines_between_requests_are_skipped() -> None:
    framer = FifoFramer()
    framer.feed(b"\n\r\n\n:a:\n\n\n\n:b:\nx\n\n")
    assert drain(framer) == [b":a:\n", b":b:\nx\n"]


@pytest.mark.parametrize(
    ("datagram", "wanted"),
    [
        (b":a:\nx\n\n", b":a:\nx\n"),
        (b"\r\n\n:a:\r\nx\r\n\r\n:b:\n\n", b":a:\r\nx\r\n"),  # blank lines, what follows
        (b":a:\nx\n", None),  # cut short: no empty line
        (b":a:\nx", None),
        (b":a:\nx\n\r", None),
        (b"\n\n", None),
        (b"", None),
    ],
)
def test_a_datagram_is_a_request_only_with_its_empty_line(
    datagram: bytes, wanted: bytes | None
) -> None:
    assert datagram_request(datagram) == wanted
    if wanted is not None:  # the framer cuts a stream the same way
        framer = FifoFramer()
        framer.feed(datagram)
        assert framer.next_request() == wanted


STREAM = b":core.echo:r1\nhello\nwor\\tld\n\n:core.version:\n\n:core.printi:\n1\n2\n\n"


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_random_chunks_give_the_same_requests(cuts: list[int]) -> None:
    framer = FifoFramer()
    got: list[bytes] = []
    pos = 0
    for cut in [*sorted(set(cuts)), len(STREAM)]:
        framer.feed(STREAM[pos:cut])
        got += drain(framer)
        pos = cut
    assert len(got) == 3
    assert got[0] == b":core.echo:r1\nhello\nwor\\tld\n"


def test_oversized_buffer_is_dropped_and_the_stream_recovers() -> None:
    framer = FifoFramer(max_request_size=100)
    framer.feed(b":x:\n" + b"a" * 200)
    with pytest.raises(FifoTooLarge):
        framer.next_request()
    assert framer.buffered == 0
    framer.feed(b":core.version:\n\n")
    assert drain(framer) == [b":core.version:\n"]


# -- first line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"core.version:\n",  # no leading ':'
        b":core.version\n",  # no second ':'
        b"::x\n",  # empty method
        b":core.version:../x\n",  # '.' and '/' in the reply name
        b":core.version:a\\b\n",
        b":a\n",
        b"\n",
    ],
)
def test_invalid_first_lines(data: bytes) -> None:
    with pytest.raises(FifoRequestError):
        parse_fifo_request(data)


def test_request_fields() -> None:
    req = parse_fifo_request(b":core.echo:myreply\n  spaced  \n\nignored\n")
    assert req == FifoRequest("core.echo", "myreply", ("  spaced  ",))


# -- escapes -------------------------------------------------------------------------------------


def test_unescape_table() -> None:
    assert unescape(r"a\\b\nc\rd\te\0f\cg\oh") == "a\\b\nc\rd\te\0f:g,h"
    for bad in (r"\x", "trailing\\", r"\C"):
        with pytest.raises(ValueError):
            unescape(bad)


def test_escape_sets() -> None:
    assert escape("a\nb\\c\0:,") == "a\\nb\\\\c\\0:,"
    # struct names and values: ':' -> \o and ',' -> \c, as Kamailio writes them
    assert escape("10:37:20", full=True) == "10\\o37\\o20"
    assert escape("USE_TCP, USE_TLS", full=True) == "USE_TCP\\c USE_TLS"


# -- running RPCs --------------------------------------------------------------------------------


def run(registry: Registry, data: bytes) -> str:
    req = parse_fifo_request(data)
    out: list[bytes] = []
    ctx = FifoContext(req, out.append, registry=registry)
    method = registry.get(req.method)
    assert method is not None
    assert call_method(method, ctx) is None
    assert len(out) == 1
    return out[0].decode()


@pytest.fixture
def core() -> Registry:
    return builtin_registry()


def test_core_echo_works_over_fifo(core: Registry) -> None:
    # Kamailio's '*' eats a line, so its core.echo prints every second line; ours echoes all
    assert run(core, b":core.echo:\na\nb\\tc\n-5\n") == "200 OK\na\nb\\tc\n-5\n"


def test_core_printi_and_prints(core: Registry) -> None:
    assert run(core, b":core.printi:\n1\n0x10\n010\n-5\n") == (
        "200 OK\n1\n16\n8\n18446744073709551611\n"
    )
    assert run(core, b":core.prints:\nx\ny\n") == "200 OK\nx\ny\n"
    assert run(core, b":core.printi:\n\n").startswith("200 OK")


def test_struct_reply_in_order_with_escapes(core: Registry) -> None:
    text = run(core, b":core.uptime:\n")
    status, line, end = text.split("\n")
    assert status == "200 OK"
    assert end == ""
    assert line.startswith("now:")
    members = line.split(",")
    assert [m.split(":")[0] for m in members] == ["now", "up_since", "uptime"]
    assert "\\o" in members[0]  # the time's ':' escaped


def test_unknown_scan_char_and_bad_escape() -> None:
    reg = Registry()

    @reg.rpc("t.bad", context=True)
    def bad(ctx: RpcContext) -> None:
        ctx.scan("x")

    @reg.rpc("t.str", context=True)
    def string(ctx: RpcContext) -> None:
        r = ctx.scan("s")
        if r > 0:
            ctx.add("s", r[0])

    assert run(reg, b":t.bad:\n1\n") == (
        "500 Server Internal Error (Invalid Formatting Character 'x')\n"
    )
    assert run(reg, b":t.str:\nbad\\q\n") == "500 Internal Server Error\n"
    assert run(reg, b":t.str:\nok\\cfine\n") == "200 OK\nok:fine\n"


def test_struct_parameter_line() -> None:
    reg = Registry()

    @reg.rpc("t.st", context=True)
    def st_(ctx: RpcContext) -> None:
        r = ctx.scan("{")
        if r > 0:
            h = ctx.add("{")
            for name, value in r[0].items():
                ctx.struct_add(h, "s", name, value)

    assert run(reg, b":t.st:\na:1,b:x\\oy\n") == "200 OK\na:1,b:x\\cy\n"
    # the empty line ends the request (Kamailio passes it on as an empty parameter)
    assert run(reg, b":t.st:\n\n") == "400 Parameter missing on line 2\n"
    assert run(reg, b":t.st:\nnocolon\n") == "400 Colon missing in struct on line 2\n"
    assert run(reg, b":t.st:\na\\q:1\n") == (
        "400 Error while processing struct member 'a\\\\q' on line 2\n"
    )


def test_pythonic_handlers_over_fifo() -> None:
    reg = Registry()

    @reg.rpc("t.add")
    def add(a: int, b: int = 2) -> int:
        return a + b

    @reg.rpc("t.many")
    def many(*words: str) -> tuple[str, ...]:
        return words

    @reg.rpc("t.obj")
    def obj() -> Struct:
        return Struct([("a", 1), ("n", Struct(x="1,2")), ("l", [1, 2])])

    assert run(reg, b":t.add:\n40\n") == "200 OK\n42\n"
    assert run(reg, b":t.add:\nabc\n") == "400 Invalid parameter value on line 2\n"
    assert run(reg, b":t.many:\na\nb c\n") == "200 OK\na\nb c\n"
    # nested structs stay where they belong, unnamed values print without a name
    assert run(reg, b":t.obj:\n") == "200 OK\na:1,n:x:1\\c2,l:1,2\n"


def test_fault_replaces_the_status_and_keeps_the_body() -> None:
    reg = Registry()

    @reg.rpc("t.f", context=True)
    def f(ctx: RpcContext) -> None:
        ctx.add("s", "partial")
        ctx.fault(404, "not %s", "here")

    assert run(reg, b":t.f:\n") == "404 not here\npartial\n"


def test_64_bit_formats_work(core: Registry) -> None:
    # Kamailio's FIFO faults on 'j' (HEAD's core.shmmem); the intended output is the number
    text = run(core, b":core.shmmem:\n")
    assert text.startswith("200 OK\n")
    assert "total:" in text


def test_missing_mandatory_parameter(core: Registry) -> None:
    assert run(core, b":system.methodHelp:\n").startswith("400 ")


def test_explicit_fault_wins_over_a_missing_parameter(core: Registry) -> None:
    # system.methodHelp without a name: the handler's own fault, not "Parameter missing"
    assert run(core, b":system.methodHelp:\n") == "400 Method Name Expected\n"
    assert run(core, b":system.methodHelp:\nno.such\n") == "400 command not found\n"


def test_framer_discard() -> None:
    framer = FifoFramer()
    framer.feed(b":core.echo:\nhalf")
    assert framer.next_request() is None
    assert framer.discard() == 16
    framer.feed(b":a:\n\n")
    assert drain(framer) == [b":a:\n"]


def test_terminator_split_across_feeds() -> None:
    for pieces in ([b":a:\nx\n", b"\r", b"\n"], [b":a:\nx", b"\n", b"\n"], [b":a:\nx\n\r\n"]):
        framer = FifoFramer()
        got: list[bytes] = []
        for piece in pieces:
            framer.feed(piece)
            got += drain(framer)
        assert got == [b":a:\nx\n"], pieces


def test_trickled_lines_cost_linear_time() -> None:
    # a client sending a 60 KB request line by line must not make the server rescan the
    # buffer on every line (quadratic: seconds of event-loop CPU)
    import time

    framer = FifoFramer()
    framer.feed(b":core.echo:\n")
    start = time.monotonic()
    for _ in range(30000):
        framer.feed(b"a\n")
        assert framer.next_request() is None
    framer.feed(b"\n")
    assert framer.next_request() == b":core.echo:\n" + b"a\n" * 30000
    assert time.monotonic() - start < 1.0


def test_reply_lines_unescape_with_the_reply_meaning() -> None:
    from binrpc._fifo_wire import parse_fifo_reply

    reply = parse_fifo_reply(b"200 OK\nnow:Fri Nov 27 10\\o37\\o20 2026,flags:A\\cB\n")
    # in replies \o is ':' and \c is ',' (the reverse of requests)
    assert reply.values() == ["now:Fri Nov 27 10:37:20 2026,flags:A,B"]
    assert unescape("a\\cb\\oc", reply=True) == "a,b:c"
    assert unescape("a\\cb\\oc") == "a:b,c"
