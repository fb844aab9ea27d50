"""Wire-level value types where Python has no exact twin.

Python values map to binrpc records as follows (both directions):

======================  ===========================================================
Python                  binrpc record
======================  ===========================================================
``int`` (and ``bool``)  INT: signed 32-bit. Values outside -2**31 .. 2**32-1 raise
                        :class:`~binrpc.LocalProtocolError` (wrap them in
                        :class:`Double` to send a 64-bit number the way the ctl
                        module sends its 64-bit counters). 2**31 .. 2**32-1 are sent
                        as their 32-bit pattern and come back negative, as C does.
``float``               DOUBLE: fixed point, value x 1000 truncated toward zero
                        (only 3 decimals survive; 1.0009 -> 1.0). NaN, infinities
                        and magnitudes beyond the 64-bit range raise.
``str``                 STR (UTF-8; undecodable bytes round-trip as surrogates)
``bytes``               BYTES
``list`` / ``tuple``    ARRAY
:class:`Struct`         STRUCT; ``dict`` encodes as a struct too
:class:`Double`         DOUBLE, whatever the number (forces the wire type)
======================  ===========================================================

Decoding gives ``int``, ``float``, ``str``, ``bytes``, ``list`` and :class:`Struct`.
"""

from __future__ import annotations

from _collections_abc import Mapping  # = collections.abc.Mapping, without its import cost

from ._frozen import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import TypeAlias

    Value: TypeAlias = (
        int | float | str | bytes | "Double" | "Struct" | list["Value"] | tuple["Value", ...]
    )
else:
    # the precise alias is for type checkers; importing typing costs start-up time
    Value = object

__all__ = ["Double", "Struct", "Value"]


class Double(Frozen):
    """Send ``value`` as a DOUBLE record even when it is an ``int``.

    ``Double(67108864)`` goes out as ``52 0f a0 00 00 00`` (67108864000 milli-units), exactly
    like the ctl module's 64-bit counters. An ``int`` is scaled exactly (no float rounding).
    """

    __match_args__ = ("value",)
    __slots__ = __match_args__
    value: int | float

    def __init__(self, value: int | float) -> None:
        super().__init__(value)

    def __float__(self) -> float:
        return float(self.value)


_MISSING = object()


class Struct:
    """A binrpc struct: an ordered list of ``(name, value)`` members.

    Member order and duplicate names are kept (``dispatcher.list`` repeats ``SET``).
    It reads like a dict: ``s["name"]`` is the *first* member of that name, ``s.getall(name)``
    every one, ``keys()``/``values()``/``items()`` iterate over all members in order.
    Lenient replies (the ctl module's "arrays") put unnamed values inside structs: their name is
    ``None``.
    """

    __slots__ = ("_pairs",)
    _pairs: list[tuple[str | None, Value]]

    def __init__(
        self,
        members: Struct | Mapping[str, Value] | Iterable[tuple[str | None, Value]] = (),
        /,
        **kwargs: Value,
    ) -> None:
        pairs: list[tuple[str | None, Value]]
        if isinstance(members, Struct):
            pairs = list(members._pairs)
        elif isinstance(members, Mapping):
            pairs = list(members.items())
        else:
            pairs = [(name, value) for name, value in members]
        pairs.extend(kwargs.items())
        self._pairs = pairs

    # -- building ---------------------------------------------------------------------------
    def append(self, name: str | None, value: Value) -> None:
        """Add a member at the end (a duplicate name adds a second member)."""
        self._pairs.append((name, value))

    # -- reading ----------------------------------------------------------------------------
    @property
    def pairs(self) -> list[tuple[str | None, Value]]:
        """All members in order, duplicates and unnamed values included (a copy)."""
        return list(self._pairs)

    def __getitem__(self, name: str) -> Value:
        for key, value in self._pairs:
            if key == name:
                return value
        raise KeyError(name)

    def get(self, name: str, default: Value | None = None) -> Value | None:
        """The first member called ``name``, or ``default``."""
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def getall(self, name: str | None) -> list[Value]:
        """Every member called ``name``, in order."""
        return [value for key, value in self._pairs if key == name]

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)

    def __iter__(self) -> Iterator[str | None]:
        return (key for key, _ in self._pairs)

    def keys(self) -> list[str | None]:
        return [key for key, _ in self._pairs]

    def values(self) -> list[Value]:
        return [value for _, value in self._pairs]

    def items(self) -> list[tuple[str | None, Value]]:
        return list(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def to_dict(self) -> dict[str | None, Value]:
        """A plain dict (the first member wins for a duplicate name)."""
        out: dict[str | None, Value] = {}
        for key, value in self._pairs:
            out.setdefault(key, value)
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Struct):
            return self._pairs == other._pairs
        if isinstance(other, Mapping):
            return len(other) == len(self._pairs) and list(other.items()) == self._pairs
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable container

    def __repr__(self) -> str:
        inner = ", ".join(f"({k!r}, {v!r})" for k, v in self._pairs)
        return f"Struct([{inner}])"
