"""Hypothesis: values round-trip through the codec; arbitrary bytes never break a decoder."""

from __future__ import annotations

import os

from fuzz.codec_target import check, run
from hypothesis import given, settings
from hypothesis import strategies as st

from binrpc import BodyReader, DecodeError, Double, Struct, Value, decode_values, encode_values

FUZZ_EXAMPLES = int(os.environ.get("BINRPC_FUZZ_EXAMPLES", "3000"))

ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
# a double survives when value x 1000 is a whole number in floating point too: 1.001 x 1000
# is 1000.999..., which C (and so binrpc) truncates to 1000
doubles = (
    st.integers(min_value=-(2**53), max_value=2**53)
    .map(lambda m: m / 1000)
    .filter(lambda f: int(f * 1000.0) / 1000.0 == f)
)
texts = st.text().filter(lambda s: "\0" not in s)  # the method-name rule aside, NUL is kept
scalars = ints | doubles | texts | st.binary()

values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(
            st.tuples(
                st.one_of(st.none(), texts), children.filter(lambda v: not isinstance(v, list))
            ),
            max_size=5,
        ).map(Struct)
    ),
    max_leaves=30,
)


@given(st.lists(values, max_size=6))
def test_values_round_trip(vals: list[Value]) -> None:
    assert decode_values(encode_values(vals)) == vals


@given(st.lists(values, max_size=4))
def test_encoding_is_deterministic_and_minimal(vals: list[Value]) -> None:
    wire = encode_values(vals)
    assert encode_values(decode_values(wire)) == wire


@given(st.integers(min_value=-(2**50), max_value=2**50))
def test_double_wrapper_scales_ints_exactly(n: int) -> None:
    assert decode_values(encode_values([Double(n)])) == [n * 1000 / 1000.0]


@settings(max_examples=FUZZ_EXAMPLES)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=max(1, FUZZ_EXAMPLES // 10))
@given(st.lists(values, max_size=4), st.data())
def test_fuzz_mutated_valid_bodies(vals: list[Value], data: st.DataObject) -> None:
    wire = bytearray(encode_values(vals))
    for _ in range(data.draw(st.integers(0, 4))):
        if wire:
            wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    check(bytes(wire))


def _both_ways(data: bytes, strict: bool) -> tuple[object, object]:
    results: list[object] = []
    for fast in (True, False):
        reader = BodyReader(data, strict=strict)
        try:
            out: list[Value] = []
            while not reader.at_end():
                out.append(reader.read_value() if fast else reader._read_value_tokens())
            results.append(out)
        except DecodeError as exc:
            results.append((exc.code, reader.pos))
    return results[0], results[1]


@settings(max_examples=FUZZ_EXAMPLES)
@given(st.lists(values, max_size=4), st.data(), st.booleans())
def test_fast_decoder_agrees_with_the_token_decoder(
    vals: list[Value], data: st.DataObject, strict: bool
) -> None:
    wire = bytearray(encode_values(vals))
    for _ in range(data.draw(st.integers(0, 3))):
        if wire and data.draw(st.booleans()):
            wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
        else:
            wire.insert(data.draw(st.integers(0, len(wire))), data.draw(st.integers(0, 255)))
    fast, slow = _both_ways(bytes(wire), strict)
    assert fast == slow


def test_fuzz_mutation_loop_bounded() -> None:
    assert run(FUZZ_EXAMPLES, seed=12345) == FUZZ_EXAMPLES
