"""Run a real Kamailio (Debian package, 5.6.3) and the real kamcmd for interop tests.

This is a plain helper module, independent of pytest (the fixtures live in
``conftest.py``).  It offers:

* :func:`free_port` / :func:`free_ports` -- ports that are free at run time;
* :func:`ensure_kamailio` -- locate (and, as root, install) ``kamailio``/``kamcmd``;
* :class:`Kamailio` -- write a minimal ``kamailio.cfg`` with ``ctl`` listeners in a
  fresh directory under ``/tmp``, start Kamailio in the foreground in its own
  session, wait until the ctl listeners answer, and stop it again by pid;
* :func:`run_kamcmd` -- run the real ``kamcmd`` and capture its output as bytes;
* :func:`parse_ctl_address` -- the ctl module's listener address syntax, enough to
  know where to probe and what ``ctl.listen`` reports.

Everything listens on ``127.0.0.1`` or on paths below ``/tmp`` only.  Processes are
only ever signalled by pid / by the process group that this module created.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

__all__ = [
    "CORE_VERSION_REQUEST",
    "CtlAddress",
    "Kamailio",
    "KamailioError",
    "ensure_kamailio",
    "find_module_dir",
    "free_port",
    "free_ports",
    "make_workdir",
    "parse_ctl_address",
    "run_kamcmd",
    "session_processes",
]

#: A binrpc request for ``core.version`` with cookie 0x1234 (spec section 13).
CORE_VERSION_REQUEST: bytes = bytes.fromhex("a1010f1234910d636f72652e76657273696f6e00")
#: A FIFO text protocol request for ``core.version`` without a reply file (spec 8.1).
FIFO_CORE_VERSION_REQUEST: bytes = b":core.version:\n\n"

_SEARCH_PATH_EXTRA: tuple[str, ...] = (
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
    "/usr/bin",
    "/usr/local/bin",
)
_MODULE_DIR_GLOBS: tuple[str, ...] = (
    "/usr/lib/*/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/local/lib/*/kamailio/modules",
    "/usr/local/lib/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
)

_install_lock = threading.Lock()
_apt_updated = False


class KamailioError(RuntimeError):
    """Kamailio could not be found, installed, started or stopped cleanly."""


# --------------------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------------------


def free_port(kind: Literal["tcp", "udp"] = "tcp", host: str = "127.0.0.1") -> int:
    """Return a port that is free for *kind* on *host* right now.

    The kernel picks the port (bind to port 0); the socket is closed before
    returning, so there is an unavoidable small race with other programs.
    """
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    if kind not in ("tcp", "udp"):
        raise ValueError(f"kind must be 'tcp' or 'udp', not {kind!r}")
    with socket.socket(socket.AF_INET, sock_type) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(n: int, host: str = "127.0.0.1", max_attempts: int = 200) -> list[int]:
    """Return *n* distinct ports that are each free for both TCP and UDP on *host*.

    All candidate sockets are kept open until *n* ports were collected, so the
    results are distinct; they are all closed before returning.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        attempts = 0
        while len(ports) < n:
            attempts += 1
            if attempts > max_attempts:
                raise KamailioError(f"could not find {n} ports free for both tcp and udp on {host}")
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            try:
                udp.bind((host, port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


# --------------------------------------------------------------------------------------
# binaries and modules
# --------------------------------------------------------------------------------------


def _which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (non-root PATHs lack them)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SEARCH_PATH_EXTRA])
    return shutil.which(name, path=path)


def _find_binaries() -> tuple[str | None, str | None]:
    """Return the paths of kamailio and kamcmd, ``None`` for a missing one."""
    return _which("kamailio"), _which("kamcmd")


def ensure_kamailio() -> tuple[str, str]:
    """Return ``(kamailio_path, kamcmd_path)``, installing the Debian package if needed.

    If either binary is missing and we run as root, ``apt-get update`` (once per
    process) and ``apt-get install -y kamailio`` are run non-interactively.  If the
    binaries are still missing, :class:`KamailioError` (a ``RuntimeError``) is raised.
    """
    global _apt_updated
    kamailio, kamcmd = _find_binaries()
    if kamailio and kamcmd:
        return kamailio, kamcmd
    with _install_lock:
        kamailio, kamcmd = _find_binaries()
        if (kamailio is None or kamcmd is None) and os.geteuid() == 0 and _which("apt-get"):
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            apt_get = _which("apt-get") or "apt-get"
            if not _apt_updated:
                subprocess.run(
                    [apt_get, "update"], env=env, check=False, capture_output=True, timeout=600
                )
                _apt_updated = True
            subprocess.run(
                [apt_get, "install", "-y", "kamailio"],
                env=env,
                check=False,
                capture_output=True,
                timeout=900,
            )
            kamailio, kamcmd = _find_binaries()
    if kamailio is None or kamcmd is None:
        missing = [
            name for name, path in (("kamailio", kamailio), ("kamcmd", kamcmd)) if path is None
        ]
        raise KamailioError(
            f"{' and '.join(missing)} not found "
            f"(looked in PATH and {', '.join(_SEARCH_PATH_EXTRA)}); install the Debian "
            "package 'kamailio' (apt-get install kamailio) to run the interop tests"
        )
    return kamailio, kamcmd


