"""The least a Python binrpc server can do: reference floors for ``bench/server.py --floors``.

    python bench/_floor_server.py --loop asyncio|uvloop|epoll --binrpc ADDR ...

Same listener syntax and ``listening on`` lines as binrpcd (unixs, unixd, udp, tcp only). For
every request packet it parses the header (:func:`binrpc.parse_header`, as the load generator
does) and answers with the pre-encoded reply of ``core.echo "hello"`` for the request's cookie
(cached): no method lookup, no body decoding, no reply encoding. Pipelined requests that arrive
in one read are answered with one write.

``asyncio`` / ``uvloop``: an ``asyncio.Protocol`` / ``DatagramProtocol`` on that loop (what any
asyncio server pays); ``epoll``: a plain ``select.epoll`` loop over non-blocking sockets (what
Python pays without an event-loop framework). Not a server to use: no limits, no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import socket
import sys
from typing import Any

from binrpc import encode_reply, parse_header

_replies: dict[int, bytes] = {}


def reply_for(cookie: int) -> bytes:
    r = _replies.get(cookie)
    if r is None:
        r = _replies[cookie] = encode_reply(["hello"], cookie)
    return r


def answer(buf: bytes) -> tuple[bytes, bytes]:
    """(replies for every whole packet at the start of ``buf``, the rest of ``buf``)."""
    out = []
    pos = 0
    n = len(buf)
    while n - pos >= 4:
        h = parse_header(buf, pos)
        if h is None or n - pos < h.size + h.body_len:
            break
        out.append(reply_for(h.cookie))
        pos += h.size + h.body_len
    return b"".join(out), buf[pos:]


def open_listener(addr: str) -> socket.socket:
    proto, _, rest = addr.partition(":")
    if proto in ("unixs", "unixd"):
        kind = socket.SOCK_STREAM if proto == "unixs" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_UNIX, kind)
        if os.path.exists(rest):
            os.unlink(rest)
        s.bind(rest)
    else:
        host, _, port = rest.rpartition(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
    if kind == socket.SOCK_STREAM:
        s.listen(128)
    s.setblocking(False)
    return s


# -- asyncio / uvloop --------------------------------------------------------------------------


class Stream(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        out, self.buf = answer(self.buf + data if self.buf else data)
        if out:
            self.transport.write(out)


class Dgram(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out, _ = answer(data)
        if out and addr:
            self.transport.sendto(out, addr)


async def run_asyncio(socks: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    for s in socks:
        if s.type == socket.SOCK_STREAM:
            if s.family == socket.AF_UNIX:
                await loop.create_unix_server(Stream, sock=s)
            else:
                await loop.create_server(Stream, sock=s)
        else:
            await loop.create_datagram_endpoint(Dgram, sock=s)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print_ready()
    await stop.wait()


# -- plain epoll -------------------------------------------------------------------------------


def run_epoll(socks: list[socket.socket]) -> None:
    ep = select.epoll()
    listeners = {s.fileno(): s for s in socks}
    conns: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    for fd in listeners:
        ep.register(fd, select.EPOLLIN)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print_ready()
    while not stop:
        try:
            events = ep.poll()
        except InterruptedError:
            continue
        for fd, _ev in events:
            lst = listeners.get(fd)
            if lst is not None:
                if lst.type == socket.SOCK_STREAM:
                    try:
                        c, _ = lst.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    conns[c.fileno()] = c
                    bufs[c.fileno()] = b""
                    ep.register(c.fileno(), select.EPOLLIN)
                else:
                    try:
                        data, addr = lst.recvfrom(65536)
                    except BlockingIOError:
                        continue
                    out, _ = answer(data)
                    if out and addr:
                        lst.sendto(out, addr)
                continue
            c = conns[fd]
            try:
                data = c.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                ep.unregister(fd)
                del conns[fd], bufs[fd]
                c.close()
                continue
            out, bufs[fd] = answer(bufs[fd] + data if bufs[fd] else data)
            if out:
                c.sendall(out)  # small replies: the socket buffer takes them


def print_ready() -> None:
    for addr in ARGS.binrpc:
        print(f"listening on {addr}", flush=True)


def main() -> int:
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=("asyncio", "uvloop", "epoll"), default="asyncio")
    ap.add_argument("--binrpc", action="append", default=[])
    ap.add_argument("--module", action="append", default=[])  # accepted and ignored
    ARGS = ap.parse_args()
    socks = [open_listener(a) for a in ARGS.binrpc]
    try:
        if ARGS.loop == "epoll":
            run_epoll(socks)
        else:
            if ARGS.loop == "uvloop":
                import uvloop

                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            asyncio.run(run_asyncio(socks))
    finally:
        for a in ARGS.binrpc:
            proto, _, rest = a.partition(":")
            if proto.startswith("unix") and os.path.exists(rest):
                os.unlink(rest)
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
