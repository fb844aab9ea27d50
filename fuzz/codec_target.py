"""Fuzz target for the binrpc codec and framer.

Invariant: every input either decodes or raises :class:`binrpc.RemoteProtocolError`; nothing
else (no IndexError, struct.error, RecursionError, MemoryError), no hang.

Run long with atheris (coverage-guided) when it is installed::

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/codec_target.py -atheris_runs=1000000

or without it, with the built-in mutation loop::

    .venv/bin/python fuzz/codec_target.py --runs 1000000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from binrpc import (
    BodyReader,
    RemoteProtocolError,
    StreamFramer,
    decode_fault,
    decode_values,
    encode_request,
    encode_values,
    parse_packet,
    parse_request,
)
from binrpc._values import Struct


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
    for step in (*STEPS, _frame):
        try:
            step(data)
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
    if any(arg.startswith("-atheris") for arg in sys.argv[1:]):
        import atheris  # type: ignore[import-not-found]

        atheris.Setup(sys.argv, check)
        atheris.Fuzz()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    start = time.monotonic()
    n = run(args.runs, args.seed)
    print(f"{n} inputs, 0 failures, seed {args.seed}, {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
