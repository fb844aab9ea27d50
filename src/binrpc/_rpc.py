"""RPC method registry, handler contexts, autoconversion and reply-size limits. No I/O here.

Two handler styles share one :class:`Registry`:

* **Pythonic** (the default): parameters are read according to the handler's annotations and
  the return value becomes the reply::

      @registry.rpc("math.add")
      def add(a: int, b: int = 0) -> int:
          return a + b

  ``None`` -> empty reply, a ``tuple`` -> several top-level values, ``dict``/:class:`Struct`
  -> a struct, ``list`` -> the way the ctl module encodes arrays (a STRUCT of unnamed
  values). Raising :class:`~binrpc.Fault` sends a fault. ``async def`` handlers work too.

* **Context** (``context=True``): an exact port of a Kamailio RPC. The handler gets an
  :class:`RpcContext` and uses ``scan``/``add``/``array_add``/``struct_add``/``rpl_printf``/
  ``struct_printf``/``fault``/``send`` with the format characters and the semantics of the
  ctl module (spec section 5)::

      @registry.rpc("core.echo", context=True, doc="Returns back its parameters.")
      def echo(ctx: RpcContext) -> None:
          while (r := ctx.scan("*.s")) > 0:
              ctx.add("s", r.values[0])

An exception escaping a handler becomes fault 500 and is logged.

:class:`RpcContext` is the transport-neutral interface; :class:`BinrpcContext` implements it
for binrpc requests (reading a strict :class:`~binrpc.BodyReader`, producing reply bytes).
The FIFO text protocol can implement the same interface on the same registry.

Version target: Kamailio **5.6.3** wherever HEAD differs (INT records are rejected for the
``f``/``l``/``j``/``L``/``J`` scan formats; method names end at their first NUL), except for
two deliberate fixes: printf output that does not fit ``binrpc_buffer_size`` with its NUL is
dropped (HEAD's rule; 5.6.3 adds it truncated with an embedded NUL), and fault texts are cut
to 254 characters so that they are always delivered.
"""

from __future__ import annotations

import abc
import inspect
import itertools
import logging
import math
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias, TypeVar, Union

from ._codec import (
    T_ARRAY,
    T_AVP,
    T_BYTES,
    T_DOUBLE,
    T_INT,
    T_STR,
    T_STRUCT,
    T_STRUCT_START,
    T_VALUE,
    BodyReader,
    MsgType,
    encode_fault,
    encode_header,
    encode_text,
    encode_values,
    int_record,
    record_head,
    saturated_double_record,
    str_record,
)
from ._errors import (
    E_BUG,
    E_END_OF_PACKET,
    E_MORE_DATA,
    E_TYPE,
    DecodeError,
    Fault,
    LocalProtocolError,
    binrpc_error_text,
)
from ._values import Double, Struct

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_STRUCT_MAX_BODY_SIZE",
    "MAX_FAULT_TEXT",
    "BinrpcContext",
    "Buffer",
    "Method",
    "Registry",
    "ReplyStruct",
    "RpcContext",
    "RpcLimits",
    "ScanResult",
    "ServerInfo",
    "call_method",
]

log = logging.getLogger("binrpc.server")

DEFAULT_BUFFER_SIZE: Final = 1024
"""``binrpc_buffer_size``: bytes of printf scratch for ``rpl_printf``/``struct_printf``."""
DEFAULT_MAX_BODY_SIZE: Final = 32 * 1024
"""``binrpc_max_body_size`` (32 KiB): the top-level reply buffer of the ctl module."""
DEFAULT_STRUCT_MAX_BODY_SIZE: Final = 8 * 1024
"""``binrpc_struct_max_body_size`` (8 KiB): each struct's own buffer in the ctl module."""
MAX_FAULT_TEXT: Final = 254
"""Longest fault text sent. ctl formats faults into 256 bytes and cannot send 255+ characters
at all (spec 4.3); we cut longer texts to the longest length ctl can deliver."""

Buffer: TypeAlias = bytes | bytearray | memoryview
"""A piece of a reply given to a context's ``chunk_sink``."""

_U64: Final = 1 << 64
_INT_MIN: Final = -0x80000000
_INT_MAX: Final = 0x7FFFFFFF

# record type -> the name ctl uses in "expected <name> type but ..." (spec 5.3)
_TYPE_NAMES: Final = {
    T_INT: "integer",
    T_STR: "string",
    T_DOUBLE: "float",
    T_STRUCT: "structure",
    T_ARRAY: "array",
    T_AVP: "structure member",
    T_BYTES: "bytes array",
    15: "any",
}


def _type_name(rtype: int | None) -> str:
    return _TYPE_NAMES.get(rtype, "<unknown/error>") if rtype is not None else "any"


