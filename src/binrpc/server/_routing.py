"""The one routing rule: :func:`route` looks a request's method up for one listener, for
binrpc and FIFO requests alike, on every transport; the caller renders the fault in its own
protocol. Sans-I/O: nothing here touches a socket or the event loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Protocol

from .._registry import Method, MethodTable

__all__ = [
    "NOT_FOUND",
    "REFUSED",
    "MethodRefuser",
    "Routing",
    "refusal_text",
    "route",
]

log = logging.getLogger("binrpc.server")

REFUSED: Final = 403
"""The fault code of a method the listener's policy refuses (a deny list, an allow list)."""
NOT_FOUND: Final = 500
"""The fault code of a method nobody registered (ctl's: 500, not 404)."""


class MethodRefuser(Protocol):
    """A listener's method allow/deny rules."""

    def refuses(self, name: str) -> bool:
        """True if the rules (not a missing registration) keep ``name`` from this listener."""


@dataclass(frozen=True, slots=True)
class Routing:
    """What one listener serves.

    Attributes:
        methods: the listener's method table (the server's, or filtered by its policy).
        refuser: the policy's method rules, or None (everything allowed).
        where: the listener, for log lines.
    """

    methods: MethodTable
    refuser: MethodRefuser | None = None
    where: str = ""


def route(routing: Routing, name: str, peer: str) -> Method | int:
    """The method that runs request ``name`` on this listener, or the fault code to answer:

    * :data:`REFUSED` (403): the listener's policy refuses it (logged as a warning, with
      ``peer``); the fault text says "not allowed on this listener";
    * :data:`NOT_FOUND` (500): nobody registered it.
    """
    method = routing.methods.get(name)
    if method is not None:
        return method
    refuser = routing.refuser
    if refuser is not None and refuser.refuses(name):
        log.warning("%s: refused method %s from %s", routing.where, name, peer)
        return REFUSED
    return NOT_FOUND


def refusal_text(name: str) -> str:
    """The fault text of a method refused by the listener's policy (both protocols)."""
    return f"method {name} not allowed on this listener"
