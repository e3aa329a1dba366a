"""Detached containers: started with ``detach=True``, they outlive the process that started
them, as ``docker run -d``; :func:`list`, :func:`get` and :func:`prune` find them again.

Each has a keeper process (see :mod:`containerlib.runtime.keeper`) and its state in
``<run root>/<id>/`` (``/run/containerlib/<id>`` for root; ``CONTAINERLIB_RUN_ROOT``):
its record, its log and the keeper's socket. A container that has ended keeps its record
and log, so its exit code and output can still be read, until it is removed
(:meth:`DetachedContainer.remove`, :func:`prune`) or, with ``auto_remove``, at once. Its
writable layer and cgroup go when it ends, as with every container of containerlib.

Example:
    >>> import containerlib
    >>> cmd = ["sh", "-c", "echo up; sleep 60"]
    >>> box = Container(image).start(cmd, detach=True)  # doctest: +SKIP
    >>> containerlib.get(box.id).logs()  # doctest: +SKIP
    b'up\\n'
    >>> box.stop().exit_code  # doctest: +SKIP
    143
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from containerlib.container import Result, _CgroupControls
from containerlib.errors import (
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSetupError,
    SpecError,
)
from containerlib.linux.cgroups import Cgroup, CgroupDriver, CgroupStats
from containerlib.runtime import records
from containerlib.runtime.client import Process, _driver
from containerlib.runtime.ids import ID_PATTERN
from containerlib.runtime.messages import recv_message, send_message
from containerlib.runtime.plan import ExecRequest
from containerlib.runtime.specconv import Roots

if TYPE_CHECKING:
    from containerlib.network.ports import PublishedPort

__all__ = ["DetachedContainer", "get", "list", "prune"]

_builtin_list = list


def claim_state_dir(run_root: str, cid: str, record: dict[str, Any]) -> str:
    """Make the state directory of a new detached container and write its first record
    (``creating``); returns the directory.

    Raises:
        SpecError: the name is not valid.
        ContainerSetupError: the id, or the name, is taken (EEXIST).
    """
    name = record.get("name")
    if name is not None and not (isinstance(name, str) and ID_PATTERN.fullmatch(name)):
        raise SpecError(
            "name",
            f"{name!r} is not a valid container name: use 1 to 128 letters, digits, '_', "
            "'.', '+' or '-', starting with a letter or digit",
        )
    os.makedirs(run_root, mode=0o711, exist_ok=True)
    state_dir = os.path.join(run_root, cid)
    with records.locked(run_root):
        if name is not None:
            for other in _containers(run_root):
                if other.name != name:
                    continue
                if other.status == "dead":  # a crashed keeper's: stale, and removed
                    other._remove_leftovers()
                    continue
                raise ContainerSetupError(
                    f"name the container {name!r}",
                    errno.EEXIST,
                    cid,
                    f"container {other.id[:12]} has that name: remove it first",
                )
        try:
            os.mkdir(state_dir, 0o700)
        except FileExistsError:
            raise ContainerSetupError(
                f"create {state_dir}", errno.EEXIST, cid, "a container with this id exists"
            ) from None
        me = os.getpid()
        record = {
            **record,
            "status": "creating",
            "creator_pid": me,
            "creator_start_time": records.start_time(me),
        }
        records.write_record(state_dir, record)
    return state_dir


class DetachedContainer(_CgroupControls):
    """A container that lives on its own (``start(detach=True)``, :func:`get`).

    It is not killed when this object goes, nor when this process exits: stop it with
    :meth:`stop` or :meth:`kill`, and remove what it leaves with :meth:`remove` or
    :func:`prune`. Attributes read the record as it was last loaded; :meth:`reload`
    reads it again (``status`` always looks afresh).

    Attributes:
        id: the container's id.
        name: its name, or None.
        image: the name of the image it runs.
        command: what its first process runs.
        created: when it was made, in seconds since the epoch.

    Example:
        >>> import containerlib
        >>> from containerlib import Container
        >>> db = Container("/srv/busybox")  # doctest: +SKIP
        >>> box = db.start(["sleep", "600"], detach=True, name="db")  # doctest: +SKIP
        >>> containerlib.get("db").status  # doctest: +SKIP
        'running'
        >>> box.stop(timeout=1).exit_code; box.remove()  # doctest: +SKIP
        137
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._dir = Path(state_dir)
        self._paused = False
        self._record: dict[str, Any] = {}
        self.reload()

    @classmethod
    def _removed(
        cls, state_dir: str | os.PathLike[str], record: dict[str, Any]
    ) -> DetachedContainer:
        """The handle of a container whose state is gone already (``record``: what it
        was started with): its status is ``removed``."""
        box = cls.__new__(cls)
        box._dir = Path(state_dir)
        box._paused = False
        box._record = dict(record)
        return box

    def reload(self) -> DetachedContainer:
        """Read the container's record again; returns the container.

        Raises:
            ContainerNotFound: it has been removed.

        Example:
            >>> box = containerlib.get("db")  # doctest: +SKIP
            >>> box.reload().name  # doctest: +SKIP
            'db'
        """
        record = records.read_record(self._dir)
        if record is None:
            raise ContainerNotFound(self._dir.name, "it has been removed")
        self._record = record
        return self

    # -- what it is -------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The container's id (32 hex digits)."""
        return str(self._record["id"])

    @property
    def name(self) -> str | None:
        """Its name (``start(name=...)``), or None."""
        return self._record.get("name")

    @property
    def image(self) -> str:
        """The name of the image it runs."""
        return str(self._record.get("image", ""))

    @property
    def command(self) -> _builtin_list[str]:
        """What its first process runs, as a list."""
        return _builtin_list(self._record.get("command", ()))

    @property
    def created(self) -> float:
        """When it was made, in seconds since the epoch."""
        return float(self._record.get("created", 0.0))

    @property
    def status(self) -> str:
        """``creating``, ``running``, ``paused``, ``exited``, ``dead`` (its keeper was
        killed, and the container with it: :func:`prune` removes what is left) or
        ``removed``."""
        record = records.read_record(self._dir)
        if record is None:
            return "removed"
        self._record = record
        kept = records.status(record)
        if kept == "running" and record.get("cgroup_path"):
            with contextlib.suppress(OSError):
                if records.frozen(_driver().open(record["cgroup_path"]).procs_files()):
                    return "paused"
        return kept

    @property
    def pid(self) -> int | None:
        """The host pid of its first process while it runs, else None."""
        if self.status in ("running", "paused"):
            return int(self._record["pid"])
        return None

    @property
    def exit_code(self) -> int | None:
        """Its exit code once it has ended (137 for a dead one), else None."""
        state = self.status
        if state == "exited":
            return int(self._record["exit_code"])
        return 137 if state == "dead" else None

    @property
    def ip(self) -> str | None:
        """Its address on its bridge network (``network("bridge")`` or a
        :class:`~containerlib.networks.Network`), None off one."""
        ip = self._record.get("ip")
        return ip if isinstance(ip, str) else None

    @property
    def ports(self) -> _builtin_list[PublishedPort]:
        """Its published ports (:meth:`Container.publish`), which its keeper serves while
        it runs; none once it has ended."""
        from containerlib.network.ports import PublishedPort

        if self.status not in ("running", "paused"):
            return []
        return [PublishedPort(**p) for p in self._record.get("ports", ())]

    def connect(self, port: int, timeout: float | None = 10.0) -> socket.socket:
        """A TCP socket connected to ``port`` from inside its network namespace.

        Raises:
            ContainerNotRunning: it has ended.
            ConnectionRefusedError: nothing listens there.

        Example:
            >>> with containerlib.get("web").connect(80) as sock:  # doctest: +SKIP
            ...     sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            ...     sock.recv(12)
            b'HTTP/1.1 200'
        """
        from containerlib.network.ports import PortProxy

        pid = self.pid
        if pid is None:
            raise ContainerNotRunning(self.id, "connect to")
        with PortProxy(f"/proc/{pid}/ns/net") as proxy:
            return proxy.connect(port, timeout)

    @property
    def log_path(self) -> Path:
        """The log file (the CRI log format, see :mod:`containerlib.runtime.logs`)."""
        return self._dir / records.LOG_FILE

    def inspect(self) -> dict[str, Any]:
        """Everything known of it, as ``docker inspect``: the record, with the status
        now and the state directory.

        Example:
            >>> info = containerlib.get("db").inspect()  # doctest: +SKIP
            >>> info["status"], info["name"]  # doctest: +SKIP
            ('running', 'db')
        """
        state = self.status
        return {**self._record, "status": state, "state_dir": str(self._dir)}

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name else ""
        return f"<DetachedContainer {self.id[:12]}{name} {self.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DetachedContainer) and other._dir == self._dir

    def __hash__(self) -> int:
        return hash(self._dir)

    # -- acting on it -----------------------------------------------------------------------

    def _cgroup(self, action: str) -> Cgroup:
        path = self._record.get("cgroup_path")
        if self.status not in ("running", "paused"):
            raise ContainerNotRunning(self.id, action)
        if not path:
            raise ContainerSetupError(
                f"{action} the cgroup", errno.ENOTSUP, self.id, "it has no cgroup"
            )
        try:
            return _driver().open(path)
        except FileNotFoundError:
            raise ContainerNotRunning(self.id, action) from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to its first process (PID 1 inside); a paused container is
        resumed after, so that the signal takes effect.

        Raises:
            ContainerNotRunning: it has ended.

        Example:
            >>> box = containerlib.get("db")  # doctest: +SKIP
            >>> box.kill(); box.wait().exit_code  # doctest: +SKIP
            137
        """
        if self.status not in ("running", "paused"):
            raise ContainerNotRunning(self.id, "kill")
        record = self._record
        try:
            pidfd = os.pidfd_open(record["pid"])
        except ProcessLookupError:
            raise ContainerNotRunning(self.id, "kill") from None
        try:
            # The pidfd names the process for good; the start time says it is ours.
            if records.start_time(record["pid"]) != record["start_time"]:
                raise ContainerNotRunning(self.id, "kill")
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, sig)
        finally:
            os.close(pidfd)
        if self.status == "paused":
            with contextlib.suppress(ContainerNotRunning):
                self.resume()

    def wait(self, timeout: float | None = None) -> Result:
        """Wait for it to end and return its :class:`Result` (its output from the log).

        Raises:
            TimeoutError: ``timeout`` seconds passed; it keeps running.
            ContainerNotFound: it has been removed (an ``auto_remove`` container that
                ended before this call).

        Example:
            >>> box = Container("/srv/busybox").start(["echo", "hi"], detach=True)  # doctest: +SKIP
            >>> box.wait(timeout=10).stdout  # doctest: +SKIP
            b'hi\\n'
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        conn = records.connect(self._dir) if self.status in ("running", "paused") else None
        if conn is not None:
            with conn:
                answer = None
                try:
                    send_message(conn, ("wait", None))
                    if not select.select([conn], [], [], timeout)[0]:
                        raise TimeoutError(f"container {self.id[:12]} still runs after {timeout}s")
                    answer = recv_message(conn)
                except OSError:
                    pass  # the keeper ended meanwhile: its record says how
                if answer is not None:
                    (_kind, status, stats, _failure), _ = answer
                    code = os.waitstatus_to_exitcode(status)
                    # Read while connected: an auto-removed container's log goes after.
                    return self._result(128 - code if code < 0 else code, stats)
        while (state := self.status) in ("running", "paused", "creating"):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"container {self.id[:12]} still runs after {timeout}s")
            time.sleep(0.01)
        if state == "removed":
            raise ContainerNotFound(self.id, "it has been removed")
        return self._result()

    def _result(self, exit_code: int | None = None, stats: CgroupStats | None = None) -> Result:
        from containerlib.runtime.logs import read_log

        record = self._record
        if exit_code is None:
            exit_code = self.exit_code if self.exit_code is not None else 137
        if stats is None:
            stats = records.stats_from_dict(record.get("stats"))
        started = record.get("started", record.get("created", 0.0))
        finished = record.get("finished") or time.time()
        return Result(
            exit_code=exit_code,
            stdout=read_log(self.log_path, stderr=False),
            stderr=read_log(self.log_path, stdout=False),
            oom_killed=stats.oom_kills > 0,
            duration=max(0.0, finished - started),
            memory_peak=stats.memory_peak,
            id=self.id,
            stats=stats,
        )

    def stop(self, timeout: float = 10.0) -> Result:
        """Send SIGTERM, then SIGKILL if it still runs after ``timeout`` seconds, and
        return its :class:`Result`; one that has ended already just gives its result.

        Example:
            >>> containerlib.get("db").stop(timeout=5).exit_code  # doctest: +SKIP
            137
        """
        with contextlib.suppress(ContainerNotRunning):
            self.kill(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except TimeoutError:
            with contextlib.suppress(ContainerNotRunning):
                self.kill(signal.SIGKILL)
            return self.wait()

    def _exec_starter(
        self, request: ExecRequest
    ) -> Callable[[tuple[int, int, int], int | None], Process]:
        conn = records.connect(self._dir) if self.status in ("running", "paused") else None
        if conn is None:
            raise ContainerNotRunning(self.id, "exec")

        def start(stdio: tuple[int, int, int], console: int | None) -> Process:
            extra = () if console is None else (console,)
            try:
                send_message(conn, ("exec", request), (*stdio, *extra))
            except OSError:
                conn.close()
                raise ContainerNotRunning(self.id, "exec") from None
            return Process(conn)

        return start

    def _read_logs(self, filters: dict[str, Any]) -> bytes:
        from containerlib.runtime.logs import read_log

        return read_log(self.log_path, **filters)

    def _follow_logs(self, filters: dict[str, Any]) -> Iterator[bytes]:
        from containerlib.runtime.logs import follow_log

        return follow_log(
            self.log_path, stop=lambda: self.status not in ("running", "paused"), **filters
        )

    def _started_at(self) -> float:
        return float(self._record.get("started", self.created))

    def stats(self) -> CgroupStats:
        """The figures of its cgroup now; once it has ended, those it ended with; none
        for a container without a cgroup.

        Example:
            >>> containerlib.get("db").stats().pids_current  # doctest: +SKIP
            1
        """
        try:
            return self._cgroup("read the figures of").stats()
        except ContainerSetupError:
            return CgroupStats()
        except (ContainerNotRunning, FileNotFoundError):
            return records.stats_from_dict(self.reload()._record.get("stats"))

    def remove(self, *, force: bool = False) -> None:
        """Remove its state and log; with ``force``, kill it first if it runs.

        Raises:
            ContainerSetupError: it runs and ``force`` was not given (EBUSY).

        Example:
            >>> containerlib.get("db").remove(force=True)  # doctest: +SKIP
            >>> containerlib.get("db")  # doctest: +SKIP
            Traceback (most recent call last):
            ContainerNotFound: no container 'db': none has that id, id prefix or name ...
        """
        state = self.status
        if state in ("running", "paused", "creating"):
            if not force:
                raise ContainerSetupError(
                    "remove", errno.EBUSY, self.id, f"it is {state}: stop it, or use force=True"
                )
            with contextlib.suppress(ContainerNotRunning):
                self.kill(signal.SIGKILL)
            try:
                self.wait()
            except ContainerNotFound:
                return  # an auto_remove container, removed by its keeper as it ended
        elif state == "dead":
            self._remove_leftovers()
            return
        records.remove_state(self._dir)

    def _remove_leftovers(self) -> None:
        """Remove what a dead container left: its cgroup, writable layer and state."""
        from containerlib.runtime import rwdirs

        record = self._record
        path = record.get("cgroup_path")
        if path:
            with contextlib.suppress(OSError):
                _driver().open(path).destroy()
            with contextlib.suppress(OSError):
                _driver().remove_parents(path)
        if record.get("rw_dir"):
            rwdirs.remove_rw(record["rw_dir"])
        records.remove_state(self._dir)


def _containers(run_root: str) -> _builtin_list[DetachedContainer]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.listdir(run_root)):
            path = os.path.join(run_root, entry)
            if entry.startswith("."):
                continue  # being removed (records.REMOVING_PREFIX)
            if os.path.exists(os.path.join(path, records.STATE_FILE)):
                with contextlib.suppress(ContainerNotFound, KeyError):
                    found.append(DetachedContainer(path))
    return found