def find_module_dir(kamailio: str | None = None, modules: Iterable[str] = ("ctl",)) -> str:
    """Return Kamailio's module directory (the one holding ``<module>.so`` for *modules*).

    The compiled-in default printed by ``kamailio -h`` (``-L path ... (default: X)``)
    is preferred; otherwise well-known locations are globbed (any multiarch triplet).
    """
    wanted = [m if m.endswith(".so") else f"{m}.so" for m in modules]
    candidates: list[str] = []
    if kamailio is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [kamailio, "-h"],
                capture_output=True,
                timeout=10,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            text = (out.stdout + out.stderr).decode("utf-8", "replace")
            match = re.search(r"-L path\s+Modules search path \(default: ([^)\s]+)\)", text)
            if match:
                candidates.append(match.group(1))
    for pattern in _MODULE_DIR_GLOBS:
        candidates.extend(sorted(glob.glob(pattern)))
    for directory in candidates:
        if all(os.path.isfile(os.path.join(directory, so)) for so in wanted):
            return directory
    raise KamailioError(
        f"no Kamailio module directory with {', '.join(wanted)} found (tried {candidates})"
    )


# --------------------------------------------------------------------------------------
# ctl addresses
# --------------------------------------------------------------------------------------

_PROTO_WORDS: dict[str, str] = {
    "tcp": "tcp",
    "udp": "udp",
    "unixd": "unixd",
    "unix": "unixs",
    "unixs": "unixs",
    "fifo": "fifo",
}
_TRANSPORT_NAMES: dict[str, str] = {
    "unixs": "unix_stream",
    "unixd": "unix_dgram",
    "udp": "udp",
    "tcp": "tcp",
    "fifo": "fifo",
}


@dataclass(frozen=True)
class CtlAddress:
    """One ctl listener, parsed the way the ctl module parses its parameters (spec 7.2).

    ``payload`` is the parameter that configured it (``"binrpc"`` or ``"fifo"``),
    ``proto`` one of ``unixs``, ``unixd``, ``udp``, ``tcp``, ``fifo``, ``name`` the path
    or the host exactly as configured and ``port`` the effective port (``None`` for
    unix sockets and FIFOs).
    """

    payload: Literal["binrpc", "fifo"]
    proto: str
    name: str
    port: int | None
    raw: str

    @property
    def transport(self) -> str:
        """Transport name as reported by ``ctl.listen`` (``unix_stream``, ``tcp``, ...)."""
        return _TRANSPORT_NAMES[self.proto]

    @property
    def is_stream(self) -> bool:
        """True for unix stream and TCP listeners."""
        return self.proto in ("unixs", "tcp")

    @property
    def is_inet(self) -> bool:
        """True for TCP and UDP listeners."""
        return self.proto in ("tcp", "udp")

    @property
    def kamcmd(self) -> str:
        """The address in kamcmd ``-s`` syntax (``unixs:/path``, ``tcp:127.0.0.1:4000``)."""
        if self.is_inet:
            return f"{self.proto}:{self.connect_host}:{self.port}"
        return f"{self.proto}:{self.name}"

    @property
    def connect_host(self) -> str:
        """Host to connect to: the configured host, or 127.0.0.1 for ``*``/empty."""
        return "127.0.0.1" if self.name in ("", "*") else self.name

    @property
    def listen_row(self) -> tuple[str, str, str, str]:
        """The four strings ``ctl.listen`` reports for this listener."""
        return (
            self.payload,
            self.transport,
            self.name,
            "" if self.port is None else str(self.port),
        )