def _wrap_int(value: int) -> int:
    """C conversion to a 32-bit int (two's complement wrap)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value > _INT_MAX else value


# --------------------------------------------------------------------------------------------
# limits


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


# --------------------------------------------------------------------------------------------
# server information for the built-in RPCs (ctl.*, core.kill ...)


class ServerInfo(Protocol):
    """What the built-in RPCs may ask the server that runs them."""

    @property
    def started(self) -> float:
        """Start time (``time.time()``)."""

    def listener_rows(self) -> list[tuple[str, str, str, str]]:
        """``ctl.listen`` rows: payload, transport, name, port (configuration order)."""

    def connection_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """``ctl.who`` rows, oldest first: payload, transport, peer, peer port, local, port."""

    def connection_count(self) -> int:
        """Open stream connections (``ctl.connections``)."""

    def request_shutdown(self) -> None:
        """Shut the server down cleanly once pending replies are written (``core.kill``)."""


# --------------------------------------------------------------------------------------------
# scan results


class ScanResult(int):
    """The return value of :meth:`RpcContext.scan`: an ``int`` (ctl's return value) that also
    carries the values stored by the call.

    The number is ``k`` on success (k = number of non-modifier format characters), ``+k`` when
    optional values (``*``) ran out after k values, ``-k`` (``0`` when k is 0) when value k+1
    could not be read (a deferred fault was prepared). ``values`` holds the k values read;
    iterating over the result iterates over them, so ``name, = ctx.scan("s")`` works.
    """

    values: list[Any]

    def __new__(cls, count: int, values: list[Any]) -> ScanResult:
        self = int.__new__(cls, count)
        self.values = values
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def __getitem__(self, index: int) -> Any:
        return self.values[index]

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"ScanResult({int(self)}, {self.values!r})"


class _Missing:
    """Returned by :meth:`RpcContext.read_param` when the parameters are exhausted."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# --------------------------------------------------------------------------------------------
# the abstract context


class RpcContext(abc.ABC):
    """The handler's view of one request: read parameters, build the reply.

    The methods mirror the ctl module's ``rpc_t`` (spec section 5). Format characters for
    ``add``/``array_add``/``struct_add``: ``d u t b`` int, ``f`` float, ``l j L J`` 64-bit
    integer sent as DOUBLE, ``s`` text (ends at a NUL), ``S`` text (whole), ``{``/``[`` a new
    struct whose handle is returned. Scan characters: the same plus ``*`` (the rest is
    optional) and ``.`` (autoconvert the next value).

    Attributes:
        method: the method name being executed.
        registry: the method table (for ``system.*``).
        server: the running server (for ``ctl.*``, ``core.kill``), or None.
        connection: the stream connection that carried the request, or None (datagram).
    """

    method: str
    registry: MethodTable | None
    server: ServerInfo | None
    connection: object | None

    # -- parameters -------------------------------------------------------------------------
    @abc.abstractmethod
    def scan(self, fmt: str) -> ScanResult:
        """Read parameters according to ``fmt`` (spec 5.2); see :class:`ScanResult`."""

    @abc.abstractmethod
    def read_param(self, kind: str, index: int) -> Any:
        """Read one parameter for a Pythonic handler.

        Args:
            kind: ``int``, ``float``, ``str``, ``bytes``, ``bool``, ``struct``, ``array`` or
                ``any``.
            index: 0-based parameter position (for fault texts).

        Returns:
            the value, or :data:`MISSING` when the parameters are exhausted.

        Raises:
            Fault: the parameter has the wrong type (the text ctl would give).
        """

    # -- reply ------------------------------------------------------------------------------
    @abc.abstractmethod
    def add(self, fmt: str, *values: Any) -> Any:
        """Append top-level values. Returns 0, -1 on error, or the new struct handle(s) for
        ``{``/``[`` (one handle, or a tuple for several). Overflowing the top-level body sends
        fault 500 at once."""

    @abc.abstractmethod
    def array_add(self, handle: Any, fmt: str, *values: Any) -> Any:
        """Append unnamed values to a struct. Returns 0 / -1 / new handle(s), no fault."""

    @abc.abstractmethod
    def struct_add(self, handle: Any, fmt: str, *names_and_values: Any) -> Any:
        """Append named members (``name1, value1, name2, value2 ...``). A ``{``/``[`` member
        ends the call and returns the nested handle (later characters are ignored, as in
        ctl). Returns 0 / -1, no fault; an overflowing member is rolled back."""

    @abc.abstractmethod
    def rpl_printf(self, fmt: str, *args: Any) -> int:
        """Append a top-level string formatted with ``fmt % args``. Returns 0 / -1."""

    @abc.abstractmethod
    def struct_printf(self, handle: Any, name: str, fmt: str, *args: Any) -> int:
        """Append member ``name`` with a formatted string value. Returns 0 / -1."""

    @abc.abstractmethod
    def fault(self, code: int, fmt: str, *args: Any) -> None:
        """Send a fault now (the reply built so far is discarded). Ignored after a reply."""

    @abc.abstractmethod
    def send(self) -> int:
        """Send the reply built so far now (reply-then-act). Returns 0, or -1 if a reply or a
        fault was already sent."""

    @abc.abstractmethod
    def finish(self) -> None:
        """End of handler: send the deferred scan fault (if the top-level body is empty) or
        the reply, unless something was sent already. Called by the dispatcher."""

    @property
    @abc.abstractmethod
    def replied(self) -> bool:
        """True once a reply or a fault has been sent."""

    # -- Pythonic replies (built on the primitives above) -----------------------------------
    def reply_value(self, value: Any) -> None:
        """Add a Pythonic handler's return value to the reply (see the module docstring)."""
        if value is None:
            return
        if type(value) is tuple:
            for item in value:
                self._add_top(item)
        else:
            self._add_top(value)

    def _add_top(self, value: Any) -> None:
        if isinstance(value, Struct | Mapping):
            handle = self.add("{")
            if isinstance(handle, int):
                return
            self._fill_struct(handle, value)
        elif isinstance(value, list | tuple):
            handle = self.add("[")
            if isinstance(handle, int):
                return
            self._fill_array(handle, value)
        else:
            self.add(_fmt_of(value), value)

    def _fill_struct(self, handle: Any, value: Struct | Mapping[Any, Any]) -> None:
        for name, member in value.items():
            if isinstance(member, Struct | Mapping):
                sub = self.struct_add(handle, "{", name)
                if not isinstance(sub, int):
                    self._fill_struct(sub, member)
            elif isinstance(member, list | tuple):
                sub = self.struct_add(handle, "[", name)
                if not isinstance(sub, int):
                    self._fill_array(sub, member)
            elif name is None:
                self.array_add(handle, _fmt_of(member), member)
            else:
                self.struct_add(handle, _fmt_of(member), name, member)

    def _fill_array(self, handle: Any, value: Iterable[Any]) -> None:
        for item in value:
            if isinstance(item, Struct | Mapping):
                sub = self.array_add(handle, "{")
                if not isinstance(sub, int):
                    self._fill_struct(sub, item)
            elif isinstance(item, list | tuple):
                sub = self.array_add(handle, "[")
                if not isinstance(sub, int):
                    self._fill_array(sub, item)
            else:
                self.array_add(handle, _fmt_of(item), item)


def _fmt_of(value: Any) -> str:
    """The add-format character for a Python value."""
    t = type(value)
    if t is str:
        return "S"
    if t is int or t is bool:
        return "d" if _INT_MIN <= value <= 0xFFFFFFFF else "J"
    if t is float or t is Double:
        return "f"
    if isinstance(value, bytes | bytearray | memoryview):
        return "y"  # internal: BYTES record
    if isinstance(value, bool | int):
        return "d" if _INT_MIN <= value <= 0xFFFFFFFF else "J"
    if isinstance(value, float):
        return "f"
    if isinstance(value, str):
        return "S"
    raise LocalProtocolError(f"an RPC cannot return a value of type {t.__name__}")


# --------------------------------------------------------------------------------------------
# the binrpc context

_FMT_INT: Final = frozenset("dutb")
_FMT_DOUBLE: Final = frozenset("fljLJ")
_FMT_STR: Final = frozenset("sS")
_SCAN_TYPES: Final = {
    **dict.fromkeys(_FMT_INT, T_INT),
    **dict.fromkeys(_FMT_DOUBLE, T_DOUBLE),
    **dict.fromkeys(_FMT_STR, T_STR),
}
"""Scan format char -> the record type it reads."""
_FMT_SCAN: Final = frozenset(_SCAN_TYPES)
_NULL_STRING: Final = "<null string>"
_ADD_CHARS: Final = frozenset("dutbfljLJsSy")


class ReplyStruct:
    """A struct being built in a binrpc reply (the handle returned by ``add("{")``).

    ``parts`` are encoded records (bytes, or :class:`_Blob` for a large one) and nested
    :class:`ReplyStruct` objects in order; ``size`` counts this struct's own buffer as ctl
    does (members + 2 bytes per nested struct).
    """

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.size = 0

    def encode_into(self, out: bytearray) -> None:
        out.append(T_STRUCT)
        _encode_parts(self.parts, out, None)
        out.append(0x80 | T_STRUCT)


LARGE_RECORD: Final = 64 * 1024
"""A BYTES or STR value from this many bytes on is not copied into the reply: the record is
kept as its head and the value's bytes (:class:`_Blob`), and a stream connection writes those
bytes as they are (a 10 MiB reply then costs the handler's bytes and the transport's buffer
instead of 6 copies)."""


class _Blob:
    """A large record as buffers: its tag and length bytes, then the payload, not copied."""

    __slots__ = ("chunks", "size")

    def __init__(self, chunks: list[Buffer]) -> None:
        self.chunks = chunks
        self.size = sum(len(chunk) for chunk in chunks)

    def __len__(self) -> int:
        return self.size

    def prefixed(self, head: bytes) -> _Blob:
        """The same record after ``head`` (a struct member's name)."""
        return _Blob([head + self.chunks[0], *self.chunks[1:]])


_Part: TypeAlias = "bytes | _Blob | ReplyStruct"


def _encode_parts(parts: list[_Part], out: bytearray, chunks: list[Buffer] | None) -> bytearray:
    """Append the records of ``parts`` to ``out``; return the bytearray to go on with.

    With ``chunks``, the payload of a large record is not copied: ``out`` so far goes to
    ``chunks``, then the payload, and a new bytearray is returned.
    """
    for part in parts:
        if type(part) is bytes:
            out += part
        elif type(part) is ReplyStruct:
            out.append(T_STRUCT)
            out = _encode_parts(part.parts, out, chunks)
            out.append(0x80 | T_STRUCT)
        else:
            head, *payload = part.chunks  # type: ignore[union-attr]
            out += head
            for chunk in payload:
                if chunks is None or len(chunk) < LARGE_RECORD:
                    out += chunk
                else:
                    chunks += (out, chunk)
                    out = bytearray()
    return out


class _Overflow(Exception):
    pass


def _sized(rtype: int, payload: bytes, tail: bytes = b"") -> bytes | _Blob:
    """A sized record (BYTES, STR) of ``payload + tail``: one bytes object, or a
    :class:`_Blob` holding ``payload`` itself when large."""
    length = len(payload) + len(tail)
    if length < LARGE_RECORD:
        return record_head(rtype, length) + payload + tail
    return _Blob([record_head(rtype, length), payload, tail])


def _encode_scalar(ch: str, value: Any) -> bytes | _Blob:
    """One record for add-format char ``ch``. Raises LocalProtocolError / ValueError.

    Strings and integers are encoded directly (str_record, int_record), not through
    encode_values: 0.5 us less per value (bench, Python 3.11).
    """
    if ch == "s" or ch == "S":
        if type(value) is not str:
            if value is None:
                value = _NULL_STRING
            elif isinstance(value, bytes | bytearray | memoryview):
                value = bytes(value).decode("utf-8", "surrogateescape")
            else:
                value = str(value)
        if ch == "s":
            nul = value.find("\0")
            if nul >= 0:
                value = value[:nul]
        if len(value) < LARGE_RECORD // 4:  # UTF-8: at most 4 bytes per character
            return str_record(value)
        return _sized(T_STR, encode_text(value), b"\0")
    if ch in _FMT_INT:
        if type(value) is not int:
            value = int(value)
        return int_record(_wrap_int(value))
    if ch in _FMT_DOUBLE:
        wire: Any
        if isinstance(value, Double):
            wire, number = value, value.value
        elif ch == "f":
            wire = number = float(value)
        else:
            number = int(value)
            wire = Double(number)
        try:
            return encode_values((wire,))
        except LocalProtocolError:
            # NaN, inf or beyond the DOUBLE range: ctl's add never fails (see
            # saturated_double_record: clamped, NaN is 0)
            return saturated_double_record(number)
    if ch == "y":
        return _sized(T_BYTES, value if type(value) is bytes else bytes(value))
    raise ValueError(ch)


def _encode_name(name: str | None) -> bytes:
    """An AVP (struct member name) record: like STR with type 5; None is the empty name."""
    return str_record("" if name is None else str(name), T_AVP)


# strtod: optional spaces, sign, then decimal/hex float, inf or nan; a prefix is enough
_STRTOD: Final = re.compile(
    r"\s*([+-]?)(?:(0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?)"
    r"|(inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)"
    r"|((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))",
    re.IGNORECASE,
)
_STRTOL_STRICT: Final = re.compile(r"[+-]?[0-9]*\Z")


def _strtod(text: str) -> float | None:
    m = _STRTOD.match(text)
    if m is None:
        return None
    sign = -1.0 if m.group(1) == "-" else 1.0
    if m.group(2):
        hexpart = m.group(2)
        if "p" not in hexpart.lower():
            hexpart += "p0"
        try:
            return sign * float.fromhex(hexpart)
        except (ValueError, OverflowError):
            return None
    if m.group(3):
        return sign * float(m.group(3).split("(")[0])
    try:
        return sign * float(m.group(4))
    except ValueError:
        return None


class _ScanError(Exception):
    """A failed value read: binrpc error code and the type name for the fault text."""

    def __init__(self, code: int, type_name: str) -> None:
        self.code = code
        self.type_name = type_name


class BinrpcContext(RpcContext):
    """:class:`RpcContext` for one binrpc request.

    Args:
        reader: strict reader positioned on the first parameter (from ``parse_request``).
        cookie: the request's cookie, echoed in the reply.
        sink: called exactly once with the whole reply or fault packet.
        limits: reply-size limits and autoconversion.
        max_reply_size: largest packet ``sink`` can carry (a datagram); a bigger reply is
            replaced by fault 500 instead of being lost. None: unlimited (streams).
        chunk_sink: if given, a reply holding a large BYTES or STR value (``LARGE_RECORD``
            bytes or more) goes here instead of ``sink``, as a list of buffers that make the
            packet when concatenated: the value itself is one of them, not copied.
    """

    __slots__ = (
        "_chunk_sink",
        "_deferred",
        "_limits",
        "_parts",
        "_reader",
        "_record_no",
        "_replied",
        "_sink",
        "_size",
        "connection",
        "cookie",
        "max_reply_size",
        "method",
        "registry",
        "server",
    )

    def __init__(
        self,
        reader: BodyReader,
        cookie: int,
        sink: Callable[[bytes], object],
        limits: RpcLimits = DEFAULT_LIMITS,
        *,
        method: str = "",
        registry: MethodTable | None = None,
        server: ServerInfo | None = None,
        connection: object | None = None,
        max_reply_size: int | None = None,
        chunk_sink: Callable[[list[Buffer]], object] | None = None,
    ) -> None:
        self._reader = reader
        self.cookie = cookie
        self._sink = sink
        self._chunk_sink = chunk_sink
        self._limits = limits
        self.method = method
        self.registry = registry
        self.server = server
        self.connection = connection
        self.max_reply_size = max_reply_size
        self._parts: list[_Part] = []
        self._size = 0
        self._record_no = 0
        self._deferred: tuple[int, str] | None = None
        self._replied = False

    def set_sink(
        self,
        sink: Callable[[bytes], object],
        chunk_sink: Callable[[list[Buffer]], object] | None = None,
    ) -> None:
        """Send the reply, when it comes, to ``sink`` / ``chunk_sink`` instead."""
        self._sink = sink
        self._chunk_sink = chunk_sink

    # -- scanning ---------------------------------------------------------------------------
    def _read(self, ch: str, auto: bool) -> Any:
        """Read one value for scan char ``ch``; raises _ScanError."""
        reader = self._reader
        if ch in _FMT_INT:
            want = T_INT
        elif ch in _FMT_STR:
            want = T_STR
        else:
            want = T_DOUBLE
        rtype = reader.peek_type()
        if rtype == want:
            # the type asked for: the same with or without autoconversion
            try:
                _, _, value = reader.next_token()
            except DecodeError as exc:
                raise _ScanError(exc.code, _TYPE_NAMES[want]) from None
            if want == T_STR:
                return value if ch == "S" else _cstr(value)  # type: ignore[arg-type]
            if want == T_INT:
                return value
            return value if ch == "f" else _c_long(value)  # type: ignore[arg-type]
        if not auto:
            if rtype is None:
                raise _ScanError(E_END_OF_PACKET, _TYPE_NAMES[want])
            raise _ScanError(E_TYPE, _TYPE_NAMES[want])
        # autoconversion: read any record, then convert; the fault names the actual type
        try:
            kind, _, value = reader.next_token()
        except DecodeError as exc:
            raise _ScanError(
                exc.code, _type_name(rtype) if rtype is not None else _TYPE_NAMES[want]
            ) from None
        if kind != T_VALUE:
            # a struct/array start was consumed (and stays open), like ctl
            raise _ScanError(E_TYPE, "structure" if kind == T_STRUCT_START else "array")
        actual = rtype if rtype is not None else want
        if want == T_INT:
            if actual == T_INT:
                return value
            if actual == T_DOUBLE:
                return _c_int_of_double(value)  # type: ignore[arg-type]
            if actual == T_STR:
                parsed = _str_to_int(_cstr(value))  # type: ignore[arg-type]
                if parsed is not None:
                    return parsed
            raise _ScanError(E_TYPE, _type_name(actual))
        if want == T_DOUBLE:
            if actual == T_DOUBLE or actual == T_INT:
                number = float(value)  # type: ignore[arg-type]
            elif actual == T_STR:
                parsed_f = _strtod(_cstr(value))  # type: ignore[arg-type]
                if parsed_f is None:
                    raise _ScanError(E_TYPE, _type_name(actual))
                number = parsed_f
            else:
                raise _ScanError(E_TYPE, _type_name(actual))
            return number if ch == "f" else _c_long(number)
        # string
        if actual == T_STR:
            return value if ch == "S" else _cstr(value)  # type: ignore[arg-type]
        if actual == T_INT:
            return str(value % _U64)  # type: ignore[operator]
        if actual == T_DOUBLE:
            raise _ScanError(E_BUG, _type_name(actual))
        raise _ScanError(E_TYPE, _type_name(actual))

    def scan(self, fmt: str) -> ScanResult:
        self._deferred = None
        values: list[Any] = []
        optional = False
        auto_next = False
        auto_all = self._limits.autoconversion
        reader = self._reader
        for ch in fmt:
            if ch == "*":
                optional = True
                continue
            if ch == ".":
                auto_next = True
                continue
            if ch in _FMT_SCAN:
                auto = auto_next or auto_all
                if reader.at_end():
                    # the usual end of a "*" loop: no exception raised and caught (1.5 us per
                    # scan; bench, Python 3.11); the codes _read would give
                    code = E_MORE_DATA if auto and reader.depth else E_END_OF_PACKET
                    type_name = _TYPE_NAMES[_SCAN_TYPES[ch]]
                else:
                    try:
                        values.append(self._read(ch, auto))
                    except _ScanError as err:
                        code, type_name = err.code, err.type_name
                    else:
                        self._record_no += 1
                        auto_next = False
                        continue
                k = len(values)
                if optional and (code == E_END_OF_PACKET or code == E_MORE_DATA):
                    return ScanResult(k, values)
                self._deferred = (
                    400,
                    f"error at parameter {self._record_no}: expected {type_name} type "
                    f"but {binrpc_error_text(code)}",
                )
                return ScanResult(-k, values)
            if ch == "{":
                self.fault(500, "internal server error, type 3 not supported")
            else:
                self.fault(500, "internal server error, invalid format char '%s'", ch)
            return ScanResult(-max(len(values), 1), values)
        return ScanResult(len(values), values)

    def read_param(self, kind: str, index: int) -> Any:
        reader = self._reader
        if reader.at_end() and reader.depth == 0:
            return MISSING
        auto = self._limits.autoconversion
        try:
            if kind == "int" or kind == "bool":
                value = self._read("d", auto)
                return bool(value) if kind == "bool" else value
            if kind == "str":
                return self._read("S", auto)
            if kind == "float":
                if reader.peek_type() == T_INT:  # like Kamailio HEAD: an INT is fine
                    try:
                        return float(reader.next_token()[2])  # type: ignore[arg-type]
                    except DecodeError as exc:
                        raise _ScanError(exc.code, "double") from None
                return self._read("f", auto)
            rtype = reader.peek_type()
            if kind == "bytes":
                if rtype != T_BYTES and rtype != T_STR:
                    raise _ScanError(E_TYPE, "bytes array")
                try:
                    raw = reader.read_value()
                except DecodeError as exc:
                    raise _ScanError(exc.code, "bytes array") from None
                return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
            if kind == "struct" and rtype != T_STRUCT:
                raise _ScanError(E_TYPE, "structure")
            if kind == "array" and rtype != T_ARRAY:
                raise _ScanError(E_TYPE, "array")
            try:
                return reader.read_value()
            except DecodeError as exc:
                raise _ScanError(exc.code, _type_name(rtype)) from None
        except _ScanError as err:
            raise Fault(
                400,
                f"error at parameter {index}: expected {err.type_name} type "
                f"but {binrpc_error_text(err.code)}",
            ) from None

    # -- adding -----------------------------------------------------------------------------
    def _append_top(self, rec: _Part, size: int, ch: str) -> None:
        if self._size + size > self._limits.max_body_size:
            raise _Overflow(ch)
        self._parts.append(rec)
        self._size += size

    def add(self, fmt: str, *values: Any) -> Any:
        handles: list[ReplyStruct] = []
        i = 0
        try:
            for ch in fmt:
                if ch == "{" or ch == "[":
                    handle = ReplyStruct()
                    self._append_top(handle, 2, ch)
                    handles.append(handle)
                    continue
                if ch not in _ADD_CHARS:
                    self.fault(500, "Internal server error: invalid formatting character '%s'", ch)
                    return -1
                try:
                    value = values[i]
                except IndexError:
                    raise LocalProtocolError(f"add({fmt!r}): too few values") from None
                i += 1
                rec = _encode_scalar(ch, value)
                self._append_top(rec, len(rec), ch)
        except _Overflow as ov:
            self.fault(
                500,
                "Internal server error processing '%s': buffer too small (overflow) (-2)",
                ov.args[0],
            )
            return -1
        if handles:
            return handles[0] if len(handles) == 1 else tuple(handles)
        return 0

    def _struct_append(self, handle: ReplyStruct, rec: _Part, size: int) -> bool:
        if handle.size + size > self._limits.struct_max_body_size:
            return False
        handle.parts.append(rec)
        handle.size += size
        return True

    def array_add(self, handle: Any, fmt: str, *values: Any) -> Any:
        if not isinstance(handle, ReplyStruct):
            return -1
        handles: list[ReplyStruct] = []
        i = 0
        for ch in fmt:
            if ch == "{" or ch == "[":
                sub = ReplyStruct()
                if not self._struct_append(handle, sub, 2):
                    return -1
                handles.append(sub)
                continue
            if i >= len(values):
                return -1
            value = values[i]
            i += 1
            try:
                rec = _encode_scalar(ch, value)
            except (ValueError, LocalProtocolError):
                log.error("array_add: cannot add %r with format char %r", value, ch)
                return -1
            if not self._struct_append(handle, rec, len(rec)):
                return -1
        if handles:
            return handles[0] if len(handles) == 1 else tuple(handles)
        return 0

    def struct_add(self, handle: Any, fmt: str, *names_and_values: Any) -> Any:
        if not isinstance(handle, ReplyStruct):
            return -1
        args = names_and_values
        i = 0
        for ch in fmt:
            if i >= len(args):
                return -1
            name = args[i]
            i += 1
            if ch == "{" or ch == "[":
                name_rec = _encode_name(name)
                sub = ReplyStruct()
                if handle.size + len(name_rec) + 2 > self._limits.struct_max_body_size:
                    return -1
                handle.parts.append(name_rec)
                handle.parts.append(sub)
                handle.size += len(name_rec) + 2
                return sub  # ctl stops processing this call here
            if i >= len(args):
                return -1
            value = args[i]
            i += 1
            try:
                value_rec = _encode_scalar(ch, value)
                name_rec = _encode_name(name)
            except (ValueError, LocalProtocolError):
                log.error("struct_add: cannot add %r with format char %r", value, ch)
                return -1
            rec = (
                name_rec + value_rec if type(value_rec) is bytes else value_rec.prefixed(name_rec)  # type: ignore[union-attr]
            )
            if not self._struct_append(handle, rec, len(rec)):
                return -1
        return 0

    def _printf(self, fmt: str, args: tuple[Any, ...]) -> str | None:
        text = fmt % args if args else fmt
        if len(text.encode("utf-8", "surrogateescape")) >= self._limits.buffer_size:
            return None
        return text

    def rpl_printf(self, fmt: str, *args: Any) -> int:
        text = self._printf(fmt, args)
        if text is None:
            return -1
        rec = str_record(text)
        if self._size + len(rec) > self._limits.max_body_size:
            return -1
        self._parts.append(rec)
        self._size += len(rec)
        return 0

    def struct_printf(self, handle: Any, name: str, fmt: str, *args: Any) -> int:
        if not isinstance(handle, ReplyStruct):
            return -1
        text = self._printf(fmt, args)
        if text is None:
            return -1
        rec = _encode_name(name) + str_record(_cstr(text))
        return 0 if self._struct_append(handle, rec, len(rec)) else -1

    # -- sending ----------------------------------------------------------------------------
    @property
    def replied(self) -> bool:
        return self._replied

    def fault(self, code: int, fmt: str, *args: Any) -> None:
        if self._replied:
            log.debug("%s: fault after the reply was sent (ignored)", self.method)
            return
        text = fmt % args if args else fmt
        self._replied = True
        self._sink(_fault_packet(code, text, self.cookie))

    def send(self) -> int:
        if self._replied:
            log.debug("%s: send after the reply was sent (ignored)", self.method)
            return -1
        self._replied = True
        # chunks only where nothing caps the packet's size (a datagram checks the whole)
        chunked = self._chunk_sink is not None and self.max_reply_size is None
        chunks: list[Buffer] | None = [] if chunked else None
        body = _encode_parts(self._parts, bytearray(), chunks)
        if chunks:  # a large value: the header and buffers, the value's bytes not copied
            chunks.append(body)
            size = sum(len(chunk) for chunk in chunks)
            chunks[0] = encode_header(MsgType.REPLY, size, self.cookie) + chunks[0]
            self._chunk_sink(chunks)  # type: ignore[misc]
            return 0
        packet = encode_header(MsgType.REPLY, len(body), self.cookie) + body
        if self.max_reply_size is not None and len(packet) > self.max_reply_size:
            packet = _fault_packet(
                500,
                f"Internal server error: reply too big for a datagram ({len(packet)} bytes)",
                self.cookie,
            )
        self._sink(packet)
        return 0

    def finish(self) -> None:
        if self._replied:
            return
        if not self._parts and self._deferred is not None:
            self.fault(*self._deferred)
        else:
            self.send()


def _fault_packet(code: int, text: str, cookie: int) -> bytes:
    if len(text) > MAX_FAULT_TEXT:
        text = text[:MAX_FAULT_TEXT]
    try:
        return encode_fault(_wrap_int(code), text, cookie)
    except LocalProtocolError:
        return encode_fault(500, "internal server error", cookie)


def _cstr(value: str) -> str:
    """What a C string sees: the text up to the first NUL."""
    nul = value.find("\0")
    return value if nul < 0 else value[:nul]


def _c_long(value: float) -> int:
    """C's double -> 64-bit integer conversion (truncation toward zero)."""
    if not math.isfinite(value):
        return -(1 << 63)
    return int(value)


def _c_int_of_double(value: float) -> int:
    """C's double -> int conversion as x86-64 does it: out of range gives INT_MIN."""
    if not math.isfinite(value):
        return _INT_MIN
    n = int(value)
    return n if _INT_MIN <= n <= _INT_MAX else _INT_MIN


def _str_to_int(text: str) -> int | None:
    """ctl's strict signed-decimal parse: sign then ASCII digits only, "" and "-" are 0."""
    if not _STRTOL_STRICT.match(text):
        return None
    digits = text.lstrip("+-")
    n = int(digits) if digits else 0
    if text.startswith("-"):
        n = -n
    if not _INT_MIN <= n <= _INT_MAX:
        return None
    return n


# --------------------------------------------------------------------------------------------
# methods and registry


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    kind: str  # int float str bytes bool struct array any
    optional: bool
    default: Any
    rest: bool  # *args


_KIND_NAMES: Final = {
    "int": "int",
    "float": "double",
    "str": "string",
    "bytes": "bytes",
    "bool": "boolean",
    "struct": "struct",
    "array": "array",
    "any": "any",
}

F = TypeVar("F", bound=Callable[..., Any])


def _kind_of(annotation: Any) -> tuple[str, bool]:
    """Annotation -> (kind, accepts None)."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return "any", False
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return _kind_of(args[0])[0], nullable
        return "any", nullable
    base = origin or annotation
    if base is bool:
        return "bool", False
    if base is int:
        return "int", False
    if base is float:
        return "float", False
    if base is str:
        return "str", False
    if base in (bytes, bytearray):
        return "bytes", False
    if isinstance(base, type) and issubclass(base, Struct | Mapping):
        return "struct", False
    if isinstance(base, type) and issubclass(base, list | tuple | Sequence):
        return "array", False
    return "any", False


class Method:
    """One registered RPC.

    Attributes:
        name: the method name (exact, case-sensitive).
        func: the handler.
        doc: the help text (``system.methodHelp``).
        context: True for a context-style handler.
        is_async: the handler is a coroutine function.
        signature: type names, return type first (``system.methodSignature``), or None.
    """

    __slots__ = (
        "_params",
        "_ret",
        "_wants_ctx",
        "context",
        "doc",
        "func",
        "is_async",
        "name",
        "signature",
    )

    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        doc: str | None = None,
        context: bool = False,
        signature: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.func = func
        self.context = context
        self.is_async = inspect.iscoroutinefunction(func)
        if doc is None:
            doc = inspect.getdoc(func)
            doc = doc.strip().split("\n\n")[0].replace("\n", " ") if doc else None
        self.doc = doc
        self._params: tuple[_Param, ...] = ()
        self._ret: Any = None
        self._wants_ctx = False
        if context:
            self.signature = list(signature) if signature is not None else None
            return
        self._analyse(func)
        self.signature = list(signature) if signature is not None else self._derive_signature()

    def _analyse(self, func: Callable[..., Any]) -> None:
        sig = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception:
            hints = {}
        params: list[_Param] = []
        for i, p in enumerate(sig.parameters.values()):
            ann = hints.get(p.name, p.annotation)
            if i == 0 and isinstance(ann, type) and issubclass(ann, RpcContext):
                self._wants_ctx = True
                continue
            if p.kind is p.VAR_KEYWORD:
                continue
            if p.kind is p.KEYWORD_ONLY:
                if p.default is p.empty:
                    raise TypeError(
                        f"RPC {self.name}: keyword-only parameter {p.name!r} needs a default"
                    )
                continue
            kind, _nullable = _kind_of(ann)
            if p.kind is p.VAR_POSITIONAL:
                params.append(_Param(p.name, kind, True, None, True))
                continue
            optional = p.default is not p.empty
            params.append(_Param(p.name, kind, optional, p.default if optional else None, False))
        for a, b in itertools.pairwise(params):
            if a.optional and not b.optional:
                raise TypeError(f"RPC {self.name}: required parameter after an optional one")
        self._params = tuple(params)
        ret = hints.get("return", sig.return_annotation)
        self._ret = ret

    def _derive_signature(self) -> list[str]:
        ret = self._ret
        ret_name = "nil" if ret is None or ret is type(None) else _KIND_NAMES[_kind_of(ret)[0]]
        out = [ret_name]
        for p in self._params:
            name = _KIND_NAMES[p.kind]
            if p.rest:
                name += "..."
            elif p.optional:
                name = f"[{name}]"
            out.append(name)
        return out

    def read_args(self, ctx: RpcContext) -> list[Any]:
        """Read a Pythonic handler's arguments from ``ctx``.

        Raises:
            Fault: a missing required parameter or a type mismatch (400, ctl's texts).
        """
        args: list[Any] = [ctx] if self._wants_ctx else []
        for index, p in enumerate(self._params):
            if p.rest:
                position = index
                while (value := ctx.read_param(p.kind, position)) is not MISSING:
                    args.append(value)
                    position += 1
                break
            value = ctx.read_param(p.kind, index)
            if value is MISSING:
                if p.optional:
                    args.append(p.default)
                    continue
                expected = {"int": "integer", "str": "string", "float": "float"}.get(p.kind, "any")
                raise Fault(
                    400,
                    f"error at parameter {index}: expected {expected} type but "
                    f"{binrpc_error_text(E_END_OF_PACKET)}",
                )
            args.append(value)
        return args

    def __repr__(self) -> str:
        style = "context" if self.context else "python"
        return f"<Method {self.name} ({style}{', async' if self.is_async else ''})>"


class MethodTable(Protocol):
    """Read access to registered methods (a :class:`Registry` or a chain of them)."""

    def get(self, name: str) -> Method | None: ...

    def names(self) -> list[str]: ...


class Registry:
    """A table of RPC methods with their help texts.

    Register with :meth:`register` or the :meth:`rpc` decorator. Names are exact and
    case-sensitive; registering a name twice replaces the earlier method.
    """

    __slots__ = ("_methods",)

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def register(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        doc: str | None = None,
        context: bool = False,
        signature: Sequence[str] | None = None,
    ) -> Method:
        """Register ``func`` as RPC ``name``.

        Args:
            name: the method name (``"core.echo"``).
            func: the handler (sync or ``async def``).
            doc: help text; defaults to the first paragraph of the docstring.
            context: True for a Kamailio-style handler taking one :class:`RpcContext`.
            signature: type names, return type first, for ``system.methodSignature``;
                derived from the annotations of a Pythonic handler when omitted.

        Raises:
            TypeError: the Pythonic handler's parameters cannot be mapped to binrpc.
        """
        if not name or "\0" in name:
            raise ValueError(f"bad RPC name {name!r}")
        method = Method(name, func, doc=doc, context=context, signature=signature)
        self._methods[name] = method
        return method

    def rpc(
        self,
        name: str | None = None,
        *,
        doc: str | None = None,
        context: bool = False,
        signature: Sequence[str] | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register`; the name defaults to the function name."""

        def deco(func: F) -> F:
            self.register(
                name or func.__name__, func, doc=doc, context=context, signature=signature
            )
            return func

        return deco

    def unregister(self, name: str) -> None:
        """Remove a method (KeyError if unknown)."""
        del self._methods[name]

    def update(self, other: Registry) -> None:
        """Add (or replace) every method of ``other``."""
        self._methods.update(other._methods)

    def get(self, name: str) -> Method | None:
        """The method called ``name``, or None."""
        return self._methods.get(name)

    def names(self) -> list[str]:
        """Every method name, sorted byte-wise (as ``system.listMethods`` lists them)."""
        return sorted(self._methods, key=_bytewise)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __len__(self) -> int:
        return len(self._methods)

    def __iter__(self) -> Iterator[Method]:
        return iter(list(self._methods.values()))

    @staticmethod
    def chain(*tables: MethodTable) -> MethodTable:
        """A read-only view looking names up in ``tables`` in order (first wins)."""
        return _Chain(tables)


def _bytewise(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


class _Chain:
    __slots__ = ("_tables",)

    def __init__(self, tables: Sequence[MethodTable]) -> None:
        self._tables = tuple(tables)

    def get(self, name: str) -> Method | None:
        for table in self._tables:
            method = table.get(name)
            if method is not None:
                return method
        return None

    def names(self) -> list[str]:
        seen: set[str] = set()
        for table in self._tables:
            seen.update(table.names())
        return sorted(seen, key=_bytewise)


# --------------------------------------------------------------------------------------------
# dispatch


def _internal_error(ctx: RpcContext, exc: BaseException) -> None:
    log.error("RPC %s raised an exception", ctx.method, exc_info=exc)
    ctx.fault(500, "Internal server error: %s", type(exc).__name__)


_NOT_AWAITABLE: Final = frozenset((type(None), bool, int, float, str, bytes, list, tuple, dict))


CALL_TIMED_OUT: Final = "call timed out"
"""The text of fault 500 for an async handler cancelled by ``call_timeout``."""


def call_method(
    method: Method, ctx: RpcContext, timeout: float | None = None
) -> Awaitable[None] | None:
    """Run ``method`` for the request in ``ctx``.

    A synchronous handler runs to completion here and its reply (or fault) has gone to the
    context's sink when this returns None. For an asynchronous handler the coroutine that
    finishes the job is returned; the caller schedules it (and must await it). ``timeout``
    (seconds) bounds an asynchronous handler: when it expires the handler is cancelled and
    the reply is fault 500 ``call timed out``. A synchronous handler cannot be interrupted.
    """
    try:
        result = method.func(ctx) if method.context else method.func(*method.read_args(ctx))
        # async def is known at registration; a plain callable may still return an
        # awaitable (a lambda, an object with an async __call__): checked unless the result
        # is a plain value (inspect.isawaitable costs 0.2-0.4 us per call)
        if method.is_async or (type(result) not in _NOT_AWAITABLE and inspect.isawaitable(result)):
            if timeout is not None:
                return _finish_async_timeout(result, ctx, not method.context, timeout)
            return _finish_async(result, ctx, not method.context)
        if not method.context:
            ctx.reply_value(result)
    except Fault as fault:
        ctx.fault(fault.code, "%s", fault.message)
    except Exception as exc:
        _internal_error(ctx, exc)
    ctx.finish()
    return None


async def _finish_async(awaitable: Awaitable[Any], ctx: RpcContext, pythonic: bool) -> None:
    try:
        result = await awaitable
        if pythonic:
            ctx.reply_value(result)
    except Fault as fault:
        ctx.fault(fault.code, "%s", fault.message)
    except Exception as exc:
        _internal_error(ctx, exc)
    ctx.finish()


async def _finish_async_timeout(
    awaitable: Awaitable[Any], ctx: RpcContext, pythonic: bool, timeout: float
) -> None:
    import asyncio  # loaded by then (the client does not import asyncio)

    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            result = await awaitable
        if pythonic:
            ctx.reply_value(result)
    except Fault as fault:
        ctx.fault(fault.code, "%s", fault.message)
    except TimeoutError as exc:
        if deadline.expired():
            log.warning("%s: %s after %g s", ctx.method, CALL_TIMED_OUT, timeout)
            ctx.fault(500, CALL_TIMED_OUT)
        else:  # the handler's own
            _internal_error(ctx, exc)
    except Exception as exc:
        _internal_error(ctx, exc)
    ctx.finish()
