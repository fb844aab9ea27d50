"""A minimal immutable record base class.

``@dataclass(frozen=True, slots=True)`` would do, but importing :mod:`dataclasses` pulls in
:mod:`inspect` and costs several milliseconds: too much for a one-shot ``binrpc`` call, whose
whole start-up budget is a few milliseconds above the interpreter's. Subclasses list their
fields, in positional order, in ``__match_args__`` and use it as ``__slots__``; instances
compare, hash and print by those fields.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Frozen"]


class Frozen:
    """Immutable record: fields are the class's ``__match_args__``, set once by ``__init__``."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()

    def _names(self) -> tuple[str, ...]:
        return type(self).__match_args__

    def __init__(self, *args: Any) -> None:
        for name, value in zip(self._names(), args, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._names())

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._fields() == other._fields()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._names())
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), self._fields())
