"""Codec throughput: encode and decode packets/s and MB/s.

    .venv/bin/python bench/codec.py [--seconds 1.0]

Cases: a small request (core.echo "hello"), a core.echo reply, and a 1 MiB reply of nested
structs. Decoding = parse the header and decode every value.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

from binrpc import (
    Struct,
    Value,
    decode_values,
    encode_reply,
    encode_request,
    encode_values,
    parse_packet,
)


def nested_reply_values(target: int = 1 << 20) -> list[Value]:
    """About ``target`` bytes of structs like dispatcher.list's."""
    values: list[Value] = []
    size = 0
    i = 0
    while size < target:
        dest = Struct(
            URI=f"sip:10.0.{i % 256}.{i // 256 % 256}:5060",
            FLAGS="AX",
            PRIORITY=i % 10,
            ATTRS=Struct(BODY=f"weight={i % 100};duid=n{i}", WEIGHT=i % 100, RWEIGHT=0.5),
        )
        item = Struct(SET=Struct(ID=i, TARGETS=Struct(DEST=dest)))
        values.append(item)
        size += len(encode_values([item]))
        i += 1
    return values


def measure(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second."""
    n = 0
    batch = 1
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, 10_000)


def decode(packet_bytes: bytes) -> list[Value]:
    packet = parse_packet(packet_bytes)
    assert packet is not None
    return decode_values(packet.body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()

    big = nested_reply_values()
    cases: list[tuple[str, Callable[[], bytes]]] = [
        ("request core.echo hello", lambda: encode_request("core.echo", ["hello"], 0x1234)),
        ("reply core.echo", lambda: encode_reply(["hello"], 0x1234)),
        ("reply 1 MiB nested structs", lambda: encode_reply(big, 0x1234)),
    ]
    print(f"python {platform.python_version()} on {platform.machine()}, {args.seconds}s per cell")
    cols = ("size", "enc pkt/s", "enc MB/s", "dec pkt/s", "dec MB/s")
    print(f"{'case':30}" + "".join(f" {c:>12}" for c in cols))
    for name, enc in cases:
        wire = enc()
        enc_rate = measure(enc, args.seconds)
        dec_rate = measure(lambda wire=wire: decode(wire), args.seconds)  # type: ignore[misc]
        mb = len(wire) / 1e6
        print(
            f"{name:30} {len(wire):>12} {enc_rate:>12,.0f} {enc_rate * mb:>12.1f}"
            f" {dec_rate:>12,.0f} {dec_rate * mb:>12.1f}"
        )


if __name__ == "__main__":
    main()
