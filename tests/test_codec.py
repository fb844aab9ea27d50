"""Records and packets: boundaries, the spec's encoding tables, nesting rules, errors."""

from __future__ import annotations

import pytest

from binrpc import (
    E_BAD_RECORD,
    E_CORRUPTED,
    E_END_OF_PACKET,
    E_MORE_DATA,
    E_TYPE,
    TOK_ARRAY_END,
    TOK_ARRAY_START,
    TOK_STRUCT_END,
    TOK_STRUCT_START,
    TOK_VALUE,
    BodyReader,
    DecodeError,
    Double,
    LocalProtocolError,
    MsgType,
    Struct,
    decode_fault,
    decode_values,
    encode_fault,
    encode_header,
    encode_reply,
    encode_request,
    encode_values,
    parse_header,
    parse_packet,
    parse_request,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# -- INT ---------------------------------------------------------------------------------------

INT_TABLE = [
    (0, "00"),
    (7, "10 07"),
    (255, "10 ff"),
    (256, "20 01 00"),
    (0x1234, "20 12 34"),
    (65535, "20 ff ff"),
    (65536, "30 01 00 00"),
    (2147483647, "40 7f ff ff ff"),
    (-1, "40 ff ff ff ff"),
    (-5, "40 ff ff ff fb"),
    (-2147483648, "40 80 00 00 00"),
    (400, "20 01 90"),
    (500, "20 01 f4"),
]


@pytest.mark.parametrize(("value", "wire"), INT_TABLE)
def test_int_encoding_is_minimal(value: int, wire: str) -> None:
    assert encode_values([value]) == h(wire)
    assert decode_values(h(wire)) == [value]


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        ("10 ff", 255),  # no sign extension for short forms
        ("20 ff ff", 65535),
        ("30 ff ff ff", 0xFFFFFF),
        ("50 01 02 03 04 05", 0x02030405),  # only the last 4 bytes count
        ("00", 0),
        ("80", 0),  # S flag with a zero-length length field
        ("90 02 12 34", 0x1234),  # non-minimal forms are accepted
        ("a0 00 02 12 34", 0x1234),
        ("90 00", 0),
    ],
)
def test_int_decoding_quirks(wire: str, value: int) -> None:
    assert decode_values(h(wire)) == [value]


def test_int_2_32_minus_1_is_sent_as_its_bit_pattern() -> None:
    assert encode_values([0xFFFFFFFF]) == h("40 ff ff ff ff")
    assert decode_values(encode_values([0xFFFFFFFF])) == [-1]


@pytest.mark.parametrize("value", [2**32, -(2**31) - 1, 2**40])
def test_int_outside_32_bits_is_refused(value: int) -> None:
    with pytest.raises(LocalProtocolError, match="Double"):
        encode_values([value])


def test_bool_is_int() -> None:
    assert encode_values([True, False]) == h("10 01 00")


# -- DOUBLE ------------------------------------------------------------------------------------

DOUBLE_TABLE = [
    (0.0, "02"),
    (0.001, "12 01"),
    (1.5, "22 05 dc"),
    (-1.5, "82 ff ff ff ff ff ff fa 24"),
    (123456.789, "42 07 5b cd 15"),
    (Double(67108864), "52 0f a0 00 00 00"),
    (67108864.0, "52 0f a0 00 00 00"),
    (Double(2), "22 07 d0"),
    (2.0, "22 07 d0"),
]


@pytest.mark.parametrize(("value", "wire"), DOUBLE_TABLE)
def test_double_encoding(value: float | Double, wire: str) -> None:
    assert encode_values([value]) == h(wire)


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        (0.001, 0.001),
        (1.005, 1.004),  # float error plus truncation, as C does it
        (1.001, 1.0),  # 1.001 x 1000 = 1000.999... in binary floating point
        (-1.5, -1.5),
        (67108864.0, 67108864.0),
        (0.0004, 0.0),
        (1.0009, 1.0),
        (-1.0009, -1.0),
        (-0.25, -0.25),
    ],
)
def test_double_keeps_three_decimals_truncated(value: float, decoded: float) -> None:
    assert decode_values(encode_values([value])) == [decoded]


def test_double_short_forms_are_not_sign_extended() -> None:
    assert decode_values(h("12 ff")) == [0.255]
    # 0x82 is an 8-byte DOUBLE, not an extended-length tag
    assert decode_values(h("82 ff ff ff ff ff ff ff ff")) == [-0.001]
    # a nibble above 8: only the last 8 bytes count
    assert decode_values(h("92 01 00 00 00 00 00 00 03 e8")) == [1.0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e16, Double(10**16)])
