"""Python functions run in containers (``call``) and the host container, on the real kernel.

The functions live in :mod:`tests.integration.call_targets`: ``call`` pickles a function by
its module's name, and the container imports that module.
"""

from __future__ import annotations

import concurrent.futures
import errno
import importlib.util
import os
import pickle
import sys
import threading
from pathlib import Path

import attrs
import pytest

from containerlib import Container, Image, SpecError
from containerlib.calls import CallError, call, host_container

from . import call_targets as t
from .conftest import needs_root

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]

#: Modules whose extension modules load shared libraries of their own.
EXTENSIONS = ("ssl", "ctypes", "sqlite3", "decimal", "hashlib", "zlib")


@pytest.fixture(scope="module")
def host(roots: dict[str, str]) -> Container:
    return host_container()


def test_values_go_in_and_come_back(host: Container) -> None:
    value = {"bytes": b"\0\xff" * 1000, "nested": [1.5, None, ("a", {2, 3})], "big": 10**40}
    args, kwargs = call(host, t.echo, value, 7, key="word")
    assert args == (value, 7)
    assert kwargs == {"key": "word"}


def test_a_big_value_comes_back_whole(host: Container) -> None:
    blob = os.urandom(3 << 20)
    assert call(host, t.echo, blob) == ((blob,), {})


def test_an_exception_is_raised_with_its_type_and_message(host: Container) -> None:
    with pytest.raises(KeyError, match="no such thing") as info:
        call(host, t.fail, "no such thing")
    # The traceback inside the container comes along as a note.
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Traceback in the container" in notes
    assert "raise KeyError(message)" in notes


def test_an_exception_that_does_not_pickle_becomes_a_call_error(host: Container) -> None:
    with pytest.raises(CallError) as info:
        call(host, t.fail_unpicklable, "held a lock")
    error = info.value
    assert "Unpicklable" in str(error)
    assert "held a lock" in str(error)
    assert "raise Unpicklable(message)" in error.remote_traceback
    assert not error.oom_killed


def test_a_result_that_does_not_pickle_is_a_call_error(host: Container) -> None:
    with pytest.raises(CallError, match=r"lock.*does not pickle"):
        call(host, t.return_unpicklable)


@needs_root("a memory limit; no memory cgroup is delegated to this user")
def test_allocating_past_the_memory_limit_is_reported_as_oom(host: Container) -> None:
    with pytest.raises(CallError) as info:
        call(host.limit(mem="64M"), t.allocate, 200)
    error = info.value
    assert error.oom_killed
    assert error.result.exit_code == 137
    assert "lack of memory" in str(error)
    assert "64 MiB" in str(error)
    # Under the limit, the same function returns.
    assert call(host.limit(mem="64M"), t.allocate, 8) == 8 << 20


def test_the_function_sees_only_its_own_processes(host: Container) -> None:
    pid, pids = call(host, t.processes)
    assert pid in pids
    assert os.getpid() not in pids
    assert len(pids) <= 3, pids  # the interpreter, maybe an init: nothing of the host


def test_it_writes_only_to_its_tmpfs_which_is_gone_after(host: Container) -> None:
    erofs = f"OSError errno {errno.EROFS}"
    assert call(host, t.try_write, "/usr/x") == erofs
    assert call(host, t.try_write, "/x") == erofs
    assert not os.path.exists("/usr/x")
    assert call(host, t.try_write, "/tmp/x") == "ok"
    assert not call(host, t.exists, "/tmp/x")


def test_the_host_is_mostly_absent(host: Container) -> None:
    # /usr is the host's; /home, /root and /etc's own files are not.
    with open("/usr/bin/env", "rb") as f:
        assert call(host, t.read, "/usr/bin/env") == f.read()
    # At most the mount point of an interpreter that lives there (pyenv's).
    assert set(call(host, t.listdir, "/root")) <= {".pyenv"}
    assert not call(host, t.exists, "/etc/shadow")
    assert not call(host, t.exists, "/home")
    assert call(host, t.read, "/etc/passwd").startswith(b"root:x:0:0:")


