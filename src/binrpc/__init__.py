"""binrpc: Kamailio's ctl module (binrpc and FIFO protocols) and its kamcmd client, in Python.

The codec (:func:`encode_request`, :class:`BodyReader`, :class:`StreamFramer` ...) is sans-I/O;
the server, daemon and clients are thin asyncio / socket shells around it.
"""

from ._address import Address, AddressError, parse_address
from ._codec import (
    BodyReader,
    Header,
    MsgType,
    Packet,
    decode_fault,
    decode_values,
    encode_fault,
    encode_header,
    encode_packet,
    encode_reply,
    encode_request,
    encode_values,
    parse_header,
    parse_packet,
    parse_request,
)
from ._errors import (
    BinrpcError,
    ConnectError,
    ConnectionClosed,
    DecodeError,
    Fault,
    LocalProtocolError,
    PacketTooLarge,
    ProtocolError,
    RemoteProtocolError,
    TransportError,
    TransportTimeout,
)
from ._framing import StreamFramer
from ._values import Double, Struct, Value

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AddressError",
    "BinrpcError",
    "BodyReader",
    "ConnectError",
    "ConnectionClosed",
    "DecodeError",
    "Double",
    "Fault",
    "Header",
    "LocalProtocolError",
    "MsgType",
    "Packet",
    "PacketTooLarge",
    "ProtocolError",
    "RemoteProtocolError",
    "StreamFramer",
    "Struct",
    "TransportError",
    "TransportTimeout",
    "Value",
    "__version__",
    "decode_fault",
    "decode_values",
    "encode_fault",
    "encode_header",
    "encode_packet",
    "encode_reply",
    "encode_request",
    "encode_values",
    "parse_address",
    "parse_header",
    "parse_packet",
    "parse_request",
]
