"""Executing one command line (alias, builtin or RPC) and printing it like kamcmd.

Shared by the one-shot mode, the interactive mode and ``--batch``. The only I/O is through
the :class:`Client` given and the two output streams.
"""

from __future__ import annotations

import os

from .._codec import MsgType
from .._errors import (
    E_CORRUPTED,
    ConnectError,
    ConnectionClosed,
    DecodeError,
    LocalProtocolError,
    PacketTooLarge,
    RemoteProtocolError,
    TransportError,
    TransportTimeout,
)
from ..client._errors import (
    BindError,
    CookieMismatch,
    ReceiveError,
    ResolveError,
    SendError,
    UnexpectedPacket,
)
from ._argtype import TypedArgError, kamcmd_value, typed_value
from ._commands import ALIASES as _ALIASES
from ._commands import BUILTIN_DOCS, BUILTINS, alias_help, find_alias, license_text
from ._options import Options
from ._render import (
    Rendered,
    ReplyFormat,
    hexdump,
    packet_line,
    render_default,
    render_fault,
    to_json,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO, Final

    from .._address import Address, AddressError
    from .._values import Value
    from ..client import Client, Reply

__all__ = ["EXIT_ERROR", "EXIT_FAULT", "EXIT_OK", "Quit", "Runner", "error_message"]

EXIT_OK: Final = 0
EXIT_FAULT: Final = 1
EXIT_ERROR: Final = 255
MAX_ARGS: Final = 256


class Quit(Exception):
    """``quit`` / ``exit`` was typed."""


def _strerror(code: int | None) -> str:
    return os.strerror(code or 0)


def error_message(exc: BaseException, address: Address) -> str:
    """kamcmd's stderr text for a transport or protocol error (spec kamcmd 3.8)."""
    if isinstance(exc, ResolveError):
        return f"ERROR: could not resolve {exc.host}\n"
    if isinstance(exc, BindError):
        return (
            f"ERROR: could not bind the unix socket to {exc.path}: "
            f"{_strerror(exc.errno)} ({exc.errno or 0})\n"
        )
    if isinstance(exc, TransportTimeout):
        return f"ERROR: timeout: {exc.strerror or exc}\n"
    if isinstance(exc, ConnectError):
        if address.proto in ("unixs", "unixd"):
            path = address.path
            return (
                f"ERROR: connect_unix_sock: connect({path}): "
                f"{_strerror(exc.errno)} [{exc.errno or 0}]\n"
            )
        return f"ERROR: connect: {_strerror(exc.errno)}\n"
    if isinstance(exc, SendError):
        return f"ERROR: send packet failed: {_strerror(exc.errno)} ({exc.errno or 0})\n"
    if isinstance(exc, ConnectionClosed):
        return "ERROR: read reply failed: Success (0)\n"
    if isinstance(exc, ReceiveError):
        return f"ERROR: read reply failed: {_strerror(exc.errno)} ({exc.errno or 0})\n"
    if isinstance(exc, CookieMismatch):
        return (
            f"bad reply, cookie doesn't match: sent {exc.sent & 0xFFFFFFFF:x} and received "
            f" {exc.received:x}\nERROR: cookie does not match\n"
        )
    if isinstance(exc, PacketTooLarge):
        return "ERROR: reply too big\n"
    if isinstance(exc, UnexpectedPacket):
        return "ERROR: not a reply\n"
    if isinstance(exc, DecodeError):
        text = exc.text if exc.code == E_CORRUPTED else str(exc)
        return f"ERROR while parsing the reply: {text}\n"
    if isinstance(exc, TransportError | RemoteProtocolError):
        return f"ERROR: {exc}\n"
    if isinstance(exc, LocalProtocolError):
        return f"ERROR while building the packet: {exc}\n"
    return f"ERROR: {exc}\n"


def address_error_message(text: str, exc: AddressError) -> str:
    """kamcmd's message for a ``-s`` value that does not parse."""
    if "longer than" in str(exc):
        path = text.split(":", 1)[1] if ":" in text else text
        return f"ERROR: connect_unix_sock: name too long ({len(path.encode())} > 104): {path}\n"
    return f"ERROR: error parsing server socket address {text}\n"


class Runner:
    """Runs commands on one client and prints the results.

    Args:
        client: the connection (not yet necessarily open).
        opts: the parsed options (format, verbosity, json, typed, kamcmd_exit).
        out: binary stdout; err: a callable writing text to stderr.
        prefix: put in front of every stdout line (several ``-s``).
    """

    def __init__(
        self,
        client: Client,
        opts: Options,
        out: BinaryIO,
        err: Callable[[str], object],
        *,
        prefix: bytes = b"",
    ) -> None:
        self.client = client
        self.opts = opts
        self.out = out
        self.err = err
        self.prefix = prefix
        self.methods: list[str] | None = None
        self.address = str(client.address)
        self._line_start = True

    # -- output ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.prefix:
            lines = data.split(b"\n")
            buf = bytearray()
            for k, line in enumerate(lines):
                if self._line_start and (line or k < len(lines) - 1):
                    buf += self.prefix
                buf += line
                if k < len(lines) - 1:
                    buf += b"\n"
                    self._line_start = True
                elif line:
                    self._line_start = False
            data = bytes(buf)
        self.out.write(data)

    def _fault_status(self) -> int:
        return EXIT_OK if self.opts.kamcmd_exit else EXIT_FAULT

    # -- commands ----------------------------------------------------------------------------
    def params(self, words: list[str]) -> list[Value]:
        convert = typed_value if self.opts.typed else kamcmd_value
        return [convert(w) for w in words]

    def run(self, words: list[str], *, interactive: bool = False) -> int:
        """Run one command (method/alias/builtin + arguments); return its exit status.

        Raises:
            Quit: ``quit`` or ``exit``.
        """
        name, args = words[0], words[1:]
        fmt = self.opts.format
        alias = find_alias(name)
        if alias is not None:
            name = alias.method
            if fmt is None and alias.format is not None:
                fmt = alias.format.encode()
        if name in BUILTINS:
            return self.builtin(name, args)
        if len(args) > MAX_ARGS:
            if interactive:
                self.write(
                    b"ERROR: too many arguments (%d), no more than %d allowed\n"
                    % (len(args), MAX_ARGS)
                )
                return EXIT_ERROR
            self.err(f"ERROR: too many args {len(args)}, only {MAX_ARGS} allowed\n")
            return EXIT_ERROR
        try:
            params = self.params(args)
        except TypedArgError as exc:
            self.err(f"ERROR: bad typed argument {exc}\n")
            return EXIT_ERROR
        return self.rpc(name, params, fmt)

    def _request(self, method: str, params: list[Value]) -> Reply:
        trace = None
        if self.opts.verbose >= 3:

            def trace(chunk: bytes, offset: int) -> None:
                self.write(hexdump(chunk, offset))

        return self.client.request(method, params, trace=trace)

    def rpc(self, method: str, params: list[Value], fmt: bytes | None) -> int:
        try:
            reply = self._request(method, params)
        except (TransportError, RemoteProtocolError, LocalProtocolError) as exc:
            self.err(error_message(exc, self.client.address))
            return EXIT_ERROR
        if self.opts.verbose >= 2:
            self.write(packet_line(reply.type, len(reply.body), reply.cookie))
        if self.opts.json:
            status = self._print_json(reply)
        elif reply.type == MsgType.FAULT:
            status = self._print(render_fault(reply.body), formatted=True)
            if status == EXIT_OK:
                status = self._fault_status()
        elif fmt is not None:
            status = self._print(ReplyFormat(fmt).render(reply.body), formatted=True)
        else:
            status = self._print(render_default(reply.body), formatted=False)
        if self.opts.verbose >= 1:
            self.write(b".\n")
        return status

    def _print(self, rendered: Rendered, *, formatted: bool) -> int:
        self.write(rendered.out)
        if rendered.error is not None:
            if formatted:
                self.write(b"\n")
            self.err(rendered.error.message() + "\n")
            return EXIT_ERROR
        return EXIT_OK

    def _print_json(self, reply: Reply) -> int:
        try:
            if reply.type == MsgType.FAULT:
                fault = reply.fault()
                doc: dict[str, object] = {"error": {"code": fault.code, "message": fault.message}}
                status = self._fault_status()
            else:
                doc = {"result": [to_json(v) for v in reply.values()]}
                status = EXIT_OK
        except DecodeError as exc:
            self.err(f"ERROR while parsing the reply: {exc}\n")
            return EXIT_ERROR
        if self.prefix:
            doc = {"node": self.address, **doc}
        import json  # only --json needs it (start-up of the one-shot path)

        line = json.dumps(doc, ensure_ascii=False, separators=(", ", ": "))
        self.out.write(line.encode("utf-8", "surrogateescape") + b"\n")
        return status

    # -- builtins ----------------------------------------------------------------------------
    def builtin(self, name: str, args: list[str]) -> int:
        if name in ("quit", "exit"):
            raise Quit
        if name in ("warranty", "license"):
            self.write(license_text().encode())
            return EXIT_OK
        if name == "version":  # unreachable: shadowed by the alias, as in kamcmd
            from ._commands import version_text

            self.write(version_text().encode())
            return EXIT_OK
        # help / ?
        try:
            params = self.params(args)
        except TypedArgError as exc:
            self.err(f"ERROR: bad typed argument {exc}\n")
            return EXIT_ERROR
        if not params or not isinstance(params[0], str):
            return self.list_commands()
        topic = params[0]
        alias = find_alias(topic)
        if alias is not None:
            self.write(alias_help(alias).encode())
            return EXIT_OK
        if topic in BUILTINS:
            self.write(f"builtin command: {BUILTIN_DOCS[topic]}\n".encode())
            return EXIT_OK
        try:
            reply = self._request("system.methodHelp", params)
        except (TransportError, RemoteProtocolError, LocalProtocolError) as exc:
            self.err(error_message(exc, self.client.address))
            self.write(f"error: no such command {topic}\n".encode("utf-8", "surrogateescape"))
            return EXIT_OK
        if self.opts.json:
            return self._print_json(reply)
        if reply.type == MsgType.FAULT:
            status = self._print(render_fault(reply.body), formatted=True)
            return status if status != EXIT_OK else self._fault_status()
        return self._print(render_default(reply.body), formatted=False)

    def fetch_methods(self) -> list[str] | None:
        """``system.listMethods`` (strings only), cached; None on a transport error."""
        if self.methods is not None:
            return self.methods
        try:
            reply = self.client.request("system.listMethods", ())
        except (TransportError, RemoteProtocolError):
            return None
        if reply.type == MsgType.FAULT:
            self.write(render_fault(reply.body).out)
            self.methods = []
            return self.methods
        try:
            values = reply.values()
        except DecodeError:
            return None
        self.methods = [v for v in values if isinstance(v, str)]
        return self.methods

    def list_commands(self) -> int:
        methods = self.fetch_methods()
        if methods is None:
            return EXIT_ERROR
        out = bytearray()
        for m in methods:
            out += m.encode("utf-8", "surrogateescape") + b"\n"
        for a in _ALIASES:
            out += f"alias: {a.name}\n".encode()
        for b in BUILTINS:
            out += f"builtin: {b}\n".encode()
        self.write(bytes(out))
        return EXIT_OK
