"""The handler's view of a request, transport-neutral: :class:`RpcContext`, and the mapping
of a Pythonic handler's return value onto its primitives (:meth:`RpcContext.reply_value`).

:class:`~binrpc._binrpc_context.BinrpcContext` implements it for binrpc requests,
:class:`~binrpc._fifo_context.FifoContext` for the FIFO text protocol, on the same registry.
No I/O here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from ._cnum import INT_MIN
from ._errors import LocalProtocolError
from ._registry import MISSING, MethodTable, ParamReader
from ._values import Double, Struct

__all__ = ["MISSING", "RpcContext", "ScanResult", "ServerInfo"]


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

    @property
    def process_name(self) -> str:
        """This process's name in ``core.ps``/``core.psx`` (``main process - NAME``)."""

    def request_shutdown(self) -> None:
        """Shut the server down cleanly once pending replies are written (``core.kill``)."""


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


class RpcContext(ParamReader):
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
        """Read parameters according to ``fmt`` (spec 5.2); see :class:`ScanResult`.

        (:meth:`~binrpc._registry.ParamReader.read_param` reads one for a Pythonic handler.)
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
        return "d" if INT_MIN <= value <= 0xFFFFFFFF else "J"
    if t is float or t is Double:
        return "f"
    if isinstance(value, bytes | bytearray | memoryview):
        return "y"  # internal: BYTES record
    if isinstance(value, bool | int):
        return "d" if INT_MIN <= value <= 0xFFFFFFFF else "J"
    if isinstance(value, float):
        return "f"
    if isinstance(value, str):
        return "S"
    raise LocalProtocolError(f"an RPC cannot return a value of type {t.__name__}")
