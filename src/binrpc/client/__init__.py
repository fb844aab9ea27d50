"""binrpc clients: the blocking :class:`Client` and the asyncio :class:`AsyncClient`.

Both share one I/O-free core (:mod:`binrpc.client._core`): request building, cookies, reply
reassembly and checks. ``AsyncClient`` is imported lazily so that a program using only the
blocking client never imports asyncio.

Results: :meth:`Client.call` returns the list of the reply's top-level values (always a list);
:meth:`Client.call_one` returns the single value of a one-value reply (``None`` when empty);
:meth:`Client.request` returns the raw :class:`Reply`. A fault raises :class:`~binrpc.Fault`.
"""

from __future__ import annotations

from ._core import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_REPLY_SIZE,
    DEFAULT_READ_TIMEOUT,
    Reply,
    Timeouts,
)
from ._errors import (
    BindError,
    CookieMismatch,
    ReceiveError,
    ReplyLost,
    ResolveError,
    SendError,
    UnexpectedPacket,
)
from ._sync import Client

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from ._async import AsyncClient

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_REPLY_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "AsyncClient",
    "BindError",
    "Client",
    "CookieMismatch",
    "FifoClient",
    "FifoReply",
    "ReceiveError",
    "Reply",
    "ReplyLost",
    "ResolveError",
    "SendError",
    "Timeouts",
    "UnexpectedPacket",
]


def __getattr__(name: str) -> Any:
    # loaded on first use: the one-shot binrpc path must not pay for asyncio or the FIFO code
    if name == "AsyncClient":
        from ._async import AsyncClient

        return AsyncClient
    if name == "FifoClient":
        from ._fifo_client import FifoClient

        return FifoClient
    if name == "FifoReply":
        from .._fifo_wire import FifoReply

        return FifoReply
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