def list(all: bool = False) -> _builtin_list[DetachedContainer]:
    """The detached containers of this user, oldest first: those that run (as ``docker
    ps``), or with ``all``, also those that have ended and not been removed (``docker
    ps -a``).

    Example:
        >>> import containerlib
        >>> [box.name for box in containerlib.list()]  # doctest: +SKIP
        ['db', 'cache']
        >>> len(containerlib.list(all=True)) >= len(containerlib.list())  # doctest: +SKIP
        True
    """
    found = _containers(Roots.from_env().run)
    if not all:
        found = [c for c in found if c.status in ("running", "paused", "creating")]
    return sorted(found, key=lambda c: c.created)


def get(reference: str) -> DetachedContainer:
    """The detached container with this id, name, or unique id prefix.

    Raises:
        ContainerNotFound: none has it, or a prefix fits more than one.

    Example:
        >>> import containerlib
        >>> box = containerlib.get("db")  # doctest: +SKIP
        >>> box.id[:12], box.status  # doctest: +SKIP
        ('3f2a9c1b7d4e', 'running')
    """
    if not isinstance(reference, str) or not ID_PATTERN.fullmatch(reference):
        raise ContainerNotFound(str(reference), "not a container id or name")
    run_root = Roots.from_env().run
    exact = os.path.join(run_root, reference)
    if os.path.exists(os.path.join(exact, records.STATE_FILE)):
        with contextlib.suppress(ContainerNotFound):
            return DetachedContainer(exact)
    every = _containers(run_root)
    named = [c for c in every if c.name == reference]
    if named:
        return named[0]
    prefixed = [c for c in every if c.id.startswith(reference)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        ids = ", ".join(c.id[:12] for c in prefixed)
        raise ContainerNotFound(reference, f"it is the start of several ids ({ids})")
    raise ContainerNotFound(reference)


def prune() -> _builtin_list[str]:
    """Remove every detached container that has ended: its record and log, and for a
    dead one (whose keeper was killed) the cgroup and writable layer it left; the
    network leases, /etc/hosts entries and bridges of containers whose spawner was
    killed before it could take them off their networks; and what killed spawners left
    of their attached containers: cgroups (killing what still runs in them), writable
    layers, ready cgroups and made-ahead layers (see :mod:`containerlib.runtime.stale`).
    What a running spawner or keeper holds, in this process or another, stays. Returns
    the detached containers' ids.

    Example:
        >>> import containerlib
        >>> containerlib.prune()  # doctest: +SKIP
        ['3f2a9c1b7d4e5f60718293a4b5c6d7e8']
    """
    removed = []
    roots = Roots.from_env()
    run_root = roots.run
    records.sweep_removing(run_root)
    for container in _containers(run_root):
        if container.status in ("exited", "dead"):
            with contextlib.suppress(ContainerNotFound, ContainerSetupError):
                container.remove()
                removed.append(container.id)
    if os.geteuid() == 0:  # bridges are root's
        from containerlib.network.bridge import network_state_dir
        from containerlib.network.bridge import prune as prune_networks

        prune_networks(network_state_dir())
    _sweep_stale(roots)
    return removed


def _sweep_stale(roots: Roots) -> None:
    """Remove what killed spawners left (see :func:`containerlib.runtime.stale.sweep`)."""
    from containerlib.runtime.stale import sweep

    try:
        driver: CgroupDriver | None = _driver()
    except OSError:
        driver = None  # no cgroups here: the layers still go
    sweep(roots, driver)
