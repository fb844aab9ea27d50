"""Shared pieces of the server benchmarks (``bench/server.py``, ``bench/profile_server.py``).

* :class:`Binrpcd`: run ``binrpcd --loop asyncio|uvloop`` (or through
  ``bench/_run_binrpcd.py`` for cProfile) on /tmp and 127.0.0.1 listeners, wait for its
  ``listening on`` lines, pin it, stop it by pid;
* :class:`KamailioTarget`: a real Kamailio 5.6.3 with the same four ctl listeners (through
  ``tests/interop/kamailio.py``), all its processes pinned, the ctl handler's pid found with
  ``core.psx``;
* :func:`run_loadgen`: run ``bench/_loadgen.py`` pinned to one CPU and return its JSON;
* ``/proc`` readers (:func:`proc_status_kib`), :func:`pin`, :func:`raise_nofile`.

Everything listens on 127.0.0.1 or below /tmp; every process is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.interop.kamailio import Kamailio, free_ports, make_workdir  # noqa: E402

LOADGEN = os.path.join(HERE, "_loadgen.py")
RUN_BINRPCD = os.path.join(HERE, "_run_binrpcd.py")
FLOOR_SERVER = os.path.join(HERE, "_floor_server.py")
BENCH_RPCS = os.path.join(HERE, "_rpcs.py")
PROTOS = ("unixs", "unixd", "udp", "tcp")


# --------------------------------------------------------------------------------------
# environment


def child_env(src: str | None = None, extra_path: Sequence[str] = ()) -> dict[str, str]:
    """The environment for our Python children: ``PYTHONPATH`` = ``src`` (a checkout's ``src``
    dir, to benchmark another tree than the editable install) and ``extra_path`` first."""
    env = dict(os.environ)
    parts = [p for p in (src, *extra_path) if p]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("PYTHONSTARTUP", None)
    return env


def python_probe(code: str, env: Mapping[str, str], python: str = sys.executable) -> str | None:
    """Run ``python -c code`` in ``env``; its stdout, or None if it failed."""
    r = subprocess.run(
        [python, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return r.stdout.strip() if r.returncode == 0 else None


def raise_nofile() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def pin(pid: int, cpu: int) -> None:
    """``taskset -apc cpu pid`` (all threads)."""
    subprocess.run(["taskset", "-apc", str(cpu), str(pid)], check=True, capture_output=True)


def proc_status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (``VmRSS``, ``VmHWM`` ...)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def proc_fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------------------
# servers


class Binrpcd:
    """A ``binrpcd`` process (or, with ``floor=True``, ``bench/_floor_server.py``).

    ``loop``: passed as ``binrpcd --loop`` (``"asyncio"``: asyncio's default epoll loop even
    when uvloop is installed, which binrpcd's default ``auto`` would pick; ``"uvloop"``: uvloop,
    which must be importable in ``env``). ``cprofile`` (a file name) runs binrpcd's ``main``
    under cProfile through ``bench/_run_binrpcd.py``.
    """

    def __init__(
        self,
        workdir: str,
        *,
        loop: str = "asyncio",
        protos: Sequence[str] = PROTOS,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cpu: int | None = 0,
        tag: str = "b",
        cprofile: str | None = None,
        python: str = sys.executable,
        floor: bool = False,
    ) -> None:
        self.workdir = workdir
        self.loop = loop
        self.floor = floor
        self.tag = tag
        self.cpu = cpu
        self.env = dict(env if env is not None else os.environ)
        ports = free_ports(2)
        self.addrs: dict[str, str] = {}
        for proto in protos:
            if proto == "unixs":
                self.addrs[proto] = f"unixs:{workdir}/{tag}.sock"
            elif proto == "unixd":
                self.addrs[proto] = f"unixd:{workdir}/{tag}.dsock"
            elif proto == "udp":
                self.addrs[proto] = f"udp:127.0.0.1:{ports[0]}"
            elif proto == "tcp":
                self.addrs[proto] = f"tcp:127.0.0.1:{ports[1]}"
        args: list[str] = []
        for addr in self.addrs.values():
            args += ["--binrpc", addr]
        args += ["--module", BENCH_RPCS, *extra_args]
        bindir = os.path.dirname(python)
        if floor:
            self.argv = [python, FLOOR_SERVER, "--loop", loop, *args]
        elif cprofile is None:
            self.argv = [os.path.join(bindir, "binrpcd"), "--loop", loop, *args]
        else:
            wrapper = [python, RUN_BINRPCD, "--cprofile", cprofile]
            self.argv = [*wrapper, "--", "--loop", loop, *args]
        self.log_path = os.path.join(workdir, f"{tag}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    @property
    def label(self) -> str:
        if self.floor:
            return f"floor:{self.loop}"
        return "binrpcd" if self.loop == "asyncio" else f"binrpcd+{self.loop}"

    def start(self, timeout: float = 20.0) -> Binrpcd:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                start_new_session=True,
                cwd="/tmp",
            )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        want = len(self.addrs)
        seen = 0
        buf = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while seen < want:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise RuntimeError(f"binrpcd not ready after {timeout}s: {self.log_tail()}")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.stop()
                    raise RuntimeError(f"binrpcd exited during start-up: {self.log_tail()}")
                buf += chunk
                seen = buf.count(b"listening on ")
        if self.cpu is not None:
            pin(self.pid, self.cpu)
        return self

    def log_tail(self) -> str:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
            return fh.read()[-2000:].decode("utf-8", "replace")
        return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by pid, SIGKILL after ``timeout``; returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        for addr in self.addrs.values():
            proto, _, rest = addr.partition(":")
            if proto.startswith("unix"):
                with contextlib.suppress(OSError):
                    os.unlink(rest)
        return proc.returncode

    def __enter__(self) -> Binrpcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KamailioTarget:
    """A real Kamailio 5.6.3 with ctl on unixs, unixd, udp and tcp (tests/interop/kamailio.py).

    All its processes are pinned to ``cpu``; ``cpu_pid`` is the ``ctl handler`` process (from
    ``core.psx``), the one that runs every ctl request.
    """

    label = "Kamailio"
    loop = "C (ctl io_wait)"

    def __init__(self, cpu: int | None = 0, params: Mapping[str, Any] | None = None) -> None:
        self.cpu = cpu
        self.workdir = make_workdir()
        ports = free_ports(2)
        self.addrs = {
            "unixs": f"unixs:{self.workdir}/ctl.sock",
            "unixd": f"unixd:{self.workdir}/ctl.dsock",
            "udp": f"udp:127.0.0.1:{ports[0]}",
            "tcp": f"tcp:127.0.0.1:{ports[1]}",
        }
        self.kamailio = Kamailio(
            binrpc=list(self.addrs.values()), workdir=self.workdir, params=dict(params or {})
        )
        self.pid = 0
        self.cpu_pid = 0
        self.pids: list[int] = []
        self.version = ""

    def start(self) -> KamailioTarget:
        from binrpc.client import Client

        self.kamailio.start()
        assert self.kamailio.pid is not None
        self.pid = self.kamailio.pid
        with Client(self.addrs["unixs"], timeout=10) as c:
            psx = c.call("core.psx")
            self.version = str(c.call_one("core.version"))
        handlers = [p["PID"] for p in psx if "ctl handler" in str(p["DSC"])]  # type: ignore[index,call-overload]
        if len(handlers) != 1:
            self.stop()
            raise RuntimeError(f"no single ctl handler in core.psx: {psx!r}")
        self.cpu_pid = int(handlers[0])  # type: ignore[arg-type]
        self.pids = [p.pid for p in self.kamailio.processes()]
        if self.cpu is not None:
            for pid in self.pids:
                pin(pid, self.cpu)
        return self

    def stop(self) -> None:
        self.kamailio.stop()

    def __enter__(self) -> KamailioTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# load generator


def loadgen_argv(
    job: Mapping[str, Any], cpu: int | None, python: str = sys.executable
) -> list[str]:
    argv = [python, LOADGEN, json.dumps(dict(job))]
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def run_loadgen(
    job: Mapping[str, Any],
    cpu: int | None = 0,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Run one load generator job (pinned to ``cpu``) and return its JSON result."""
    r = subprocess.run(
        loadgen_argv(job, cpu, python),
        capture_output=True,
        check=False,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        cwd="/tmp",
    )
    if r.returncode != 0:
        raise RuntimeError(f"load generator failed ({job.get('mode')}): {r.stderr[-1500:]}")
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def new_workdir(prefix: str = "binrpc-bench-") -> str:
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def remove_workdir(path: str) -> None:
    if path.startswith("/tmp/"):
        shutil.rmtree(path, ignore_errors=True)
