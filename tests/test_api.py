"""The public API is pinned: __all__ complete, sorted, and every name importable."""

from __future__ import annotations

import subprocess
import sys

import binrpc


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
        p.cookie = 8  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Packet is mutable")
