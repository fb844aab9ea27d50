"""Fuzz target for the FIFO text protocol: framer, request parser, unescape, FifoContext.

Invariants, for any bytes:

* :class:`~binrpc._fifo_wire.FifoFramer` (fed in chunks, with the default and with a tiny limit)
  returns requests or raises :class:`~binrpc._fifo_wire.FifoTooLarge` (a RemoteProtocolError),
  never buffers more than its limit plus one chunk, and cuts the same requests whatever the
  chunk size (while the limit is not hit);
* :func:`~binrpc._fifo_wire.parse_fifo_request` returns a request whose method is non-empty and
  whose reply name has no ``.``, ``/`` or ``\\``, or raises
  :class:`~binrpc._fifo_wire.FifoRequestError` (a RemoteProtocolError);
* :func:`~binrpc._fifo_wire.unescape` returns a string or raises ValueError (its documented error);
* every request, run through a :class:`~binrpc._fifo_context.FifoContext` against RPCs that scan
  every format character, read typed (pythonic) parameters and build structs, gets exactly
  one reply: a status line ``<code> <reason>`` and a body; never an "Internal server error"
  (which would mean an exception escaped the context into the handler).

No other exception, no hang (watchdog), bounded memory (see fuzz/_harness.py)::

    .venv/bin/python fuzz/fifo_target.py --runs 1000000 --seed 1
    .venv/bin/python fuzz/fifo_target.py --atheris -runs=1000000
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from binrpc import RemoteProtocolError
from binrpc._dispatch import call_method
from binrpc._fifo_context import FifoContext
from binrpc._fifo_wire import (
    DEFAULT_MAX_REQUEST_SIZE,
    FifoFramer,
    FifoRequest,
    FifoRequestError,
    FifoTooLarge,
    parse_fifo_request,
    unescape,
)

if __package__ in (None, ""):  # run as a script: make ``fuzz`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fuzz._registry import METHODS, REGISTRY

_STATUS = re.compile(rb"-?[0-9]+ [^\n]*\n")
_ESCAPED = re.compile(rb"500 Internal server error: \w+\n")
"""The status call_method sets for an exception raised inside a handler."""


def _run(request: FifoRequest, max_reply_size: int | None) -> None:
    replies: list[bytes] = []
    ctx = FifoContext(request, replies.append, registry=REGISTRY, max_reply_size=max_reply_size)
    method = REGISTRY.get(request.method)
    assert method is not None
    pending = call_method(method, ctx)
    assert pending is None, "a sync handler returned a coroutine"
    assert len(replies) == 1, f"{len(replies)} replies to {request.method}"
    reply = replies[0]
    assert isinstance(reply, bytes)
    assert _STATUS.match(reply), f"bad status line {reply[:80]!r}"
    assert not _ESCAPED.match(reply), f"an exception escaped into {request.method}: {reply[:120]!r}"
    if max_reply_size is not None:
        assert len(reply) <= max(max_reply_size, 64), "reply over max_reply_size"


def _frame(data: bytes, step: int, limit: int) -> list[bytes] | None:
    """Requests cut by a framer fed ``step`` bytes at a time; None if the limit was hit."""
    framer = FifoFramer(limit)
    out: list[bytes] = []
    overflow = False
    for i in range(0, len(data), step):
        framer.feed(data[i : i + step])
        while True:
            try:
                request = framer.next_request()
            except FifoTooLarge:
                overflow = True
                continue
            if request is None:
                break
            out.append(request)
        assert framer.buffered <= limit + step, f"{framer.buffered} bytes buffered"
    return None if overflow else out


def check(data: bytes) -> None:
    """Run every FIFO parser over ``data``; AssertionError on a broken invariant."""
    try:
        _check(data)
    except AssertionError:
        raise
    except RemoteProtocolError as exc:  # pragma: no cover - every one is caught below
        raise AssertionError(f"stray {type(exc).__name__}: {exc} on input {data.hex()}") from exc
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc} on input {data.hex()}") from exc


def _check(data: bytes) -> None:
    step = (data[0] % 5 + 1) if data else 1
    whole = _frame(data, max(len(data), 1), DEFAULT_MAX_REQUEST_SIZE)
    chunked = _frame(data, step, DEFAULT_MAX_REQUEST_SIZE)
    if whole is not None and chunked is not None:
        assert whole == chunked, f"chunks of {step} cut {chunked!r}, whole cut {whole!r}"
    _frame(data, step, 48)
    requests = [data, *(whole or [])[:3]]
    for index, raw in enumerate(requests):
        try:
            request = parse_fifo_request(raw)
        except FifoRequestError:
            continue
        assert request.method, "empty method accepted"
        assert not any(c in request.reply_name for c in "./\\"), request.reply_name
        for line in request.params:
            assert "\n" not in line, "a parameter line holds a newline"
            try:
                assert isinstance(unescape(line), str)
            except ValueError:
                pass
        if index > 1:
            continue
        # the request's own method when it exists, else two chosen from the input
        names = [request.method] if REGISTRY.get(request.method) else []
        names += [METHODS[(len(data) * 7 + k * 13) % len(METHODS)] for k in range(2)]
        for k, name in enumerate(names):
            limit = None if k else 96
            _run(FifoRequest(name, request.reply_name, request.params), limit)


SEEDS = [
    b":core.echo:\nabc\n5\n\n",
    b":core.printi:reply\n0x10\n-5\n010\nabc\n\n",
    b":scan.{:\na:1,b\\c:2\\o3\n\n",
    b":py.struct:\nname:value,x\\o:y\\c\n\n",
    b":py.int:\n12\n-7\n\n:py.float:\n1.5e3\n\n",
    b":system.methodHelp:\ncore.echo\n\n",
    b":core.shmmem:\nk\n\n",
    b"\n\n:ctx.nested:r\n\n",
    b":scan.*.s:\n\\n\\t\\0\\\\\\c\\o\n\n",
    b":py.any:\n\xff\xfe\n\\x\n\r\n",
    b":scan.SS*S:\na\r\nb\n\n",
]

TOKENS = [b":", b"\n", b"\n\n", b"\r\n", b"\\", b"\\n", b"\\c", b"\\o", b"\\0", b",", b"0x",
          b"-", b"{", b"*", b".", b"/", b"\xff", b"\x00", b"1e308", b"nan", b"inf",
          *(f":{m}:".encode() for m in METHODS)]  # fmt: skip


def main() -> None:
    from fuzz._harness import main as harness_main

    sys.exit(harness_main("fifo", check, SEEDS, TOKENS))


if __name__ == "__main__":
    main()
