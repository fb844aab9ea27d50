"""Run binrpcd's own ``main`` under cProfile (benchmarks only).

    python bench/_run_binrpcd.py [--loop asyncio|uvloop] [--cprofile FILE] -- BINRPCD-ARGS...

``--loop`` is passed on to binrpcd (which chooses its event loop itself, ``binrpcd --loop``).
``--cprofile FILE`` writes a cProfile dump when binrpcd exits (SIGTERM = clean exit). binrpcd
prints the loop it runs on to stderr (``binrpcd: event loop ...``).

(This wrapper used to install uvloop's event loop policy and patch around an assert that
rejected uvloop's transports; binrpcd has ``--loop`` and accepts them since.)
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"))
    ap.add_argument("--cprofile", metavar="FILE")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if args.loop:
        rest = ["--loop", args.loop, *rest]

    from binrpc.cli.daemon import main as binrpcd_main

    if not args.cprofile:
        return binrpcd_main(rest)
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(binrpcd_main, rest)
    finally:
        prof.dump_stats(args.cprofile)


if __name__ == "__main__":
    sys.exit(main())
