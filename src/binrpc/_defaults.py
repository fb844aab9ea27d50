"""The default control socket, shared by the server (binrpcd) and the client (binrpc).

Kamailio's ctl module and kamcmd 1.5 (Debian build) both default to
``unixs:/var/run/kamailio//kamailio_ctl`` (the double slash is in the compiled-in string).
We use the same socket when we can, so ``binrpc`` talks to a real Kamailio out of the box
and ``kamcmd`` talks to ``binrpcd`` out of the box. An unprivileged user usually cannot
create ``/var/run/kamailio``; the server then falls back to a per-user path, and the client
looks there too:

1. ``$BINRPC_SOCKET`` when set (both sides);
2. ``unixs:/var/run/kamailio//kamailio_ctl`` when its directory exists and is writable, or can
   be created (server), or when the socket exists (client);
3. ``unixs:$XDG_RUNTIME_DIR/binrpc/binrpc_ctl`` when ``XDG_RUNTIME_DIR`` is set, else
   ``unixs:/tmp/binrpc-<uid>/binrpc_ctl``.

These functions only look at the file system (stat, access); they create nothing.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "KAMAILIO_CTL_ADDRESS",
    "default_client_address",
    "default_server_address",
    "user_ctl_address",
]

KAMAILIO_CTL_ADDRESS: Final = "unixs:/var/run/kamailio//kamailio_ctl"
"""kamcmd 1.5's and Kamailio 5.6.3's (Debian) default control socket."""

_KAMAILIO_DIR: Final = "/var/run/kamailio/"
ENV_VAR: Final = "BINRPC_SOCKET"


def user_ctl_address() -> str:
    """The per-user fallback socket (its directory may not exist yet)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = os.path.join(runtime, "binrpc") if runtime else f"/tmp/binrpc-{os.getuid()}"
    return f"unixs:{base}/binrpc_ctl"


def _can_create_in(directory: str) -> bool:
    if os.path.isdir(directory):
        return os.access(directory, os.W_OK | os.X_OK)
    parent = os.path.dirname(directory.rstrip("/")) or "/"
    return os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)


def default_server_address() -> str:
    """The address binrpcd listens on when neither --binrpc nor --fifo is given."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    if _can_create_in(_KAMAILIO_DIR):
        return KAMAILIO_CTL_ADDRESS
    return user_ctl_address()


def default_client_address() -> str:
    """The address ``binrpc`` talks to when no -s is given."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    if os.path.exists(KAMAILIO_CTL_ADDRESS.split(":", 1)[1]):
        return KAMAILIO_CTL_ADDRESS
    user = user_ctl_address()
    if os.path.exists(user.split(":", 1)[1]):
        return user
    return KAMAILIO_CTL_ADDRESS
