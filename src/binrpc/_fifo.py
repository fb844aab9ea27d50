"""The FIFO protocol's former single module, now split (issue 11): re-exports only.

temporary: removed when the restructuring is merged.

``_fifo_wire`` (framing, requests, escapes, status lines, the client side), ``_fifo_context``
(FifoContext).
"""

from __future__ import annotations

from ._fifo_context import FifoContext, FifoStruct
from ._fifo_wire import (
    DEFAULT_MAX_REQUEST_SIZE,
    MAX_REASON,
    PIPE_BUF,
    FifoFramer,
    FifoReply,
    FifoRequest,
    FifoRequestError,
    FifoTooLarge,
    build_fifo_request,
    datagram_request,
    escape,
    escape_param,
    format_param,
    parse_fifo_reply,
    parse_fifo_request,
    render_status,
    unescape,
)

__all__ = [
    "DEFAULT_MAX_REQUEST_SIZE",
    "MAX_REASON",
    "PIPE_BUF",
    "FifoContext",
    "FifoFramer",
    "FifoReply",
    "FifoRequest",
    "FifoRequestError",
    "FifoStruct",
    "FifoTooLarge",
    "build_fifo_request",
    "datagram_request",
    "escape",
    "escape_param",
    "format_param",
    "parse_fifo_reply",
    "parse_fifo_request",
    "render_status",
    "unescape",
]
