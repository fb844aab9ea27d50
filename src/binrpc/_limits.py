"""The reply-size limits and scan options of a server: the ctl module's parameters. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_STRUCT_MAX_BODY_SIZE",
    "RpcLimits",
]

DEFAULT_BUFFER_SIZE: Final = 1024
"""``binrpc_buffer_size``: bytes of printf scratch for ``rpl_printf``/``struct_printf``."""
DEFAULT_MAX_BODY_SIZE: Final = 32 * 1024
"""``binrpc_max_body_size`` (32 KiB): the top-level reply buffer of the ctl module."""
DEFAULT_STRUCT_MAX_BODY_SIZE: Final = 8 * 1024
"""``binrpc_struct_max_body_size`` (8 KiB): each struct's own buffer in the ctl module."""


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Reply-size limits and scan options of one server (the ctl module parameters).

    Attributes:
        buffer_size: ``binrpc_buffer_size`` in bytes: printf scratch. ``rpl_printf`` and
            ``struct_printf`` output that does not fit (with its NUL) is silently dropped.
        max_body_size: ``binrpc_max_body_size`` in **bytes**: the top-level reply buffer
            (top-level values + 2 bytes per top-level struct). ``add`` beyond it sends fault
            500 "... buffer too small (overflow) (-2)"; ``rpl_printf`` beyond it returns -1.
        struct_max_body_size: ``binrpc_struct_max_body_size`` in **bytes**: every struct's own
            buffer (its members, 2 bytes per directly nested struct). Overflow drops the member
            silently (-1), like ctl.
        autoconversion: convert every scanned value as if each format char had ``.``.
    """

    buffer_size: int = DEFAULT_BUFFER_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    struct_max_body_size: int = DEFAULT_STRUCT_MAX_BODY_SIZE
    autoconversion: bool = False


DEFAULT_LIMITS: Final = RpcLimits()
