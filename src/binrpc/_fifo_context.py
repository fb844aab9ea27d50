"""The FIFO context: :class:`~binrpc._context.RpcContext` for one FIFO request, reading its
parameter lines and building the text reply. No I/O here.

Parameter lines are converted to what the handler asks for as the ctl module does (C
``strtol``/``strtod``, see :mod:`binrpc._cnum`); where Kamailio 5.6.3's FIFO is broken we
implement the intended behaviour (see :mod:`binrpc._fifo_wire` and docs/fifo.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from ._cnum import auto_int, strtod_lenient, strtol_prefix, wrap_int32
from ._context import MISSING, RpcContext, ScanResult, ServerInfo
from ._errors import Fault
from ._fifo_wire import FifoRequest, escape, render_status, status_line, unescape
from ._registry import MethodTable
from ._values import Double, Struct

__all__ = ["FifoContext", "FifoStruct"]

_U64: Final = 1 << 64


# --------------------------------------------------------------------------------------------
# the reply being built


class FifoStruct:
    """A struct in a FIFO reply (the handle ``add("{")`` returns): ordered members."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: list[tuple[str | None, str | FifoStruct]] = []

    def render(self) -> str:
        parts: list[str] = []
        for name, value in self.members:
            prefix = "" if name is None else escape(name, full=True) + ":"
            if isinstance(value, FifoStruct):
                parts.append(prefix + value.render())
            else:
                parts.append(prefix + value)
        return ",".join(parts)


_LINE: Final = 0  # positional value: text + LF
_PLAIN: Final = 1  # rpl_printf text: no suffix
_STRUCT: Final = 2  # a struct: one line


def _value_text(ch: str, value: Any, *, full: bool) -> str:
    """The text of one added value for add-format char ``ch``."""
    if ch in "dutb":
        if ch == "b":
            return "1" if value else "0"
        n = int(value)
        if ch == "u":
            return str(n % (1 << 32))
        return str(wrap_int32(n) % _U64)  # negative numbers print as unsigned 64-bit
    if ch == "f":
        number = float(value.value if isinstance(value, Double) else value)
        return f"{number:f}" if math.isfinite(number) else str(number)
    if ch in "ljLJ":
        number = value.value if isinstance(value, Double) else value
        return str(int(number) % _U64 if ch in "jJ" else int(number))
    if ch in "sS":
        if value is None:
            return "<null string>"
        if isinstance(value, bytes | bytearray | memoryview):
            value = bytes(value).decode("utf-8", "surrogateescape")
        # ``s`` is not cut at a NUL as over binrpc: the FIFO's \0 escape carries it
        return escape(str(value), full=full)
    if ch == "y":
        return escape(bytes(value).decode("utf-8", "surrogateescape"), full=full)
    raise ValueError(ch)


_ADD_CHARS: Final = frozenset("dutbfljLJsSy")
_INT_CHARS: Final = frozenset("dutb")


