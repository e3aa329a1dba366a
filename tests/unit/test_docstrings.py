"""Every public name has a docstring, and every public class and function an example.

The API reference (docs/reference/, built by mkdocstrings) is made from these docstrings,
so a missing one is a hole in the documentation. "Public" is what a user reaches: the
names in ``__all__`` of the modules below, and the methods and properties of their
classes (also those a class inherits from a private base of containerlib). An example
is an ``Example:`` section or a ``>>>`` line.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

#: The modules whose ``__all__`` is the public API.
PUBLIC_MODULES = (
    "containerlib",
    "containerlib.errors",
    "containerlib.readiness",
    "containerlib.aio",
    "containerlib.calls",
    "containerlib.pytest_plugin",
)

#: Public names that are not in ``__all__``: ``containerlib.list`` and others are left out
#: of it so that a star import does not hide the built-ins.
EXTRA_NAMES = (
    ("containerlib", "get"),
    ("containerlib", "list"),
    ("containerlib", "prune"),
)

#: Methods that have a docstring but no example yet. Shrink it; a name that gets an
#: example must leave it (test_known_without_example_is_current says so).
KNOWN_WITHOUT_EXAMPLE: frozenset[str] = frozenset()


def _public_objects() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) of every public class and function, each once."""
    seen: set[int] = set()
    names = [(m, n) for m in PUBLIC_MODULES for n in importlib.import_module(m).__all__]
    for module_name, name in [*names, *EXTRA_NAMES]:
        obj = getattr(importlib.import_module(module_name), name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
            continue  # constants (calls.HOST_LIBS) are documented by a comment
        seen.add(id(obj))
        yield f"{obj.__module__}.{obj.__qualname__}", obj


def _members(cls: type) -> Iterator[tuple[str, str, Any]]:
    """(name, kind, function) of the public methods and properties of ``cls``, with those
    it inherits from containerlib's own (private) bases."""
    done: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("containerlib"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in done:
                continue
            done.add(name)
            if isinstance(value, property):
                yield name, "property", value.fget
            elif isinstance(value, classmethod | staticmethod):
                yield name, "method", value.__func__
            elif inspect.isfunction(value):
                yield name, "method", value


def _has_example(doc: str | None) -> bool:
    return doc is not None and ("Example:" in doc or "Examples:" in doc or ">>>" in doc)


PUBLIC = dict(_public_objects())
CLASSES = {name: obj for name, obj in PUBLIC.items() if inspect.isclass(obj)}
MEMBERS = {
    f"{qualified}.{name}": (kind, fn)
    for qualified, cls in CLASSES.items()
    if not issubclass(cls, BaseException)
    for name, kind, fn in _members(cls)
}


def test_the_public_api_is_found() -> None:
    # A broken walk would pass everything below: make sure it sees what a user sees.
    for name in (
        "containerlib.container.Container",
        "containerlib.container.RunningContainer",
        "containerlib.detached.DetachedContainer",
        "containerlib.images.Image",
        "containerlib.networks.Network",
        "containerlib.readiness.wait_for",
        "containerlib.readiness.conditions.Http",
        "containerlib.errors.ContainerNotReady",
        "containerlib.pytest_plugin.Containers",
        "containerlib.detached.prune",
    ):
        assert name in PUBLIC
    for name in (
        "containerlib.container.Container.run",
        "containerlib.container.RunningContainer.exec",
        # inherited from the private _CgroupControls
        "containerlib.container.RunningContainer.pause",
        "containerlib.detached.DetachedContainer.id",
    ):
        assert name in MEMBERS


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_a_docstring_with_an_example(name: str) -> None:
    doc = PUBLIC[name].__doc__ or ""
    assert doc.strip(), f"{name} has no docstring"
    assert _has_example(doc), f"{name}: its docstring has no example (Example: or >>>)"


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_public_method_or_property_has_a_docstring(name: str) -> None:
    kind, fn = MEMBERS[name]
    doc = fn.__doc__ or ""
    assert doc.strip(), f"the {kind} {name} has no docstring"
    if kind == "method" and name not in KNOWN_WITHOUT_EXAMPLE:
        assert _has_example(doc), f"the method {name}: its docstring has no example"


def test_known_without_example_is_current() -> None:
    stale = {
        name
        for name in KNOWN_WITHOUT_EXAMPLE
        if name not in MEMBERS or _has_example(MEMBERS[name][1].__doc__)
    }
    assert not stale, f"remove from KNOWN_WITHOUT_EXAMPLE (gone, or has an example): {stale}"
