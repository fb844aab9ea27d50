"""The default rendering of flat replies (top-level strings and integers), fast.

Apart from :mod:`binrpc.cli._render` (loaded only when a reply needs it) so that a one-shot
``binrpc core.version`` does not pay for the whole renderer at start-up.
"""

from __future__ import annotations

__all__ = ["render_simple"]


def render_simple(body: bytes) -> bytes | None:
    """:func:`render_default` of a body made only of top-level strings and integers (most
    replies: ``core.version``, ``core.echo`` ...), quickly; ``None`` for any other body (then
    call :func:`render_default`, the reference: a test compares both)."""
    out = []
    pos = 0
    end = len(body)
    while pos < end:
        tag = body[pos]
        if tag & 0x0E:  # neither STR (1) nor INT (0)
            return None
        pos += 1
        if tag & 0x80:
            nlen = (tag >> 4) & 7
            if nlen == 1 and pos < end:
                length = body[pos]
            elif pos + nlen <= end:
                length = int.from_bytes(body[pos : pos + nlen], "big")
            else:
                return None
            pos += nlen
        else:
            length = tag >> 4
        nxt = pos + length
        if nxt > end:
            return None
        if tag & 1:  # STR, printed with %s: up to a NUL
            nul = body.find(0, pos, nxt)
            out.append(body[pos : nxt if nul < 0 else nul])
        else:
            acc = int.from_bytes(body[max(pos, nxt - 4) : nxt], "big")
            out.append(b"%d" % (acc - 0x100000000 if acc >= 0x80000000 else acc))
        pos = nxt
    if len(out) == 1:
        return out[0] + b"\n"
    out.append(b"")
    return b"\n".join(out)
