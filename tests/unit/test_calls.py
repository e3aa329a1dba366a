"""``call()``'s parts that need no container: the request, the bootstrap program and its
framed answer, the host root file system's skeleton, and the interpreter's files."""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from containerlib import SpecError
from containerlib.calls import (
    _BOOTSTRAP,
    _MARKER,
    CallError,
    _host_rootfs,
    _interpreter_path,
    _links_to,
    _outermost,
    _pickle_request,
    _split,
)
from containerlib.container import Result
from containerlib.errors import ImageNotFound
from containerlib.image.builtin import find_static_busybox


def shout(word: str) -> str:
    print("noise before the answer")
    return word.upper()


def refuse(word: str) -> None:
    raise LookupError(word)


def bootstrap(fn: Any, *args: Any) -> tuple[tuple[Any, ...] | None, Result]:
    """Run the bootstrap program as call() does, in a plain subprocess (no container), on
    ``fn(*args)``."""
    token = secrets.token_bytes(16)
    request = pickle.dumps((token, sys.path, _pickle_request(fn, args, {})))
    command = [sys.executable, "-I", "-c", _BOOTSTRAP]
    done = subprocess.run(command, input=request, capture_output=True, check=False)
    result = Result(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)
    return _split(result, token)


def test_the_bootstrap_answers_after_what_the_function_printed() -> None:
    outcome, result = bootstrap(shout, "hi")
    assert outcome is not None
    assert outcome[0] == "return"
    assert pickle.loads(outcome[1]) == "HI"
    # The function's own output is left, without the frame.
    assert result.stdout == b"noise before the answer\n"


def test_the_bootstrap_sends_the_exception_and_its_traceback() -> None:
    outcome, _ = bootstrap(refuse, "gone")
    assert outcome is not None
    kind, blob, type_name, message, text = outcome
    assert kind == "raise"
    assert isinstance(pickle.loads(blob), LookupError)
    assert (type_name, message) == ("builtins.LookupError", "gone")
    assert "raise LookupError(word)" in text
    assert '"<string>"' not in text  # the bootstrap's own frame is left out


def test_an_exit_leaves_no_frame() -> None:
    outcome, result = bootstrap(os._exit, 4)
    assert outcome is None
    assert result.exit_code == 4


def test_a_frame_needs_the_calls_token() -> None:
    body = pickle.dumps(("return", pickle.dumps(1)))
    token = b"t" * 16
    framed = b"printed" + body + len(body).to_bytes(8, "big") + token
    outcome, result = _split(Result(exit_code=0, stdout=framed, stderr=b""), token)
    assert outcome == ("return", pickle.dumps(1))
    assert result.stdout == b"printed"
    # Another token (a function that prints a frame of its own), or a cut frame: none.
    assert _split(Result(exit_code=0, stdout=framed, stderr=b""), b"u" * 16)[0] is None
    cut = framed[:5] + framed[-24:]
    assert _split(Result(exit_code=0, stdout=cut, stderr=b""), token)[0] is None


def test_what_does_not_pickle_by_reference_is_refused() -> None:
    def nested() -> None:
        pass

    with pytest.raises(SpecError, match="top level of a module") as info:
        _pickle_request(lambda: 1, (), {})
    assert info.value.field == "call"
    with pytest.raises(SpecError, match="top level of a module"):
        _pickle_request(nested, (), {})
    with pytest.raises(SpecError, match="cannot pickle"):
        _pickle_request(shout, (threading.Lock(),), {})
    with pytest.raises(SpecError, match="callable"):
        _pickle_request("shout", (), {})  # type: ignore[arg-type]
    nested.__module__ = "__main__"
    with pytest.raises(SpecError, match="__main__"):
        _pickle_request(nested, (), {})
    fn, args, kwargs = pickle.loads(_pickle_request(shout, ("a",), {"b": 2}))
    assert (fn, args, kwargs) == (shout, ("a",), {"b": 2})


def test_call_error_says_why_and_pickles() -> None:
    result = Result(exit_code=137, stdout=b"", stderr=b"MemoryError\n", oom_killed=True)
    error = CallError(result, ["python"], "call of f: killed for lack of memory")
    assert (
        str(error) == "call of f: killed for lack of memory\n\nits stderr ended with:\nMemoryError"
    )
    assert error.oom_killed
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.oom_killed) == (str(error), True)
    with_tb = CallError(result, ["python"], "it raised X", "Traceback ...\nX: y\n")
    assert str(with_tb).endswith("Traceback in the container:\nTraceback ...\nX: y")


def test_the_host_skeleton_is_made_once_with_the_hosts_links(tmp_path: Path) -> None:
    layout = (("usr", "dir", ""), ("bin", "link", "usr/bin"))
    first = _host_rootfs(str(tmp_path), layout)
    root = Path(first)
    assert (root / "usr").is_dir()
    assert os.readlink(root / "bin") == "usr/bin"
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert (root / _MARKER).is_file()
    assert oct((root / "tmp").stat().st_mode & 0o7777) == "0o1777"
    assert _host_rootfs(str(tmp_path), layout) == first
    # Another layout (a host whose /bin became a directory) gets another skeleton.
    other = _host_rootfs(str(tmp_path), (("usr", "dir", ""), ("bin", "dir", "")))
    assert other != first
    assert (Path(other) / "bin").is_dir()
    assert not (Path(other) / "bin").is_symlink()
    assert sorted(p.name for p in (tmp_path / "host-rootfs").iterdir()) == sorted(
        [Path(first).name, Path(other).name]
    )


def test_a_lost_race_keeps_the_winners_skeleton(tmp_path: Path) -> None:
    layout = (("usr", "dir", ""),)
    first = _host_rootfs(str(tmp_path), layout)
    # As if another process renamed its copy in between the check and the rename.
    (Path(first) / "winner").write_text("")
    os.remove(Path(first) / _MARKER)
    # No marker: not a complete skeleton, so not taken.
    with pytest.raises(OSError, match="not empty"):
        _host_rootfs(str(tmp_path), layout)
    (Path(first) / _MARKER).write_text("")
    assert _host_rootfs(str(tmp_path), layout) == first
    assert [p.name for p in (tmp_path / "host-rootfs").iterdir()] == [Path(first).name]


def test_the_loader_is_read_from_the_elf_header(tmp_path: Path) -> None:
    loader = _interpreter_path(os.path.realpath(sys.executable))
    assert loader is not None
    assert os.path.exists(loader)
    assert "ld" in os.path.basename(loader)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert _interpreter_path(str(script)) is None
    with contextlib.suppress(ImageNotFound):  # no static busybox on this host
        assert _interpreter_path(find_static_busybox()) is None


def test_links_are_followed_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "one").symlink_to("../real")
    (tmp_path / "two").symlink_to(tmp_path / "sub" / "one")
    assert _links_to(str(tmp_path / "two")) == [
        str(tmp_path / "two"),
        str(tmp_path / "sub" / "one"),
        str(tmp_path / "real"),
    ]


def test_outermost_keeps_what_no_other_path_holds() -> None:
    paths = ["/a/b", "/a", "/ab", "/a/b/c", "/a", "/d"]
    assert _outermost(paths) == ["/a", "/ab", "/d"]
