"""pytest fixtures that run a real Kamailio 5.6.3 and the real kamcmd.

Every test collected below ``tests/interop`` gets the ``interop`` marker, so
``pytest -m "not interop"`` skips them.  When Kamailio is not installed (and
cannot be installed), the fixtures skip the tests -- or fail them when the
environment variable ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest

from .kamailio import Kamailio, KamailioError, ensure_kamailio, free_ports, make_workdir, run_kamcmd

_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``interop`` marker (works without any pyproject configuration)."""
    config.addinivalue_line(
        "markers", "interop: runs the real Kamailio 5.6.3 / kamcmd 1.5 (Debian package)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below this directory with ``pytest.mark.interop``."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.interop)


def _unavailable(reason: str) -> NoReturn:
    """Fail (when ``CI`` is set) or skip the current test because Kamailio is missing."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kamailio_binaries() -> tuple[str, str]:
    """``(kamailio, kamcmd)`` paths; skip/fail the test when they are unavailable."""
    try:
        return ensure_kamailio()
    except KamailioError as exc:
        _unavailable(str(exc))


@dataclass(frozen=True)
class KamailioEndpoints:
    """The session Kamailio and its ctl listeners.

    ``unixs``/``unixd``/``udp``/``tcp`` are binrpc listeners in kamcmd ``-s``
    syntax; ``fifo_file``/``fifo_tcp``/``fifo_udp`` are the FIFO-protocol
    listeners exactly as given to ``modparam("ctl", "fifo", ...)``.
    """

    unixs: str
    unixd: str
    udp: str
    tcp: str
    fifo_file: str
    fifo_tcp: str
    fifo_udp: str
    pid: int
    server: Kamailio

    @property
    def workdir(self) -> str:
        """The instance's working directory (holds the sockets, cfg and log)."""
        return self.server.workdir

    @property
    def binrpc(self) -> dict[str, str]:
        """The four binrpc listeners by transport name."""
        return {"unixs": self.unixs, "unixd": self.unixd, "udp": self.udp, "tcp": self.tcp}

    @property
    def fifo_path(self) -> str:
        """Filesystem path of the FIFO file listener."""
        return self.fifo_file.split(":", 1)[1]

    @property
    def unixs_path(self) -> str:
        """Filesystem path of the binrpc unix stream socket."""
        return self.unixs.split(":", 1)[1]

    @property
    def unixd_path(self) -> str:
        """Filesystem path of the binrpc unix datagram socket."""
        return self.unixd.split(":", 1)[1]


def start_full_kamailio(**kwargs: Any) -> KamailioEndpoints:
    """Start a Kamailio with all four binrpc transports and three FIFO listeners.

    Listeners, in configuration (and ``ctl.listen``) order::

        binrpc unixs:<workdir>/ctl.sock, unixd:<workdir>/ctl.dgram,
               udp:127.0.0.1:<free>, tcp:127.0.0.1:<free>
        fifo   fifo:<workdir>/ctl.fifo, tcp:127.0.0.1:<free>, udp:127.0.0.1:<free>

    Extra keyword arguments go to :class:`Kamailio` (e.g. ``params=``).
    """
    workdir = make_workdir()
    try:
        p_udp, p_tcp, f_tcp, f_udp = free_ports(4)
        endpoints = dict(
            unixs=f"unixs:{workdir}/ctl.sock",
            unixd=f"unixd:{workdir}/ctl.dgram",
            udp=f"udp:127.0.0.1:{p_udp}",
            tcp=f"tcp:127.0.0.1:{p_tcp}",
            fifo_file=f"fifo:{workdir}/ctl.fifo",
            fifo_tcp=f"tcp:127.0.0.1:{f_tcp}",
            fifo_udp=f"udp:127.0.0.1:{f_udp}",
        )
        server = Kamailio(
            binrpc=[endpoints["unixs"], endpoints["unixd"], endpoints["udp"], endpoints["tcp"]],
            fifo=[endpoints["fifo_file"], endpoints["fifo_tcp"], endpoints["fifo_udp"]],
            workdir=workdir,
            **kwargs,
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    server.start()
    assert server.pid is not None
    return KamailioEndpoints(pid=server.pid, server=server, **endpoints)


@pytest.fixture(scope="session")
def kamailio(kamailio_binaries: tuple[str, str]) -> Iterator[KamailioEndpoints]:
    """One Kamailio for the whole session, with ctl listeners on every transport."""
    endpoints = start_full_kamailio(params={})
    try:
        yield endpoints
    finally:
        endpoints.server.stop()


class KamcmdRunner(Protocol):
    """Signature of :func:`run_kamcmd`."""

    def __call__(
        self, args: list[str], socket: str | None, input: bytes | None = None, timeout: float = 10
    ) -> subprocess.CompletedProcess[bytes]:
        """Run kamcmd."""
        ...


@pytest.fixture
def kamcmd(kamailio_binaries: tuple[str, str]) -> KamcmdRunner:
    """The :func:`run_kamcmd` function (the real kamcmd is known to be available)."""
    return run_kamcmd


KamailioFactory = Callable[..., Kamailio]


@pytest.fixture
def kamailio_factory(kamailio_binaries: tuple[str, str]) -> Iterator[KamailioFactory]:
    """Start extra Kamailio instances: ``factory(binrpc=..., fifo=..., params=..., ...)``.

    Takes the :class:`Kamailio` arguments; returns the started instance.  With no
    listeners given, it gets one unix stream listener ``<workdir>/ctl.sock``
    (``instance.addresses[0].kamcmd``).  Every instance is stopped at teardown.
    """
    started: list[Kamailio] = []

    def factory(
        binrpc: Sequence[str] | None = None,
        fifo: Sequence[str] | None = None,
        params: Mapping[str, int | str | bool] | None = None,
        **kwargs: Any,
    ) -> Kamailio:
        """Start one extra instance (stopped at teardown) and return it."""
        instance = Kamailio(binrpc=binrpc, fifo=fifo, params=params, **kwargs)
        started.append(instance)
        instance.start()
        return instance

    try:
        yield factory
    finally:
        errors: list[str] = []
        for instance in reversed(started):
            try:
                instance.stop()
            except KamailioError as exc:
                errors.append(f"{instance!r}: {exc}")
        if errors:
            pytest.fail("kamailio_factory teardown: " + "; ".join(errors), pytrace=False)
