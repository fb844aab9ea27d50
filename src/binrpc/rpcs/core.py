"""``core.*`` RPCs a kamcmd user expects, with Kamailio's names, parameters, reply shapes and
help texts (spec 9.2). Process-related RPCs describe this Python process and its threads;
memory RPCs describe this process's memory.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from typing import Final

from .._context import RpcContext
from .._registry import Registry

__all__ = ["register"]

_IMPORTED: Final = time.time()
NAME: Final = "binrpc"
"""How core.ps describes this process ("main process - <name>"); default: the program name.
binrpcd sets it to "binrpcd"."""


def _version() -> str:
    from .. import __version__

    return str(__version__)


def _arch() -> str:
    return f"{platform.machine().lower() or 'unknown'}/{sys.platform.lower()}"


def _started(ctx: RpcContext) -> float:
    return ctx.server.started if ctx.server is not None else _IMPORTED


def _compiler() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def version(ctx: RpcContext) -> None:
    # same shape as Kamailio's "<name> <ver> (<arch>/<os>) <repo-ver>" (empty repo-ver)
    ctx.add("s", f"{NAME} {_version()} ({_arch()}) ")


def flags(ctx: RpcContext) -> None:
    ctx.add("s", "")


def info(ctx: RpcContext) -> None:
    handle = ctx.add("{")
    if isinstance(handle, int):
        return
    ctx.struct_printf(handle, "version", "%s %s", NAME, _version())
    ctx.struct_add(
        handle, "ssss", "id", "unknown ", "compiler", _compiler(), "compiled", "", "flags", ""
    )


def uptime(ctx: RpcContext) -> None:
    now = time.time()
    started = _started(ctx)
    handle = ctx.add("{")
    if isinstance(handle, int):
        return
    ctx.struct_add(
        handle,
        "ssd",
        "now",
        time.ctime(now),
        "up_since",
        time.ctime(started),
        "uptime",
        int(now - started),
    )


def runinfo(ctx: RpcContext) -> None:
    now = time.time()
    started = _started(ctx)
    up = int(now - started)
    handle = ctx.add("{")
    if isinstance(handle, int):
        return
    ctx.struct_add(
        handle,
        "sssssssd",
        "name", NAME,
        "version", _version(),
        "sourceid", "unknown ",
        "compiler", _compiler(),
        "compiled", "",
        "time_now", time.ctime(now),
        "time_started", time.ctime(started),
        "uptime_secs", up,
    )  # fmt: skip
    ctx.struct_printf(
        handle,
        "utime_days",
        "%dd %dh %dm %ds",
        up // 86400,
        up % 86400 // 3600,
        up % 3600 // 60,
        up % 60,
    )


def _processes(ctx: RpcContext) -> list[tuple[int, str]]:
    """(pid, description): this process first, then its other threads (native ids)."""
    pid = os.getpid()
    if ctx.server is not None:
        name = ctx.server.process_name
    else:
        name = os.path.basename(sys.argv[0] or "python")
    out = [(pid, f"main process - {name}")]
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is main or thread.native_id is None:
            continue
        out.append((thread.native_id, f"thread {thread.name}"))
    return out


def ps(ctx: RpcContext) -> None:
    for pid, desc in _processes(ctx):
        if ctx.add("ds", pid, desc) < 0:
            return


def psx(ctx: RpcContext) -> None:
    for idx, (pid, desc) in enumerate(_processes(ctx)):
        handle = ctx.add("{")
        if isinstance(handle, int):
            return
        ctx.struct_add(handle, "dds", "IDX", idx, "PID", pid, "DSC", desc)


def psa(ctx: RpcContext) -> None:
    for idx, (pid, desc) in enumerate(_processes(ctx)):
        handle = ctx.add("{")
        if isinstance(handle, int):
            return
        rank = 0 if idx == 0 else -1
        ctx.struct_add(
            handle,
            "dddds",
            "index",
            idx,
            "pid",
            pid,
            "status",
            1,
            "rank",
            rank,
            "description",
            desc,
        )


def echo(ctx: RpcContext) -> None:
    while (r := ctx.scan("*.s")) > 0:
        ctx.add("s", r.values[0])


def printi(ctx: RpcContext) -> None:
    while (r := ctx.scan("*d")) > 0:
        ctx.add("d", r.values[0])


def prints(ctx: RpcContext) -> None:
    while (r := ctx.scan("*s")) > 0:
        ctx.add("s", r.values[0])


def pwd(ctx: RpcContext) -> None:
    try:
        cwd = os.getcwd()
    except OSError:
        ctx.fault(500, "getcwd failed")
        return
    ctx.add("s", cwd)


def arg(ctx: RpcContext) -> None:
    argv = getattr(sys, "orig_argv", None) or sys.argv
    for item in argv:
        if ctx.add("s", item) < 0:
            return


_UNITS: Final = {"b": 0, "k": 10, "m": 20, "g": 30}


def _memory() -> tuple[int, int, int, int]:
    """(total, used, real_used, max_used) bytes of this process (Linux /proc; else rusage)."""
    fields: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                    fields[key] = int(parts[0]) * 1024
    except OSError:
        pass
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = fields.get("VmSize", 0)
    rss = fields.get("VmRSS", 0)
    if not rss:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    used = fields.get("RssAnon", rss)
    return total, used, rss, fields.get("VmHWM", rss)


def shmmem(ctx: RpcContext) -> None:
    """Like Kamailio's: optional unit b/k/m/g (a second ``b`` allowed, any case). Values go
    out with the 64-bit format ``j`` (a DOUBLE, as in Kamailio HEAD; 5.6.3 used a 32-bit INT
    that wraps) - kamcmd prints both the same way."""
    shift = 0
    r = ctx.scan("*s")
    if r > 0:
        unit = r.values[0].lower()
        if not 1 <= len(unit) <= 2 or unit[0] not in _UNITS or unit[1:] not in ("", "b"):
            ctx.fault(500, "bad param, (use b|k|m|g)")
            return
        shift = _UNITS[unit[0]]
    total, used, real_used, max_used = _memory()
    handle = ctx.add("{")
    if isinstance(handle, int):
        return
    ctx.struct_add(
        handle,
        "jjjjjj",
        "total", total >> shift,
        "free", max(total - real_used, 0) >> shift,
        "used", used >> shift,
        "real_used", real_used >> shift,
        "max_used", max_used >> shift,
        "fragments", 0,
    )  # fmt: skip


def kill(ctx: RpcContext) -> None:
    """Reply first (empty), then shut the server down cleanly. The optional signal number is
    accepted for compatibility; whatever it is, the server stops the clean way."""
    ctx.scan("*d")
    ctx.send()
    if ctx.server is not None:
        ctx.server.request_shutdown()


_METHODS: Final = (
    ("core.version", version, "Returns the version string of the server.", ["string"]),
    ("core.flags", flags, "Returns the compile flags.", ["string"]),
    ("core.info", info, "Verbose info, including version number, compile flags, "
     "compiler,repository hash a.s.o.", ["struct"]),
    ("core.uptime", uptime, "Returns uptime of SIP server.", ["struct"]),
    ("core.runinfo", runinfo, "Runtime info - binary name, version, uptime, ...", ["struct"]),
    ("core.ps", ps, "Returns the description of running processes.", ["array"]),
    ("core.psx", psx, "Returns the detailed description of running processes.", ["array"]),
    ("core.psa", psa, "Return all the attributes of running processes.", ["array"]),
    ("core.echo", echo, "Returns back its parameters.", ["array", "any..."]),
    ("core.printi", printi, "Returns the integers given as parameters.", ["array", "int..."]),
    ("core.prints", prints, "Returns the strings given as parameters.", ["array", "string..."]),
    ("core.pwd", pwd, "Returns the working directory of server.", ["string"]),
    ("core.arg", arg, "Returns the list of command line arguments used on startup.",
     ["array"]),
    ("core.shmmem", shmmem, "Returns shared memory info. It has an optional parameter that "
     "specifies the measuring unit: b - bytes (default), k or kb, m or mb, g or gb. Note: "
     "when using something different from bytes, the value is truncated.",
     ["struct", "[string]"]),
    ("core.kill", kill, "Sends the given signal to server.", ["nil", "[int]"]),
)  # fmt: skip


def register(registry: Registry) -> None:
    for name, func, doc, signature in _METHODS:
        registry.register(name, func, context=True, doc=doc, signature=signature)
