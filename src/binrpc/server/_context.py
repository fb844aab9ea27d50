"""The narrow views that connections and listeners get of the server and of their
listener (never the whole :class:`~binrpc.server.Server` or its ``Listener``)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from .._context import ServerInfo
from .._limits import RpcLimits
from .._registry import MethodTable

if TYPE_CHECKING:
    from .._address import Address
    from ._access import ListenerPolicy, MethodFilter, RefusalLog
    from ._options import ServerOptions

__all__ = ["ListenerView", "ServerContext"]


class ListenerView(Protocol):
    """What a connection or a listener's reader uses of its listener."""

    @property
    def address(self) -> Address:
        """The address as configured (for log lines and ``ctl.who``)."""

    @property
    def payload(self) -> str:
        """``binrpc`` or ``fifo``."""

    @property
    def policy(self) -> ListenerPolicy:
        """The access rules."""

    @property
    def methods(self) -> Any:
        """The listener's method table, or None for the server's."""

    @property
    def method_filter(self) -> MethodFilter | None:
        """The policy's method rules, or None."""

    @property
    def refusals(self) -> RefusalLog | None:
        """The rate-limited log of refused peers."""

    @property
    def local_host(self) -> str:
        """The local address (``ctl.who``)."""

    @property
    def local_port(self) -> str:
        """The local port (``ctl.who``)."""


class ServerContext(Protocol):
    """What a connection or a listener may ask of the server that owns it."""

    @property
    def options(self) -> ServerOptions:
        """The server's options (limits, timeouts)."""

    @property
    def methods(self) -> MethodTable:
        """Every method the server serves (a listener may serve fewer)."""

    @property
    def limits(self) -> RpcLimits:
        """Reply-size limits and autoconversion, from the options."""

    @property
    def closing(self) -> bool:
        """True once the server is shutting down: no new request is read."""

    @property
    def info(self) -> ServerInfo:
        """What the built-in RPCs may ask (``ctl.*``, ``core.kill``): ``ctx.server``."""

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` as a task that the server waits for (or cancels) at shutdown."""

    def add_connection(self, conn: object) -> bool:
        """Count a new stream connection. False: refused (shutting down, or
        ``max_connections`` open); the caller drops it."""

    def remove_connection(self, conn: object) -> None:
        """A connection counted by :meth:`add_connection` is gone."""
