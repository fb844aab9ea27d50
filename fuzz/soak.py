"""Soak test: mixed requests over the four binrpc transports from several clients at once;
every reply is checked (cookie, type, content). Nothing may be lost or mismatched.

Used by tests/hardening/test_daemon.py (BINRPC_SOAK requests, default 20,000) and on its own
for long runs; it then starts a binrpcd subprocess (127.0.0.1 and /tmp only, stopped by its
pid) and runs the clients in worker processes::

    .venv/bin/python fuzz/soak.py --requests 1000000 --clients 8

Each client owns one connection (streams: batches of 1-8 pipelined requests, replies read in
order; datagrams: one request in flight, a lost datagram counts as lost). The mix: core.echo
(strings, some of 4 KiB, some not valid UTF-8), core.printi (ints incl. the 32-bit edges),
core.prints, core.version, system.methodHelp, an unknown method (fault 500), and a request
with a bad parameter (fault 400, the connection stays open).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from binrpc import Fault, decode_values, encode_request, parse_header, parse_packet
from binrpc._codec import MsgType

TRANSPORTS = ("unixs", "unixd", "udp", "tcp")


@dataclass
class Stats:
    sent: int = 0
    ok: int = 0
    lost: int = 0
    mismatched: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def add(self, other: Stats) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.lost += other.lost
        self.mismatched += other.mismatched
        self.errors += other.errors[: max(0, 10 - len(self.errors))]
        self.elapsed = max(self.elapsed, other.elapsed)


def _request(rng: random.Random, constants: dict[str, Any]) -> tuple[str, list[Any], Any]:
    """(method, params, expected): expected is a list of values, a Fault, or a key into
    ``constants`` (the first answer defines it, later ones must equal it)."""
    roll = rng.random()
    if roll < 0.35:
        params: list[Any] = [
            rng.choice(["", "a", "héllo", "x" * rng.randint(1, 64), "\udcff\udcfe"])
            for _ in range(rng.randint(0, 5))
        ]
        if rng.random() < 0.05:
            params.append("y" * 4096)
        return "core.echo", params, list(params)
    if roll < 0.55:
        ints = [rng.choice([0, 1, -1, 255, 2**31 - 1, -(2**31), rng.randint(-(2**31), 2**31 - 1)])
                for _ in range(rng.randint(0, 6))]  # fmt: skip
        return "core.printi", ints, ints
    if roll < 0.65:
        strs = [f"s{rng.randrange(10**6)}" for _ in range(rng.randint(1, 4))]
        return "core.prints", strs, strs
    if roll < 0.75:
        return "core.version", [], "core.version"
    if roll < 0.85:
        return "system.methodHelp", ["core.echo"], "help"
    if roll < 0.93:
        name = f"soak.nope{rng.randrange(5)}"
        return name, [], Fault(500, f"command {name} not found")
    return "core.printi", ["not an int"], "printi-fault"


def _check(
    method: str, expected: Any, kind: int, values: list[Any], constants: dict[str, Any]
) -> bool:
    if isinstance(expected, Fault):
        return kind == MsgType.FAULT and values == [expected.code, expected.message]
    if isinstance(expected, str):  # a constant: the first answer defines it
        got = (kind, values)
        return bool(constants.setdefault(expected, got) == got)
    return kind == MsgType.REPLY and values == expected


def _open(address: str, workdir: str, timeout: float) -> tuple[socket.socket, str | None]:
    proto, _, rest = address.partition(":")
    bound = None
    if proto in ("unixs", "unixd"):
        kind = socket.SOCK_STREAM if proto == "unixs" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_UNIX, kind)
        if proto == "unixd":
            bound = os.path.join(workdir, f"soak-{os.getpid()}-{random.randrange(1 << 30)}")
            sock.bind(bound)
        target: Any = rest
    else:
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        target = (host, int(port))
    sock.settimeout(timeout)
    sock.connect(target)
    return sock, bound


def run_client(address: str, n: int, seed: int, workdir: str, timeout: float = 5.0) -> Stats:
    """One client: ``n`` requests to ``address``; every reply checked."""
    rng = random.Random(seed)
    stats = Stats()
    constants: dict[str, Any] = {}
    stream = address.startswith(("unixs:", "tcp:"))
    sock, bound = _open(address, workdir, timeout)
    buf = b""
    start = time.monotonic()
    cookie = rng.randrange(1 << 24)
    try:
        while stats.sent < n:
            batch = []
            for _ in range(rng.randint(1, 8) if stream else 1):
                if stats.sent >= n:
                    break
                cookie = (cookie + 1) & 0x7FFFFFFF
                method, params, expected = _request(rng, constants)
                batch.append((cookie, method, expected, encode_request(method, params, cookie)))
                stats.sent += 1
            if stream:
                sock.sendall(b"".join(item[3] for item in batch))
            else:
                sock.send(batch[0][3])
            for want_cookie, method, expected, _ in batch:
                try:
                    if stream:
                        while (packet := parse_packet(buf)) is None:
                            chunk = sock.recv(1 << 16)
                            if not chunk:
                                raise ConnectionError("closed by the server")
                            buf += chunk
                        header = parse_header(buf)
                        assert header is not None
                        buf = buf[header.size + header.body_len :]
                    else:
                        while True:
                            packet = parse_packet(sock.recv(1 << 17))
                            # a late reply to a request counted as lost: skip it
                            if packet is None or packet.cookie == want_cookie:
                                break
                except (TimeoutError, ConnectionError, OSError) as exc:
                    stats.lost += 1
                    if len(stats.errors) < 10:
                        stats.errors.append(f"{address} cookie {want_cookie}: {exc!r}")
                    if stream:
                        stats.lost += n - stats.sent
                        return stats
                    continue
                if packet is None or packet.cookie != want_cookie:
                    stats.mismatched += 1
                    continue
                values = decode_values(packet.body)
                if _check(method, expected, packet.type, values, constants):
                    stats.ok += 1
                else:
                    stats.mismatched += 1
                    if len(stats.errors) < 10:
                        stats.errors.append(f"{address} {method}: {values!r:.200}")
    finally:
        stats.elapsed = time.monotonic() - start
        sock.close()
        if bound:
            with contextlib.suppress(OSError):
                os.unlink(bound)
    return stats


def _client_job(args: tuple[str, int, int, str]) -> Stats:
    return run_client(*args)


def soak(
    addresses: dict[str, str],
    total: int,
    clients: int,
    workdir: str,
    *,
    seed: int = 1,
    processes: bool = False,
) -> Stats:
    """``total`` requests spread over ``clients`` clients, round-robin over the transports."""
    jobs = []
    for i in range(clients):
        share = total // clients + (1 if i < total % clients else 0)
        address = addresses[TRANSPORTS[i % len(TRANSPORTS)]]
        jobs.append((address, share, seed * 1000 + i, workdir))
    result = Stats()
    start = time.monotonic()
    if processes:
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            for stats in pool.map(_client_job, jobs):
                result.add(stats)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(jobs)) as pool:
            for stats in pool.map(_client_job, jobs):
                result.add(stats)
    result.elapsed = time.monotonic() - start
    return result


def start_binrpcd(
    workdir: str, ports: tuple[int, int]
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """binrpcd on the four transports under ``workdir`` and 127.0.0.1 (stop it by pid)."""
    addresses = {
        "unixs": f"unixs:{workdir}/soak.sock",
        "unixd": f"unixd:{workdir}/soak.dgram",
        "udp": f"udp:127.0.0.1:{ports[0]}",
        "tcp": f"tcp:127.0.0.1:{ports[1]}",
    }
    args = [a for t in TRANSPORTS for a in ("--binrpc", addresses[t])]
    proc = subprocess.Popen(
        [sys.executable, "-m", "binrpc.cli.daemon", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for _ in TRANSPORTS:
        line = proc.stdout.readline()
        if not line.startswith(b"listening on "):
            proc.kill()
            raise RuntimeError(f"binrpcd did not start: {line!r}")
    return proc, addresses


def _free_ports() -> tuple[int, int]:
    ports: list[int] = []
    held = []
    while len(ports) < 2:
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            u.close()
            continue
        held += [t, u]
        ports.append(port)
    for s in held:
        s.close()
    return ports[0], ports[1]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="binrpc-soak-", dir="/tmp")
    proc, addresses = start_binrpcd(workdir, _free_ports())
    try:
        fds_before = len(os.listdir(f"/proc/{proc.pid}/fd"))
        rss_before = _rss_kib(proc.pid)
        result = soak(addresses, args.requests, args.clients, workdir, seed=args.seed,
                      processes=True)  # fmt: skip
        time.sleep(0.5)
        fds_after = len(os.listdir(f"/proc/{proc.pid}/fd"))
        rss_after = _rss_kib(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"soak: {result.sent} requests, {result.ok} ok, {result.lost} lost, "
        f"{result.mismatched} mismatched, {args.clients} clients over {', '.join(TRANSPORTS)}, "
        f"{result.elapsed:.1f} s ({result.sent / max(result.elapsed, 1e-9):.0f} req/s); binrpcd "
        f"fds {fds_before} -> {fds_after}, RSS {rss_before // 1024} -> {rss_after // 1024} MiB, "
        f"exit {code}"
    )
    for error in result.errors:
        print("  ", error)
    bad = result.lost or result.mismatched or result.ok != result.sent or code != 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
