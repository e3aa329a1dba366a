"""Python functions run inside a container: :func:`call` and the host container.

:func:`call` runs ``fn(*args, **kwargs)`` in a new container and hands back what it
returned, or raises what it raised. The container runs this process's own interpreter
(``sys.executable``), which needs nothing of the image: the interpreter, its standard
library and every :data:`sys.path` entry are bind-mounted read-only at their own paths,
and in an image container the host's dynamic loader and libraries go to a private
directory (:data:`HOST_LIBS`) and are used through the loader's ``--library-path``, so
that the image's own libraries are neither used nor hidden. The function and its
arguments go in as a pickle on standard input; the outcome comes back as a pickle
framed at the end of standard output, behind whatever the function printed.

:func:`host_container` is a container without an image: the host's /usr, /bin, /sbin and
/lib read-only, a fresh tmpfs at /tmp, a read-only root, its own /proc (a PID namespace)
and no network (``none``). ``host_container().limit(mem="256M")`` with :func:`call`
sandboxes a function.

Pickle stores functions and classes by reference (module and name), so ``fn`` must be
importable by its module's name inside: a function defined at the top level of a module
on :data:`sys.path`. Lambdas, nested functions and functions of ``__main__`` are refused
before anything starts.

The outcome is unpickled in this process: :func:`call` contains a function's mistakes
and its use of resources, not a hostile function, which could send a pickle that runs
code here (as :mod:`multiprocessing` trusts its workers). See the :mod:`pickle`
documentation, and ``ld.so(8)`` for the loader's options.

In an image container the host's files shadow the image's where they share a path (a
``sys.path`` entry such as ``/usr/lib/python3.11``), and the interpreter cannot start a
new copy of itself (``multiprocessing``'s spawn, ``subprocess`` of ``sys.executable``):
the image has no loader for it at the usual place.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import secrets
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from containerlib.errors import CallError, SpecError
from containerlib.images import Image
from containerlib.runtime.specconv import Roots

if TYPE_CHECKING:
    from containerlib.container import Container, Result

__all__ = ["HOST_LIBS", "CallError", "call", "host_container"]

_T = TypeVar("_T")

#: Where an image container sees the host's dynamic loader and library directories, at
#: their host paths below this one.
HOST_LIBS = "/.containerlib-host"

#: The host directories the host container shows at their own paths, read-only: as
#: directories (bind mounts) or, on a merged-/usr host, as the same symlinks.
_HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: Host files of /etc the host container shows: the loader's cache, the links of
#: Debian's alternatives (/usr/bin/awk leads there) and the time zone.
_HOST_ETC = ("ld.so.cache", "alternatives", "localtime")
#: Its own /etc/passwd and /etc/group: the host's accounts are not its business.
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
#: The file that marks a root file system made by :func:`host_container`.
_MARKER = ".containerlib-host"
#: Bumped when the layout of the host root file system changes.
_LAYOUT_VERSION = 1

#: Directories that an image has of its own: never bound over as a whole in an image
#: container (what the caller needs below them is bound entry by entry).
_SYSTEM_DIRS = frozenset(
    {"/", "/usr", "/usr/local", "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/bin", "/sbin",
     "/usr/bin", "/usr/sbin", "/opt", "/etc", "/var", "/home", "/root", "/tmp", "/srv"}
)  # fmt: skip

#: The trailer after the outcome's pickle on stdout: its length (8 bytes, big-endian),
#: then the call's random token (16 bytes).
_LENGTH = struct.Struct(">Q")
_TOKEN_SIZE = 16

# The program the container runs (python -c). It reads (token, sys.path, payload) from
# stdin, puts sys.path in place before unpickling the function (its module must be
# found), and writes one outcome to a copy of fd 1 taken before the function runs, so
# that a function closing or redirecting its stdout cannot lose it.
_BOOTSTRAP = """\
import os, pickle, sys, traceback
out = os.dup(1)
token, path, payload = pickle.loads(sys.stdin.buffer.read())
sys.path[:] = path
def reply(outcome):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    data = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
    data += len(data).to_bytes(8, "big") + token
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    os._exit(0)
def name(t):
    return t.__module__ + "." + t.__qualname__
