"""Issue #7, part 1: every parser, fuzzed in the test run (bounded), plus the bugs found.

The fuzz targets (fuzz/*_target.py) hold the invariants; here hypothesis feeds them
``BINRPC_FUZZ_EXAMPLES`` inputs each (default 2000; each test stays well under 20 s), and
the built-in mutation loop of each target runs a bounded number of inputs. Long runs
(atheris, >= 1,000,000 inputs per parser) are recorded in docs/security-tests.md.

Every bug found is an ``xfail(strict=True)`` test below: it starts passing (and so fails
the run) the day the bug is fixed, and must then lose its marker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fuzz import address_target, codec_target, config_target, fifo_target
from fuzz._harness import run_loop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binrpc import AddressError, encode_request, parse_address
from binrpc._context import RpcContext
from binrpc._fifo_wire import FifoFramer
from binrpc._limits import RpcLimits
from binrpc._registry import Registry
from binrpc.cli.daemon import ConfigError, build_parser, options_from
from tests.server.helpers import decode_reply, one, run

EXAMPLES = int(os.environ.get("BINRPC_FUZZ_EXAMPLES", "2000"))
LOOP_RUNS = max(EXAMPLES * 2, 100)

fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seeded(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, and seeds with a few bytes changed or cut."""

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 4))):
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            op = draw(st.integers(0, 2))
            if op == 0:
                data[i] = draw(st.integers(0, 255))
            elif op == 1:
                del data[i]
            else:
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
        return bytes(data)

    return st.binary(max_size=300) | mutated()


# ---------------------------------------------------------------------------------------------
# hypothesis over each target


@fuzz_settings
@given(_seeded(codec_target.SEEDS + codec_target.TOKENS))
def test_fuzz_codec_framer_and_binrpc_context(data: bytes) -> None:
    codec_target.check(data)


@fuzz_settings
@given(_seeded(fifo_target.SEEDS))
def test_fuzz_fifo_framer_parser_unescape_context(data: bytes) -> None:
    fifo_target.check(data)


@fuzz_settings
@given(_seeded(address_target.SEEDS) | st.text(max_size=60).map(str.encode))
def test_fuzz_address_parser(data: bytes) -> None:
    address_target.check(data)


@fuzz_settings
@given(_seeded(config_target.SEEDS) | st.randoms(use_true_random=False).map(config_target.generate))
def test_fuzz_binrpcd_toml_config(data: bytes) -> None:
    config_target.check(data)


@pytest.mark.parametrize(
    "target", [codec_target, fifo_target, address_target, config_target], ids=lambda t: t.__name__
)
def test_builtin_mutation_loops_are_clean(target: object) -> None:
    """The long-run loop of each target, bounded (the same code runs 1,000,000 inputs)."""
    generate = getattr(target, "generate", None)
    runs = LOOP_RUNS // 4 if target is fifo_target else LOOP_RUNS
    n, failures = run_loop(
        target.check,  # type: ignore[attr-defined]
        target.SEEDS,  # type: ignore[attr-defined]
        target.TOKENS,  # type: ignore[attr-defined]
        runs=runs,
        seed=7,
        timeout=5.0,
        generate=generate,
    )
    assert n == runs
    assert failures == []


# ---------------------------------------------------------------------------------------------
# bugs found by the fuzzers (src/ not ours to fix: xfail until fixed)


