"""The codec: binrpc packets and records <-> Python values. No I/O here.

The codec's one import point for the rest of the package and for users: the header and
the numbers are in :mod:`binrpc._packet`, encoding in :mod:`binrpc._encode`, decoding (the
total decoder and its fast path) in :mod:`binrpc._decode`.

Wire format (see the project spec, sections 1-3): a header ``a1 <type|LL|CC> <len> <cookie>``
with big-endian, minimally sized length and cookie fields, then a body of records. Decoding is
total: any byte string either decodes or raises :class:`DecodeError`.
"""

from __future__ import annotations

from ._decode import BodyReader, decode_fault, decode_values, parse_request
from ._encode import (
    encode_fault,
    encode_reply,
    encode_request,
    encode_text,
    encode_values,
    int_record,
    record_head,
    saturated_double_record,
    str_record,
)
from ._packet import (
    DEFAULT_MAX_DEPTH,
    MAGIC_VERSION,
    MAX_HEADER_SIZE,
    T_ARRAY,
    T_AVP,
    T_BYTES,
    T_DOUBLE,
    T_INT,
    T_STR,
    T_STRUCT,
    TOK_ARRAY_END,
    TOK_ARRAY_START,
    TOK_STRUCT_END,
    TOK_STRUCT_START,
    TOK_VALUE,
    Header,
    MsgType,
    Packet,
    encode_header,
    encode_packet,
    header_fields,
    parse_header,
    parse_packet,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAGIC_VERSION",
    "MAX_HEADER_SIZE",
    "TOK_ARRAY_END",
    "TOK_ARRAY_START",
    "TOK_STRUCT_END",
    "TOK_STRUCT_START",
    "TOK_VALUE",
    "T_ARRAY",
    "T_AVP",
    "T_BYTES",
    "T_DOUBLE",
    "T_INT",
    "T_STR",
    "T_STRUCT",
    "BodyReader",
    "Header",
    "MsgType",
    "Packet",
    "decode_fault",
    "decode_values",
    "encode_fault",
    "encode_header",
    "encode_packet",
    "encode_reply",
    "encode_request",
    "encode_text",
    "encode_values",
    "header_fields",
    "int_record",
    "parse_header",
    "parse_packet",
    "parse_request",
    "record_head",
    "saturated_double_record",
    "str_record",
]