try:
    fn, args, kwargs = pickle.loads(payload)
except BaseException as e:
    reply(("load", name(type(e)), str(e), traceback.format_exc()))
try:
    value = fn(*args, **kwargs)
except Exception as e:
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
    try:
        blob = pickle.dumps(e, pickle.HIGHEST_PROTOCOL)
    except Exception:
        blob = None
    reply(("raise", blob, name(type(e)), str(e), text))
try:
    blob = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
except Exception as e:
    reply(("unpicklable", name(type(value)), str(e), ""))
reply(("return", blob))
"""


# -- the host container -----------------------------------------------------------------


def _host_layout() -> tuple[tuple[str, str, str], ...]:
    """(name, "dir" or "link", link target) for each of :data:`_HOST_DIRS` on this host."""
    layout = []
    for name in _HOST_DIRS:
        path = "/" + name
        if os.path.islink(path):
            layout.append((name, "link", os.readlink(path)))
        elif os.path.isdir(path):
            layout.append((name, "dir", ""))
    return tuple(layout)


def _make_host_rootfs(dest: str, layout: tuple[tuple[str, str, str], ...]) -> None:
    """Fill the new directory ``dest`` with the host root file system's skeleton."""
    for name, kind, target in layout:
        if kind == "link":
            os.symlink(target, os.path.join(dest, name))
        else:
            os.mkdir(os.path.join(dest, name), 0o755)
    # /root is empty and left traversable (not 0700): a container given another user
    # still reaches an interpreter that call() binds below it (pyenv's /root/.pyenv).
    for name in ("proc", "dev", "sys", "tmp", "etc", "root", "run", "var"):
        os.mkdir(os.path.join(dest, name), 0o755)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    etc = os.path.join(dest, "etc")
    for name, text in (("passwd", _PASSWD), ("group", _GROUP), (_MARKER, "")):
        with open(os.path.join(etc if name != _MARKER else dest, name), "w") as f:
            f.write(text)
    # Mount points of files bound here (the runtime's own and the host's).
    for name in ("hosts", "hostname", "resolv.conf", *_HOST_ETC):
        if name == "alternatives":
            os.mkdir(os.path.join(etc, name), 0o755)
        else:
            open(os.path.join(etc, name), "w").close()


def _host_rootfs(data_root: str, layout: tuple[tuple[str, str, str], ...]) -> str:
    """The host root file system's skeleton under ``data_root``, made once.

    Its name has a digest of the host's layout, so a host that changes (a /lib that
    becomes a symlink) gets a new one. It is made under a temporary name and renamed,
    so that processes racing to make it all end with the same complete directory.
    """
    key = hashlib.sha256(repr((_LAYOUT_VERSION, layout)).encode()).hexdigest()[:16]
    parent = os.path.join(data_root, "host-rootfs")
    final = os.path.join(parent, key)
    if os.path.isfile(os.path.join(final, _MARKER)):
        return final
    os.makedirs(parent, mode=0o700, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".new-", dir=parent)
    try:
        os.chmod(work, 0o755)
        _make_host_rootfs(work, layout)
        try:
            os.rename(work, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, _MARKER)):
                raise
    finally:
        if os.path.exists(work):
            shutil.rmtree(work)
    return final


def host_container() -> Container:
    """A container of the host's programs, without an image (``Container.host()``).

    The host's /usr, /bin, /sbin and /lib (and /lib64, …, those it has) are read-only bind
    mounts, or the same symlinks on a merged-/usr host; /etc has the loader's cache, the
    alternatives and the time zone of the host and its own passwd and group (root and
    nobody); /tmp is a fresh tmpfs; the root file system is read-only; /proc is its own
    (a PID namespace) and the network is ``none``, as every container's by default.
    Everything else of the host is absent: /home, /root, /var, /etc's other files.

    The root file system is an empty skeleton made once under the data root
    (``<data>/host-rootfs/<digest>``); this is the only I/O, and only the first time.

    Returns:
        A :class:`~containerlib.Container`, to change like any other.

    Example:
        >>> box = host_container().limit(mem="256M")  # doctest: +SKIP
        >>> box.run(["sh", "-c", "echo $((6 * 7))"]).stdout  # doctest: +SKIP
        b'42\\n'
    """
    from containerlib.container import Container

    layout = _host_layout()
    image = Image.from_rootfs(_host_rootfs(Roots.from_env().data, layout))
    box = Container(image).read_only().tmpfs("/tmp")
    for name, kind, _target in layout:
        if kind == "dir":
            box = box.mount("/" + name, "/" + name)
    for name in _HOST_ETC:
        if os.path.exists("/etc/" + name):
            box = box.mount("/etc/" + name, "/etc/" + name)
    return box


