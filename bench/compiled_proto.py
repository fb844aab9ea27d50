"""The compiled-core prototype's hot-path measurement (issue 12): pure vs compiled builds.

    .venv/bin/python bench/compiled_proto.py --build pure=/tmp/proto-pure \\
        --build mypyc=/tmp/proto-mypyc --build cython=/tmp/proto-cython [--runs 7]

Each ``--build NAME=DIR`` is a tree whose ``DIR/src`` holds a binrpc package (interpreted, or
with some modules compiled in place). Every run of every case starts a fresh child process
with ``PYTHONPATH=DIR/src``; the builds take turns run by run, so that the machine's noise
falls on all of them alike. Reported: the median of the runs.

Cases, all without sockets or an event loop:

* ``seq``: ``core.echo "hello"`` request packets fed one per ``receive_data`` call to the
  sans-I/O :class:`BinrpcConnection` (built-in registry), every call run as the stream shell
  runs it, then ``data_to_send()``: us per request, request bytes to reply bytes;
* ``pipe``: the same with 64 packets per ``receive_data`` call;
* ``decode`` / ``encode``: the 110 well-formed packets (requests and replies) of
  ``tests/vectors/kamailio-5.6.3.jsonl``: ``parse_packet`` + ``decode_values`` of each, and
  ``encode_values`` of the decoded values: us per pass over all of them.

The builds are made outside the repository (issue 12's prototype; nothing generated is kept):
``git archive HEAD | tar -x -C DIR``, then in ``DIR/src`` ``mypyc FILES...`` or
``cythonize -i -X language_level=3 FILES...``; see bench/RESULTS.md for the files and edits.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any

from binrpc._dispatch import call_method  # in a child: the build under test (PYTHONPATH)

CASES = ("seq", "pipe", "decode", "encode")
VECTORS = pathlib.Path(__file__).resolve().parent.parent / "tests/vectors/kamailio-5.6.3.jsonl"


def _connection() -> Any:
    from binrpc._limits import RpcLimits
    from binrpc.rpcs import builtin_registry
    from binrpc.server._protocol import BinrpcConnection
    from binrpc.server._routing import Routing

    routing = Routing(builtin_registry(), None, "unixs:/bench")
    return BinrpcConnection(
        routing, RpcLimits(), None, max_request_size=65535, max_pending=128, peer="bench"
    )


def _serve(conn: Any, chunks: list[bytes]) -> int:
    """Feed ``chunks`` as the stream shell does; the reply bytes written."""
    out = 0
    for data in chunks:
        for method, ctx in conn.receive_data(data):
            if call_method(method, ctx) is not None:
                raise AssertionError("core.echo is synchronous")
            if conn.write_due:
                out += sum(len(b) for b in conn.data_to_send())
        out += sum(len(b) for b in conn.data_to_send())
    return out


def _server_case(per_call: int, requests: int) -> float:
    from binrpc import encode_reply, encode_request

    packet = encode_request("core.echo", ["hello"], cookie=0x1234)
    reply = encode_reply(["hello"], cookie=0x1234)
    conn = _connection()  # one long-lived stream for the warm-up and the timed loop
    for method, ctx in conn.receive_data(packet * per_call):  # warm-up; check the replies
        call_method(method, ctx)
    if b"".join(bytes(b) for b in conn.data_to_send()) != reply * per_call:
        raise AssertionError("unexpected reply bytes")
    chunks = [packet * per_call] * (requests // per_call)
    start = time.perf_counter()
    _serve(conn, chunks)
    return (time.perf_counter() - start) / (len(chunks) * per_call) * 1e6


def _codec_case(which: str, passes: int) -> float:
    from binrpc import DecodeError, decode_values, encode_values, parse_packet

    raw, values = [], []
    for line in VECTORS.open():
        vector = json.loads(line)
        for key in ("request_hex", "reply_hex"):
            data = bytes.fromhex(vector.get(key) or "")
            try:  # the well-formed, complete packets (the file also holds broken ones)
                packet = parse_packet(data)
                if packet is not None:
                    values.append(decode_values(packet.body))
                    raw.append(data)
            except DecodeError:
                pass
    start = time.perf_counter()
    if which == "decode":
        for _ in range(passes):
            for data in raw:
                decode_values(parse_packet(data).body)  # type: ignore[union-attr]
    else:
        for _ in range(passes):
            for v in values:
                encode_values(v)
    return (time.perf_counter() - start) / passes * 1e6


def child(case: str, size: int) -> None:
    import binrpc._decode
    import binrpc.server._protocol

    compiled = [
        m.__name__
        for m in (binrpc._decode, binrpc.server._protocol)
        if not (m.__file__ or "").endswith(".py")
    ]
    if case == "seq":
        value = _server_case(1, size)
    elif case == "pipe":
        value = _server_case(64, size)
    else:
        value = _codec_case(case, size // 100)
    print(json.dumps({"value": value, "compiled": compiled}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="append", default=[], help="NAME=DIR (repeat)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=64 * 1000)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests)
        return
    if not args.build:
        parser.error("give at least one --build NAME=DIR")
    builds = dict(b.split("=", 1) for b in args.build)
    cases = args.only.split(",")
    results: dict[tuple[str, str], list[float]] = {}
    compiled: dict[str, list[str]] = {}
    for _ in range(args.runs):
        for case in cases:
            for name, tree in builds.items():
                env = dict(os.environ, PYTHONPATH=str(pathlib.Path(tree) / "src"))
                cmd = [sys.executable, __file__, "--child", case]
                cmd += ["--requests", str(args.requests)]
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                row = json.loads(out.stdout)
                results.setdefault((case, name), []).append(row["value"])
                compiled[name] = row["compiled"]
    base = next(iter(builds))
    units = {"seq": "us/request", "pipe": "us/request", "decode": "us/pass", "encode": "us/pass"}
    print(f"medians of {args.runs} runs (speed-up over {base}, ± half the range)")
    print(f"compiled modules seen: {compiled}")
    print("| case | " + " | ".join(builds) + " |")
    print("|---|" + "---|" * len(builds))
    for case in cases:
        cells = []
        for name in builds:
            runs = results[(case, name)]
            med = statistics.median(runs)
            ratio = statistics.median(results[(case, base)]) / med
            spread = (max(runs) - min(runs)) / med * 100
            cells.append(f"{med:.2f} ({ratio:.2f}x, ±{spread / 2:.0f}%)")
        print(f"| {case} ({units[case]}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
