"""Where binrpcd's time goes per request, under the benchmark's sequential load.

    .venv/bin/python bench/profile_server.py [--tool py-spy|cprofile|both] [--seconds 10]
                                             [--mode seq|pipe] [--proto unixs] [--top 25]
                                             [--loop asyncio|uvloop] [--uvloop-path DIR]

Starts binrpcd (pinned to ``--cpu``, default 0) exactly like ``bench/server.py``, drives it with
the same load generator (``core.echo "hello"``, same CPU) and profiles it.

The load generator runs as SCHED_IDLE (``chrt -i 0``) here unless ``--lg-sched normal``: with a
normal client on the same CPU, each reply's send() wakes the client, which preempts binrpcd
inside that syscall, and the profilers (py-spy samples *runnable* threads, cProfile measures
wall time) would charge the client's run time to binrpcd's ``transport.write``. As SCHED_IDLE,
the client only runs once binrpcd blocks in epoll_wait; CPU time per request is the same.
(On another CPU, ``--lg-cpu 1``, every request pays a cross-CPU wake-up that multiplies the
kernel share: a different profile.)

``py-spy``    ``py-spy record --rate 1000 --format raw`` on the running server (py-spy runs on
              another CPU; it pauses binrpcd for each sample unless ``--nonblocking``, whose
              stacks are often torn; ``--native`` adds C frames), then self time per function,
              per file ("layer"), and inclusive time per function, as shares of the samples and
              as microseconds per request (share x the server's measured CPU per request);
``cprofile``  binrpcd under cProfile (``bench/_run_binrpcd.py --cprofile``); top functions by
              own time with calls per request (cProfile's overhead inflates the absolute
              times; the call counts are exact);
``perf``      ``perf record -e cpu-clock`` on binrpcd (on-CPU samples only): the kernel /
              interpreter / libc split and the hottest C symbols (Python 3.11 frames are not
              visible to perf).

py-spy must be installed (``.venv/bin/pip install py-spy``); it needs ptrace rights (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import re
import shutil
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import _harness as h  # noqa: E402

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def short_file(path: str) -> str:
    for marker in ("/binrpc/", "/asyncio/", "/uvloop/"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + 1 :]
    return os.path.basename(path)


def frame_key(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    return m.group("func"), short_file(m.group("file"))


def parse_raw(path: str) -> tuple[collections.Counter[tuple[str, str]], ...]:
    """py-spy raw (collapsed) output -> (self per function, inclusive per function, self per
    file, total samples)."""
    own: collections.Counter[tuple[str, str]] = collections.Counter()
    incl: collections.Counter[tuple[str, str]] = collections.Counter()
    files: collections.Counter[tuple[str, str]] = collections.Counter()
    total: collections.Counter[tuple[str, str]] = collections.Counter()
    with open(path) as fh:
        for raw_line in fh:
            line = raw_line.rstrip("\n")
            if not line:
                continue
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue  # a torn sample (a frame name with a newline ...)
            count = int(count_text)
            frames = [frame_key(f) for f in stack.split(";") if f]
            # py-spy's first frame can be the thread name ("process 123:..." / "MainThread")
            frames = [f for f in frames if f[1] != "?" or f[0].startswith("<")]
            if not frames:
                continue
            total[("", "")] += count
            own[frames[-1]] += count
            files[("", frames[-1][1])] += count
            for f in set(frames):
                incl[f] += count
    return own, incl, files, total


def run_load(
    b: h.Binrpcd, args: argparse.Namespace, seconds: float, env: dict[str, str], workdir: str
) -> subprocess.Popen[str]:
    job: dict[str, Any] = {
        "mode": args.mode,
        "addr": b.addrs[args.proto],
        "workdir": workdir,
        "method": "core.echo",
        "params": ["hello"],
        "expect": ["hello"],
        "warmup": 0.5,
        "duration": seconds,
        "cpu_pid": b.pid,
    }
    if args.mode == "pipe":
        job["depth"] = 64
    argv = h.loadgen_argv(job, args.lg_cpu)
    if args.lg_sched == "idle":
        argv = ["chrt", "-i", "0", *argv]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd="/tmp")


def load_result(p: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = p.communicate(timeout=120)
    if p.returncode != 0:
        raise RuntimeError("load generator failed")
    import json

    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def profile_pyspy(args: argparse.Namespace, env: dict[str, str], workdir: str) -> None:
    pyspy = shutil.which("py-spy", path=os.path.dirname(sys.executable) + os.pathsep + "/usr/bin")
    if not pyspy:
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return
    raw = os.path.join(workdir, "pyspy.txt")
    b = h.Binrpcd(workdir, loop=args.loop, env=env, cpu=args.cpu, tag="prof").start()
    try:
        load = run_load(b, args, args.seconds + 1.5, env, workdir)
        time.sleep(1.0)  # warm-up + the first part of the timed run
        argv = [pyspy, "record", "-p", str(b.pid), "-r", str(args.rate)]
        argv += ["-d", str(max(1, round(args.seconds)))]
        argv += ["-f", "raw", "-o", raw]
        if args.native:
            argv.append("--native")
        if args.nonblocking:
            argv.append("--nonblocking")
        if args.spy_cpu is not None:
            argv = ["taskset", "-c", str(args.spy_cpu), *argv]
        spy = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        result = load_result(load)
    finally:
        b.stop()
    if spy.returncode != 0 or not os.path.exists(raw):
        print(f"py-spy failed: {spy.stderr[-1500:]}", file=sys.stderr)
        return
    own, incl, files, total = parse_raw(raw)
    n = total[("", "")]
    cpu_req = result["server_cpu_ticks_s"] / result["requests"]
    print(
        f"binrpcd on CPU {args.cpu}; load generator on CPU {args.lg_cpu} ({args.lg_sched}); "
        f"py-spy on CPU {args.spy_cpu}"
    )
    print(
        f"py-spy ({args.loop}, {args.mode} {args.proto}): {n} samples at {args.rate} Hz over "
        f"{args.seconds} s; load: {result['rps']:.0f} req/s, server CPU "
        f"{cpu_req * 1e6:.2f} us/req (stime share "
        f"{result['server_stime_s'] / max(1e-9, result['server_cpu_ticks_s']) * 100:.0f}%)"
    )
    print("  (a C call, e.g. a socket syscall, counts for the Python frame that made it)")
    print("\n  self time by file:")
    for (_, file), c in files.most_common(args.top):
        print(f"    {c / n * 100:5.1f}%  {c / n * cpu_req * 1e6:6.2f} us/req  {file}")
    print("\n  self time by function:")
    for (func, file), c in own.most_common(args.top):
        print(f"    {c / n * 100:5.1f}%  {c / n * cpu_req * 1e6:6.2f} us/req  {func}  ({file})")
    print("\n  inclusive time by function:")
    for (func, file), c in incl.most_common(args.top):
        print(f"    {c / n * 100:5.1f}%  {c / n * cpu_req * 1e6:6.2f} us/req  {func}  ({file})")
    if args.keep:
        dest = os.path.abspath(args.keep)
        shutil.copy(raw, dest)
        print(f"\n  raw stacks (collapsed, for flamegraph.pl / speedscope): {dest}")


def profile_cprofile(args: argparse.Namespace, env: dict[str, str], workdir: str) -> None:
    prof = os.path.join(workdir, "binrpcd.prof")
    b = h.Binrpcd(
        workdir, loop=args.loop, env=env, cpu=args.cpu, tag="cprof", cprofile=prof
    ).start()
    try:
        result = load_result(run_load(b, args, args.seconds, env, workdir))
    finally:
        b.stop()
    if not os.path.exists(prof):
        print("cProfile: no profile written", file=sys.stderr)
        return
    n = result["requests"]
    st = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{func}  ({short_file(file)}:{line})"))
    total_tt = sum(r[0] for r in rows)
    # cProfile saw the warm-up requests too: count requests by the calls of call_method()
    dispatched = [
        nc
        for (file, _line, func), (_cc, nc, *_rest) in st.stats.items()  # type: ignore[attr-defined]
        if func == "call_method" and file.endswith("_dispatch.py")
    ]
    reqs = dispatched[0] if dispatched else n
    print(
        f"cProfile ({args.loop}, {args.mode} {args.proto}): {reqs} requests profiled; under "
        f"cProfile {result['rps']:.0f} req/s, server CPU "
        f"{result['server_cpu_ticks_s'] / n * 1e6:.2f} us/req (cProfile's own overhead included)"
    )
    print("  own time (tottime) by function, calls per request:")
    for tt, _ct, nc, name in sorted(rows, reverse=True)[: args.top]:
        print(f"    {tt / total_tt * 100:5.1f}%  {nc / reqs:6.2f} calls/req  {name}")
    print("  cumulative time by function:")
    for tt, ct, nc, name in sorted(rows, key=lambda r: r[1], reverse=True)[: args.top]:
        print(
            f"    {ct / total_tt * 100:5.1f}%  {nc / reqs:6.2f} calls/req  "
            f"(own {tt / total_tt * 100:4.1f}%)  {name}"
        )


def profile_perf(args: argparse.Namespace, env: dict[str, str], workdir: str) -> None:
    perf = shutil.which("perf")
    if not perf:
        print("perf not found (apt-get install linux-perf)", file=sys.stderr)
        return
    data = os.path.join(workdir, "perf.data")
    b = h.Binrpcd(workdir, loop=args.loop, env=env, cpu=args.cpu, tag="perf").start()
    try:
        load = run_load(b, args, args.seconds + 1.5, env, workdir)
        time.sleep(1.0)
        argv = [perf, "record", "-q", "-e", "cpu-clock", "-F", "2000", "-p", str(b.pid)]
        argv += ["-o", data, "--", "sleep", str(args.seconds)]
        if args.spy_cpu is not None:
            argv = ["taskset", "-c", str(args.spy_cpu), *argv]
        rec = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        result = load_result(load)
    finally:
        b.stop()
    if rec.returncode != 0 or not os.path.exists(data):
        print(f"perf record failed: {rec.stderr[-1500:]}", file=sys.stderr)
        return
    cpu_req = result["server_cpu_ticks_s"] / result["requests"]
    print(
        f"perf cpu-clock ({args.loop}, {args.mode} {args.proto}): load {result['rps']:.0f} "
        f"req/s, server CPU {cpu_req * 1e6:.2f} us/req; on-CPU samples by DSO, then by symbol"
    )
    for sort, top in (("dso", 8), ("dso,sym", args.top)):
        rep = subprocess.run(
            [perf, "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
             "--percent-limit", "0.5"],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        rows = [ln for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        for ln in rows[:top]:
            pct = ln.split()[0].rstrip("%")
            try:
                us = float(pct) / 100 * cpu_req * 1e6
            except ValueError:
                us = float("nan")
            print(f"    {us:6.2f} us/req  {ln.strip()}")
        print()


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--tool", choices=("py-spy", "cprofile", "perf", "all"), default="all")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=1000, help="py-spy samples/s (1000)")
    ap.add_argument("--mode", choices=("seq", "pipe"), default="seq")
    ap.add_argument("--proto", choices=h.PROTOS, default="unixs")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--cpu", type=int, default=0, help="binrpcd's CPU (0)")
    ap.add_argument("--lg-cpu", type=int, help="the load generator's CPU (default: --cpu)")
    ap.add_argument("--lg-sched", choices=("idle", "normal"), default="idle")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--uvloop-path", metavar="DIR")
    ap.add_argument("--src", metavar="DIR", help="profile the binrpc package in DIR/src")
    ap.add_argument("--keep", metavar="FILE", help="copy py-spy's raw stacks here")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy --nonblocking (does not pause binrpcd, but tears some stacks)",
    )
    args = ap.parse_args()
    if args.lg_cpu is None:
        args.lg_cpu = args.cpu
    others = [c for c in sorted(os.sched_getaffinity(0)) if c != args.cpu]
    args.spy_cpu = others[0] if others else None
    if args.mode == "pipe":
        args.proto = "unixs" if args.proto not in ("unixs", "tcp") else args.proto
    src = None
    if args.src:
        src = os.path.abspath(args.src)
        if os.path.isdir(os.path.join(src, "src", "binrpc")):
            src = os.path.join(src, "src")
        sys.path.insert(0, src)
    env = h.child_env(src, [os.path.abspath(args.uvloop_path)] if args.uvloop_path else [])
    workdir = h.new_workdir("binrpc-prof-")
    try:
        if args.tool in ("py-spy", "all"):
            profile_pyspy(args, env, workdir)
            print()
        if args.tool in ("cprofile", "all"):
            profile_cprofile(args, env, workdir)
            print()
        if args.tool in ("perf", "all"):
            profile_perf(args, env, workdir)
    finally:
        h.remove_workdir(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