def test_extension_modules_load_in_the_host_container(host: Container) -> None:
    assert call(host, t.imports, *EXTENSIONS) == list(EXTENSIONS)


def test_host_programs_run_in_the_host_container(host: Container) -> None:
    result = host.run(["sh", "-c", "echo $((6 * 7)); ls /tmp | wc -l"])
    assert (result.exit_code, result.stdout) == (0, b"42\n0\n")


def test_a_function_that_prints_still_returns_its_value(host: Container) -> None:
    assert call(host, t.chatty, 42) == 42
    assert call(host, t.close_stdout, 43) == 43


def test_an_exit_without_a_result_is_a_call_error_with_the_code(host: Container) -> None:
    with pytest.raises(CallError, match="exited with code 3 without a result") as info:
        call(host, t.exit_with, 3)
    assert info.value.result.exit_code == 3
    assert not info.value.oom_killed
    # What it printed is kept, for the post-mortem.
    with pytest.raises(CallError, match="code 9") as info:
        call(host, t.print_then_exit, 9)
    assert info.value.result.stdout == b"said before the end\n"


def test_a_timeout_kills_it(host: Container) -> None:
    with pytest.raises(CallError, match=r"timed out after 0\.5 s") as info:
        call(host, t.sleep, 60, timeout=0.5)
    assert info.value.result.timed_out


def test_what_does_not_pickle_is_refused_before_anything_starts(host: Container) -> None:
    with pytest.raises(SpecError, match="top level of a module"):
        call(host, lambda: 1)
    with pytest.raises(SpecError, match="cannot pickle"):
        call(host, t.echo, threading.Lock())
    with pytest.raises(SpecError, match="callable"):
        call(host, 42)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="timeout"):
        call(host, t.echo, timeout=0)


def test_a_function_the_container_cannot_import_is_a_call_error(
    host: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module loaded from a file off sys.path: this process has it, the container not.
    source = tmp_path / "elsewhere.py"
    source.write_text("def answer():\n    return 42\n")
    spec = importlib.util.spec_from_file_location("elsewhere", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "elsewhere", module)
    assert module.answer() == 42
    with pytest.raises(CallError, match=r"cannot be loaded inside: .*ModuleNotFoundError") as info:
        call(host, module.answer)
    assert "No module named 'elsewhere'" in info.value.remote_traceback


def test_call_error_pickles(host: Container) -> None:
    with pytest.raises(CallError) as info:
        call(host, t.exit_with, 5)
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)
    assert again.result.exit_code == 5


def test_a_function_runs_in_an_image_without_python(image: Image) -> None:
    box = Container(image)
    # The image's own files, and the host's interpreter.
    assert "busybox" in call(box, t.listdir, "/bin")
    assert call(box, t.echo, 1, two=2) == ((1,), {"two": 2})
    # Extension modules that need the host's libraries (libssl, libffi, libsqlite3).
    assert call(box, t.imports, *EXTENSIONS) == list(EXTENSIONS)
    with pytest.raises(KeyError):
        call(box, t.fail, "in busybox")
    # The image's entrypoint is not the function's.
    failing = Container(attrs.evolve(image, entrypoint=("false",), cmd=("x",)))
    assert call(failing, t.echo, 2) == ((2,), {})


@needs_root("ids other than 0: a non-root user's namespace maps only its own id here")
def test_it_runs_as_the_containers_user(host: Container, image: Image) -> None:
    assert call(host, os.getuid) == 0
    assert call(host.user("65534:65534"), os.getuid) == 65534
    assert call(Container(image).user("1000:1000"), os.getgid) == 1000


def test_calls_from_several_threads_at_once(host: Container) -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: call(host, t.echo, i), range(8)))
    assert answers == [((i,), {}) for i in range(8)]
