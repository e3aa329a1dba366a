"""Functions that tests/integration/test_calls.py runs in containers with ``call()``.

They live in a module of their own, importing only the standard library, as ``call()``
pickles a function by its module's name and the container imports that module: a test
module would bring pytest and its fixtures along.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any


class Unpicklable(Exception):
    """An exception that holds a lock, so it cannot be pickled."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def fail(message: str) -> None:
    raise KeyError(message)


def fail_unpicklable(message: str) -> None:
    raise Unpicklable(message)


def return_unpicklable() -> object:
    return threading.Lock()


def allocate(mib: int) -> int:
    """Hold ``mib`` MiB, touched page by page."""
    block = bytearray(mib << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def processes() -> tuple[int, list[int]]:
    """This process's pid and every pid /proc shows."""
    return os.getpid(), sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


def try_write(path: str) -> str:
    """Write ``path``: "ok", or the name of the error."""
    try:
        with open(path, "w") as f:
            f.write("x")
    except OSError as e:
        return type(e).__name__ + (f" errno {e.errno}" if e.errno else "")
    return "ok"


def exists(path: str) -> bool:
    return os.path.exists(path)


def chatty(n: int) -> int:
    """Print a lot to stdout and stderr, then return ``n``."""
    for i in range(2000):
        print("line", i, "of noise")
    print("to stderr", file=sys.stderr)
    sys.stdout.flush()
    os.write(1, b"raw bytes on fd 1\n")
    return n


def close_stdout(n: int) -> int:
    """Close fd 1 before returning."""
    sys.stdout.flush()
    os.close(1)
    return n


def exit_with(code: int) -> None:
    sys.exit(code)


def sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def listdir(path: str) -> list[str]:
    return sorted(os.listdir(path))


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def imports(*names: str) -> list[str]:
    """Import each module (extension modules that load libraries of their own among them)
    and return the names of those that loaded."""
    import importlib

    return [importlib.import_module(n).__name__ for n in names]


def print_then_exit(code: int) -> None:
    print("said before the end")
    sys.stdout.flush()
    os._exit(code)
