"""Start-up cost of the ``binrpc`` command against kamcmd, on a real Kamailio.

    .venv/bin/python bench/cli_startup.py [--runs 20] [--batch 1000]

Starts Kamailio 5.6.3 (ctl on a /tmp unix socket; the test harness in tests/interop does it and
stops it by pid), then measures the median wall time of:

* ``python -c pass`` (the interpreter's own floor, same venv),
* ``binrpc core.version`` (one-shot),
* ``kamcmd core.version``,
* ``binrpc --batch`` with N ``core.version`` lines (one process, one connection) against a
  shell loop running kamcmd N times.

Prints the times and the ratios. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.interop.kamailio import Kamailio, ensure_kamailio  # noqa: E402


def wall(argv: Sequence[str], runs: int, stdin: bytes | None = None) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, input=stdin, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    _kamailio, kamcmd = ensure_kamailio()
    binrpc = [sys.executable, "-m", "binrpc.cli.client"]
    with Kamailio() as k:
        sock = k.addresses[0].kamcmd
        py = wall([sys.executable, "-c", "pass"], args.runs)
        ours = wall([*binrpc, "-s", sock, "core.version"], args.runs)
        theirs = wall([kamcmd, "-s", sock, "core.version"], args.runs)
        print(f"python -c pass          {py * 1000:8.1f} ms")
        print(
            f"binrpc core.version     {ours * 1000:8.1f} ms  ({ours / theirs:5.1f}x kamcmd, "
            f"{ours / py:4.2f}x bare python)"
        )
        print(f"kamcmd core.version     {theirs * 1000:8.1f} ms")

        n = args.batch
        with tempfile.NamedTemporaryFile("w", suffix=".cmds", delete=False) as fh:
            fh.write("core.version\n" * n)
            script = fh.name
        try:
            batch = wall([*binrpc, "-s", sock, "--batch", script], max(1, args.runs // 5))
            loop = wall(
                [
                    "sh",
                    "-c",
                    f'i=0; while [ $i -lt {n} ]; do "{kamcmd}" -s "{sock}" '
                    f"core.version >/dev/null; i=$((i+1)); done",
                ],
                1,
            )
        finally:
            os.unlink(script)
        print(f"binrpc --batch ({n})    {batch * 1000:8.1f} ms")
        print(
            f"kamcmd shell loop ({n}) {loop * 1000:8.1f} ms  (batch is {loop / batch:5.1f}x faster)"
        )


if __name__ == "__main__":
    main()
