"""Fuzz target for the binrpc codec, the stream framer and the RPC layer's BinrpcContext.

Invariant: every input either decodes or raises :class:`binrpc.RemoteProtocolError`; nothing
else (no IndexError, struct.error, RecursionError, MemoryError), no hang. The framer, fed in
chunks, never buffers more than its limit allows and refuses an oversized header with
PacketTooLarge. A request body that parses, run through a BinrpcContext against the fuzz
registry (fuzz/_registry.py: every scan format, every pythonic annotation), gets exactly one
reply or fault that decodes, never "Internal server error" (an exception that escaped the
context into the handler).

Run long with atheris (coverage-guided) when it is installed::

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/codec_target.py --atheris -runs=1000000

or without it, with the built-in mutation loop (fuzz/_harness.py)::

    .venv/bin/python fuzz/codec_target.py --runs 1000000 --seed 1
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

from binrpc import (
    BodyReader,
    DecodeError,
    PacketTooLarge,
    RemoteProtocolError,
    StreamFramer,
    decode_fault,
    decode_values,
    encode_request,
    encode_values,
    parse_packet,
    parse_request,
)
from binrpc._binrpc_context import BinrpcContext
from binrpc._codec import MsgType
from binrpc._dispatch import call_method
from binrpc._limits import RpcLimits
from binrpc._values import Struct

if __package__ in (None, ""):  # run as a script: make ``fuzz`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fuzz._registry import METHODS, REGISTRY


def _request(data: bytes) -> None:
    parse_request(data)[1].read_all()


def _tokens(data: bytes) -> None:
    for _ in BodyReader(data, strict=False).tokens():
        pass


def _strict(data: bytes) -> None:
    decode_values(data, strict=True)


STEPS = (parse_packet, _strict, decode_values, _request, decode_fault, _tokens)


def check(data: bytes) -> None:
    """Run every decoder over ``data``; raise AssertionError on a broken invariant."""
    for step in (*STEPS, _frame, _frame_limited, _rpc):
        try:
            step(data)
        except AssertionError:
            raise
        except RemoteProtocolError:
            pass
        except Exception as exc:  # the invariant is broken
            raise AssertionError(f"{type(exc).__name__}: {exc} on input {data.hex()}") from exc


def _frame(data: bytes) -> None:
    framer = StreamFramer()
    for i in range(0, len(data), 3):
        framer.feed(data[i : i + 3])
        while (packet := framer.next_packet()) is not None:
            decode_values(packet.body)


def _frame_limited(data: bytes) -> None:
    """A small limit: oversized headers are refused before their body is buffered."""
    limit = 32
    framer = StreamFramer(limit)
    step = (data[0] % 4 + 1) if data else 1
    for i in range(0, len(data), step):
        framer.feed(data[i : i + step])
        try:
            while (packet := framer.next_packet()) is not None:
                assert len(packet.body) <= limit
        except PacketTooLarge as exc:
            assert exc.size > limit
            assert framer.buffered == 0, "an oversized packet was kept in the buffer"
            return
        except DecodeError:
            assert framer.buffered == 0
            return
        assert framer.buffered <= limit + step, f"{framer.buffered} bytes buffered"


ESCAPED = re.compile(r"Internal server error: (\w+)$")
"""The fault call_method sends for an exception raised inside a handler."""

KNOWN_ESCAPES = {("py.float", "DecodeError")}
"""Known bug (tests/hardening/test_parsers.py::test_float_param_truncated_int_record): a
truncated INT record given to a pythonic ``float`` parameter raises DecodeError out of
BinrpcContext.read_param (fault 500) instead of the ctl fault 400."""
KNOWN_BUGS = True
"""Tolerate KNOWN_ESCAPES (``--strict`` on the command line turns this off)."""

_LIMITS = RpcLimits(buffer_size=64, max_body_size=512, struct_max_body_size=256)


def _rpc(data: bytes) -> None:
    """The body as a request to two methods of the fuzz registry (chosen from the input)."""
    try:
        name, _ = parse_request(data)
    except DecodeError:
        return
    names = [name] if REGISTRY.get(name) else []
    names += [METHODS[(len(data) * 7 + k * 13) % len(METHODS)] for k in range(2)]
    for k, method_name in enumerate(names[:2]):
        _, reader = parse_request(data)
        sent: list[bytes] = []
        ctx = BinrpcContext(
            reader,
            0x1234,
            sent.append,
            _LIMITS if k else RpcLimits(autoconversion=bool(len(data) & 1)),
            method=method_name,
            registry=REGISTRY,
            max_reply_size=200 if k else None,
        )
        method = REGISTRY.get(method_name)
        assert method is not None
        assert call_method(method, ctx) is None, "a sync handler returned a coroutine"
        assert len(sent) == 1, f"{len(sent)} packets sent by {method_name}"
        packet = parse_packet(sent[0])
        assert packet is not None and packet.cookie == 0x1234
        values = decode_values(packet.body)
        if packet.type == MsgType.FAULT:
            code, text = decode_fault(packet.body)
            escaped = ESCAPED.match(text)
            if escaped and not (KNOWN_BUGS and (method_name, escaped[1]) in KNOWN_ESCAPES):
                raise AssertionError(f"an exception escaped into {method_name}: {code} {text}")
        else:
            assert packet.type == MsgType.REPLY, values


SEEDS = [
    encode_request(
        "core.echo",
        ["abc", 5, -1, 1.5, b"\x01", Struct(a=1, b=Struct([(None, 1), (None, [2])]))],
        0x1234,
    ),
    encode_values([Struct([("x", Struct(y="z")), (None, 3)]), [1, [2, [3]]], -2.5, "", b""]),
    bytes.fromhex("a1 31 1f 12 34 20 01 f4 91 1a".replace(" ", "")) + b"command x not found\0",
    bytes.fromhex("030455610010018483"),
]


TOKENS = [bytes.fromhex(h) for h in ("a1", "a100", "a1 0f 00 00 00 0f 00 00 00 01".replace(" ", ""),
          "a1 0c 80 00 00 00".replace(" ", ""), "a1 0c ff ff ff ff".replace(" ", ""), "03", "83",
          "04", "84", "0304", "8483", "55 61 00".replace(" ", ""), "00", "01", "81", "91 ff",
          "b1 ff ff", "f1", "82 ff ff ff ff ff ff ff ff".replace(" ", ""), "f2", "06", "86 01",
          "ff", "c0 00 00 00 00".replace(" ", ""))] + [
          m.encode() + b"\0" for m in METHODS]  # fmt: skip


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.4 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op < 0.6:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        elif op < 0.8 and buf:
            del buf[rng.randrange(len(buf))]
        elif op < 0.9:
            cut = rng.randint(0, len(buf))
            buf = buf[:cut]
        else:
            other = rng.choice(SEEDS)
            at = rng.randint(0, len(buf))
            buf[at:at] = other[rng.randint(0, len(other)) :]
    return bytes(buf)


def run(runs: int, seed: int) -> int:
    """The built-in mutation loop; returns the number of inputs checked."""
    rng = random.Random(seed)
    for i in range(runs):
        if i % 5 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        else:
            data = mutate(rng, rng.choice(SEEDS))
        check(data)
    return runs


def main() -> None:
    global KNOWN_BUGS
    from fuzz._harness import main as harness_main

    if "--strict" in sys.argv:
        sys.argv.remove("--strict")
        KNOWN_BUGS = False
    seeds = [*SEEDS, *(s[s.index(b"\x00", 4) - 13 :] for s in SEEDS[:1])]
    sys.exit(harness_main("codec", check, seeds, TOKENS))


if __name__ == "__main__":
    main()
