"""``binrpc --fifo ADDR method [args...]``: one call over the ctl module's FIFO text protocol.

The FIFO protocol is untyped: every argument is a text value sent as one line (escaped with
the FIFO escapes, so any text arrives as typed; kamcmd's number guessing does not apply). A
struct parameter reads a ``name:value,...`` line, so such an argument (without backslashes)
fills one. Output: the reply's body lines, unescaped, one per line; a non-2xx
status prints ``error: <code> - <reason>`` and exits 1 (0 with ``--kamcmd-exit``), like a
binrpc fault. ``--raw`` prints the reply exactly as received, ``--json`` one document
``{"code": N, "reason": S, "lines": [...]}``.
"""

from __future__ import annotations

import sys

from .._address import AddressError
from .._errors import LocalProtocolError, RemoteProtocolError, TransportError
from ._runner import EXIT_ERROR, EXIT_FAULT, EXIT_OK

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import BinaryIO

    from ._options import Options

__all__ = ["run_fifo"]


def run_fifo(opts: Options, words: list[str], out: BinaryIO) -> int:
    """Send ``words`` (method, then argument lines) to ``opts.fifo``; return the exit status."""
    from ..client._fifo_client import FifoClient

    if not words:
        sys.stderr.write("ERROR: --fifo needs a method (no interactive mode over FIFO)\n")
        return EXIT_ERROR
    method, *args = words
    try:
        client = FifoClient(
            opts.fifo or "",
            reply_dir=opts.fifo_reply_dir or "/tmp",
            timeout=opts.timeout if opts.timeout is not None else 5.0,
        )
        reply = client.request(method, *args)
    except AddressError as exc:
        sys.stderr.write(f"ERROR: error parsing FIFO address: {exc}\n")
        return EXIT_ERROR
    except (TransportError, RemoteProtocolError, LocalProtocolError) as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        return EXIT_ERROR
    if opts.raw:
        out.write(reply.raw)
    elif opts.json:
        import json

        doc = {"code": reply.code, "reason": reply.reason, "lines": reply.values()}
        out.write(json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogateescape") + b"\n")
    elif reply.ok:
        for line in reply.values():
            out.write(line.encode("utf-8", "surrogateescape") + b"\n")
    else:
        out.write(f"error: {reply.code} - {reply.reason}\n".encode("utf-8", "surrogateescape"))
    if reply.ok or opts.kamcmd_exit:
        return EXIT_OK
    return EXIT_FAULT