def _is_host(container: Container) -> bool:
    layers = container.image.layers
    return len(layers) == 1 and os.path.isfile(os.path.join(layers[0], _MARKER))


# -- what the interpreter needs inside --------------------------------------------------


def _interpreter_path(executable: str) -> str | None:
    """The dynamic loader an ELF executable names (its PT_INTERP), None for a static one."""
    with open(executable, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return None
        wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
        if wide:
            phoff, phentsize, phnum = struct.unpack_from(order + "Q14xHH", head, 32)
        else:
            phoff, phentsize, phnum = struct.unpack_from(order + "I10xHH", head, 28)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        entry = table[i * phentsize : (i + 1) * phentsize]
        if struct.unpack_from(order + "I", entry)[0] != 3:  # PT_INTERP
            continue
        if wide:
            offset, size = struct.unpack_from(order + "Q16xQ", entry, 8)
        else:
            offset, size = struct.unpack_from(order + "I8xI", entry, 4)
        with open(executable, "rb") as f:
            f.seek(offset)
            return f.read(size).rstrip(b"\0").decode()
    return None


def _mapped_library_dirs() -> list[str]:
    """The directories of the shared objects this process has mapped (real paths)."""
    found: list[str] = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and ".so" in parts[5]:
                folder = os.path.dirname(parts[5].strip())
                if folder.startswith("/") and folder not in found:
                    found.append(folder)
    return found


def _links_to(path: str) -> list[str]:
    """``path`` and the paths that the chain of symbolic links from it goes through, each
    in a real directory."""
    chain = [os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))]
    while os.path.islink(chain[-1]) and len(chain) < 40:
        target = os.path.join(os.path.dirname(chain[-1]), os.readlink(chain[-1]))
        chain.append(
            os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
        )
    return chain


def _covered(path: str, by: list[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in by)


def _outermost(paths: list[str]) -> list[str]:
    """``paths`` without repeats and without those inside another of them, in order."""
    return [p for p in dict.fromkeys(paths) if not _covered(p, [q for q in paths if q != p])]


@attrs.frozen
class _Interpreter:
    """How to start this process's interpreter in a container: the bind mounts
    (host path, path inside) and the command before ``-c``."""

    binds: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]
    path: tuple[str, ...]


