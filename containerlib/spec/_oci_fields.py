"""The machinery behind the OCI classes: field codecs, validation and JSON round trips.

Each field of an OCI class carries, in its attrs metadata, its JSON name and a *codec*
that knows how to check the Python value, read it from JSON and write it back. The shared
base class :class:`OCIObject` uses that to validate every object when it is built and to
convert it to and from the ``config.json`` form, so the classes themselves are plain
declarations.

Two details keep ``to_dict(from_dict(x)) == x`` for every valid document:

* keys the model does not know are kept in ``extra`` and written back as they came;
* the JSON keys present in the input are remembered (outside equality), so an explicit
  ``"terminal": false`` or ``"args": []`` is written back although it equals the default.

Errors raised while an object is built name the Python attribute (``no_new_privileges``);
errors raised while loading JSON name the JSON path (``process.noNewPrivileges``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Self

import attrs

from containerlib.errors import SpecError
from containerlib.spec._frozen import FrozenDict, freeze_json, thaw_json

__all__ = [
    "BOOL",
    "I32",
    "I64",
    "STR",
    "U16",
    "U32",
    "U64",
    "Bool",
    "Codec",
    "Int",
    "ListOf",
    "MapOf",
    "OCIObject",
    "Obj",
    "Opt",
    "Str",
    "absolute_path",
    "as_frozendict",
    "as_tuple",
    "matches",
    "message_of",
    "no_nul",
    "non_empty",
    "oci",
    "one_of",
    "type_name",
]

_META = "containerlib.spec.oci"

Check = Callable[[Any], str | None]
"""A value check: returns ``None`` when the value is fine, else the error message."""


def type_name(value: object) -> str:
    """Return the name used for ``value``'s type in error messages."""
    return type(value).__name__


def _must(what: str, value: object) -> str:
    return f"must be {what}, not {type_name(value)}"


class Codec:
    """How one field's value is checked, read from JSON and written back to JSON."""

    def check(self, value: Any, field: str) -> None:
        """Raise :class:`SpecError` naming ``field`` if ``value`` is not acceptable."""
        raise NotImplementedError

    def load(self, raw: Any, path: str) -> Any:
        """Turn JSON data into the value given to the constructor (which checks it)."""
        return raw

    def dump(self, value: Any) -> Any:
        """Turn the value back into JSON data."""
        return value


class Str(Codec):
    """A string, with optional extra checks."""

    def __init__(self, *checks: Check) -> None:
        self.checks = checks

    def check(self, value: Any, field: str) -> None:
        if not isinstance(value, str):
            raise SpecError(field, _must("a string", value))
        for check in self.checks:
            message = check(value)
            if message is not None:
                raise SpecError(field, message)