def test_double_unrepresentable_is_refused(value: float | Double) -> None:
    with pytest.raises(LocalProtocolError):
        encode_values([value])


# -- STR / BYTES -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", "11 00"),
        ("abc", "41 61 62 63 00"),
        ("abcdef", "71 61 62 63 64 65 66 00"),
        ("abcdefg", "91 08 61 62 63 64 65 66 67 00"),
        ("core.version", "91 0d 63 6f 72 65 2e 76 65 72 73 69 6f 6e 00"),
    ],
)
def test_str_encoding(text: str, wire: str) -> None:
    assert encode_values([text]) == h(wire)
    assert decode_values(h(wire)) == [text]


@pytest.mark.parametrize(("n", "prefix"), [(254, "91 ff"), (255, "a1 01 00"), (300, "a1 01 2d")])
def test_str_long_lengths(n: int, prefix: str) -> None:
    wire = encode_values(["x" * n])
    assert wire.startswith(h(prefix))
    assert wire.endswith(b"x\0")
    assert decode_values(wire) == ["x" * n]


def test_str_of_65535_bytes_takes_three_length_bytes() -> None:
    wire = encode_values(["y" * 65535])
    assert wire[:4] == h("b1 01 00 00")
    assert decode_values(wire) == ["y" * 65535]


def test_str_tolerates_missing_nul_and_zero_length() -> None:
    assert decode_values(h("31 61 62 63")) == ["abc"]
    assert decode_values(h("01")) == [""]
    assert decode_values(h("81")) == [""]
    assert decode_values(h("91 04 61 62 63 00")) == ["abc"]


def test_str_embedded_nul_and_invalid_utf8_round_trip() -> None:
    wire = h("51 61 00 62 ff 00")
    (value,) = decode_values(wire)
    assert isinstance(value, str)
    assert value.startswith("a\0b")
    assert encode_values([value]) == wire


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"", "06"),
        (b"abc", "36 61 62 63"),
        (b"abcdefgh", "96 08 61 62 63 64 65 66 67 68"),
    ],
)
def test_bytes_encoding(data: bytes, wire: str) -> None:
    assert encode_values([data]) == h(wire)
    assert decode_values(h(wire)) == [data]


# -- STRUCT / ARRAY ----------------------------------------------------------------------------


def test_struct_member_encoding() -> None:
    assert encode_values([Struct(test=11)]) == h("03 55 74 65 73 74 00 10 0b 83")
    value = {"test": 11}  # a dict encodes as a STRUCT (Value, the decoded type, has no dict)
    assert encode_values([value]) == h("03 55 74 65 73 74 00 10 0b 83")  # type: ignore[list-item]


def test_array_encoding() -> None:
    assert encode_values([[1, "a"]]) == h("04 10 01 21 61 00 84")


def test_struct_keeps_order_duplicates_and_unnamed_members() -> None:
    s = Struct([("SET", 1), ("SET", 2), (None, "x")])
    (back,) = decode_values(encode_values([s]))
    assert isinstance(back, Struct)
    assert back.pairs == [("SET", 1), ("SET", 2), (None, "x")]
    assert back["SET"] == 1
    assert back.getall("SET") == [1, 2]
    assert back.getall(None) == ["x"]


def test_named_array_inside_struct_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="ARRAY"):
        encode_values([Struct(a=[1])])


def test_end_markers_any_s1_form() -> None:
    # 93 00: S=1 struct tag with a 1-byte length field = an end tag
    assert decode_values(h("03 45 61 62 63 00 10 01 93 00")) == [Struct(abc=1)]
    assert decode_values(h("04 10 01 94 00")) == [[1]]


def test_core_uptime_capture_decodes() -> None:
    body = (
        h("03 45")
        + b"now\0"
        + h("91 19")
        + b"Fri Nov 27 10:37:55 2026\0"
        + h("95 09")
        + b"up_since\0"
        + h("91 19")
        + b"Fri Nov 27 10:37:20 2026\0"
        + h("75")
        + b"uptime\0"
        + h("10 23 83")
    )
    (s,) = decode_values(body)
    assert isinstance(s, Struct)
    assert s.keys() == ["now", "up_since", "uptime"]
    assert s["uptime"] == 0x23


