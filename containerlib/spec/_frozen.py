"""Immutable containers for the spec model: :class:`FrozenDict` and frozen JSON values.

The spec classes are frozen and hashable, so every value they hold must be too. Mappings
(``annotations``, ``sysctl``, ``unified``, unknown keys) are held as :class:`FrozenDict`;
arbitrary JSON kept for round trips is held "frozen": lists become tuples and objects become
:class:`FrozenDict`, and :func:`thaw_json` turns them back.

Example:
    >>> d = FrozenDict({"b": "1", "a": "2"})
    >>> d["a"], list(d), d == {"a": "2", "b": "1"}
    ('2', ['b', 'a'], True)
    >>> hash(d) == hash(FrozenDict([("a", "2"), ("b", "1")]))
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

from containerlib.errors import SpecError

__all__ = ["FrozenDict", "freeze_json", "thaw_json"]

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(Mapping[K, V]):
    """An immutable, hashable, picklable mapping that keeps insertion order.

    It compares equal to any mapping with the same items (a plain ``dict`` included), and
    its hash depends only on the items, not on their order.
    """

    __slots__ = ("_data", "_hash")

    _data: dict[K, V]
    _hash: int | None

    @overload
    def __init__(self, /) -> None: ...
    @overload
    def __init__(self, data: Mapping[K, V], /) -> None: ...
    @overload
    def __init__(self, data: Iterable[tuple[K, V]], /) -> None: ...

    def __init__(self, data: Any = (), /) -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_hash", None)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, "_hash", hash(frozenset(self._data.items())))
        assert self._hash is not None
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __or__(self, other: Mapping[K, V]) -> FrozenDict[K, V]:
        """Return a copy with the items of ``other`` added or replaced."""
        return type(self)({**self._data, **other})


def freeze_json(value: object, field: str) -> object:
    """Return ``value`` as hashable JSON data: lists as tuples, objects as :class:`FrozenDict`.

    Args:
        value: data as :func:`json.loads` returns it (tuples and mappings are accepted too).
        field: the name to put in the error.

    Raises:
        SpecError: ``value`` holds something JSON cannot express (a set, bytes, NaN, a
            mapping with non-string keys).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(field, f"must be JSON data, not {value!r}")
        return value
    if isinstance(value, list | tuple):
        return tuple(freeze_json(v, f"{field}[{i}]") for i, v in enumerate(value))
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(field, f"object keys must be strings, not {type(k).__name__}")
            out[k] = freeze_json(v, f"{field}[{k!r}]")
        return FrozenDict(out)
    raise SpecError(field, f"must be JSON data, not {type(value).__name__}")


def thaw_json(value: object) -> object:
    """Undo :func:`freeze_json`: tuples become lists and mappings become dicts."""
    if isinstance(value, tuple):
        return [thaw_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    return value
