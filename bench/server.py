"""binrpcd against Kamailio 5.6.3's ctl module: one command, one table (issue #6).

    .venv/bin/python bench/server.py [--quick] [--runs N] [--only CASES] [--json FILE]
                                     [--cpu 0] [--loops auto|asyncio|asyncio,uvloop]
                                     [--uvloop-path DIR] [--src DIR]

Starts binrpcd (``<venv>/bin/binrpcd``, plus the bench RPCs of ``bench/_rpcs.py``) and a real
Kamailio 5.6.3 (``/usr/sbin/kamailio``, through ``tests/interop/kamailio.py``), each with ctl
listeners on unixs, unixd, udp and tcp (/tmp paths, 127.0.0.1 ports), pins both servers (for
Kamailio: all its processes) and the load generator (``bench/_loadgen.py``, its own process)
to the same CPU with ``taskset``, and drives both with the same requests (``core.echo
"hello"``). Every process it starts is stopped by its pid.

Cases (``--only`` takes a comma-separated subset; default all):

``seq``    sequential request/response on one connection, on unixs, unixd, udp and tcp;
``pipe``   64 requests pipelined on one unixs connection;
``conc``   8 concurrent unixs connections, one request outstanding on each;
``async``  an async RPC that waits 5 ms (``bench.sleep5``) called by 8 clients at once
           (binrpcd only; against the serial model 8 x 5 ms);
``cli``    ``binrpc core.version`` vs ``kamcmd core.version`` vs ``python -c pass``, and
           ``binrpc --batch`` of 1000 calls vs a shell loop of 1000 kamcmd (against Kamailio;
           ``bench/cli_startup.py``);
``big``    a 10 MiB reply (``bench.big``): round trip with ``binrpc.client.Client``, peak RSS
           of a fresh binrpcd (VmHWM) and of the client process (ru_maxrss);
``idle``   10,000 idle unixs connections to a fresh binrpcd: RSS per connection (Kamailio:
           its 128-connection cap, and its RSS per connection up to the cap).

For every request/response case: requests/s and the server's CPU time per request (utime +
stime from ``/proc/<pid>/stat`` before/after the timed part; binrpcd's one process, Kamailio's
``ctl handler`` process), medians of ``--runs`` runs, the servers interleaved within each run.
The precise ``schedstat`` run time is shown next to the clock-tick figure.

Event loops: binrpcd as shipped calls ``asyncio.run`` (the default epoll selector loop) even
when uvloop is installed. When uvloop is importable (from the venv, or ``--uvloop-path DIR``
such as a ``pip install --target DIR uvloop``), the same binrpcd also runs on uvloop through
``bench/_run_binrpcd.py`` and gets rows of its own, labelled ``binrpcd+uvloop``.

``--quick`` is a one-minute run (3 runs of 0.3 s, fewer CLI repetitions). ``--src DIR``
benchmarks the package in ``DIR/src`` (e.g. ``git archive`` of a commit) instead of the editable
install.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import _harness as h  # noqa: E402

ALL_CASES = ("seq", "pipe", "conc", "async", "cli", "big", "idle")
ECHO = {"method": "core.echo", "params": ["hello"], "expect": ["hello"]}
TEN_MIB = 10 * 1024 * 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"


def fmt_ratio(x: float) -> str:
    return "    n/a" if x != x else f"{x:6.2f}x"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


# --------------------------------------------------------------------------------------------
# request/response cases


def throughput_jobs(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    cases = set(args.only)
    jobs: list[tuple[str, dict[str, Any]]] = []
    if "seq" in cases:
        jobs += [(f"seq {p}", {"mode": "seq", "proto": p, **ECHO}) for p in h.PROTOS]
    if "pipe" in cases:
        jobs.append(("pipelined 64 unixs", {"mode": "pipe", "proto": "unixs", "depth": 64, **ECHO}))
    if "conc" in cases:
        jobs.append(("8 conns unixs", {"mode": "conc", "proto": "unixs", "conns": 8, **ECHO}))
    return jobs


def run_throughput(
    targets: list[Any],
    args: argparse.Namespace,
    envs: dict[str, dict[str, str]],
    workdir: str,
    errors: list[str],
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    jobs = throughput_jobs(args)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {t.label: {} for t in targets}
    broken: set[str] = set()
    for run in range(args.runs):
        for name, template in jobs:
            for t in targets:
                if t.label in broken:
                    continue
                job = dict(template)
                job["addr"] = t.addrs[job.pop("proto")]
                job.update(
                    workdir=workdir,
                    warmup=args.warmup,
                    duration=args.duration,
                    cpu_pid=t.cpu_pid if hasattr(t, "cpu_pid") else t.pid,
                )
                try:
                    r = h.run_loadgen(job, args.cpu, envs[t.label])
                except Exception as exc:  # a broken server loses its rows, not the others'
                    log(f"{name} {t.label} FAILED: {exc}")
                    errors.append(f"{name} {t.label}: {str(exc)[-600:]}")
                    broken.add(t.label)
                    continue
                results[t.label].setdefault(name, []).append(r)
                log(
                    f"run {run + 1}/{args.runs} {name:20} {t.label:15} {r['rps']:10.0f} req/s "
                    f"{r['server_cpu_ticks_s'] / r['requests'] * 1e6:7.2f} us/req"
                )
    return results


def summarize(rs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "rps": med([r["rps"] for r in rs]),
        "cpu": med([r["server_cpu_ticks_s"] / r["requests"] for r in rs]),
        "cpu_sched": med([r["server_cpu_sched_s"] / r["requests"] for r in rs]),
        "lg_cpu": med([r["client_cpu_s"] / r["requests"] for r in rs]),
        "sys_share": med(
            [
                r.get("server_stime_s", 0.0) / r["server_cpu_ticks_s"]
                for r in rs
                if r["server_cpu_ticks_s"] > 0
            ]
        ),
        "runs": len(rs),
    }


# --------------------------------------------------------------------------------------------
# the other cases


def run_async(
    b: h.Binrpcd, args: argparse.Namespace, env: dict[str, str], workdir: str
) -> dict[str, Any]:
    job = {
        "mode": "burst",
        "addr": b.addrs["unixs"],
        "conns": 8,
        "rounds": args.async_rounds,
        "method": "bench.sleep5",
        "expect": [0],
        "workdir": workdir,
        "cpu_pid": b.pid,
    }
    r = h.run_loadgen(job, args.cpu, env)
    r.pop("rounds", None)
    r["serial_model"] = 8 * 0.005
    r["speedup"] = r["serial_model"] / r["median_round"]
    return r


def run_big(
    loop: str, args: argparse.Namespace, env: dict[str, str], workdir: str
) -> dict[str, Any]:
    b = h.Binrpcd(
        workdir,
        loop=loop,
        protos=("unixs",),
        extra_args=["--binrpc-max-body-size", "16384"],
        env=env,
        cpu=args.cpu,
        tag=f"big-{loop}",
    ).start()
    try:
        rss0 = h.proc_status_kib(b.pid, "VmRSS")
        r = h.run_loadgen(
            {"mode": "big", "addr": b.addrs["unixs"], "method": "bench.big", "rounds": 3},
            args.cpu,
            env,
        )
        r["server_rss_kib_before"] = rss0
        r["server_hwm_kib"] = h.proc_status_kib(b.pid, "VmHWM")
    finally:
        b.stop()
    return r


def run_idle_binrpcd(
    loop: str, args: argparse.Namespace, env: dict[str, str], workdir: str
) -> dict[str, Any]:
    from binrpc.client import Client

    n = args.idle
    b = h.Binrpcd(
        workdir,
        loop=loop,
        protos=("unixs",),
        extra_args=["--max-connections", str(2 * n)],
        env=env,
        cpu=args.cpu,
        tag=f"idle-{loop}",
    ).start()
    p: subprocess.Popen[str] | None = None
    try:
        with Client(b.addrs["unixs"], timeout=30) as c:
            base_conns = int(c.call_one("ctl.connections"))  # type: ignore[arg-type]
            rss0 = h.proc_status_kib(b.pid, "VmRSS")
            p = subprocess.Popen(
                h.loadgen_argv({"mode": "idle", "addr": b.addrs["unixs"], "conns": n}, args.cpu),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd="/tmp",
            )
            assert p.stdout is not None and p.stdin is not None
            opened = json.loads(p.stdout.readline())
            deadline = time.monotonic() + 60
            conns = base_conns
            while time.monotonic() < deadline:
                conns = int(c.call_one("ctl.connections"))  # type: ignore[arg-type]
                if conns >= base_conns + opened["opened"]:
                    break
                time.sleep(0.1)
            time.sleep(0.3)
            rss1 = h.proc_status_kib(b.pid, "VmRSS")
            p.stdin.write("check\n")
            p.stdin.flush()
            closed = json.loads(p.stdout.readline())
            p.stdin.close()
            p.wait(60)
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)
        b.stop()
    accepted = conns - base_conns
    return {
        "opened": opened["opened"],
        "open_seconds": opened["seconds"],
        "open_error": opened.get("error", ""),
        "server_connections": accepted,
        "closed_by_server": closed["closed_by_server"],
        "rss_kib_before": rss0,
        "rss_kib_after": rss1,
        "kib_per_conn": (rss1 - rss0) / max(1, accepted),
    }


def run_idle_kamailio(
    k: h.KamailioTarget, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    n = 200
    rss0 = h.proc_status_kib(k.cpu_pid, "VmRSS")
    p = subprocess.Popen(
        h.loadgen_argv({"mode": "idle", "addr": k.addrs["unixs"], "conns": n}, args.cpu),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/tmp",
    )
    try:
        assert p.stdout is not None and p.stdin is not None
        opened = json.loads(p.stdout.readline())
        time.sleep(0.5)
        rss1 = h.proc_status_kib(k.cpu_pid, "VmRSS")
        p.stdin.write("check\n")
        p.stdin.flush()
        closed = json.loads(p.stdout.readline())
        p.stdin.close()
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    kept = opened["opened"] - closed["closed_by_server"]
    return {
        "opened": opened["opened"],
        "closed_by_server": closed["closed_by_server"],
        "kept": kept,
        "rss_kib_before": rss0,
        "rss_kib_after": rss1,
        "kib_per_conn": (rss1 - rss0) / max(1, kept),
    }


# --------------------------------------------------------------------------------------------
# report


def git_describe(src: str | None) -> str:
    where = os.path.dirname(src) if src else ROOT
    with contextlib.suppress(Exception):
        r = subprocess.run(
            ["git", "-C", where, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if r.returncode == 0:
            return r.stdout.strip()
    return f"{where} (not a git checkout)"


def report(data: dict[str, Any], args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    add = out.append
    meta = data["meta"]
    add("=" * 100)
    add("binrpc server benchmark (issue #6): binrpcd vs Kamailio 5.6.3 ctl")
    for key in ("date", "host", "python", "binrpc", "kamailio", "loops", "pinning", "runs"):
        if key in meta:
            add(f"  {key:9} {meta[key]}")
    targets: list[tuple[str, str, str, bool | None]] = []  # (target, loop, value, ok)
    kam = "Kamailio"

    tp = data.get("throughput")
    if tp:
        add("")
        add(
            f'Request/response, core.echo "hello"; load generator and server pinned to CPU '
            f"{args.cpu}; medians of {args.runs} runs x {args.duration:g} s"
        )
        add(
            "srv CPU/req: server utime+stime (/proc/<pid>/stat) per request; (schedstat): the "
            "same from the ns run-time counter; sys: stime share; lg: the load generator's CPU"
        )
        add(
            f"{'case':19} {'server':15} {'loop':16} {'req/s':>8} {'srv CPU/req':>11} "
            f"{'(schedstat)':>11} {'sys':>4} {'lg CPU/req':>11} | {'req/s':>6} {'CPU/req':>7}"
            "  ours/Kamailio"
        )
        add("-" * 122)
        names: list[str] = []
        for cases in tp.values():
            names += [n for n in cases if n not in names]
        for name in names:
            kref = tp.get(kam, {}).get(name)
            first = True
            for label, cases in tp.items():
                s = cases.get(name)
                if s is None:
                    continue
                shown, first = (name if first else ""), False
                loop = data["loops"].get(label, "")
                if label != kam and kref:
                    r_rps = s["rps"] / kref["rps"]
                    r_cpu = s["cpu"] / kref["cpu"] if kref["cpu"] else float("nan")
                    ratios = f"{r_rps:5.2f}x {r_cpu:6.2f}x"
                else:
                    ratios = "     -       -"
                add(
                    f"{shown:19} {label:15} {loop:16} {s['rps']:8.0f} {fmt_us(s['cpu']):>11} "
                    f"{fmt_us(s['cpu_sched']):>11} {s['sys_share'] * 100:3.0f}% "
                    f"{fmt_us(s['lg_cpu']):>11} | {ratios}"
                )
        for label, cases in tp.items():
            if label == kam or kam not in tp or label.startswith("floor:"):
                continue
            loop = data["loops"].get(label, "")
            kt = tp[kam]
            if "seq unixs" in cases and "seq unixs" in kt:
                r = cases["seq unixs"]["cpu"] / kt["seq unixs"]["cpu"]
                targets.append(
                    (
                        "server CPU/req, sequential unixs <= 1.5x Kamailio",
                        label,
                        f"{r:.2f}x",
                        r <= 1.5,
                    )
                )
            if "pipelined 64 unixs" in cases and "pipelined 64 unixs" in kt:
                r = cases["pipelined 64 unixs"]["cpu"] / kt["pipelined 64 unixs"]["cpu"]
                targets.append(
                    (
                        "server CPU/req, 64 pipelined unixs <= 1.0x Kamailio",
                        label,
                        f"{r:.2f}x",
                        r <= 1.0,
                    )
                )
            if "8 conns unixs" in cases and "8 conns unixs" in kt:
                r = cases["8 conns unixs"]["rps"] / kt["8 conns unixs"]["rps"]
                targets.append(
                    ("8 concurrent connections: req/s >= Kamailio", label, f"{r:.2f}x", r >= 1.0)
                )

    if data.get("async"):
        add("")
        add(
            "Async RPC bench.sleep5 (asyncio.sleep 5 ms), 8 clients at once, one call each per "
            "round; serial model 8 x 5 ms = 40 ms (Kamailio: n/a, no such RPC; ctl is serial)"
        )
        for label, r in data["async"].items():
            if "error" in r:
                add(f"  {label:15} ERROR {r['error']}")
                continue
            add(
                f"  {label:15} {data['loops'].get(label, ''):16} one call alone "
                f"{r['median_single'] * 1e3:6.2f} ms, 8 at once {r['median_round'] * 1e3:6.2f} ms"
                f" (median of {r['requests'] // 8} rounds) -> {r['speedup']:5.2f}x the serial model"
            )
            targets.append(
                (
                    "async 5 ms RPC x 8 clients >= 6x the serial model",
                    label,
                    f"{r['speedup']:.2f}x",
                    r["speedup"] >= 6,
                )
            )

    cli = data.get("cli")
    if cli:
        add("")
        add("One-shot CLI and batch, against Kamailio's unixs ctl socket (not pinned; medians)")
        if "error" in cli:
            add(f"  ERROR {cli['error']}")
        else:
            from bench.cli_startup import report as cli_report

            out.extend("  " + line for line in cli_report(cli))
            key = "binrpc_script" if "binrpc_script" in cli else "binrpc_m"
            extra = cli.get(key + "_over_python", cli[key] - cli["python"]) * 1e3
            targets.append(
                (
                    "one-shot `binrpc core.version` <= python start + 5 ms",
                    "client",
                    f"{extra:+.1f} ms",
                    extra <= 5.0,
                )
            )
            speed = cli["kamcmd_loop"] / cli["batch"]
            targets.append(
                (
                    "batch of 1000 >= 50x faster than a kamcmd loop",
                    "client",
                    f"{speed:.1f}x",
                    speed >= 50,
                )
            )

    big = data.get("big")
    client_done = False
    if big:
        add("")
        add(
            "10 MiB reply (bench.big, one BYTES value) over unixs, binrpc.client.Client; fresh "
            "binrpcd each; 3 calls; Kamailio: n/a (no 10 MiB RPC)"
        )
        for label, r in big.items():
            if "error" in r:
                add(f"  {label:15} ERROR {r['error']}")
                continue
            mib = 1024.0
            add(
                f"  {label:15} {data['loops'].get(label, ''):16} round trip "
                f"{r['median'] * 1e3:7.1f} ms; server peak RSS "
                f"{r['server_hwm_kib'] / mib:6.1f} MiB (idle "
                f"{r['server_rss_kib_before'] / mib:.1f}); client peak RSS "
                f"{r['client_maxrss_kib'] / mib:6.1f} MiB (before the calls "
                f"{r['client_maxrss_kib_before'] / mib:.1f})"
            )
            limit = 4 * TEN_MIB / 1024
            srv, srv0 = r["server_hwm_kib"], r["server_rss_kib_before"]
            cli_, cli0 = r["client_maxrss_kib"], r["client_maxrss_kib_before"]
            targets.append(
                (
                    "10 MiB reply: round trip < 1 s",
                    label,
                    f"{r['median'] * 1e3:.0f} ms",
                    r["median"] < 1.0,
                )
            )
            targets.append(
                (
                    "10 MiB reply: server peak RSS < 40 MiB",
                    label,
                    f"{srv / mib:.1f} MiB",
                    srv < limit,
                )
            )
            targets.append(
                (
                    "  same, above the idle server's RSS",
                    label,
                    f"+{(srv - srv0) / mib:.1f} MiB",
                    srv - srv0 < limit,
                )
            )
            if not client_done:
                client_done = True
                targets.append(
                    (
                        "10 MiB reply: client peak RSS < 40 MiB",
                        "client",
                        f"{cli_ / mib:.1f} MiB",
                        cli_ < limit,
                    )
                )
                targets.append(
                    (
                        "  same, above the client's RSS before the call",
                        "client",
                        f"+{(cli_ - cli0) / mib:.1f} MiB",
                        cli_ - cli0 < limit,
                    )
                )

    idle = data.get("idle")
    if idle:
        add("")
        add("Idle unixs connections (server RSS after - before) / connections")
        for label, r in idle.items():
            if "error" in r:
                add(f"  {label:15} ERROR {r['error']}")
                continue
            if label == kam:
                add(
                    f"  {label:15} {data['loops'].get(label, ''):16} cap 128: of {r['opened']} "
                    f"opened, {r['closed_by_server']} closed by the server at once, {r['kept']} "
                    f"kept; ctl handler RSS {r['rss_kib_before']} -> {r['rss_kib_after']} KiB = "
                    f"{r['kib_per_conn']:.2f} KiB/conn"
                )
                continue
            add(
                f"  {label:15} {data['loops'].get(label, ''):16} {r['server_connections']} of "
                f"{r['opened']} accepted ({r['closed_by_server']} closed), RSS "
                f"{r['rss_kib_before'] / 1024:.1f} -> {r['rss_kib_after'] / 1024:.1f} MiB = "
                f"{r['kib_per_conn']:.2f} KiB/conn (opened in {r['open_seconds']:.1f} s)"
                + (f"; stopped opening: {r['open_error']}" if r.get("open_error") else "")
            )
            targets.append(
                (
                    f"{r['opened']} idle connections < 20 KiB each",
                    label,
                    f"{r['kib_per_conn']:.1f} KiB",
                    r["kib_per_conn"] < 20 and r["server_connections"] >= r["opened"],
                )
            )

    if data.get("errors"):
        add("")
        add("Errors:")
        for e in data["errors"]:
            add(f"  {e}")

    add("")
    add("Targets (issue #6)")
    add(f"  {'target':55} {'server':15} {'value':>12}  verdict")
    for what, label, value, ok in targets:
        add(f"  {what:55} {label:15} {value:>12}  {verdict(ok)}")
    add("=" * 100)
    return out


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="about one minute: fewer, shorter runs")
    ap.add_argument("--runs", type=int, help="runs per case (5; quick 3)")
    ap.add_argument("--duration", type=float, help="seconds per timed run (1.0; quick 0.3)")
    ap.add_argument("--only", default=",".join(ALL_CASES), help=f"cases: {','.join(ALL_CASES)}")
    ap.add_argument("--cpu", type=int, default=0, help="CPU for servers and load generator (0)")
    ap.add_argument(
        "--loops",
        default="auto",
        help="auto (asyncio, + uvloop if importable), asyncio, uvloop or asyncio,uvloop",
    )
    ap.add_argument("--uvloop-path", metavar="DIR", help="extra sys.path entry holding uvloop")
    ap.add_argument("--src", metavar="DIR", help="benchmark the binrpc package in DIR/src")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections (10000)")
    ap.add_argument("--json", metavar="FILE", help="also write all raw results as JSON")
    ap.add_argument(
        "--floors",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure bench/_floor_server.py (minimal Python servers: asyncio, uvloop, "
        "plain epoll) as reference rows (default: on, off with --quick)",
    )
    args = ap.parse_args(argv)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    bad = sorted(set(args.only) - set(ALL_CASES))
    if bad:
        ap.error(f"unknown case(s) {', '.join(bad)}; known: {', '.join(ALL_CASES)}")
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.duration is None:
        args.duration = 0.3 if args.quick else 1.0
    args.warmup = 0.1 if args.quick else 0.2
    if args.floors is None:
        args.floors = not args.quick
    args.cli_runs = 5 if args.quick else 20
    args.loop_runs = 1 if args.quick else 3
    args.async_rounds = 20 if args.quick else 50
    if args.src:
        args.src = os.path.abspath(args.src)
        if os.path.isdir(os.path.join(args.src, "src", "binrpc")):
            args.src = os.path.join(args.src, "src")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.src:
        sys.path.insert(0, args.src)
    nofile = h.raise_nofile()
    env = h.child_env(args.src)
    uv_path = [os.path.abspath(args.uvloop_path)] if args.uvloop_path else []
    env_uv = h.child_env(args.src, uv_path)

    default_loop = h.python_probe(
        "import asyncio; l = asyncio.new_event_loop(); "
        "print(type(l).__module__ + '.' + type(l).__qualname__, type(l._selector).__name__)",
        env,
    )
    uv_version = h.python_probe("import uvloop; print(uvloop.__version__)", env_uv)
    if args.loops == "auto":
        loops = ["asyncio"] + (["uvloop"] if uv_version else [])
    else:
        loops = [x.strip() for x in args.loops.split(",") if x.strip()]
        if "uvloop" in loops and not uv_version:
            print("bench/server.py: uvloop is not importable (see --uvloop-path)", file=sys.stderr)
            return 2
    selector = (default_loop or "? ?").split()[-1].replace("Selector", "").lower()
    loop_desc = {
        "asyncio": f"asyncio ({selector})",
        "uvloop": f"uvloop {uv_version}",
    }
    envs_by_loop = {"asyncio": env, "uvloop": env_uv}

    data: dict[str, Any] = {"meta": {}, "loops": {}, "errors": []}
    meta = data["meta"]
    meta["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["host"] = (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Linux "
        f"{platform.release()}, RLIMIT_NOFILE {nofile[0]}"
    )
    meta["python"] = f"{sys.version.split()[0]} ({sys.executable})"
    meta["binrpc"] = f"{args.src or os.path.join(ROOT, 'src')} @ {git_describe(args.src)}"
    meta["loops"] = (
        f"binrpcd row: --loop asyncio ({default_loop}); "
        + (
            f"uvloop {uv_version} importable -> extra rows binrpcd+uvloop (--loop uvloop)"
            if uv_version
            else "uvloop not importable"
        )
        + ("" if "uvloop" in loops or not uv_version else " but not selected")
    )
    meta["pinning"] = f"taskset CPU {args.cpu}: binrpcd, all Kamailio processes, load generator"
    meta["runs"] = (
        f"{args.runs} runs x {args.duration:g} s (+{args.warmup:g} s warm-up), cases "
        f"{','.join(args.only)}"
    )

    workdir = h.new_workdir()
    stack = contextlib.ExitStack()
    try:
        want_main = {"seq", "pipe", "conc", "async", "cli"} & set(args.only)
        targets: list[Any] = []
        kam: h.KamailioTarget | None = None
        if want_main:
            for loop in loops:
                log(f"starting binrpcd ({loop})")
                b = h.Binrpcd(
                    workdir, loop=loop, env=envs_by_loop[loop], cpu=args.cpu, tag=f"main-{loop}"
                )
                stack.callback(b.stop)
                b.start()
                targets.append(b)
                data["loops"][b.label] = loop_desc[loop]
        if want_main or "idle" in args.only:
            log("starting Kamailio")
            kam = h.KamailioTarget(cpu=args.cpu)
            stack.callback(kam.stop)
            kam.start()
            meta["kamailio"] = f"{kam.version.strip()} (ctl handler pid {kam.cpu_pid})"
            data["loops"][kam.label] = kam.loop
        ours = [t for t in targets if isinstance(t, h.Binrpcd)]
        floors: list[h.Binrpcd] = []
        if args.floors and throughput_jobs(args):
            for loop in [*loops, "epoll"]:
                f = h.Binrpcd(
                    workdir,
                    loop=loop,
                    env=envs_by_loop.get(loop, env),
                    cpu=args.cpu,
                    tag=f"floor-{loop}",
                    floor=True,
                )
                log(f"starting {f.label}")
                stack.callback(f.stop)
                f.start()
                floors.append(f)
                data["loops"][f.label] = loop_desc.get(loop, "plain epoll")

        def guarded(name: str, fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except Exception as exc:  # one broken case must not lose the others
                log(f"{name} FAILED: {exc}")
                data["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

        if throughput_jobs(args) and kam is not None:
            raw = guarded(
                "throughput",
                lambda: run_throughput(
                    [*ours, kam, *floors],
                    args,
                    {
                        **{b.label: envs_by_loop.get(b.loop, env) for b in [*ours, *floors]},
                        kam.label: env,
                    },
                    workdir,
                    data["errors"],
                ),
            )
            if raw and "error" not in raw:
                data["throughput_raw"] = raw
                data["throughput"] = {
                    label: {name: summarize(rs) for name, rs in cases.items()}
                    for label, cases in raw.items()
                    if cases
                }
        if "async" in args.only:
            data["async"] = {}
            for b in ours:
                log(f"async 5 ms x 8 clients: {b.label}")
                data["async"][b.label] = guarded(
                    f"async {b.label}",
                    lambda b=b: run_async(b, args, envs_by_loop[b.loop], workdir),
                )
        if "cli" in args.only and kam is not None:
            log("one-shot CLI and batch (against Kamailio)")
            from bench.cli_startup import measure

            data["cli"] = guarded(
                "cli",
                lambda: measure(
                    kam.addrs["unixs"], args.cli_runs, 1000, env=env, loop_runs=args.loop_runs
                ),
            )
        for t in [*targets, *floors]:  # the main servers are not needed any more
            t.stop()
        if "big" in args.only:
            data["big"] = {}
            for loop in loops:
                label = "binrpcd" if loop == "asyncio" else f"binrpcd+{loop}"
                data["loops"][label] = loop_desc[loop]
                log(f"10 MiB reply: {label}")
                data["big"][label] = guarded(
                    f"big {label}",
                    lambda loop=loop: run_big(loop, args, envs_by_loop[loop], workdir),
                )
        if "idle" in args.only:
            data["idle"] = {}
            for loop in loops:
                label = "binrpcd" if loop == "asyncio" else f"binrpcd+{loop}"
                data["loops"][label] = loop_desc[loop]
                log(f"{args.idle} idle connections: {label}")
                data["idle"][label] = guarded(
                    f"idle {label}",
                    lambda loop=loop: run_idle_binrpcd(loop, args, envs_by_loop[loop], workdir),
                )
            if kam is not None:
                log("idle connections: Kamailio")
                data["idle"][kam.label] = guarded(
                    "idle Kamailio", lambda: run_idle_kamailio(kam, args, env)
                )
    finally:
        stack.close()
        h.remove_workdir(workdir)

    lines = report(data, args)
    print("\n".join(lines), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=1, default=str)
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
