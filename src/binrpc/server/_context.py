"""The narrow view of the server that its connections and listeners get."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

from .._rpc import MethodTable, RpcLimits, ServerInfo

if TYPE_CHECKING:
    from ._options import ServerOptions

__all__ = ["ServerContext"]


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
