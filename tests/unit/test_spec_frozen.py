"""FrozenDict and frozen JSON values."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from containerlib.errors import SpecError
from containerlib.spec._frozen import FrozenDict, freeze_json, thaw_json
from tests.unit.strategies import json_values


def test_frozen_dict_is_a_read_only_mapping() -> None:
    d = FrozenDict({"b": "1", "a": "2"})
    assert d["a"] == "2"
    assert list(d) == ["b", "a"]
    assert len(d) == 2
    assert "a" in d
    assert "z" not in d
    assert d.get("z") is None
    with pytest.raises(TypeError):
        d["c"] = "3"  # type: ignore[index]
    with pytest.raises(AttributeError):
        d._data = {}  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del d._data


def test_frozen_dict_equality_and_hash_ignore_order() -> None:
    a = FrozenDict([("x", 1), ("y", 2)])
    b = FrozenDict({"y": 2, "x": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert a == {"x": 1, "y": 2}
    plain = {"x": 1, "y": 2}
    assert plain == a  # dict on the left: the reflected comparison
    assert a != {"x": 1}
    assert a != [("x", 1), ("y", 2)]
    assert len({a, b}) == 1
    assert FrozenDict() == {}


def test_frozen_dict_survives_pickle_and_copy() -> None:
    d = FrozenDict({"k": (1, FrozenDict({"n": None}))})
    for clone in (pickle.loads(pickle.dumps(d)), copy.copy(d), copy.deepcopy(d)):
        assert clone == d
        assert type(clone) is FrozenDict
        assert hash(clone) == hash(d)


def test_frozen_dict_repr_and_union() -> None:
    d = FrozenDict({"a": 1})
    assert repr(d) == "FrozenDict({'a': 1})"
    merged = d | {"b": 2}
    assert merged == {"a": 1, "b": 2}
    assert isinstance(merged, FrozenDict)
    assert d == {"a": 1}


@given(json_values())
def test_freeze_then_thaw_is_identity_and_hashable(value: Any) -> None:
    frozen = freeze_json(value, "extra")
    hash(frozen)
    assert thaw_json(frozen) == value
    assert json.dumps(thaw_json(frozen)) == json.dumps(value)


@pytest.mark.parametrize(
    ("value", "field", "fragment"),
    [
        ({1, 2}, "x", "must be JSON data, not set"),
        ([b"a"], "x[0]", "must be JSON data, not bytes"),
        ({"k": float("inf")}, "x['k']", "must be JSON data, not inf"),
        ({1: "a"}, "x", "object keys must be strings, not int"),
    ],
)
def test_freeze_rejects_what_json_cannot_hold(value: Any, field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        freeze_json(value, "x")
    assert info.value.field == field
    assert fragment in str(info.value)


@given(st.dictionaries(st.text(), st.integers()))
def test_frozen_dict_equals_its_source(source: dict[str, int]) -> None:
    d = FrozenDict(source)
    assert d == source
    assert dict(d) == source
    assert hash(d) == hash(FrozenDict(reversed(list(source.items()))))