class Int(Codec):
    """An integer (never a bool) between ``lo`` and ``hi`` inclusive."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi

    def check(self, value: Any, field: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(field, _must("an integer", value))
        if value < self.lo:
            if self.lo == 0:
                raise SpecError(field, f"must not be negative, not {value}")
            if self.lo == 1:
                raise SpecError(field, f"must be positive, not {value}")
            raise SpecError(field, f"must be at least {self.lo}, not {value}")
        if value > self.hi:
            raise SpecError(field, f"must be at most {self.hi}, not {value}")


class Bool(Codec):
    """``True`` or ``False``."""

    def check(self, value: Any, field: str) -> None:
        if not isinstance(value, bool):
            raise SpecError(field, _must("a boolean", value))


class Opt(Codec):
    """The inner codec, or ``None`` (an omitted field)."""

    def __init__(self, inner: Codec) -> None:
        self.inner = inner

    def check(self, value: Any, field: str) -> None:
        if value is not None:
            self.inner.check(value, field)

    def load(self, raw: Any, path: str) -> Any:
        return None if raw is None else self.inner.load(raw, path)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)


class Obj(Codec):
    """A nested OCI object, held as an instance of ``cls``."""

    def __init__(self, cls: type[OCIObject]) -> None:
        self.cls = cls

    def check(self, value: Any, field: str) -> None:
        if not isinstance(value, self.cls):
            raise SpecError(field, _must(f"a {self.cls.__name__}", value))

    def load(self, raw: Any, path: str) -> Any:
        return self.cls.load_at(raw, path)

    def dump(self, value: Any) -> Any:
        return value.to_dict()


class ListOf(Codec):
    """A JSON array, held as a tuple whose items all pass ``item``."""

    def __init__(self, item: Codec) -> None:
        self.item = item

    def check(self, value: Any, field: str) -> None:
        if not isinstance(value, tuple):
            raise SpecError(field, _must("a list", value))
        for i, v in enumerate(value):
            self.item.check(v, f"{field}[{i}]")

    def load(self, raw: Any, path: str) -> Any:
        if not isinstance(raw, list | tuple):
            return raw
        return tuple(self.item.load(v, f"{path}[{i}]") for i, v in enumerate(raw))

    def dump(self, value: Any) -> Any:
        return [self.item.dump(v) for v in value]


class MapOf(Codec):
    """A JSON object with string keys, held as a :class:`FrozenDict`."""

    def __init__(self, value: Codec, *key_checks: Check) -> None:
        self.value = value
        self.key_checks = key_checks

    def check(self, value: Any, field: str) -> None:
        if not isinstance(value, FrozenDict):
            raise SpecError(field, _must("a mapping", value))
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(field, f"keys must be strings, not {type_name(k)} {k!r}")
            for check in self.key_checks:
                message = check(k)
                if message is not None:
                    raise SpecError(field, message)
            self.value.check(v, f"{field}[{k!r}]")

    def load(self, raw: Any, path: str) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        return FrozenDict({k: self.value.load(v, f"{path}[{k!r}]") for k, v in raw.items()})

    def dump(self, value: Any) -> Any:
        return {k: self.value.dump(v) for k, v in value.items()}


BOOL = Bool()
STR = Str()
U16 = Int(0, 2**16 - 1)
U32 = Int(0, 2**32 - 1)
U64 = Int(0, 2**64 - 1)
I32 = Int(-(2**31), 2**31 - 1)
I64 = Int(-(2**63), 2**63 - 1)


def absolute_path(value: str) -> str | None:
    """Check that ``value`` is an absolute path."""
    return None if value.startswith("/") else f"must be an absolute path, not {value!r}"


def no_nul(value: str) -> str | None:
    """Check that ``value`` has no NUL byte (the kernel could not take it)."""
    return None if "\0" not in value else f"must not contain a NUL byte, not {value!r}"


def non_empty(value: str) -> str | None:
    """Check that ``value`` is not the empty string."""
    return None if value else "must not be empty"


def one_of(*choices: str) -> Check:
    """Return a check that accepts only ``choices``."""

    def check(value: str) -> str | None:
        if value in choices:
            return None
        return f"must be one of {', '.join(map(repr, choices))}; not {value!r}"

    return check


def matches(pattern: str, what: str) -> Check:
    """Return a check that accepts strings matching ``pattern`` in full.

    Args:
        pattern: a regular expression.
        what: the words for an acceptable value, such as ``"a capability like 'CAP_KILL'"``.
    """
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str | None:
        return None if compiled.fullmatch(value) else f"must be {what}, not {value!r}"

    return check


def as_tuple(value: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
    """Converter: lists become tuples; anything else is left for the check to reject."""
    return tuple(value) if isinstance(value, list) else value


def as_frozendict(value: Mapping[str, Any]) -> FrozenDict[str, Any]:
    """Converter: mappings become :class:`FrozenDict`; anything else is left to the check."""
    if isinstance(value, Mapping) and not isinstance(value, FrozenDict):
        return FrozenDict(value)
    return value  # not a mapping: the check will say so


def _freeze_extra(value: Mapping[str, Any]) -> FrozenDict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError("extra", _must("a mapping", value))
    frozen = freeze_json(value, "extra")
    assert isinstance(frozen, FrozenDict)
    return frozen


def _as_keys(value: frozenset[str] | set[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class _FieldInfo:
    json: str
    codec: Codec
    required: bool


@attrs.frozen
class _Field:
    name: str
    alias: str
    json: str
    codec: Codec
    required: bool
    default: Any


@attrs.frozen
class _Layout:
    fields: tuple[_Field, ...]
    by_json: dict[str, _Field]
    by_name: dict[str, _Field]


def oci(json: str, codec: Codec, *, required: bool = False) -> dict[str, Any]:
    """Return the attrs metadata for a field written as ``json`` in config.json.

    Args:
        json: the field's JSON name.
        codec: how the value is checked and converted.
        required: the spec requires the key: it is always written and must be present when
            a document is loaded.
    """
    return {_META: _FieldInfo(json, codec, required)}


_LAYOUTS: dict[type[OCIObject], _Layout] = {}


def _layout(cls: type[OCIObject]) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is not None:
        return layout
    fields = tuple(
        _Field(a.name, a.alias or a.name, info.json, info.codec, info.required, a.default)
        for a in attrs.fields(cls)
        if (info := a.metadata.get(_META)) is not None
    )
    layout = _Layout(fields, {f.json: f for f in fields}, {f.name: f for f in fields})
    _LAYOUTS[cls] = layout
    return layout


_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _json_path(cls: type[OCIObject], field: str) -> str:
    """Translate an error's Python field name (``no_new_privileges[1]``) to its JSON name."""
    m = _HEAD.match(field)
    if m is None:
        return field
    f = _layout(cls).by_name.get(m.group(0))
    return (f.json if f is not None else m.group(0)) + field[m.end() :]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def message_of(error: SpecError) -> str:
    """Return a :class:`SpecError`'s message without its ``field:`` prefix."""
    text = str(error.args[0]) if error.args else ""
    prefix = f"{error.field}: "
    return text[len(prefix) :] if error.field and text.startswith(prefix) else text


