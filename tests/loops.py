"""The event loops the transport tests run on: asyncio's default loop and uvloop.

The server's I/O differs by loop (uvloop has its own stream and datagram machinery), so the
tests that exercise transports take a ``loop`` parameter (``LOOPS``) instead of the whole
suite running twice. uvloop is in the ``dev`` extra, so CI has it; where it cannot be
imported its tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

__all__ = ["LOOPS", "loop_factory", "require_loop"]

LOOPS = ("asyncio", "uvloop")


def require_loop(name: str) -> None:
    """Skip (fail under CI) the current test when the loop ``name`` is not available."""
    if name != "uvloop":
        return
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("uvloop is not installed (it is in the dev extra)", pytrace=False)
        pytest.skip("uvloop is not installed")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-event-loop function for ``name`` (after :func:`require_loop`)."""
    require_loop(name)
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop
