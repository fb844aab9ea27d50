"""Server options: the ctl module parameters plus the limits ctl hard-codes or lacks.

Each field also says how ``binrpcd`` sets it (its metadata): a :class:`Setting` (the flag
``--name-with-dashes`` and the TOML key ``name``, whose type, default and validation come from
the field itself), or under :data:`NO_SETTING` the reason it has none. binrpcd derives its
command line and configuration file from these (see :mod:`binrpc.cli._daemon_config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .._framing import DEFAULT_MAX_PACKET_SIZE
from .._limits import RpcLimits
from ._access import Listen

__all__ = ["MODE", "NO_SETTING", "SETTING", "ServerOptions", "Setting", "not_a_setting", "setting"]

SETTING = "binrpcd"
"""The metadata key of a field's :class:`Setting`."""
NO_SETTING = "binrpcd_excluded"
"""The metadata key of the reason a field has no binrpcd setting."""
MODE = "mode"
"""The :attr:`Setting.kind` of an int written in octal (file permissions)."""


@dataclass(frozen=True)
class Setting:
    """How binrpcd exposes a field of :class:`ServerOptions`.

    Attributes:
        help: the flag's ``--help`` text; ``{default}`` stands for the field's default.
        metavar: the flag's argument in ``--help`` (None: derived from the field's type).
        kind: how a flag or TOML value is read, when the field's type does not tell
            (:data:`MODE`); None: from the type.
    """

    help: str
    metavar: str | None = None
    kind: str | None = None


def setting(help: str, *, metavar: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """The metadata of a field that binrpcd sets (see :class:`Setting`)."""
    return {SETTING: Setting(help, metavar, kind)}


def not_a_setting(reason: str) -> dict[str, Any]:
    """The metadata of a field that binrpcd does not set, and why."""
    return {NO_SETTING: reason}


_LIBRARY_ONLY = "not a ctl parameter: set from Python only (binrpcd has no flag for it yet)"


@dataclass(frozen=True)
class ServerOptions:
    """Everything that can be tuned on a :class:`~binrpc.server.Server`.

    The first group has the names, units and defaults of the Kamailio ``ctl`` module
    parameters (spec 7.1); the second group are limits ctl hard-codes (or lacks).

    Every timeout is a number of seconds > 0 (``shutdown_timeout``: >= 0); those that may be
    None (no limit) also take ``math.inf``, kept as None. Every count and byte size is an int
    >= 1, except the two ``*_max_body_size`` options, where ctl reads <= 0 as its fallback.
    Anything else (0 or a negative timeout, NaN, a bool, a string) raises ValueError naming
    the option: a zero timeout or size would close every connection as it opens.
    """

    mode: int = field(
        default=0o600,
        metadata=setting(
            "permissions of unix socket files and FIFOs, octal (default {default})", kind=MODE
        ),
    )
    """Permissions of unix socket files and FIFO files (ctl ``mode``). 0 leaves socket files
    as created (umask) and gives FIFO files 0600. Outside 0..0o7777: ValueError."""
    user: str | int | None = field(
        default=None, metadata=setting("owner of unix socket files and FIFOs (name or uid)")
    )
    """Owner of unix socket files and FIFO files: a user name or a uid (ctl ``user``). Unlike
    ctl, setting only ``user`` or only ``group`` is enough to chown sockets too."""
    group: str | int | None = field(
        default=None, metadata=setting("group of unix socket files and FIFOs (name or gid)")
    )
    """Group of unix socket files and FIFO files: a group name or a gid (ctl ``group``)."""
    autoconversion: bool = field(
        default=False, metadata=setting("convert parameters to the types RPCs ask for")
    )
    """Convert scanned parameters to the type the RPC asks for (ctl ``autoconversion``)."""
    binrpc_buffer_size: int = field(
        default=1024, metadata=setting("printf scratch ({default})", metavar="BYTES")
    )
    """Bytes of printf scratch: longer ``rpl_printf``/``struct_printf`` output is dropped
    (ctl ``binrpc_buffer_size``; bytes, not KiB)."""
    binrpc_max_body_size: int = field(
        default=32, metadata=setting("top-level reply ({default})", metavar="KIB")
    )
    """KiB of top-level reply (ctl ``binrpc_max_body_size``; <= 0 means 4). Bounds what one
    ``add`` sequence can make the server build; struct contents are limited separately."""
    binrpc_struct_max_body_size: int = field(
        default=8, metadata=setting("per struct ({default})", metavar="KIB")
    )
    """KiB per struct (ctl ``binrpc_struct_max_body_size``; <= 0 means 1)."""

    max_connections: int = field(
        default=128, metadata=setting("open stream connections ({default})", metavar="N")
    )
    """Open stream connections (all stream listeners together); a connection beyond this is
    closed as soon as it is accepted. ctl's fixed limit; bounds memory and file descriptors."""
    idle_timeout: float | None = field(
        default=None, metadata=setting("close idle streams ({default})")
    )
    """Seconds a stream connection may stay silent with nothing in progress before it is
    closed. None (the ctl behaviour) never reaps idle or dead clients."""
    write_timeout: float | None = field(
        default=5.0,
        metadata=setting("close a stream whose client does not read its reply ({default})"),
    )
    """Seconds a reply may wait for a client that does not read before the connection is
    closed. Replies are never truncated (ctl silently truncates them after 10 ms)."""
    request_timeout: float | None = field(
        default=None,
        metadata=setting(
            "close a stream whose request is incomplete this long after its start ({default})"
        ),
    )
    """Seconds a stream client may take to send one request: started when the first byte of
    a request packet is buffered, cleared when the packet is complete; on expiry the
    connection is closed (and logged). Against slowloris clients, which ``idle_timeout``
    does not catch (they are never silent). None (the ctl behaviour): no deadline. binrpc
    streams only (FIFO requests have ``fifo_partial_timeout`` / ``idle_timeout``)."""
    call_timeout: float | None = field(
        default=None,
        metadata=setting(
            "cancel an async RPC running longer, fault 500 'call timed out' ({default})"
        ),
    )
    """Seconds an async handler may run; then it is cancelled and the client gets fault 500
    ``call timed out`` (logged as a warning). A synchronous handler runs inline in the event
    loop and cannot be interrupted. None (the ctl behaviour): no limit."""
    max_pending_per_connection: int = field(
        default=128,
        metadata=setting(
            "requests in progress or replies waiting per stream before reading stops ({default})",
            metavar="N",
        ),
    )
    """Requests of one stream connection that may be in progress or have a reply waiting
    (for an earlier async reply, or for the client to read). When reached, the server stops
    reading that connection (unread requests stay in the socket) until replies are written.
    ctl handles one request at a time per process; this bounds the Tasks and replies a
    pipelining client can make the server hold."""
    max_request_size: int = field(
        default=DEFAULT_MAX_PACKET_SIZE,
        metadata=not_a_setting(_LIBRARY_ONLY),
    )
    """Largest request packet (header + body). ctl reads each connection into a 65535-byte
    buffer; a bigger request closes the stream without a reply and is never buffered. For the
    FIFO protocol: the bytes buffered without a complete request (a stream is then closed, a
    FIFO file's buffer discarded)."""
    shutdown_timeout: float = field(default=5.0, metadata=not_a_setting(_LIBRARY_ONLY))
    """Seconds :meth:`~binrpc.server.Server.close` waits for running async handlers so that
    their replies can still be sent; then they are cancelled (0: at once)."""
    process_name: str | None = field(
        default=None, metadata=not_a_setting("binrpcd names itself (binrpcd)")
    )
    """The name ``core.ps``/``core.psx`` show for this process (``main process - NAME``);
    None: the program's file name (``sys.argv[0]``)."""
    builtins: bool = field(
        default=True, metadata=setting("do not serve the built-in core.*/system.*/ctl.* RPCs")
    )
    """Also serve the built-in ``core.*``, ``system.*`` and ``ctl.*`` RPCs (the user's
    registry wins for a name it defines too)."""
    fifo: tuple[str | Listen, ...] = field(
        default=(),
        metadata=setting(
            "FIFO text-protocol listener: a FIFO file (/tmp/ser_fifo, fifo:/tmp/ser_fifo, "
            "a bare name relative to the working directory), udp:*:2050, tcp:127.0.0.1:2050, "
            "unixs:/path, unixd:/path; host:port means udp (repeatable)",
            metavar="ADDR",
        ),
    )
    """FIFO text-protocol listeners (ctl ``fifo``), in the syntax of that parameter: a path or
    a bare name is a FIFO file (``/tmp/ser_fifo``, ``fifo:/tmp/ser_fifo``, ``ser_fifo``
    relative to the working directory), ``host:port`` is UDP, and ``udp:``/``tcp:``/
    ``unixs:``/``unixd:`` run the FIFO protocol over that socket. Setting only FIFO listeners
    disables the default binrpc socket (spec 7.3). Items may be :class:`Listen` objects (with
    access rules); their ``fifo`` flag is implied."""
    fifo_reply_dir: str = field(
        default="/tmp",
        metadata=setting(
            "directory of the reply FIFOs named in FIFO-file requests ({default})", metavar="DIR"
        ),
    )
    """Directory of the reply FIFOs named in requests to a FIFO file (ctl hard-codes
    ``/tmp``). Only names without ``.``, ``/`` and ``\\`` are accepted, and only an existing,
    single-link FIFO that is not a symlink is written to."""
    fifo_reply_timeout: float = field(
        default=5.0,
        metadata=setting("give up a reply to a reply FIFO whose reader does not read ({default})"),
    )
    """Seconds a reply may wait for a client that opened its reply FIFO but does not read it
    (the pipe buffer is full); then the rest is dropped and logged. The wait never blocks
    other clients (ctl blocks its whole process). A reply FIFO that nobody opens is retried
    4 times, 80 ms apart, as in ctl."""
    fifo_partial_timeout: float | None = field(
        default=2.0,
        metadata=not_a_setting(_LIBRARY_ONLY),
    )
    """Seconds an incomplete request may stay in a FIFO file's buffer (a writer that died
    half-way, or wrote no empty line) before it is discarded, so that the requests of the next
    clients are not glued to it. None: keep it (ctl keeps it forever)."""

    def __post_init__(self) -> None:
        mode: Any = self.mode
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            # chmod would mask it: -1 gives 07777 (world-writable, setuid, setgid, sticky)
            raise ValueError(f"mode must be an int from 0 to 0o7777, got {mode!r}")
        for name in _OPTIONAL_TIMEOUTS:
            if _seconds(self, name, none_ok=True) == math.inf:
                # no limit (and no timer: uvloop refuses an infinite delay)
                object.__setattr__(self, name, None)
        _seconds(self, "fifo_reply_timeout")
        _seconds(self, "shutdown_timeout", zero_ok=True)
        for name in _POSITIVE_SIZES:
            _integer(self, name, minimum=1)
        for name in _CTL_SIZES:
            _integer(self, name)
        # a single address given as a string, or a list: keep a tuple of strings
        fifo: Any = self.fifo
        if isinstance(fifo, str | Listen):
            object.__setattr__(self, "fifo", (fifo,))
        elif not isinstance(fifo, tuple):
            object.__setattr__(self, "fifo", tuple(fifo))

    def limits(self) -> RpcLimits:
        """The per-request limits, in bytes, with ctl's fallbacks for values <= 0."""
        body = self.binrpc_max_body_size if self.binrpc_max_body_size > 0 else 4
        struct = self.binrpc_struct_max_body_size if self.binrpc_struct_max_body_size > 0 else 1
        return RpcLimits(
            buffer_size=self.binrpc_buffer_size,
            max_body_size=body * 1024,
            struct_max_body_size=struct * 1024,
            autoconversion=bool(self.autoconversion),
        )

    def with_changes(self, **changes: Any) -> ServerOptions:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


_OPTIONAL_TIMEOUTS = (
    "idle_timeout",
    "write_timeout",
    "request_timeout",
    "call_timeout",
    "fifo_partial_timeout",
)
"""Seconds > 0, or None (or ``math.inf``, kept as None) for no limit."""
_POSITIVE_SIZES = (
    "binrpc_buffer_size",
    "max_connections",
    "max_pending_per_connection",
    "max_request_size",
)
"""Counts and byte sizes >= 1: 0 would refuse every connection, request or printf."""
_CTL_SIZES = ("binrpc_max_body_size", "binrpc_struct_max_body_size")
"""Any int: ctl replaces a value <= 0 by its fallback (see :meth:`ServerOptions.limits`)."""


def _seconds(
    options: ServerOptions, name: str, *, none_ok: bool = False, zero_ok: bool = False
) -> Any:
    """Check the timeout option ``name`` and return its value.

    Raises:
        ValueError: not a number (a bool, NaN), not > 0 (>= 0 with ``zero_ok``), None without
            ``none_ok``, or infinite without ``none_ok`` (a deadline that never comes).
    """
    value: Any = getattr(options, name)
    if value is None and none_ok:
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if (
        not number
        or not (value >= 0 if zero_ok else value > 0)
        or (value == math.inf and not none_ok)
    ):
        wanted = "a number of seconds " + (">= 0" if zero_ok else "> 0")
        wanted += " or None (no limit)" if none_ok else ""
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def _integer(options: ServerOptions, name: str, *, minimum: int | None = None) -> None:
    """Check the size option ``name``: an int (not a bool), at least ``minimum`` if given.

    Raises:
        ValueError: otherwise.
    """
    value: Any = getattr(options, name)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or (minimum is not None and value < minimum)
    ):
        wanted = "an int" + (f" >= {minimum}" if minimum is not None else "")
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