def _parse_port(text: str, proto: str) -> int:
    """Parse a ctl port string: up to 5 digits modulo 65536, a service name, or 0 -> 2049."""
    if text == "":
        value = 0
    elif text.isdigit():
        if len(text) > 5:
            raise ValueError(f"bad port {text!r}")
        value = int(text) % 65536
    else:
        try:
            value = (
                socket.getservbyname(text, proto)
                if proto in ("tcp", "udp")
                else socket.getservbyname(text)
            )
        except OSError as exc:
            raise ValueError(f"unknown service/port {text!r}") from exc
    return value or 2049


def parse_ctl_address(value: str, payload: Literal["binrpc", "fifo"] = "binrpc") -> CtlAddress:
    """Parse a ``binrpc``/``fifo`` modparam value like the ctl module does (spec 7.2).

    Raises ``ValueError`` for forms Kamailio 5.6.3 rejects (``[`` IPv6 forms, bad ports).
    """
    if "[" in value:
        raise ValueError(f"Kamailio 5.6.3 rejects IPv6 bracket addresses: {value!r}")
    proto: str | None = None
    colon = value.find(":")
    if colon >= 0 and value[:colon].lower() in _PROTO_WORDS:
        proto = _PROTO_WORDS[value[:colon].lower()]
        host, sep, port_text = value[colon + 1 :].partition(":")
        has_port = bool(sep)
    elif colon >= 0:
        host, port_text, has_port = value[:colon], value[colon + 1 :], True
    else:
        host, port_text, has_port = value, "", False
    if proto is None:
        if has_port:
            proto = "udp"
        elif "/" in host:
            proto = "unixs" if payload == "binrpc" else "fifo"
        else:
            proto = "udp" if payload == "binrpc" else "fifo"
    if proto in ("tcp", "udp"):
        if not has_port and host.isdigit():
            host, port_text = "*", host
        return CtlAddress(payload, proto, host, _parse_port(port_text, proto), value)
    if has_port:
        _parse_port(port_text, proto)  # must still be valid; Kamailio errors otherwise
    return CtlAddress(payload, proto, host, None, value)


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    """A process from ``/proc/<pid>/stat``."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    comm: str


def _proc_info(pid: int) -> ProcInfo | None:
    """Read ``/proc/<pid>/stat``; ``None`` if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    lpar, rpar = data.find("("), data.rfind(")")
    fields = data[rpar + 2 :].split()
    return ProcInfo(
        pid, fields[0], int(fields[1]), int(fields[2]), int(fields[3]), data[lpar + 1 : rpar]
    )


def session_processes(leader: int, include_zombies: bool = False) -> list[ProcInfo]:
    """All processes whose session id or process group id is *leader* (from ``/proc``)."""
    found: list[ProcInfo] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = _proc_info(int(entry))
        if info is None or (info.sid != leader and info.pgid != leader):
            continue
        if info.state == "Z" and not include_zombies:
            continue
        found.append(info)
    return found


def make_workdir() -> str:
    """Create a fresh private directory ``/tmp/binrpc-kam-XXXXXXXX`` and return its path."""
    return tempfile.mkdtemp(prefix="binrpc-kam-", dir="/tmp")


