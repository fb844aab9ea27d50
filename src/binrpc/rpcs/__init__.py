"""Built-in RPC modules: ``core.*``, ``system.*`` and ``ctl.*`` (spec section 9).

:func:`builtin_registry` returns a fresh :class:`~binrpc._registry.Registry` holding all of them;
the server looks methods up in the user's registry first and in this one second.
"""

from __future__ import annotations

from .._registry import Registry
from . import core, ctl, system

__all__ = ["builtin_registry", "register_builtins"]


def register_builtins(registry: Registry) -> Registry:
    """Add every built-in RPC to ``registry`` and return it."""
    core.register(registry)
    ctl.register(registry)
    system.register(registry)
    return registry


def builtin_registry() -> Registry:
    """A new registry with the built-in RPCs only."""
    return register_builtins(Registry())