@pytest.mark.parametrize(
    ("text", "flavour"),
    [
        ("tcp:127.0.0.1:a\0b", "binrpc"),  # TOML "\u0000": was a binrpcd start-up traceback
        ("udp:[::1]:\0", "binrpc"),
        ("tcp:127.0.0.1:\udcff", "client"),  # `binrpc -s $'tcp:127.0.0.1:\xff'`: was a traceback
    ],
)
def test_address_port_with_nul_or_bad_utf8(text: str, flavour: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text, flavour)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "flavour"),
    [
        ("/tmp/\udcff.sock", "client"),  # `binrpc -s $'/tmp/\xff.sock'`: was a traceback
        ("unixs:/tmp/\udcff.sock", "binrpc"),
    ],
)
def test_address_path_with_undecodable_bytes_is_a_path(text: str, flavour: str) -> None:
    # Linux paths are bytes: argv's undecodable bytes arrive as surrogates and name a file
    address = parse_address(text, flavour)  # type: ignore[arg-type]
    assert address.path == "/tmp/\udcff.sock"
    assert os.fsencode(address.path) == b"/tmp/\xff.sock"


@pytest.mark.parametrize(
    ("text", "flavour"),
    [
        ("udp:[::1\udcff]:5", "binrpc"),
        ("tcp:[::1\x00]:5", "binrpc"),  # TOML "\u0000": binrpcd start-up traceback
        ("tcp:[::1\udcff]:5", "client"),  # `binrpc -s $'tcp:[::1\xff]:5'`: traceback
    ],
)
def test_address_ipv6_literal_with_nul_or_bad_utf8(text: str, flavour: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text, flavour)  # type: ignore[arg-type]


def _config(tmp_path: Path, content: bytes) -> Exception | None:
    path = tmp_path / "binrpcd.toml"
    path.write_bytes(content)
    try:
        addresses, options, _ = options_from(build_parser().parse_args(["--config", str(path)]))
        config_target.start_up(addresses, options)
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'binrpc = "unixs:/tmp/\xff"\n', id="invalid-utf8"),
        pytest.param(b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n", id="deep-nesting"),
        pytest.param(b"max_connections = inf\n", id="int-setting-inf"),
        pytest.param(b"binrpc-buffer-size = -inf\n", id="int-setting-minus-inf"),
        pytest.param(b"mode = 99999999999999999999\n", id="mode-huge"),
        pytest.param(b'user = "a\\u0000b"\n', id="user-nul"),
        pytest.param(b"group = -5\n", id="group-negative"),
        pytest.param(b'group = "-5"\n', id="group-negative-text"),
        pytest.param(b"user = 99999999999\n", id="user-huge"),
        pytest.param(b"user = 4294967295\n", id="user-minus-1-as-uid_t"),
        pytest.param(b"user = true\n", id="user-bool"),  # was taken as uid 1
        pytest.param(b"group = 1.5\n", id="group-float"),
        pytest.param(b"user = [1]\n", id="user-list"),
        pytest.param(b"idle_timeout = 1" + b"0" * 400 + b"\n", id="timeout-int-beyond-float"),
        pytest.param(b"write-timeout = nan\n", id="timeout-nan"),  # was: timeout off
    ],
)
def test_config_errors_are_clean(tmp_path: Path, content: bytes) -> None:
    # hardening bug 2 (fixed): each was a start-up traceback; now refused while the config
    # is read, before any socket or chown
    exc = _config(tmp_path, content)
    assert isinstance(exc, ConfigError), repr(exc)


@pytest.mark.parametrize("mode", ["-1", '"-1"', "0o1000000", "0o10000", '"10000"', '"-0o1"'])
def test_config_mode_out_of_range_is_refused(tmp_path: Path, mode: str) -> None:
    # hardening bug 3 (fixed): -1 made the control socket 07777 (chmod masks the mode)
    exc = _config(tmp_path, f"mode = {mode}\n".encode())
    assert isinstance(exc, ConfigError), repr(exc)
    assert "bad mode" in str(exc)


def test_config_edge_values_accepted(tmp_path: Path) -> None:
    for content in (b"mode = 0o7777\n", b"mode = 0\n", b'mode = "7777"\n', b"user = 0\n",
                    b"group = 4294967294\n", b'user = "0"\n', b'group = "root"\n'):  # fmt: skip
        assert _config(tmp_path, content) is None, content