@attrs.frozen(kw_only=True, repr=False)
class OCIObject:
    """Base of the OCI classes: validation when built, ``from_dict`` and ``to_dict``.

    Attributes:
        extra: keys of the JSON object that this model does not know, kept as they came
            (lists as tuples, objects as :class:`FrozenDict`) and written back on dump.
    """

    extra: FrozenDict[str, Any] = attrs.field(default=FrozenDict(), converter=_freeze_extra)
    _explicit: frozenset[str] = attrs.field(
        default=frozenset(), converter=_as_keys, eq=False, alias="_explicit"
    )

    def __attrs_post_init__(self) -> None:
        layout = _layout(type(self))
        for f in layout.fields:
            f.codec.check(getattr(self, f.name), f.name)
        for key in self.extra:
            if key in layout.by_json:
                name = layout.by_json[key].name
                raise SpecError("extra", f"{key!r} is a known field; set {name}= instead")
        self._cross_check()

    def _cross_check(self) -> None:
        """Checks that involve more than one field; subclasses override this.

        Raise :class:`SpecError` naming the Python attribute at fault.
        """

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build an object from its JSON form, as :func:`json.loads` returns it.

        Raises:
            SpecError: the data does not fit the spec; ``field`` is the JSON path of the
                bad value, for example ``process.args[2]``.
        """
        return cls.load_at(data, "")

    @classmethod
    def load_at(cls, raw: Any, path: str) -> Self:
        """Like :meth:`from_dict`, for an object found at ``path`` in a larger document."""
        if not isinstance(raw, Mapping):
            raise SpecError(path, _must("an object", raw))
        layout = _layout(cls)
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        explicit: set[str] = set()
        for key, value in raw.items():
            f = layout.by_json.get(key)
            if f is None:
                extra[key] = freeze_json(value, _join(path, str(key)))
            elif value is not None or f.required:
                explicit.add(key)
                kwargs[f.alias] = f.codec.load(value, _join(path, key))
        for f in layout.fields:
            if f.required and f.json not in explicit:
                raise SpecError(_join(path, f.json), "is required")
        try:
            return cls(**kwargs, extra=FrozenDict(extra), _explicit=frozenset(explicit))
        except SpecError as e:
            raise SpecError(_join(path, _json_path(cls, e.field)), message_of(e)) from None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: known fields in the spec's order, then the unknown keys.

        A field is written when the spec requires it, when it differs from its default, or
        when it was present in the document this object was loaded from.
        """
        out: dict[str, Any] = {}
        for f in _layout(type(self)).fields:
            value = getattr(self, f.name)
            if value is None and not f.required:
                continue
            if f.required or f.json in self._explicit or value != f.default:
                out[f.json] = f.codec.dump(value)
        for key, value in self.extra.items():
            out[key] = thaw_json(value)
        return out

    def __repr__(self) -> str:
        parts = []
        for f in _layout(type(self)).fields:
            value = getattr(self, f.name)
            if f.default is attrs.NOTHING or value != f.default:
                parts.append(f"{f.name}={value!r}")
        if self.extra:
            parts.append(f"extra={self.extra!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
