"""Run binrpcd's own ``main`` with another event loop or under cProfile (benchmarks only).

    python bench/_run_binrpcd.py [--loop asyncio|uvloop] [--cprofile FILE] -- BINRPCD-ARGS...

binrpcd has no option to choose the event loop: it calls ``asyncio.run``, which uses the
default (selector/epoll) loop even when uvloop is installed. ``--loop uvloop`` installs
uvloop's event loop policy first, so that the very same ``binrpc.cli.daemon.main`` runs on
uvloop. ``--cprofile FILE`` writes a cProfile dump when binrpcd exits (SIGTERM = clean exit).
The loop actually used is written to stderr (``bench: event loop ...``).

binrpcd does not run on uvloop as it is (an assert rejects uvloop's transports, see
:func:`_accept_uvloop_transports`); this wrapper works around it for the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def _accept_uvloop_transports() -> None:
    """Work around ``assert isinstance(transport, asyncio.Transport)`` in
    ``StreamConnection.connection_made`` (binrpc/server/_conn.py): uvloop's stream transports do
    not subclass ``asyncio.Transport``, so that assert resets every stream connection under
    uvloop. Only the ``asyncio`` name seen by that module is replaced, by a copy of the asyncio
    module whose ``Transport`` is a tuple that also holds uvloop's stream transports; nothing
    else changes (``python -O`` would drop every assert in binrpc instead)."""
    import types

    import uvloop.loop

    from binrpc.server import _conn

    shim = types.ModuleType("asyncio")
    shim.__dict__.update(asyncio.__dict__)
    shim.Transport = (  # type: ignore[attr-defined]
        asyncio.Transport,
        uvloop.loop.UnixTransport,
        uvloop.loop.TCPTransport,
    )
    _conn.asyncio = shim  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--cprofile", metavar="FILE")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        _accept_uvloop_transports()
    loop = asyncio.new_event_loop()
    print(f"bench: event loop {type(loop).__module__}.{type(loop).__qualname__}", file=sys.stderr)
    loop.close()

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