def test_config_clean_errors_stay_clean(tmp_path: Path) -> None:
    """What already works: the errors binrpcd reports as `binrpcd: error: ...`."""
    for content in (b"mode = 'x'\n", b"nope = 1\n", b"max_connections = 0\n", b"[\n"):
        assert isinstance(_config(tmp_path, content), ConfigError)
    assert isinstance(_config(tmp_path, b'binrpc = "foo:/x"\n'), AddressError)
    assert isinstance(_config(tmp_path, b'binrpc = "tcp:127.0.0.1:a\\u0000"\n'), AddressError)
    assert _config(tmp_path, b'binrpc = "unixs:/tmp/x.sock"\nmode = "0660"\n') is None


def _float_registry() -> Registry:
    reg = Registry()

    @reg.rpc("t.float")
    def half(x: float) -> str:
        return repr(x / 2)

    def echo_double(ctx: RpcContext) -> None:
        r = ctx.scan("f")
        if r > 0:
            ctx.add("f", r.values[0])

    reg.register("t.echo_double", echo_double, context=True)
    return reg


def test_float_param_truncated_int_record() -> None:
    # t.float with an INT record announcing 2 bytes and carrying 1 (found by atheris)
    kind, (code, text) = one(_float_registry(), "t.float", raw_params=bytes.fromhex("2001"))
    assert (kind, code) == ("fault", 400), text
    assert "more data needed" in text


DOUBLE_MAX = 9223372036854775.807
DOUBLE_MIN = -9223372036854775.808


@pytest.mark.parametrize(
    ("raw", "auto", "echoed"),
    [
        ("827fffffffffffffff", False, DOUBLE_MAX),  # largest DOUBLE on the wire
        ("41696e6600", True, DOUBLE_MAX),  # "inf" with autoconversion: strtod gives inf
        ("512d696e6600", True, DOUBLE_MIN),  # "-inf"
        ("416e616e00", True, 0.0),  # "nan" with autoconversion: strtod gives NaN
        ("61316533303000", True, DOUBLE_MAX),  # "1e300": beyond the DOUBLE range
    ],
    ids=["double-max", "text-inf", "text-minus-inf", "text-nan", "text-huge"],
)
def test_add_double_the_server_decoded(raw: str, auto: bool, echoed: float) -> None:
    # ctl's add never fails: clamped to the DOUBLE range, NaN is 0 (docs/server.md)
    sent = run(
        _float_registry(),
        "t.echo_double",
        raw_params=bytes.fromhex(raw),
        limits=RpcLimits(autoconversion=auto),
    )
    assert decode_reply(sent[0])[::2] == ("reply", [echoed])


def test_float_param_good_and_bad_records_still_answer() -> None:
    reg = _float_registry()
    assert one(reg, "t.float", [3]) == ("reply", ["1.5"])
    kind, (code, _) = one(reg, "t.float", ["x"])
    assert (kind, code) == ("fault", 400)


def test_fifo_framer_trickle_is_linear() -> None:
    """Found here: next_request rescanned every LF of the buffer on each feed, so trickling
    'a\\n' cost O(n^2) (~70 s of event-loop CPU for 64 KiB); fixed by resuming the search."""
    framer = FifoFramer()
    start = time.monotonic()
    for _ in range(6000):  # 12 KB in 2-byte pieces; linear: ~10 ms, quadratic: ~2-3 s
        framer.feed(b"a\n")
        assert framer.next_request() is None
    assert time.monotonic() - start < 0.5


def test_binrpc_framer_trickle_is_linear() -> None:
    """The binrpc framer parses the header only: a 64 KiB request fed a byte at a time."""
    from binrpc import StreamFramer

    packet = encode_request("core.echo", ["x" * 65000], 1)
    framer = StreamFramer()
    start = time.monotonic()
    for i in range(len(packet)):
        framer.feed(packet[i : i + 1])
        p = framer.next_packet()
        assert (p is None) == (i < len(packet) - 1)
    assert time.monotonic() - start < 2.0
