"""Executing one command line (alias, builtin or RPC) and printing it like kamcmd.

Shared by the one-shot mode, the interactive mode and ``--batch``. The only I/O is through
the :class:`Client` given and the two output streams.
"""

from __future__ import annotations

import os

from .._codec import MsgType
from .._errors import (
    E_CORRUPTED,
    BinrpcError,
    ConnectError,
    ConnectionClosed,
    DecodeError,
    LocalProtocolError,
    PacketTooLarge,
    RemoteProtocolError,
    TransportError,
    TransportTimeout,
)
from ..client._core import Reply as _Reply
from ..client._errors import (
    BindError,
    CookieMismatch,
    ReceiveError,
    ReplyLost,
    ResolveError,
    SendError,
    UnexpectedPacket,
)
from ._argtype import TypedArgError, kamcmd_value, typed_value
from ._commands import ALIAS_BY_NAME, BUILTIN_DOCS, BUILTINS, alias_help, find_alias, license_text
from ._commands import ALIASES as _ALIASES
from ._flat import render_simple
from ._options import Options

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import BinaryIO, Final, TypeAlias

    from .._address import Address, AddressError
    from .._values import Value
    from ..client import Client, Reply
    from ._render import Rendered

    Local: TypeAlias = Callable[[], int]
    """A command run locally (a builtin, an argument error): returns its exit status."""
else:
    Local = object
__all__ = [
    "EXIT_ERROR",
    "EXIT_FAULT",
    "EXIT_OK",
    "Call",
    "Local",
    "Quit",
    "Runner",
    "error_message",
    "worst_status",
]

_BUILTIN_SET: Final = frozenset(BUILTINS)

EXIT_OK: Final = 0
EXIT_FAULT: Final = 1
EXIT_ERROR: Final = 255
MAX_ARGS: Final = 256


def worst_status(statuses: Iterable[int]) -> int:
    """The status of several commands: 255 if any hit an error, else 1 if any fault, else 0
    (the numeric maximum of the statuses 0, 1 and 255)."""
    return max(statuses, default=EXIT_OK)


class Quit(Exception):
    """``quit`` / ``exit`` was typed."""


RPC: Final = 0  # Call kinds: print the reply (-f, --json, faults ...)
HELP: Final = 1  # `help <method>`: system.methodHelp
METHODS: Final = 2  # `help`: system.listMethods, then the aliases and builtins


class Call:
    """A command line that sends one request: what to send, and how to print its reply."""

    __slots__ = ("fmt", "kind", "method", "params")

    def __init__(
        self, kind: int, method: str, params: list[Value], fmt: bytes | None = None
    ) -> None:
        self.kind = kind
        self.method = method
        self.params = params
        self.fmt = fmt


def _strerror(code: int | None) -> str:
    return os.strerror(code or 0)


def error_message(exc: BaseException, address: Address) -> str:
    """kamcmd's stderr text for a transport or protocol error (spec kamcmd 3.8)."""
    if isinstance(exc, ConnectError):
        return _connect_message(exc, address)
    if isinstance(exc, TransportError):
        return _transport_message(exc)
    if isinstance(exc, RemoteProtocolError):
        return _reply_message(exc)
    if isinstance(exc, LocalProtocolError):
        return f"ERROR while building the packet: {exc}\n"
    return f"ERROR: {exc}\n"


def _connect_message(exc: ConnectError, address: Address) -> str:
    """Resolving, binding the reply socket, connecting (a TLS handshake included)."""
    if isinstance(exc, ResolveError):
        return f"ERROR: could not resolve {exc.host}\n"
    if isinstance(exc, BindError):
        return (
            f"ERROR: could not bind the unix socket to {exc.path}: "
            f"{_strerror(exc.errno)} ({exc.errno or 0})\n"
        )
    if address.proto in ("unixs", "unixd"):
        path = address.path
        return (
            f"ERROR: connect_unix_sock: connect({path}): "
            f"{_strerror(exc.errno)} [{exc.errno or 0}]\n"
        )
    if not exc.errno and exc.strerror:  # TLS handshake failures carry their reason
        return f"ERROR: {exc.strerror}\n"
    return f"ERROR: connect: {_strerror(exc.errno)}\n"


