"""The public API is pinned: __all__ complete, sorted, and every name importable."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import binrpc
import binrpc.server


def test_all_is_sorted_and_complete() -> None:
    assert binrpc.__all__ == sorted(binrpc.__all__)
    public = {n for n in vars(binrpc) if not n.startswith("_")} - {"annotations"}
    assert public - {"__version__"} <= set(binrpc.__all__) | {
        n for n in public if type(getattr(binrpc, n)).__name__ == "module"
    }
    for name in binrpc.__all__:
        assert hasattr(binrpc, name), name


def test_errors_hierarchy() -> None:
    assert issubclass(binrpc.DecodeError, binrpc.RemoteProtocolError)
    assert issubclass(binrpc.RemoteProtocolError, binrpc.ProtocolError)
    assert issubclass(binrpc.LocalProtocolError, ValueError)
    assert issubclass(binrpc.TransportError, OSError)
    assert issubclass(binrpc.TransportTimeout, TimeoutError)
    assert issubclass(binrpc.Fault, binrpc.BinrpcError)
    # a listener that cannot be created is a binrpc error too, and still an OSError
    assert binrpc.server.ListenerError is binrpc.ListenerError
    assert issubclass(binrpc.ListenerError, binrpc.BinrpcError)
    assert issubclass(binrpc.ListenerError, OSError)
    assert str(binrpc.ListenerError("tcp:x:1: cannot bind")) == "tcp:x:1: cannot bind"
    assert binrpc.Fault(500, "x") == binrpc.Fault(500, "x")
    assert str(binrpc.Fault(400, "bad")) == "400 - bad"


def test_importing_the_codec_stays_lean() -> None:
    code = (
        "import sys, binrpc; "
        "print(sorted(m for m in ('asyncio', 'prompt_toolkit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_immutable_records_keep_their_field_order() -> None:
    a = binrpc.Address("tcp", "127.0.0.1", 2049)
    assert (a.proto, a.host, a.port) == ("tcp", "127.0.0.1", 2049)
    assert repr(a) == "Address(proto='tcp', host='127.0.0.1', port=2049)"
    h = binrpc.Header(1, 2, 3, 4)
    assert (h.type, h.body_len, h.cookie, h.size) == (1, 2, 3, 4)
    p = binrpc.Packet(1, 7, b"x")
    assert (p.type, p.cookie, p.body) == (1, 7, b"x")
    assert binrpc.Double(2).value == 2
    assert p == binrpc.Packet(1, 7, b"x")
    assert hash(p) == hash(binrpc.Packet(1, 7, b"x"))
    try:
        p.cookie = 8
    except AttributeError:
        pass
    else:
        raise AssertionError("Packet is mutable")


def test_constants_of_the_reader_and_of_decode_errors_are_public() -> None:
    # record types (BodyReader.peek_type) and token kinds (BodyReader.next_token) have
    # prefixes of their own: their numbers overlap (TOK_VALUE == T_INT == 0)
    body = binrpc.encode_values(["s", 1, 1.5, b"b", binrpc.Struct(k=2), [3]])
    reader = binrpc.BodyReader(body, strict=False)
    types = []
    while (t := reader.peek_type()) is not None:
        types.append(t)
        reader.read_value()
    assert types == [
        *(binrpc.T_STR, binrpc.T_INT, binrpc.T_DOUBLE, binrpc.T_BYTES),
        *(binrpc.T_STRUCT, binrpc.T_ARRAY),
    ]
    assert [k for k, _, _ in binrpc.BodyReader(body, strict=False).tokens()][-6:] == [
        *(binrpc.TOK_STRUCT_START, binrpc.TOK_VALUE, binrpc.TOK_STRUCT_END),
        *(binrpc.TOK_ARRAY_START, binrpc.TOK_VALUE, binrpc.TOK_ARRAY_END),
    ]
    member = binrpc.BodyReader(binrpc.encode_values([binrpc.Struct(k=2)]))
    member.next_token()
    assert member.peek_type() == binrpc.T_AVP
    assert not {"T_VALUE", "T_STRUCT_START", "T_STRUCT_END", "T_ARRAY_START", "T_ARRAY_END"} & set(
        binrpc.__all__
    )
    # DecodeError.code is one of the public E_* numbers
    try:
        binrpc.decode_values(bytes.fromhex("07"))
    except binrpc.DecodeError as exc:
        assert exc.code == binrpc.E_TYPE
    else:
        raise AssertionError("an unknown record type decoded")
    codes = [getattr(binrpc, n) for n in binrpc.__all__ if n.startswith("E_")]
    assert sorted(codes) == [-9, -8, -7, -5, -4, -3, -2, -1]
    assert binrpc.DecodeError(binrpc.E_MORE_DATA).text == "more data needed"


def test_the_version_is_written_in_one_place() -> None:
    # pyproject takes it from binrpc.__version__; the installed metadata agrees
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "binrpc.__version__"}
    assert importlib.metadata.version("binrpc") == binrpc.__version__