def _cfg_value(value: int | str | bool) -> str:
    """Render a modparam value: ints (and bools) unquoted, strings double-quoted."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


_running: weakref.WeakSet[Kamailio] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    """Safety net: stop instances that are still running when the interpreter exits."""
    for instance in list(_running):
        with contextlib.suppress(Exception):
            instance.stop()


# --------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------


class Kamailio:
    """A real Kamailio process with ctl listeners, for interop tests.

    ``Kamailio(...)`` only prepares; :meth:`start` (or entering the ``with`` block)
    writes the configuration and starts the server, :meth:`stop` (or leaving the
    block) stops it by pid and removes the working directory.

    Example::

        with Kamailio(binrpc=["unixs:/tmp/x/ctl.sock"], params={"autoconversion": 1}) as k:
            run_kamcmd(["core.version"], k.addresses[0].kamcmd)

    If neither *binrpc* nor *fifo* is given, one unix stream listener
    ``<workdir>/ctl.sock`` is configured (pass ``binrpc=[]`` explicitly to get the
    ctl module's own default ``unixs:<rundir>/kamailio_ctl``).
    """

    def __init__(
        self,
        binrpc: Sequence[str] | None = None,
        fifo: Sequence[str] | None = None,
        params: Mapping[str, int | str | bool] | None = None,
        modules: Sequence[str] = ("ctl",),
        workdir: str | None = None,
        *,
        modparams: Sequence[tuple[str, str, int | str | bool]] = (),
        extra_cfg: str = "",
        sip_port: int | None = None,
        debug: int = 2,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        keep_workdir: bool = False,
    ) -> None:
        """Prepare an instance.

        :param binrpc: values for ``modparam("ctl", "binrpc", ...)``, in order.
        :param fifo: values for ``modparam("ctl", "fifo", ...)``, in order (after binrpc).
        :param params: other ``ctl`` modparams (ints unquoted, strings quoted).
        :param modules: modules to load (``ctl`` should be among them).
        :param workdir: directory for cfg, log, rundir, pidfile; a fresh
            ``/tmp/binrpc-kam-*`` directory when ``None``.  Removed by :meth:`stop`
            unless *keep_workdir*.
        :param modparams: extra ``(module, name, value)`` modparams for other modules.
        :param extra_cfg: raw text appended to the global section of the cfg.
        :param sip_port: SIP UDP port on 127.0.0.1 (free port when ``None``).
        :param debug: Kamailio ``debug`` level (2 = INFO).
        :param start_timeout: seconds to wait for the listeners to answer.
        :param stop_timeout: seconds to wait after SIGTERM before SIGKILL.
        :param keep_workdir: keep the working directory (and the log) after stop.
        """
        self.workdir: str = workdir if workdir is not None else make_workdir()
        os.makedirs(self.workdir, exist_ok=True)
        if binrpc is None and fifo is None:
            binrpc = [f"unixs:{os.path.join(self.workdir, 'ctl.sock')}"]
        self.binrpc: list[str] = list(binrpc or [])
        self.fifo: list[str] = list(fifo or [])
        self.params: dict[str, int | str | bool] = dict(params or {})
        self.modules: list[str] = list(modules)
        self.modparams: list[tuple[str, str, int | str | bool]] = list(modparams)
        self.extra_cfg: str = extra_cfg
        self.debug: int = debug
        self.start_timeout: float = start_timeout
        self.stop_timeout: float = stop_timeout
        self.keep_workdir: bool = keep_workdir
        self.sip_port: int = sip_port if sip_port is not None else free_port("udp")
        self.rundir: str = os.path.join(self.workdir, "run")
        self.cfg_path: str = os.path.join(self.workdir, "kamailio.cfg")
        self.log_path: str = os.path.join(self.workdir, "kamailio.log")
        self.pidfile: str = os.path.join(self.rundir, "kamailio.pid")
        #: listeners in configuration order (``ctl.listen`` order); addresses this
        #: module cannot parse (deliberately bad ones, to test startup failures) are
        #: left out here and listed in :attr:`unparsed` instead.
        self.addresses: list[CtlAddress] = []
        self.unparsed: list[str] = []
        configured: list[tuple[str, Literal["binrpc", "fifo"]]] = [
            (a, "binrpc") for a in self.binrpc
        ]
        configured += [(a, "fifo") for a in self.fifo]
        for raw, payload in configured:
            try:
                self.addresses.append(parse_ctl_address(raw, payload))
            except ValueError:
                self.unparsed.append(raw)
        if not configured and "ctl" in self.modules:
            # ctl's default listener when neither parameter is set (spec 7.3)
            self.addresses = [
                CtlAddress(
                    "binrpc",
                    "unixs",
                    f"{self.rundir}/kamailio_ctl",
                    None,
                    f"unixs:{self.rundir}/kamailio_ctl",
                )
            ]
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._probe_counter = 0

    # ---- context manager -------------------------------------------------------------

    def __enter__(self) -> Kamailio:
        """Start (if not started yet) and return self."""
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Short description with pid and workdir."""
        listeners = [a.raw for a in self.addresses]
        return f"<Kamailio pid={self.pid} workdir={self.workdir!r} listeners={listeners}>"

    # ---- configuration ----------------------------------------------------------------

    def config_text(self, module_dir: str) -> str:
        """Return the kamailio.cfg text for this instance."""
        lines = [
            "#!KAMAILIO",
            "# generated by tests/interop/kamailio.py",
            f"debug={self.debug}",
            "log_stderror=yes",
            "fork=yes",
            "children=1",
            f"listen=udp:127.0.0.1:{self.sip_port}",
            f'mpath="{module_dir.rstrip("/")}/"',
            "",
        ]
        lines += [f'loadmodule "{m if m.endswith(".so") else m + ".so"}"' for m in self.modules]
        lines.append("")
        lines += [f'modparam("ctl", "binrpc", {_cfg_value(a)})' for a in self.binrpc]
        lines += [f'modparam("ctl", "fifo", {_cfg_value(a)})' for a in self.fifo]
        lines += [
            f'modparam("ctl", "{name}", {_cfg_value(value)})' for name, value in self.params.items()
        ]
        lines += [
            f'modparam("{mod}", "{name}", {_cfg_value(value)})'
            for mod, name, value in self.modparams
        ]
        if self.extra_cfg:
            lines += ["", self.extra_cfg]
        lines += ["", "request_route {", "    drop;", "}", ""]
        return "\n".join(lines)

    # ---- lifecycle --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the main process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Kamailio:
        """Write the cfg, start Kamailio and wait until all ctl listeners answer.

        Raises :class:`KamailioError` (with the tail of Kamailio's log) if the
        server exits or does not answer within ``start_timeout`` seconds; in that
        case everything it started is killed and the workdir removed.
        """
        if self._proc is not None:
            raise KamailioError("already started")
        kamailio, _kamcmd = ensure_kamailio()
        module_dir = find_module_dir(kamailio, self.modules)
        os.makedirs(self.rundir, exist_ok=True)
        with open(self.cfg_path, "w", encoding="utf-8") as fh:
            fh.write(self.config_text(module_dir))
        argv = [kamailio, "-f", self.cfg_path, "-DD", "-E", "-Y", self.rundir, "-P", self.pidfile]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        self.pid = self._proc.pid
        _running.add(self)
        try:
            self._wait_ready(started + self.start_timeout)
        except BaseException as exc:
            tail = self.log_tail()
            with contextlib.suppress(Exception):
                self.stop()
            if isinstance(exc, KamailioError):
                raise KamailioError(f"{exc}\n--- kamailio log (tail) ---\n{tail}") from None
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop the server by pid and clean up; idempotent.

        SIGTERM goes to the main pid; after ``stop_timeout`` seconds the whole
        process group gets SIGKILL.  Then every process of the session must be gone
        (checked in ``/proc``), else :class:`KamailioError` is raised.  The working
        directory is removed unless ``keep_workdir``.
        """
        proc = self._proc
        problems: list[str] = []
        try:
            if proc is not None and self.pid is not None:
                leader = self.pid
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leader, signal.SIGTERM)
                    if not self._wait_exit_nowait(self.stop_timeout):
                        problems.append(
                            f"main pid {leader} ignored SIGTERM for {self.stop_timeout}s; SIGKILL"
                        )
                        self._killpg(leader)
                        self._wait_exit_nowait(5.0)
                # The main process is now a zombie (not yet reaped), so its pid -- which is
                # also the pgid/sid of all its children -- cannot be reused while we check.
                left = self._wait_session_gone(leader, 5.0)
                if left:
                    problems.append(f"processes left in session {leader}: {left}; SIGKILL")
                    self._killpg(leader)
                    left = self._wait_session_gone(leader, 5.0)
                    if left:
                        problems.append(f"still left after SIGKILL: {left}")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5.0)
                if proc.returncode is None:
                    problems.append(f"main pid {leader} could not be reaped")
        finally:
            _running.discard(self)
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise KamailioError("; ".join(problems))

    @property
    def returncode(self) -> int | None:
        """Exit status of the main process once it was reaped (after :meth:`stop`)."""
        return None if self._proc is None else self._proc.returncode

    def processes(self) -> list[ProcInfo]:
        """Live (non-zombie) processes of this instance's session."""
        return [] if self.pid is None else session_processes(self.pid)

    def log_text(self) -> str:
        """The whole Kamailio log so far (empty if the workdir is gone)."""
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* lines of the Kamailio log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def listener(self, proto: str, payload: str = "binrpc") -> CtlAddress:
        """The first configured listener with this proto (``unixs``, ``tcp``, ...) and payload."""
        for address in self.addresses:
            if address.proto == proto and address.payload == payload:
                return address
        raise KeyError(f"no {payload} listener with proto {proto}")

    # ---- internals --------------------------------------------------------------------

    def _exited_nowait(self) -> bool:
        """True if the main process has exited; does not reap it (WNOWAIT)."""
        assert self._proc is not None and self.pid is not None
        if self._proc.returncode is not None:
            return True
        try:
            result = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return result is not None

    def _wait_exit_nowait(self, timeout: float) -> bool:
        """Wait until the main process exited (without reaping it); False on timeout."""
        deadline = time.monotonic() + timeout
        while not self._exited_nowait():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    @staticmethod
    def _killpg(pgid: int) -> None:
        """SIGKILL the process group *pgid* (our own session), if it still exists."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    @staticmethod
    def _wait_session_gone(leader: int, timeout: float) -> list[ProcInfo]:
        """Wait until no live process of the session remains; return those left."""
        deadline = time.monotonic() + timeout
        while True:
            left = session_processes(leader)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.02)

    def _wait_ready(self, deadline: float) -> None:
        """Poll until every listener answers (or exists, for FIFO files)."""
        assert self._proc is not None and self.pid is not None
        pending = list(self.addresses)
        last_error: dict[str, str] = {}
        while True:
            if self._proc.poll() is not None:
                raise KamailioError(
                    f"kamailio exited during startup with status {self._proc.returncode}"
                )
            if not self.addresses:
                # Nothing to probe: modules are initialised (and ctl listeners
                # created) before the main process forks its children.
                if len(session_processes(self.pid)) >= 2:
                    return
                if time.monotonic() >= deadline:
                    raise KamailioError(
                        f"kamailio did not fork its children within {self.start_timeout}s"
                    )
                time.sleep(0.05)
                continue
            still: list[CtlAddress] = []
            for address in pending:
                try:
                    ok = self._probe(address, min(0.5, max(0.05, deadline - time.monotonic())))
                except OSError as exc:
                    ok = False
                    last_error[address.raw] = repr(exc)
                if not ok:
                    still.append(address)
            pending = still
            if not pending:
                return
            if time.monotonic() >= deadline:
                detail = ", ".join(
                    f"{a.raw} ({last_error.get(a.raw, 'no reply')})" for a in pending
                )
                raise KamailioError(
                    f"ctl listeners not ready after {self.start_timeout}s: {detail}"
                )
            time.sleep(0.05)

    def _probe(self, address: CtlAddress, timeout: float) -> bool:
        """Try one listener once: send core.version (binrpc or FIFO text) and check the reply."""
        if address.proto == "fifo":
            path = address.name if os.path.isabs(address.name) else os.path.join("/", address.name)
            try:
                return stat.S_ISFIFO(os.stat(path).st_mode)
            except FileNotFoundError:
                return False
        request = CORE_VERSION_REQUEST if address.payload == "binrpc" else FIFO_CORE_VERSION_REQUEST
        if address.proto in ("unixs", "tcp"):
            family = socket.AF_UNIX if address.proto == "unixs" else socket.AF_INET
            target: str | tuple[str, int] = (
                address.name
                if address.proto == "unixs"
                else (address.connect_host, address.port or 2049)
            )
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(target)
                sock.sendall(request)
                data = b""
                while len(data) < 2 or (address.payload == "fifo" and b"\n" not in data):
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        return False
                    if not chunk:
                        return False
                    data += chunk
                return self._reply_ok(address, data)
        if address.proto == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.connect((address.connect_host, address.port or 2049))
                sock.send(request)
                try:
                    return self._reply_ok(address, sock.recv(65535))
                except TimeoutError:
                    return False
        if address.proto == "unixd":
            self._probe_counter += 1
            local = os.path.join(self.workdir, f".probe-{os.getpid()}-{self._probe_counter}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(timeout)
                    sock.bind(local)
                    sock.connect(address.name)
                    sock.send(request)
                    try:
                        return self._reply_ok(address, sock.recv(65535))
                    except TimeoutError:
                        return False
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(local)
        return False

    @staticmethod
    def _reply_ok(address: CtlAddress, data: bytes) -> bool:
        """Is *data* a reply (binrpc: magic 0xa1 and type 1; FIFO: a ``200`` status line)?"""
        if address.payload == "binrpc":
            return len(data) >= 2 and data[0] == 0xA1 and data[1] >> 4 == 1
        return data.startswith(b"200 ")


# --------------------------------------------------------------------------------------
# kamcmd
# --------------------------------------------------------------------------------------


def run_kamcmd(
    args: Sequence[str],
    socket: str | None,
    input: bytes | None = None,
    timeout: float = 10,
) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``kamcmd [-s socket] args...`` and capture stdout/stderr as bytes.

    With ``input=None`` stdin is ``/dev/null`` (so interactive mode sees EOF).
    ``subprocess.TimeoutExpired`` propagates (kamcmd never times out by itself).
    """
    _kamailio, kamcmd = ensure_kamailio()
    argv = [kamcmd] + (["-s", socket] if socket is not None else []) + list(args)
    return subprocess.run(
        argv,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        timeout=timeout,
        check=False,
        cwd="/tmp",
    )
