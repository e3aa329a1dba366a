"""The names ``containerlib`` exports, its lazy facade, and its exception tree."""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import containerlib
from containerlib import (
    CallError,
    ContainerError,
    ContainerlibError,
    ContainerNotFound,
    ContainerNotReady,
    ContainerNotRunning,
    ContainerSetupError,
    ImageError,
    ImageNotFound,
    LayerError,
    Result,
    SpawnerError,
    SpecError,
)
from containerlib.readiness import Port

ROOT = Path(__file__).resolve().parents[2]

EXPORTED = [
    "CallError",
    "CgroupStats",
    "Container",
    "ContainerError",
    "ContainerNotFound",
    "ContainerNotReady",
    "ContainerNotRunning",
    "ContainerSetupError",
    "ContainerlibError",
    "DetachedContainer",
    "Event",
    "Image",
    "ImageError",
    "ImageNotFound",
    "LayerError",
    "Network",
    "Pressure",
    "Result",
    "RunningContainer",
    "SpawnerError",
    "SpecError",
]
FACADE = {
    "Container": "containerlib.container",
    "Result": "containerlib.container",
    "RunningContainer": "containerlib.container",
    "Image": "containerlib.images",
    "DetachedContainer": "containerlib.detached",
    "Event": "containerlib.container",
    "CgroupStats": "containerlib.linux.cgroups._base",
    "Pressure": "containerlib.linux.cgroups._base",
    "Network": "containerlib.networks",
}


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_all_is_exactly_the_intended_names() -> None:
    assert sorted(containerlib.__all__) == EXPORTED
    assert len(set(containerlib.__all__)) == len(containerlib.__all__)


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(containerlib, name)
    assert value.__name__ == name
    if name in FACADE:
        assert value.__module__ == FACADE[name]


def test_star_import_gives_every_name() -> None:
    namespace: dict[str, object] = {}
    exec("from containerlib import *", namespace)
    assert sorted(k for k in namespace if not k.startswith("__")) == EXPORTED


def test_the_detached_container_functions_are_there_but_not_star_imported() -> None:
    from containerlib import detached

    assert containerlib.get is detached.get
    assert containerlib.list is detached.list
    assert containerlib.prune is detached.prune
    namespace: dict[str, object] = {}
    exec("from containerlib import *", namespace)
    assert "list" not in namespace


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="'Containr'"):
        containerlib.Containr  # type: ignore[attr-defined]  # noqa: B018


def test_facade_is_imported_on_first_use_only() -> None:
    out = _python(
        "import sys, containerlib\n"
        "before = sorted(m for m in ('containerlib.container', 'containerlib.images')"
        " if m in sys.modules)\n"
        "c = containerlib.Container\n"
        "import containerlib.container as mod\n"
        "print(before, c is mod.Container, 'containerlib.images' in sys.modules)\n"
    )
    assert out == "[] True True"


def test_dir_lists_the_lazy_names_before_first_use() -> None:
    out = _python(
        "import containerlib\n"
        "print(sorted(n for n in containerlib.__all__ if n not in dir(containerlib)))\n"
    )
    assert out == "[]"


# -- exceptions ---------------------------------------------------------------------------------

EXCEPTIONS = [
    ContainerlibError,
    SpecError,
    ImageError,
    ImageNotFound,
    LayerError,
    ContainerSetupError,
    CallError,
    ContainerError,
    ContainerNotReady,
    ContainerNotRunning,
    ContainerNotFound,
    SpawnerError,
]


def test_every_exported_exception_is_listed_here() -> None:
    exported = [
        getattr(containerlib, n)
        for n in EXPORTED
        if isinstance(getattr(containerlib, n), type)
        and issubclass(getattr(containerlib, n), BaseException)
    ]
    assert set(exported) == set(EXCEPTIONS)


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (SpecError, (ValueError,)),
        (ImageError, ()),
        (ImageNotFound, (ImageError, LookupError)),
        (LayerError, (ImageError, ValueError)),
        (ContainerSetupError, (OSError,)),
        (ContainerError, (RuntimeError,)),
        (CallError, (ContainerError, RuntimeError)),
        (ContainerNotRunning, (RuntimeError,)),
        (ContainerNotReady, (TimeoutError,)),
        (ContainerNotFound, (LookupError,)),
        (SpawnerError, (RuntimeError,)),
    ],
)
def test_exception_tree(cls: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    assert issubclass(cls, ContainerlibError)
    for base in bases:
        assert issubclass(cls, base), f"{cls.__name__} is not a {base.__name__}"


def test_spec_error_names_the_field() -> None:
    e = SpecError("linux.resources.memory", "must be positive, not -1")
    assert e.field == "linux.resources.memory"
    assert str(e) == "linux.resources.memory: must be positive, not -1"
    with pytest.raises(ValueError, match="must be positive"):
        raise e


def test_setup_error_keeps_errno_and_names_step_and_container() -> None:
    e = ContainerSetupError("mount '/proc'", errno.EPERM, "3f2a")
    assert e.errno == errno.EPERM
    assert e.step == "mount '/proc'"
    assert e.container_id == "3f2a"
    assert str(e) == "mount '/proc' in container 3f2a: Operation not permitted"
    with pytest.raises(OSError, match="Operation not permitted") as info:
        raise e
    assert info.value.errno == errno.EPERM


def test_setup_error_detail_says_what_to_do() -> None:
    e = ContainerSetupError("create the container", errno.EPERM, "ab", "run as root")
    assert str(e) == "create the container in container ab: Operation not permitted (run as root)"


@pytest.mark.parametrize("detail", ["", "overlayfs is missing"])
def test_setup_error_pickles(detail: str) -> None:
    e = ContainerSetupError("mount overlay", errno.ENODEV, "3f2a", detail)
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is ContainerSetupError
    assert copy.step == "mount overlay"
    assert copy.errno == errno.ENODEV
    assert copy.container_id == "3f2a"
    assert str(copy) == str(e)


def test_container_error_carries_the_result() -> None:
    result = Result(exit_code=3, stdout=b"out", stderr=b"it broke\n", oom_killed=True)
    e = ContainerError(result, ["make", "test"])
    assert e.result is result
    assert e.command == ["make", "test"]
    assert "exit code 3" in str(e)
    assert "killed for lack of memory" in str(e)
    assert str(e).endswith("it broke")
    assert "['make', 'test']" in str(e)


def _instances() -> list[object]:
    result = Result(exit_code=1, stdout=b"", stderr=b"boom")
    return [
        pytest.param(ContainerlibError("x"), id="ContainerlibError"),
        pytest.param(SpecError("process.args", "is empty"), id="SpecError"),
        pytest.param(ImageError("x"), id="ImageError"),
        pytest.param(ImageNotFound("no image"), id="ImageNotFound"),
        pytest.param(LayerError("bad digest"), id="LayerError"),
        pytest.param(ContainerSetupError("mount", errno.EPERM, "c1"), id="ContainerSetupError"),
        pytest.param(ContainerError(result, ["false"]), id="ContainerError"),
        pytest.param(CallError(result, ["python"], "killed"), id="CallError"),
        pytest.param(ContainerNotRunning("3f2a", "pause"), id="ContainerNotRunning"),
        pytest.param(ContainerNotReady("ab", Port(80), 1.0, b"x\n", 3), id="ContainerNotReady"),
        pytest.param(SpawnerError("gone"), id="SpawnerError"),
    ]


@pytest.mark.parametrize("error", _instances())
def test_every_exception_survives_pickle(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