# nesting rules, spec table 2.5: (body, strict error or None, lenient error or None)
NESTING = [
    ("25 61 00 10 01", E_TYPE, E_TYPE),  # AVP at top level
    ("83", E_BAD_RECORD, E_BAD_RECORD),  # struct end without a struct
    ("84", E_BAD_RECORD, E_BAD_RECORD),  # array end without an array
    ("03 25 61 00 04 84 83", E_BAD_RECORD, E_BAD_RECORD),  # AVP whose value is an array
    ("03 25 61 00 25 62 00 10 01 83", E_BAD_RECORD, E_BAD_RECORD),  # AVP whose value is an AVP
    ("03 10 01 83", E_BAD_RECORD, None),  # unnamed value inside a struct
    ("03 03 83 83", E_BAD_RECORD, None),  # unnamed struct inside a struct
    ("03 04 84 83", E_BAD_RECORD, None),  # array inside a struct
    ("04 10 01 03 25 61 00 10 01 83 04 84 84", None, None),  # anything inside an array
    ("07", E_TYPE, E_TYPE),  # unknown type at top level
    ("03 07 83", E_BAD_RECORD, E_BAD_RECORD),  # unknown type inside a struct
    ("04 0f 84", E_TYPE, E_TYPE),  # unknown type inside an array
    ("03 25 61 00", E_MORE_DATA, E_MORE_DATA),  # struct member without a value
    ("03", E_MORE_DATA, E_MORE_DATA),  # unterminated struct
]


@pytest.mark.parametrize(("body", "strict_err", "lenient_err"), NESTING)
def test_nesting_rules(body: str, strict_err: int | None, lenient_err: int | None) -> None:
    for strict, err in ((True, strict_err), (False, lenient_err)):
        if err is None:
            decode_values(h(body), strict=strict)
        else:
            with pytest.raises(DecodeError) as info:
                decode_values(h(body), strict=strict)
            assert info.value.code == err, (strict, info.value)


def test_nesting_depth_is_a_named_limit() -> None:
    body = b"\x04" * 300 + b"\x84" * 300
    with pytest.raises(DecodeError, match="nesting deeper than 256"):
        decode_values(body)
    assert decode_values(body, max_depth=300) != []
    deep = b"\x04" * 100_000
    with pytest.raises(DecodeError):
        decode_values(deep)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("10", E_MORE_DATA),  # INT announces 1 byte, none follows
        ("91 0a 61", E_MORE_DATA),
        ("91", E_MORE_DATA),  # length byte missing
        ("a1 ff", E_MORE_DATA),
        ("f1 ff ff ff ff ff ff ff", E_MORE_DATA),  # 7 length bytes, huge length
        ("82 ff", E_MORE_DATA),
        ("13", E_MORE_DATA),  # struct start whose size byte is missing
    ],
)
def test_truncated_records(body: str, code: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_values(h(body))
    assert info.value.code == code


def test_read_value_restores_cursor_on_error() -> None:
    reader = BodyReader(h("10 01 03 25 61 00"), strict=True)
    assert reader.read_value() == 1
    pos = reader.pos
    with pytest.raises(DecodeError):
        reader.read_value()
    assert reader.pos == pos
    assert reader.depth == 0
    assert reader.peek_type() == 3


def test_tokens_stream() -> None:
    body = encode_values([7, Struct([("k", "v"), (None, [1])]), "tail"])
    tokens = list(BodyReader(body, strict=False).tokens())
    assert tokens == [
        (TOK_VALUE, None, 7),
        (TOK_STRUCT_START, None, None),
        (TOK_VALUE, "k", "v"),
        (TOK_ARRAY_START, None, None),
        (TOK_VALUE, None, 1),
        (TOK_ARRAY_END, None, None),
        (TOK_STRUCT_END, None, None),
        (TOK_VALUE, None, "tail"),
    ]


# -- headers and messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mtype", "body_len", "cookie", "wire"),
    [
        (MsgType.REQUEST, 15, 0x1234, "a1 01 0f 12 34"),
        (MsgType.REPLY, 0, 0, "a1 10 00 00"),
        (MsgType.FAULT, 35, 0x11, "a1 30 23 11"),
        (MsgType.REPLY, 394, 0x1234, "a1 15 01 8a 12 34"),
        (MsgType.FAULT, 70000, 0xDEADBEEF, "a1 3b 01 11 70 de ad be ef"),
        (MsgType.REPLY, 255, 255, "a1 10 ff ff"),
        (MsgType.REPLY, 256, 256, "a1 15 01 00 01 00"),
        (MsgType.REPLY, 65536, 65536, "a1 1a 01 00 00 01 00 00"),
        (MsgType.REPLY, 2**32 - 1, 2**32 - 1, "a1 1f ff ff ff ff ff ff ff ff"),
    ],
)
def test_header_widths(mtype: int, body_len: int, cookie: int, wire: str) -> None:
    assert encode_header(mtype, body_len, cookie) == h(wire)
    header = parse_header(h(wire))
    assert header is not None
    assert (header.type, header.body_len, header.cookie, header.size) == (
        mtype,
        body_len,
        cookie,
        len(h(wire)),
    )


