"""Low-overhead binrpc load generator, run as its own process by ``bench/server.py``.

    python bench/_loadgen.py '<json job>'

It prints one JSON object on stdout. The same code drives binrpcd and Kamailio: pre-encoded
request bytes (:func:`binrpc.encode_request`), raw blocking sockets, and the least parsing that
finds reply boundaries (:func:`binrpc.parse_header`, then the body length; with one request
outstanding per socket, a read of exactly the checked reply's length is taken as that reply
without parsing). Replies are checked once, during the warm-up (type REPLY and the expected
values); the timed loop only counts them.

Jobs (``mode``):

``seq``     one connection (or one datagram socket), request -> whole reply -> next request.
``pipe``    one stream connection; ``depth`` requests written at once, then ``depth`` replies read.
``conc``    ``conns`` stream connections, one request outstanding on each (closed loop, epoll).
``burst``   ``conns`` stream connections; each round sends one request on every connection at
            the same moment and waits for all replies (latency of a round).
``idle``    open ``conns`` unix stream connections, print ``{"opened": n}``, then keep them until
            stdin closes (``check``: report how many the server already closed).
``big``     one :class:`binrpc.client.Client` call of a big reply, ``rounds`` times: round-trip
            times and this process's peak RSS (``ru_maxrss``) before and after.

Server CPU time is read from ``/proc/<cpu_pid>/stat`` (utime + stime, clock ticks) and from
``/proc/<cpu_pid>/schedstat`` (run time in ns, the precise counter) right before and right after
the timed part, so start-up and warm-up are not counted.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import struct
import sys
import time
from typing import Any

from binrpc import decode_values, encode_request, parse_header

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int | None) -> tuple[float, float, float]:
    """(utime+stime in seconds from /proc/pid/stat, run time in seconds from schedstat,
    stime alone in seconds)."""
    if not pid:
        return 0.0, 0.0, 0.0
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    fields = data[data.rfind(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as fh:
            ns = int(fh.read().split()[0])
    except OSError:
        ns = 0
    return (utime + stime) / CLK_TCK, ns / 1e9, stime / CLK_TCK


def connect(addr: str, workdir: str, tag: str = "") -> socket.socket:
    """A connected blocking socket for ``proto:path`` / ``proto:host:port``."""
    proto, _, rest = addr.partition(":")
    if proto == "unixs":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(rest)
    elif proto == "unixd":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        local = os.path.join(workdir, f"lg-{os.getpid()}{tag}.sock")
        if os.path.exists(local):
            os.unlink(local)
        s.bind(local)
        s.connect(rest)
    elif proto in ("tcp", "udp"):
        host, _, port = rest.rpartition(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        if proto == "tcp":
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect((host, int(port)))
    else:
        raise SystemExit(f"unknown proto {proto!r}")
    return s


def unlink_local(s: socket.socket) -> None:
    if s.family == socket.AF_UNIX and s.type == socket.SOCK_DGRAM:
        name = s.getsockname()
        if isinstance(name, str) and name:
            try:
                os.unlink(name)
            except OSError:
                pass


def read_stream_reply(s: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    """Read one whole reply from a stream. Returns (reply, bytes after it)."""
    while True:
        h = parse_header(data) if len(data) >= 4 else None
        if h is not None:
            end = h.size + h.body_len
            if len(data) >= end:
                return data[:end], data[end:]
        chunk = s.recv(262144)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk


def check_reply(reply: bytes, expect: Any) -> None:
    h = parse_header(reply)
    if h is None or int(h.type) != 1:
        raise SystemExit(f"not a reply: {reply[:80]!r}")
    if expect is not None:
        values = decode_values(reply[h.size :])
        if values != expect:
            raise SystemExit(f"unexpected reply values {values!r}, expected {expect!r}")


# --------------------------------------------------------------------------------------


def job_seq(job: dict[str, Any]) -> dict[str, Any]:
    req = encode_request(job["method"], job.get("params", []), 0x1234)
    s = connect(job["addr"], job["workdir"])
    stream = s.type == socket.SOCK_STREAM
    send, recv = s.send, s.recv
    try:
        # warm-up (and the one check)
        deadline = time.perf_counter() + job["warmup"]
        first = True
        rlen = 0
        while first or time.perf_counter() < deadline:
            s.sendall(req)
            reply = read_stream_reply(s)[0] if stream else recv(65536)
            if first:
                check_reply(reply, job.get("expect"))
                rlen = len(reply)
                first = False
        n = 0
        cpu0 = proc_cpu(job.get("cpu_pid"))
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        end = t0 + job["duration"]
        if stream:
            while True:
                for _ in range(50):
                    send(req)
                    data = recv(65536)
                    # one request is outstanding, so a read of exactly the checked reply's
                    # length is that reply; anything else takes the parse_header path
                    if len(data) != rlen:
                        rest = read_stream_reply(s, data)[1]
                        if rest:
                            raise SystemExit("extra bytes after a reply")
                n += 50
                if time.perf_counter() >= end:
                    break
        else:
            while True:
                for _ in range(50):
                    send(req)
                    recv(65536)
                n += 50
                if time.perf_counter() >= end:
                    break
        t1 = time.perf_counter()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = proc_cpu(job.get("cpu_pid"))
    finally:
        unlink_local(s)
        s.close()
    return result(n, t1 - t0, cpu0, cpu1, ru0, ru1)


def job_pipe(job: dict[str, Any]) -> dict[str, Any]:
    depth = job["depth"]
    req = encode_request(job["method"], job.get("params", []), 0x1234)
    batch = req * depth
    s = connect(job["addr"], job["workdir"])
    recv = s.recv

    def one_batch() -> None:
        s.sendall(batch)
        buf = b""
        pos = 0
        got = 0
        while got < depth:
            h = parse_header(buf, pos) if len(buf) - pos >= 4 else None
            if h is not None and len(buf) - pos >= h.size + h.body_len:
                pos += h.size + h.body_len
                got += 1
                continue
            chunk = recv(262144)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf = buf[pos:] + chunk
            pos = 0
        if pos != len(buf):
            raise SystemExit("extra bytes after the replies")

    try:
        s.sendall(req)
        check_reply(read_stream_reply(s)[0], job.get("expect"))
        deadline = time.perf_counter() + job["warmup"]
        while time.perf_counter() < deadline:
            one_batch()
        n = 0
        cpu0 = proc_cpu(job.get("cpu_pid"))
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        end = t0 + job["duration"]
        while True:
            one_batch()
            n += depth
            if time.perf_counter() >= end:
                break
        t1 = time.perf_counter()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = proc_cpu(job.get("cpu_pid"))
    finally:
        s.close()
    return result(n, t1 - t0, cpu0, cpu1, ru0, ru1)


def _open_streams(job: dict[str, Any], k: int) -> list[socket.socket]:
    socks = [connect(job["addr"], job["workdir"], f"-{i}") for i in range(k)]
    return socks


def job_conc(job: dict[str, Any]) -> dict[str, Any]:
    k = job["conns"]
    req = encode_request(job["method"], job.get("params", []), 0x1234)
    socks = _open_streams(job, k)
    rlen = 0
    for s in socks:
        s.sendall(req)
        reply = read_stream_reply(s)[0]
        check_reply(reply, job.get("expect"))
        rlen = len(reply)
        s.setblocking(False)
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    bufs = {fd: b"" for fd in by_fd}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)

    def run(duration: float) -> int:
        count = 0
        for s in socks:
            s.send(req)
        end = time.perf_counter() + duration
        outstanding = k
        stopping = False
        while outstanding:
            for fd, _ev in ep.poll(1.0):
                s = by_fd[fd]
                data = s.recv(262144)
                if not data:
                    raise ConnectionError("server closed a connection")
                if len(data) == rlen and not bufs[fd]:  # the one outstanding reply, whole
                    count += 1
                    if stopping:
                        outstanding -= 1
                    else:
                        s.send(req)
                    continue
                data = bufs[fd] + data
                while (
                    len(data) >= 4
                    and (h := parse_header(data)) is not None
                    and len(data) >= h.size + h.body_len
                ):
                    data = data[h.size + h.body_len :]
                    count += 1
                    outstanding -= 1
                    if not stopping:
                        s.send(req)
                        outstanding += 1
                bufs[fd] = data
            if not stopping and time.perf_counter() >= end:
                stopping = True
        return count

    try:
        run(job["warmup"])
        cpu0 = proc_cpu(job.get("cpu_pid"))
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        n = run(job["duration"])
        t1 = time.perf_counter()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = proc_cpu(job.get("cpu_pid"))
    finally:
        ep.close()
        for s in socks:
            s.close()
    return result(n, t1 - t0, cpu0, cpu1, ru0, ru1)


def job_burst(job: dict[str, Any]) -> dict[str, Any]:
    k = job["conns"]
    req = encode_request(job["method"], job.get("params", []), 0x1234)
    socks = _open_streams(job, k)
    rounds: list[float] = []
    try:
        for s in socks:  # one call each first: connections accepted, the check
            s.sendall(req)
            check_reply(read_stream_reply(s)[0], job.get("expect"))
        single: list[float] = []
        for _ in range(job["rounds"]):
            t0 = time.perf_counter()
            socks[0].sendall(req)
            read_stream_reply(socks[0])
            single.append(time.perf_counter() - t0)
        cpu0 = proc_cpu(job.get("cpu_pid"))
        for _ in range(job["rounds"]):
            t0 = time.perf_counter()
            for s in socks:
                s.send(req)
            for s in socks:
                read_stream_reply(s)
            rounds.append(time.perf_counter() - t0)
        cpu1 = proc_cpu(job.get("cpu_pid"))
    finally:
        for s in socks:
            s.close()
    rounds.sort()
    single.sort()
    return {
        "rounds": rounds,
        "median_round": rounds[len(rounds) // 2],
        "median_single": single[len(single) // 2],
        "server_cpu_ticks_s": cpu1[0] - cpu0[0],
        "server_cpu_sched_s": cpu1[1] - cpu0[1],
        "server_stime_s": cpu1[2] - cpu0[2],
        "requests": k * len(rounds),
    }


def job_idle(job: dict[str, Any]) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    path = job["addr"].partition(":")[2]
    socks = []
    t0 = time.perf_counter()
    error = ""
    for _ in range(job["conns"]):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # a blocking connect waits while the listen backlog is full (a non-blocking one fails
        # with EAGAIN on unix sockets); SO_SNDTIMEO bounds that wait in the kernel
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        try:
            s.connect(path)
        except OSError as exc:  # a full backlog that nobody accepts, EMFILE ...
            s.close()
            error = repr(exc)
            break
        socks.append(s)
    print(
        json.dumps({"opened": len(socks), "seconds": time.perf_counter() - t0, "error": error}),
        flush=True,
    )
    sys.stdin.readline()  # "check" or EOF
    closed = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(json.dumps({"closed_by_server": closed}), flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()
    return {"done": True}


def maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def job_big(job: dict[str, Any]) -> dict[str, Any]:
    from binrpc.client import Client

    times = []
    with Client(job["addr"], timeout=60) as c:
        c.call_one("core.version")  # connected, code paths imported
        base = maxrss_kib()
        size = 0
        for _ in range(job["rounds"]):
            t0 = time.perf_counter()
            value = c.call_one(job["method"], *job.get("params", []))
            times.append(time.perf_counter() - t0)
            size = len(value) if isinstance(value, bytes | str) else -1
            del value
    times.sort()
    return {
        "times": times,
        "median": times[len(times) // 2],
        "reply_value_len": size,
        "client_maxrss_kib_before": base,
        "client_maxrss_kib": maxrss_kib(),
    }


def result(
    n: int,
    elapsed: float,
    cpu0: tuple[float, float, float],
    cpu1: tuple[float, float, float],
    ru0: resource.struct_rusage,
    ru1: resource.struct_rusage,
) -> dict[str, Any]:
    own = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {
        "requests": n,
        "seconds": elapsed,
        "rps": n / elapsed,
        "server_cpu_ticks_s": cpu1[0] - cpu0[0],
        "server_cpu_sched_s": cpu1[1] - cpu0[1],
        "server_stime_s": cpu1[2] - cpu0[2],
        "client_cpu_s": own,
    }


JOBS = {
    "seq": job_seq,
    "pipe": job_pipe,
    "conc": job_conc,
    "burst": job_burst,
    "idle": job_idle,
    "big": job_big,
}


def main() -> None:
    job = json.loads(sys.argv[1])
    out = JOBS[job["mode"]](job)
    if job["mode"] != "idle":
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
