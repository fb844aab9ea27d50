"""The RPC method registry: methods, their help texts, and the introspection of a Pythonic
handler's signature (parameter kinds, ``system.methodSignature``). No I/O here.

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
  :class:`~binrpc._context.RpcContext` and uses ``scan``/``add``/``array_add``/``struct_add``/
  ``rpl_printf``/``struct_printf``/``fault``/``send`` with the format characters and the
  semantics of the ctl module (spec section 5)::

      @registry.rpc("core.echo", context=True, doc="Returns back its parameters.")
      def echo(ctx: RpcContext) -> None:
          while (r := ctx.scan("*.s")) > 0:
              ctx.add("s", r.values[0])

A method reads a Pythonic handler's arguments through :class:`ParamReader`, the one thing it
needs of a context (:class:`~binrpc._context.RpcContext` is one): this module depends on no
context.
"""

from __future__ import annotations

import abc
import inspect
import itertools
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, Union

from ._errors import E_END_OF_PACKET, Fault, binrpc_error_text
from ._values import Struct

__all__ = ["MISSING", "Method", "MethodTable", "ParamReader", "Registry"]


class _Missing:
    """Returned by :meth:`RpcContext.read_param` when the parameters are exhausted."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class ParamReader(abc.ABC):
    """Where a Pythonic handler's arguments come from: a context, seen by :class:`Method`."""

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


_SCALAR_KINDS: Final = (
    (bool, "bool"),  # before int: bool is a subclass of int, but here only identity counts
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (bytes, "bytes"),
    (bytearray, "bytes"),
)
"""Annotation type -> param kind, compared by identity (an annotation need not be hashable)."""


def _kind_of(annotation: Any) -> tuple[str, bool]:
    """Annotation -> (kind, accepts None)."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return "any", False
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return _union_kind(typing.get_args(annotation))
    return _base_kind(origin or annotation), False


def _union_kind(members: tuple[Any, ...]) -> tuple[str, bool]:
    """A union's (kind, accepts None): ``X | None`` is X's kind, any other union ``any``."""
    args = [a for a in members if a is not type(None)]
    nullable = len(args) < len(members)
    if len(args) == 1:
        return _kind_of(args[0])[0], nullable
    return "any", nullable


def _base_kind(base: Any) -> str:
    """The kind of a non-union annotation's type (its origin for a generic alias)."""
    for scalar, kind in _SCALAR_KINDS:
        if base is scalar:
            return kind
    if isinstance(base, type) and issubclass(base, Struct | Mapping):
        return "struct"
    if isinstance(base, type) and issubclass(base, list | tuple | Sequence):
        return "array"
    return "any"


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
            if i == 0 and isinstance(ann, type) and issubclass(ann, ParamReader):
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

    def read_args(self, ctx: ParamReader) -> list[Any]:
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
            context: True for a Kamailio-style handler taking one
                :class:`~binrpc._context.RpcContext`.
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