@functools.lru_cache(maxsize=16)
def _interpreter(host: bool, sys_path: tuple[str, ...]) -> _Interpreter:
    """What :func:`call` adds to a container to run this interpreter with ``sys_path``:
    for the host container (``host``), whose /usr and /lib are the host's, or for an
    image container. (sys.path is an argument as it changes: pytest adds to it.)"""
    executable = sys.executable
    if not executable:
        raise SpecError("call", "this Python does not know its own executable (sys.executable)")
    real = os.path.realpath(executable)
    # "" (the working directory) is left out: the container's is its own.
    path = tuple(p for p in (os.path.abspath(p) for p in sys_path if p) if os.path.exists(p))
    wanted = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *path]
    host_binds = [f"/{n}" for n, kind, _ in _host_layout() if kind == "dir"]
    binds: list[str] = []
    for given in wanted:
        p = os.path.realpath(given) if os.path.islink(given) else given
        if not os.path.exists(p) or p in _SYSTEM_DIRS:
            continue
        if host and _covered(os.path.realpath(p), host_binds):
            continue
        binds.append(p)
    # The interpreter, and each link on the way to it (a venv's python leads to
    # /usr/bin/python3, itself a link to python3.11): each becomes the file inside.
    for hop in _links_to(executable):
        if not _covered(hop, binds) and not (host and _covered(hop, host_binds)):
            binds.append(hop)
    mounts = [(p, p) for p in _outermost(binds)]
    loader = _interpreter_path(real)
    if host or loader is None:
        return _Interpreter(tuple(mounts), (executable,), path)
    # An image container: the host's loader and libraries below HOST_LIBS.
    multiarch = getattr(sys.implementation, "_multiarch", "")
    standard = [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"] if multiarch else []
    standard += ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    system = [os.path.realpath(d) for d in standard if os.path.isdir(d)]
    # The directories this process took libraries from besides the system's come first:
    # it was sent there (RUNPATH, LD_LIBRARY_PATH) past a system copy of the same library
    # (pyenv's libpython3.11.so beside Debian's), and --library-path goes before RUNPATH.
    libdirs = list(
        dict.fromkeys(
            [
                *(
                    d
                    for d in map(os.path.realpath, _mapped_library_dirs())
                    if d not in system and os.path.isdir(d)
                ),
                *system,
            ]
        )
    )
    real_loader = os.path.realpath(loader)
    # What a bind above already shows at its own path is used there.
    own = [p for _, p in mounts]
    lib_mounts = _outermost(
        [d for d in (*libdirs, os.path.dirname(real_loader)) if not _covered(d, own)]
    )
    mounts += [(d, HOST_LIBS + d) for d in lib_mounts]

    def inside(path: str) -> str:
        return path if _covered(path, own) else HOST_LIBS + path

    argv = (
        inside(real_loader),
        "--inhibit-cache",
        "--library-path",
        ":".join(inside(d) for d in libdirs),
        executable,
    )
    return _Interpreter(tuple(mounts), argv, path)


def _name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function, for messages."""
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else str(qualname)


def _pickle_request(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    if not callable(fn):
        raise SpecError("call.fn", f"must be a callable, not {fn!r}")
    name = _name(fn)
    if getattr(fn, "__module__", None) == "__main__":
        raise SpecError(
            "call.fn",
            f"{name} is defined in __main__, which the container cannot import: "
            "define it in a module on sys.path",
        )
    try:
        return pickle.dumps((fn, args, kwargs), pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise SpecError(
            "call",
            f"cannot pickle {name} and its arguments ({e}); functions and classes are "
            "pickled by name, so they must be defined at the top level of a module "
            "(no lambdas or nested functions)",
        ) from e


def _mebibytes(size: int) -> str:
    mib = size / (1 << 20)
    return f"{mib:.0f} MiB" if mib == int(mib) else f"{size} bytes"


def _limit_text(container: Container) -> str:
    """The container's memory limit in words, for an OOM error."""
    spec = container.spec(["true"])
    memory = spec.linux.resources.memory if spec.linux and spec.linux.resources else None
    if memory is not None and memory.limit is not None and memory.limit > 0:
        return f"its memory limit of {_mebibytes(memory.limit)}"
    return "the memory available to it"


def call(
    container: Container,
    fn: Callable[..., _T],
    /,
    *args: Any,
    timeout: float | None = None,
    **kwargs: Any,
) -> _T:
    """Run ``fn(*args, **kwargs)`` in a new container made from ``container``.

    The container runs this process's interpreter with its :data:`sys.path` (see the
    module's documentation), with the limits, mounts, user and network of ``container``.
    What the function prints goes to the container's stdout and stderr (``result`` of a
    :class:`CallError`). Its environment is the container's (``env()``), not this
    process's; its working directory is the container's.

    Args:
        container: the container to run in; :func:`host_container` for one without an
            image.
        fn: a function defined at the top level of a module the container can import.
        args, kwargs: its arguments; they must pickle.
        timeout: seconds after which the container is killed (a keyword of ``call``'s
            own: ``fn`` cannot be given an argument of that name).

    Returns:
        What ``fn`` returned, unpickled here.

    Raises:
        Exception: what ``fn`` raised, of its own type, with the traceback inside the
            container as a note.
        SpecError: ``fn`` or its arguments do not pickle; nothing was started.
        CallError: it ended without a result: killed for lack of memory
            (``oom_killed``), timed out, exited (``os._exit``, ``sys.exit``), could not
            be loaded inside, or its outcome does not pickle.
        ContainerSetupError: the container could not be made.

    Example:
        >>> import math
        >>> call(host_container().limit(mem="256M"), math.factorial, 20)  # doctest: +SKIP
        2432902008176640000
    """
    if timeout is not None and not timeout > 0:
        raise SpecError("timeout", f"must be a positive number of seconds, not {timeout!r}")
    payload = _pickle_request(fn, args, kwargs)
    interp = _interpreter(_is_host(container), tuple(sys.path))
    token = secrets.token_bytes(_TOKEN_SIZE)
    request = pickle.dumps((token, list(interp.path), payload), pickle.HIGHEST_PROTOCOL)
    # The image's entrypoint and command are not this command's.
    image = container.image
    if image.entrypoint or image.cmd:
        image = attrs.evolve(image, entrypoint=(), cmd=())
    box = attrs.evolve(container, image=image).env(PYTHONDONTWRITEBYTECODE="1")
    for source, target in interp.binds:
        box = box.mount(source, target)
    # With site (no -S), though sys.path comes from here: the import hooks that .pth files
    # install (editable installs) are then in place for whatever the function imports.
    command = [*interp.argv, "-I", "-c", _BOOTSTRAP]
    result = box.run(command, input=request, timeout=timeout)
    value: _T = _outcome(result, token, container, command, _name(fn), timeout)
    return value


def _outcome(
    result: Result,
    token: bytes,
    container: Container,
    command: list[str],
    name: str,
    timeout: float | None,
) -> Any:
    """What the function returned, or its exception raised; CallError without either."""
    where = f"call of {name} in container {result.id[:12]}"
    frame, result = _split(result, token)
    if frame is None:
        if result.oom_killed:
            why = f"killed for lack of memory: it went past {_limit_text(container)}"
        elif result.timed_out:
            why = "killed: it timed out" + (f" after {timeout:g} s" if timeout else "")
        else:
            why = f"its process exited with code {result.exit_code} without a result"
        raise CallError(result, command, f"{where}: {why}")
    kind = frame[0]
    if kind == "return":
        try:
            return pickle.loads(frame[1])
        except Exception as e:
            why = f"{where}: its result does not unpickle here: {e}"
            raise CallError(result, command, why) from e
    if kind == "raise":
        blob, type_name, message, text = frame[1:]
        error: BaseException | None = None
        if blob is not None:
            try:
                error = pickle.loads(blob)
            except Exception:
                error = None
        if isinstance(error, BaseException):
            error.add_note(f"Traceback in the container {result.id[:12]}:\n{text.rstrip()}")
            raise error
        raise CallError(
            result, command, f"{where} raised {type_name}, which does not pickle: {message}", text
        )
    if kind == "load":
        type_name, message, text = frame[1:]
        raise CallError(
            result,
            command,
            f"{where}: the function cannot be loaded inside: {type_name}: {message}",
            text,
        )
    type_name, message, text = frame[1:]
    raise CallError(
        result,
        command,
        f"{where}: it returned a {type_name}, which does not pickle: {message}",
        text,
    )


def _split(result: Result, token: bytes) -> tuple[tuple[Any, ...] | None, Result]:
    """The outcome framed at the end of the container's stdout, and the result with
    only the function's own output; no outcome when the process died first."""
    out = result.stdout
    trailer = _LENGTH.size + _TOKEN_SIZE
    if len(out) < trailer or out[-_TOKEN_SIZE:] != token:
        return None, result
    (size,) = _LENGTH.unpack(out[-trailer:-_TOKEN_SIZE])
    if size > len(out) - trailer:
        return None, result
    outcome = pickle.loads(out[-trailer - size : -trailer])
    if not isinstance(outcome, tuple) or not outcome:
        return None, result
    return outcome, attrs.evolve(result, stdout=out[: -trailer - size])