def test_header_any_width_accepted() -> None:
    header = parse_header(h("a1 0f 00 00 00 0f 00 00 00 01"))
    assert header is not None
    assert (header.type, header.body_len, header.cookie) == (MsgType.REQUEST, 15, 1)


def test_header_waits_then_validates() -> None:
    assert parse_header(h("a1 0f 00")) is None  # fewer than 4 bytes: no verdict
    assert parse_header(h("a1 0f 00 00 00")) is None  # valid start, header incomplete
    for bad in ("b1 00 00 00", "a2 00 00 00", "a1 20 00 00", "a1 f0 00 00"):
        with pytest.raises(DecodeError) as info:
            parse_header(h(bad))
        assert info.value.code == E_CORRUPTED
        assert info.value.cookie == 0


def test_header_refuses_out_of_range_fields() -> None:
    with pytest.raises(LocalProtocolError):
        encode_header(MsgType.REPLY, 2**32, 0)
    with pytest.raises(LocalProtocolError):
        encode_header(MsgType.REPLY, 0, -1)


@pytest.mark.parametrize("mtype", [2, 4, 15, 16, -1, 1 << 40])
def test_header_refuses_invalid_message_types(mtype: int) -> None:
    # only request, reply and fault exist (a type-2 header is a packet no peer accepts,
    # a type of 16 would overflow into the magic byte)
    with pytest.raises(LocalProtocolError, match=f"message type {mtype}"):
        encode_header(mtype, 0, 1)


def test_empty_reply() -> None:
    assert encode_reply([], 0x77) == h("a1 10 00 77")


def test_request_example_from_spec() -> None:
    wire = encode_request("core.echo", ["abc", 5, -1, 1.5], 0x1234)
    assert wire == h(
        "a1 01 1b 12 34 91 0a 63 6f 72 65 2e 65 63 68 6f 00 41 61 62 63 00 10 05"
        " 40 ff ff ff ff 22 05 dc"
    )
    packet = parse_packet(wire)
    assert packet is not None
    assert packet.type == MsgType.REQUEST
    method, reader = parse_request(packet.body)
    assert method == "core.echo"
    assert reader.read_all() == ["abc", 5, -1, 1.5]


def test_fault_example_from_spec() -> None:
    wire = encode_fault(500, "command foo.bar not found", 0x1234)
    assert wire == h("a1 31 1f 12 34 20 01 f4 91 1a") + b"command foo.bar not found\0"
    packet = parse_packet(wire)
    assert packet is not None
    assert decode_fault(packet.body) == (500, "command foo.bar not found")


def test_decode_fault_tolerates_odd_bodies() -> None:
    assert decode_fault(encode_values([499])) == (499, "")
    assert decode_fault(encode_values(["only a string"])) == (0, "only a string")


@pytest.mark.parametrize(
    ("body", "code"),
    [("", E_END_OF_PACKET), ("10 05", E_TYPE), ("91 0d 63 6f", E_MORE_DATA), ("06", E_TYPE)],
)
def test_parse_request_method_errors(body: str, code: int) -> None:
    with pytest.raises(DecodeError) as info:
        parse_request(h(body))
    assert info.value.code == code


def test_method_name_ends_at_first_nul() -> None:
    method, _ = parse_request(h("61 63 6f 00 72 65 00"))
    assert method == "co"


def test_parse_packet_ignores_trailing_bytes_and_waits_for_body() -> None:
    wire = encode_request("core.version", [], 0x4242)
    packet = parse_packet(wire + b"\xde\xad")
    assert packet is not None
    assert packet.cookie == 0x4242
    assert parse_packet(wire[:-1]) is None


def test_unsupported_value_type() -> None:
    with pytest.raises(LocalProtocolError, match="set"):
        encode_values([{1, 2}])  # type: ignore[list-item]