def _transport_message(exc: TransportError) -> str:
    """A connection that fails after connecting: sending, receiving, a timeout."""
    if isinstance(exc, TransportTimeout):
        return f"ERROR: timeout: {exc.strerror or exc}\n"
    if isinstance(exc, SendError):
        return f"ERROR: send packet failed: {_strerror(exc.errno)} ({exc.errno or 0})\n"
    if isinstance(exc, ConnectionClosed):
        return "ERROR: read reply failed: Success (0)\n"
    if isinstance(exc, ReplyLost):
        return f"ERROR: {exc.strerror}\n"
    if isinstance(exc, ReceiveError):
        return f"ERROR: read reply failed: {_strerror(exc.errno)} ({exc.errno or 0})\n"
    return f"ERROR: {exc}\n"


def _reply_message(exc: RemoteProtocolError) -> str:
    """A reply that is not what binrpc allows."""
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
        self._plain = not opts.json and not opts.verbose  # default rendering, nothing else

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
        job = self.plan(words, interactive=interactive)
        if isinstance(job, Call):
            return self.show(job, self.execute(job))
        return job()

    def plan(self, words: list[str], *, interactive: bool = False) -> Call | Local:
        """What a command line does, without doing it (no I/O): a :class:`Call` to send, or a
        local action (a builtin, an argument error) returning the exit status.

        Raises:
            Quit: ``quit`` or ``exit``.
        """
        name, args = words[0], words[1:]
        fmt = self.opts.format
        alias = ALIAS_BY_NAME.get(name)
        if alias is not None:
            name = alias.method
            if fmt is None and alias.format is not None:
                fmt = alias.format.encode()
        if name in _BUILTIN_SET:
            return self._plan_builtin(name, args)
        if len(args) > MAX_ARGS:
            if interactive:
                text = b"ERROR: too many arguments (%d), no more than %d allowed\n" % (
                    len(args),
                    MAX_ARGS,
                )
                return lambda: self._fail_out(text)
            return self.failing(f"ERROR: too many args {len(args)}, only {MAX_ARGS} allowed\n")
        if not args:
            return Call(RPC, name, [], fmt)
        if self.opts.typed:
            try:
                params = [typed_value(w) for w in args]
            except TypedArgError as exc:
                return self.failing(f"ERROR: bad typed argument {exc}\n")
        else:
            params = [kamcmd_value(w) for w in args]
        return Call(RPC, name, params, fmt)

    def execute(self, call: Call) -> Reply | BinrpcError:
        """Send one call and wait for its reply (or the error that stands for it)."""
        try:
            return self._request(call.method, call.params)
        except (TransportError, RemoteProtocolError, LocalProtocolError) as exc:
            return exc

    def show(self, call: Call, result: Reply | BinrpcError) -> int:
        """Print the reply to ``call`` (or its error) as kamcmd does; return the exit status."""
        if call.kind == RPC:
            return self.show_rpc(result, call.fmt)
        if call.kind == HELP:
            return self._show_help(result, call.params[0])  # type: ignore[arg-type]
        return self._show_methods(result)

    def failing(self, message: str) -> Local:
        """A local job printing ``message`` on stderr (status 255)."""
        return lambda: self._fail(message)

    def _fail(self, message: str) -> int:
        self.err(message)
        self._json_argument_error(message)
        return EXIT_ERROR

    def _fail_out(self, text: bytes) -> int:
        if self.opts.json:  # stdout holds the documents only
            self._json_argument_error(text.decode())
        else:
            self.write(text)
        return EXIT_ERROR

    def _json_argument_error(self, message: str) -> None:
        """With ``--json``, the document of an error found before sending (``message``:
        the text for stderr)."""
        if self.opts.json:
            from ._jsondoc import error_document

            text = message.strip().removeprefix("ERROR: ")
            self.write_json(error_document("argument", text, self.address))

    def report(self, exc: BaseException) -> int:
        """Report a transport or protocol error: kamcmd's message on stderr and, with
        ``--json``, its document on stdout. Returns the exit status (255)."""
        self.err(error_message(exc, self.client.address))
        self._json_error(exc)
        return EXIT_ERROR

    def _json_error(self, exc: BaseException) -> None:
        if self.opts.json:
            from ._jsondoc import exception_document

            self.write_json(exception_document(exc, self.address))

    def write_json(self, doc: dict[str, object]) -> None:
        """Print one ``--json`` document (after ``"node"`` with several ``-s``)."""
        from ._jsondoc import json_line

        self.out.write(json_line(doc, self.address if self.prefix else None))

    def _request(self, method: str, params: list[Value]) -> Reply:
        trace = None
        if self.opts.verbose >= 3:
            from ._render import hexdump

            def trace(chunk: bytes, offset: int) -> None:
                self.write(hexdump(chunk, offset))

        return self.client.request(method, params, trace=trace)

    def show_rpc(self, reply: Reply | BinrpcError, fmt: bytes | None) -> int:
        """Print a method's reply (or error) through ``fmt`` or the default rendering."""
        if (
            fmt is None
            and type(reply) is _Reply
            and reply.type == MsgType.REPLY
            and self._plain
            and (fast := render_simple(reply.body)) is not None
        ):
            self.write(fast)  # the common case, first
            return EXIT_OK
        if isinstance(reply, BinrpcError):
            return self.report(reply)
        # the renderer is loaded when a reply needs it (start-up of one-shot calls)
        from ._render import ReplyFormat, packet_line, render_default, render_fault

        verbose = self.opts.verbose
        if verbose >= 2:
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
            fast = render_simple(reply.body)
            if fast is not None:
                self.write(fast)
                status = EXIT_OK
            else:
                status = self._print(render_default(reply.body), formatted=False)
        if verbose >= 1:
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
                from ._jsondoc import error_document

                fault = reply.fault()
                doc = error_document("fault", fault.message, self.address, code=fault.code)
                status = self._fault_status()
            else:
                from ._render import to_json

                doc = {"result": [to_json(v) for v in reply.values()]}
                status = EXIT_OK
        except DecodeError as exc:
            self.err(f"ERROR while parsing the reply: {exc}\n")
            self._json_error(exc)
            return EXIT_ERROR
        self.write_json(doc)
        return status

    # -- builtins ----------------------------------------------------------------------------
    def _plan_builtin(self, name: str, args: list[str]) -> Call | Local:
        if name in ("quit", "exit"):
            raise Quit
        if name in ("warranty", "license"):
            return lambda: self._write_ok(license_text(self.opts.program).encode())
        if name == "version":  # unreachable: shadowed by the alias, as in kamcmd
            from ._commands import version_text

            return lambda: self._write_ok(version_text(self.opts.program).encode())
        # help / ?
        try:
            params = self.params(args)
        except TypedArgError as exc:
            return self.failing(f"ERROR: bad typed argument {exc}\n")
        if not params or not isinstance(params[0], str):
            if self.methods is not None:
                return self.list_commands
            return Call(METHODS, "system.listMethods", [])
        topic = params[0]
        alias = find_alias(topic)
        if alias is not None:
            return lambda: self._write_ok(alias_help(alias).encode())
        if topic in BUILTINS:
            return lambda: self._write_ok(f"builtin command: {BUILTIN_DOCS[topic]}\n".encode())
        return Call(HELP, "system.methodHelp", params)  # params[0] is the topic

    def _write_ok(self, data: bytes) -> int:
        self.write(data)
        return EXIT_OK

    def _show_help(self, reply: Reply | BinrpcError, topic: str) -> int:
        if isinstance(reply, BinrpcError):
            self.report(reply)
            if not self.opts.json:
                self.write(f"error: no such command {topic}\n".encode("utf-8", "surrogateescape"))
            return EXIT_OK  # kamcmd's
        if self.opts.json:
            return self._print_json(reply)
        from ._render import render_default, render_fault

        if reply.type == MsgType.FAULT:
            status = self._print(render_fault(reply.body), formatted=True)
            return status if status != EXIT_OK else self._fault_status()
        return self._print(render_default(reply.body), formatted=False)

    def _show_methods(self, reply: Reply | BinrpcError) -> int:
        if self._methods_from(reply) is None:
            if isinstance(reply, BinrpcError):
                self._json_error(reply)
            return EXIT_ERROR
        return self.list_commands()

    def _methods_from(self, reply: Reply | BinrpcError) -> list[str] | None:
        """Cache the method list of a ``system.listMethods`` reply; None for an error."""
        if isinstance(reply, BinrpcError):
            return None
        if reply.type == MsgType.FAULT:
            from ._render import render_fault

            self.write(render_fault(reply.body).out)
            self.methods = []
            return self.methods
        try:
            values = reply.values()
        except DecodeError:
            return None
        self.methods = [v for v in values if isinstance(v, str)]
        return self.methods

    def fetch_methods(self) -> list[str] | None:
        """``system.listMethods`` (strings only), cached; None on a transport error."""
        if self.methods is not None:
            return self.methods
        try:
            reply = self.client.request("system.listMethods", ())
        except (TransportError, RemoteProtocolError):
            return None
        return self._methods_from(reply)

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