class FifoContext(RpcContext):
    """:class:`RpcContext` for one FIFO request.

    Args:
        request: the parsed request.
        sink: called exactly once with the whole reply text (status line and body).
        autoconversion: accepted for symmetry; FIFO parameters are text and are always
            converted to what the handler asks for.
        max_reply_size: the largest reply ``sink`` can carry (a datagram); a bigger reply is
            replaced by ``500 reply too large``. None: unlimited.
    """

    __slots__ = (
        "_body",
        "_deferred",
        "_line",
        "_params",
        "_pos",
        "_replied",
        "_sink",
        "_status",
        "connection",
        "max_reply_size",
        "method",
        "registry",
        "server",
    )

    def __init__(
        self,
        request: FifoRequest,
        sink: Callable[[bytes], object],
        *,
        registry: MethodTable | None = None,
        server: ServerInfo | None = None,
        connection: object | None = None,
        max_reply_size: int | None = None,
    ) -> None:
        self.method = request.method
        self._params = request.params
        self._pos = 0
        self._sink = sink
        self.registry = registry
        self.server = server
        self.connection = connection
        self.max_reply_size = max_reply_size
        self._status: tuple[int, str] = (200, "OK")
        self._body: list[tuple[int, Any]] = []
        self._deferred: tuple[int, str] | None = None
        self._replied = False

    # -- parameters -------------------------------------------------------------------------
    def _next_line(self) -> str | None:
        if self._pos >= len(self._params):
            return None
        line = self._params[self._pos]
        self._pos += 1
        return line

    def _line_no(self) -> int:
        """Line number of the parameter just read (the command line is line 1)."""
        return self._pos + 1

    def scan(self, fmt: str) -> ScanResult:
        self._deferred = None
        values: list[Any] = []
        optional = False
        for ch in fmt:
            if ch == "*":
                optional = True
                continue
            if ch == ".":
                continue
            if ch not in "dutbfljLJsS{":
                self.fault(500, "Server Internal Error (Invalid Formatting Character '%s')", ch)
                return ScanResult(-len(values), values)
            line = self._next_line()
            if line is None:
                if optional:
                    return ScanResult(len(values), values)
                self._deferred = (400, f"Parameter missing on line {self._line_no() + 1}")
                return ScanResult(-len(values), values)
            try:
                values.append(self._convert(ch, line))
            except _LineError as err:
                self._pos -= 1  # not consumed, like a binrpc type mismatch
                if optional and line == "":
                    return ScanResult(len(values), values)
                self.fault(err.code, "%s", err.text)
                return ScanResult(-len(values), values)
        return ScanResult(len(values), values)

    def _convert(self, ch: str, line: str) -> Any:
        n = self._line_no()
        if ch in "sS":
            try:
                return unescape(line)  # a \0 stays a NUL, for s too (see _value_text)
            except ValueError:
                raise _LineError(500, "Internal Server Error") from None
        if ch == "{":
            return self._struct_line(line, n)
        if line == "":
            raise _LineError(400, f"Invalid parameter value on line {n}")
        if ch == "f":
            number = strtod_lenient(line)
            return 0.0 if number is None else number
        value = strtol_prefix(line)
        value = 0 if value is None else value
        if ch in _INT_CHARS:
            return wrap_int32(value)
        return value  # l j L J: 64-bit

    def _struct_line(self, line: str, n: int) -> Struct:
        if line == "":
            raise _LineError(400, f"Line {n} Empty - Structure Expected")
        out = Struct()
        for part in line.split(","):
            colon = part.find(":")
            if colon < 0:
                raise _LineError(400, f"Colon missing in struct on line {n}")
            raw_name, raw_value = part[:colon], part[colon + 1 :]
            try:
                out.append(unescape(raw_name), unescape(raw_value))
            except ValueError:
                raise _LineError(
                    400, f"Error while processing struct member '{raw_name}' on line {n}"
                ) from None
        return out

    def read_param(self, kind: str, index: int) -> Any:
        line = self._next_line()
        if line is None:
            return MISSING
        n = self._line_no()
        if kind in ("str", "any"):
            try:
                return unescape(line)
            except ValueError:
                raise _fault(400, f"Invalid escape sequence on line {n}") from None
        if kind == "bytes":
            try:
                return unescape(line).encode("utf-8", "surrogateescape")
            except ValueError:
                raise _fault(400, f"Invalid escape sequence on line {n}") from None
        if kind in ("int", "bool"):
            value = auto_int(line)
            if value is None:
                raise _fault(400, f"Invalid parameter value on line {n}")
            return bool(value) if kind == "bool" else value
        if kind == "float":
            number = strtod_lenient(line)
            if number is None or line.strip() == "":
                raise _fault(400, f"Invalid parameter value on line {n}")
            return number
        try:
            struct = self._struct_line(line, n)
        except _LineError as err:
            raise _fault(err.code, err.text) from None
        return struct if kind == "struct" else struct.values()

    # -- reply ------------------------------------------------------------------------------
    def add(self, fmt: str, *values: Any) -> Any:
        handles: list[FifoStruct] = []
        i = 0
        for ch in fmt:
            if ch in "{[":
                handle = FifoStruct()
                self._body.append((_STRUCT, handle))
                handles.append(handle)
                continue
            if ch not in _ADD_CHARS:
                self.fault(500, "Bug In SER (Invalid formatting character %s)", ch)
                return -1
            if i >= len(values):
                return -1
            self._body.append((_LINE, _value_text(ch, values[i], full=False)))
            i += 1
        if handles:
            return handles[0] if len(handles) == 1 else tuple(handles)
        return 0

    def array_add(self, handle: Any, fmt: str, *values: Any) -> Any:
        if not isinstance(handle, FifoStruct):
            return -1
        handles: list[FifoStruct] = []
        i = 0
        for ch in fmt:
            if ch in "{[":
                sub = FifoStruct()
                handle.members.append((None, sub))
                handles.append(sub)
                continue
            if ch not in _ADD_CHARS or i >= len(values):
                return -1
            handle.members.append((None, _value_text(ch, values[i], full=True)))
            i += 1
        if handles:
            return handles[0] if len(handles) == 1 else tuple(handles)
        return 0

    def struct_add(self, handle: Any, fmt: str, *names_and_values: Any) -> Any:
        if not isinstance(handle, FifoStruct):
            return -1
        args = names_and_values
        i = 0
        last: Any = 0
        for ch in fmt:
            if i >= len(args):
                return -1
            name = "" if args[i] is None else str(args[i])
            i += 1
            if ch in "{[":
                sub = FifoStruct()
                handle.members.append((name, sub))
                last = sub
                continue
            if ch not in _ADD_CHARS or i >= len(args):
                return -1
            handle.members.append((name, _value_text(ch, args[i], full=True)))
            i += 1
        return last

    def rpl_printf(self, fmt: str, *args: Any) -> int:
        self._body.append((_PLAIN, escape(fmt % args if args else fmt)))
        return 0

    def struct_printf(self, handle: Any, name: str, fmt: str, *args: Any) -> int:
        if not isinstance(handle, FifoStruct):
            return -1
        text = fmt % args if args else fmt
        handle.members.append((name, escape(text, full=True)))
        return 0

    @property
    def replied(self) -> bool:
        return self._replied

    def fault(self, code: int, fmt: str, *args: Any) -> None:
        """Replace the status line (the body is kept, as in ctl's FIFO); the last call wins,
        over a pending "Parameter missing" of a failed scan too."""
        if self._replied:
            return
        self._deferred = None
        self._status = (code, fmt % args if args else fmt)

    def send(self) -> int:
        if self._replied:
            return -1
        self._replied = True
        text = self.render()
        if self.max_reply_size is not None and len(text) > self.max_reply_size:
            text = render_status(500, f"reply too large ({len(text)} bytes)")
        self._sink(text)
        return 0

    def finish(self) -> None:
        if self._replied:
            return
        if not self._body and self._deferred is not None:
            self._status = self._deferred
        self.send()

    def render(self) -> bytes:
        """The reply as it stands: status line, then the body."""
        code, reason = self._status
        out = [status_line(code, reason)]
        for kind, item in self._body:
            if kind == _LINE:
                out.append(item + "\n")
            elif kind == _PLAIN:
                out.append(item)
            else:
                out.append(item.render() + "\n")
        return "".join(out).encode("utf-8", "surrogateescape")


class _LineError(Exception):
    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text


def _fault(code: int, text: str) -> Fault:
    return Fault(code, text)
