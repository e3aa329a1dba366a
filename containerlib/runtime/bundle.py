"""OCI bundles run the way runc runs them: create, start, state, kill, delete.

This is the engine under ``containerlib-runtime``, the command line that podman, conmon
and containerd drive as they drive runc (:mod:`containerlib.cli.runtime`). Each command
is a short process; between them a container's state lives in ``<root>/<id>/``:

- ``state.json``: what ``state`` reports, and what ``delete`` must remove (the cgroup);
- ``exec.fifo``: there from ``create`` to ``start``. The container's first process, its
  setup done, blocks opening it for writing; ``start`` opens it for reading, which lets
  it go on to run the command (the OCI create/start split, as runc does it).

The container's first process is the native helper (``clib-init``, see ``_init.c``),
started *detached*: it does not die with the ``create`` process, and becomes a child of
the caller's subreaper (conmon, containerd's shim). Its root file system is the bundle's
``root.path`` itself, bound on itself, with no overlay: writes go to the bundle, as under
runc. A process that has ended is noticed from ``/proc`` (its pid and start time), so
``state`` says ``stopped`` for a container that exited while nobody watched.

Hooks run where the runtime spec puts them: ``prestart`` and ``createRuntime`` here, in
the runtime's namespaces, while the first process waits with its namespaces, cgroup and
mounts made; ``createContainer`` in the first process, in the container's namespaces
before ``pivot_root``; ``startContainer`` in it too, once ``start`` has let it go, just
before the command (its failure comes back to ``start`` through the exec FIFO);
``poststart`` and ``poststop`` here again.

With a user namespace (``linux.namespaces`` with ``user``, and ``linux.uidMappings`` /
``gidMappings``), the first process is cloned by the native helper (``clib-init
--forker``): one that exec'd in the new namespace before its maps were written would lose
its capabilities. The rootfs is bound as it is when the container's root owns it (a
bundle made for the mapping, or an identity mapping); otherwise, as root, an id-mapped
bind of it (mount_setattr(2)) makes the files of host uid 0 the container's root's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.linux.cgroups import CgroupDriver, probe
from containerlib.runtime.ids import check_id
from containerlib.runtime.records import frozen, start_time

if TYPE_CHECKING:
    from containerlib.runtime.plan import Plan
    from containerlib.runtime.specconv import Roots
    from containerlib.spec import oci

# Each command is a process of its own, and most (state, start, kill, delete) need neither
# the OCI spec model nor the native helper: those are imported where they are used.

__all__ = ["OCI_VERSION", "BundleRuntime", "ContainerState"]

#: The runtime-spec version ``state`` reports.
OCI_VERSION: Final = "1.0.2"
_STATE = "state.json"
_FIFO = "exec.fifo"


@attrs.frozen(kw_only=True)
class ContainerState:
    """What ``state`` reports of one container (``runtime-spec/runtime.md``)."""

    id: str
    status: str
    pid: int
    bundle: str
    created: str
    annotations: dict[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The OCI state document."""
        return {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": self.status,
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.annotations,
            "created": self.created,
        }


class BundleRuntime:
    """The containers under one state root (runc's ``--root``).

    Args:
        root: the state directory; made ``0711`` when first needed.
        driver: the cgroup driver; probed once by default.
    """

    def __init__(self, root: str | os.PathLike[str], driver: CgroupDriver | None = None) -> None:
        self.root = Path(root)
        self._driver = driver

    @property
    def driver(self) -> CgroupDriver:
        if self._driver is None:
            self._driver = probe()
        return self._driver

    def _dir(self, cid: str) -> Path:
        return self.root / check_id(cid)

    def _roots(self) -> Roots:
        """The state under this root; the rest (compiled seccomp profiles, the native
        helper, the default cgroup parent) where containerlib keeps it for this user."""
        from containerlib.runtime.specconv import Roots

        return attrs.evolve(Roots.from_env(), run=str(self.root))

    # -- create and start ---------------------------------------------------------------

    def create(
        self,
        cid: str,
        bundle: str | os.PathLike[str],
        *,
        pid_file: str | os.PathLike[str] | None = None,
        console_socket: str | os.PathLike[str] | None = None,
        stdio: tuple[int, int, int] = (0, 1, 2),
        detached: bool = True,
    ) -> ContainerState:
        """Create container ``cid`` from the bundle: its namespaces, cgroup and mounts,
        its first process set up and waiting for :meth:`start`.

        Args:
            pid_file: where to write the first process's pid.
            console_socket: for a process with a terminal, the unix socket the terminal's
                master end is sent to (runc's ``--console-socket``).
            stdio: the first process's stdin, stdout and stderr.
            detached: the first process outlives this one (``create``); ``run`` keeps
                it as a child that dies with this process.

        Raises:
            SpecError: the bundle's config.json is missing or invalid, or asks for what
                containerlib cannot do yet; nothing was made.
            ContainerSetupError: a container ``cid`` exists, or a step failed (naming it);
                nothing is left behind.
        """
        from containerlib.runtime import nativeinit
        from containerlib.runtime.specconv import hook_steps, plan_from_spec
        from containerlib.spec import oci

        state_dir = self._dir(cid)
        bundle_dir = Path(bundle).resolve()
        try:
            spec = oci.Spec.from_json((bundle_dir / "config.json").read_bytes())
        except OSError as e:
            raise SpecError("bundle", f"cannot read {bundle_dir}/config.json: {e.strerror}") from e
        if spec.root is None:
            raise SpecError("root", "the bundle's config.json names no root file system")
        rootfs = (bundle_dir / spec.root.path).resolve()
        if not rootfs.is_dir():
            raise SpecError("root.path", f"{rootfs} is not a directory")
        hooks = spec.hooks or oci.Hooks()
        plan = plan_from_spec(
            attrs.evolve(spec, hooks=None),
            container_id=cid,
            lowerdirs=(str(rootfs),),
            roots=self._roots(),
        )
        plan = attrs.evolve(
            plan,
            bind_root=True,
            exec_fifo=str(state_dir / _FIFO),
            pause_for_hooks=bool(hooks.prestart or hooks.create_runtime),
            create_container_hooks=hook_steps(hooks.create_container),
            start_container_hooks=hook_steps(hooks.start_container),
        )
        _check_console(plan.terminal, console_socket)
        helper = nativeinit.helper_path()
        if helper is None:
            raise ContainerSetupError(
                "create",
                errno.EOPNOTSUPP,
                cid,
                f"containerlib-runtime needs the native init helper: {nativeinit.build_error}",
            )
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        try:
            state_dir.mkdir(mode=0o711)
        except FileExistsError:
            raise ContainerSetupError(
                f"create {state_dir}", errno.EEXIST, cid, "a container with this id exists"
            ) from None
        cgroup = None
        pid = -1
        try:
            _make_fifo(state_dir / _FIFO, plan)
            if plan.cgroup_path is not None:
                try:
                    cgroup = self.driver.create(plan.cgroup_path, plan.cgroup_limits)
                except OSError as e:
                    raise ContainerSetupError(
                        f"create cgroup {plan.cgroup_path}", e.errno or errno.EIO, cid
                    ) from None
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            state = ContainerState(
                id=cid,
                status="creating",
                pid=0,
                bundle=str(bundle_dir),
                created=created,
                annotations=dict(spec.annotations),
            )
            # In the runtime's namespaces, once the container's exist and its mounts are
            # made, before the createContainer hooks (the process waits meanwhile).
            runtime_hooks = (*hooks.prestart, *hooks.create_runtime)
            with _console(plan.terminal, console_socket) as console:
                pid = self._start_process(
                    plan, helper, cgroup, stdio, detached, console, state, runtime_hooks
                )
            started = start_time(pid)
            record = {
                "id": cid,
                "pid": pid,
                "start_time": started,
                "bundle": str(bundle_dir),
                "created": created,
                "cgroup_path": plan.cgroup_path,
                "annotations": dict(spec.annotations),
                "hooks": hooks.to_dict(),
            }
            _write_atomically(state_dir / _STATE, json.dumps(record).encode())
            if pid_file is not None:
                _write_atomically(Path(pid_file), str(pid).encode())
            state = attrs.evolve(state, status="created", pid=pid)
        except BaseException:
            if pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            if cgroup is not None:
                with contextlib.suppress(OSError):
                    cgroup.destroy()
                with contextlib.suppress(OSError):
                    self.driver.remove_parents(cgroup.path)
            _remove_state(state_dir)
            raise
        return state

    def _start_process(
        self,
        plan: Plan,
        helper: str,
        cgroup: Any,
        stdio: tuple[int, int, int],
        detached: bool,
        console: int | None,
        state: ContainerState,
        runtime_hooks: tuple[oci.Hook, ...],
    ) -> int:
        """Clone the first process, send it its plan and wait until it is set up; run
        ``runtime_hooks`` (with ``state`` and the process's pid) when it stops for them.
        """
        from containerlib.linux import syscalls as sc
        from containerlib.linux.capabilities import last_cap
        from containerlib.runtime import nativeinit
        from containerlib.runtime.bundle_userns import clone_in_user_namespace, enter_user_namespace
        from containerlib.runtime.warm import clone_warm, discard

        cid = plan.container_id
        userns = bool(plan.clone_flags & sc.CLONE_NEWUSER)
        if userns:
            warm = clone_in_user_namespace(helper, plan.clone_flags, detached)
        else:
            warm = clone_warm(plan.clone_flags, helper, last_cap(), detached=detached)
        files = cgroup.join_files() if cgroup is not None else []
        into = cgroup.clone_into() if cgroup is not None else None
        have_cgroup2 = into is not None and os.path.exists(os.path.join(into, "cgroup.kill"))
        # A user namespace may mount cgroup2 only in a cgroup namespace of its own;
        # without one, /sys/fs/cgroup is the empty read-only tmpfs (see _init.c).
        have_cgroup2 = have_cgroup2 and (plan.new_cgroupns or not userns)
        rootfs_fd = None
        try:
            setgroups = True
            if userns:
                setgroups, rootfs_fd = enter_user_namespace(warm, plan)
            elif plan.rootfs_propagation & sc.MS_SLAVE:
                # A copy made here, in the runtime's mount namespace, is a peer of a shared
                # rootfs, and becomes its slave in the container's; one bound there, where
                # every mount is private already, would have no master to follow.
                try:
                    rootfs_fd = sc.open_tree_clone(plan.lowerdirs[0], recursive=True)
                except OSError as e:
                    raise ContainerSetupError(
                        f"bind the rootfs {plan.lowerdirs[0]!r}", e.errno or errno.EIO, cid
                    ) from None
            state = attrs.evolve(state, pid=warm.pid)
            plan = attrs.evolve(
                plan,
                create_state=_state_json(state) if plan.create_container_hooks else None,
                start_state=(
                    _state_json(attrs.evolve(state, status="created"))
                    if plan.start_container_hooks
                    else None
                ),
            )
            data = nativeinit.encode(
                plan,
                files,
                have_cgroup2,
                last_cap(),
                setgroups=setgroups,
                rootfs_fd=rootfs_fd is not None,
            )
            extra = [fd for fd in (rootfs_fd, console) if fd is not None]
            fds = (*stdio, *extra)
            warm.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fds(fds))])
            answer = warm.sock.recv(4096)
            if answer == b"H":
                for hook in runtime_hooks:
                    _run_hook(hook, state, cid)
                warm.sock.send(b"G")
                answer = warm.sock.recv(4096)
        except BaseException:
            discard(warm)
            raise
        finally:
            if rootfs_fd is not None:
                os.close(rootfs_fd)
        if answer == b"C":
            warm.sock.close()
            return warm.pid
        discard(warm)
        err, _, step = answer.partition(b"\0")
        raise ContainerSetupError(
            step.decode(errors="replace") or "start the container's process",
            int(err or errno.EIO),
            cid,
        )

    def start(self, cid: str) -> None:
        """Let the created container ``cid`` run its command, once its startContainer
        hooks have run (in the container), then run its poststart hooks.

        Raises:
            ContainerSetupError: it does not exist, or is not ``created``; or its first
                process ended before its command ran (a startContainer hook failed, say,
                naming it): the container is then ``stopped``.
        """
        record = self._record(cid)
        status = self._status(cid, record)
        if status != "created":
            raise ContainerSetupError("start", errno.EINVAL, cid, f"it is {status}, not created")
        fifo = self._dir(cid) / _FIFO
        # The startContainer hooks run before the process answers: wait for them too.
        deadline: float | None = time.monotonic() + 10
        for hook in _hooks(record, "startContainer"):
            deadline = None if deadline is None or hook.timeout is None else deadline + hook.timeout
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            answer = _read_start_answer(fd, record["pid"], deadline)
        finally:
            os.close(fd)
        if answer:  # it went on, to its command or to its end
            fifo.unlink()
        if answer != b"0":
            err, _, step = answer.partition(b"\0")
            if not step:
                raise ContainerSetupError(
                    "start", errno.ESRCH, cid, "its first process ended before it started"
                )
            raise ContainerSetupError(step.decode(errors="replace"), int(err or errno.EIO), cid)
        for hook in _hooks(record, "poststart"):  # a failure is a warning, by the spec
            try:
                _run_hook(hook, self.state(cid), cid)
            except ContainerSetupError as e:
                print(f"containerlib-runtime: warning: {e}", file=sys.stderr)

    # -- exec ---------------------------------------------------------------------------

    def exec(
        self,
        cid: str,
        process: oci.Process,
        *,
        pid_file: str | os.PathLike[str] | None = None,
        console_socket: str | os.PathLike[str] | None = None,
        stdio: tuple[int, int, int] = (0, 1, 2),
    ) -> int:
        """Start ``process`` in the running container ``cid`` (``runc exec``): in its
        namespaces and cgroup, with the container's seccomp filter and ``process``'s own
        user, capabilities and rlimits, through ``clib-init --exec`` (see ``_init.c``: the
        joining process is non-dumpable). Returns its pid; it is this process's child.

        Raises:
            SpecError: ``process`` is not valid, or asks for a terminal.
            ContainerSetupError: the container does not run, or a step failed.
        """
        from containerlib.linux import syscalls as sc
        from containerlib.linux.capabilities import last_cap
        from containerlib.runtime import nativeinit
        from containerlib.runtime.specconv import plan_from_spec
        from containerlib.runtime.warm import run_exec_helper
        from containerlib.spec import oci

        record = self._record(cid)
        status = self._status(cid, record)
        if status != "running":
            raise ContainerSetupError("exec", errno.EINVAL, cid, f"it is {status}, not running")
        bundle_dir = Path(record["bundle"])
        spec = oci.Spec.from_json((bundle_dir / "config.json").read_bytes())
        assert spec.root is not None
        rootfs = (bundle_dir / spec.root.path).resolve()
        spec = attrs.evolve(spec, process=process, hooks=None)
        plan = plan_from_spec(
            spec,
            container_id=cid,
            lowerdirs=(str(rootfs),),
            roots=self._roots(),
        )
        helper = nativeinit.helper_path()
        if helper is None:
            raise ContainerSetupError("exec", errno.EOPNOTSUPP, cid, str(nativeinit.build_error))
        files: list[str] = []
        if record.get("cgroup_path"):
            with contextlib.suppress(FileNotFoundError):
                files = self.driver.open(record["cgroup_path"]).join_files()
        flags = plan.clone_flags | (sc.CLONE_NEWCGROUP if plan.new_cgroupns else 0)
        data = nativeinit.encode(plan, files, False, last_cap(), join_flags=flags)
        pidfd = os.pidfd_open(record["pid"])
        try:
            if start_time(record["pid"]) != record["start_time"]:
                raise ContainerSetupError("exec", errno.ESRCH, cid, "it has stopped")
            with _console(plan.terminal, console_socket) as console:
                extra = (pidfd,) if console is None else (pidfd, console)
                pid = run_exec_helper(helper, data, (*stdio, *extra), cid)
        finally:
            os.close(pidfd)
        if pid_file is not None:
            _write_atomically(Path(pid_file), str(pid).encode())
        return pid

    # -- looking ------------------------------------------------------------------------

    def _record(self, cid: str) -> dict[str, Any]:
        try:
            data = (self._dir(cid) / _STATE).read_bytes()
        except FileNotFoundError:
            raise ContainerSetupError(
                "find the container", errno.ENOENT, cid, "no such container"
            ) from None
        record: dict[str, Any] = json.loads(data)
        return record

    def _status(self, cid: str, record: dict[str, Any]) -> str:
        if record["start_time"] is None or start_time(record["pid"]) != record["start_time"]:
            return "stopped"
        if (self._dir(cid) / _FIFO).exists():
            return "created"
        path = record.get("cgroup_path")
        if path:
            with contextlib.suppress(OSError):
                if frozen(self.driver.open(path).procs_files()):
                    return "paused"
        return "running"

    def state(self, cid: str) -> ContainerState:
        """What container ``cid`` is now.

        Raises:
            ContainerSetupError: there is no such container (ENOENT).
        """
        record = self._record(cid)
        status = self._status(cid, record)
        return ContainerState(
            id=cid,
            status=status,
            pid=record["pid"] if status != "stopped" else 0,
            bundle=record["bundle"],
            created=record["created"],
            annotations=record.get("annotations", {}),
        )

    def containers(self) -> list[ContainerState]:
        """Every container under the root, by id."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            with contextlib.suppress(ContainerSetupError, SpecError, ValueError, KeyError):
                found.append(self.state(entry.name))
        return found

    def pids(self, cid: str) -> list[int]:
        """The host pids of the container's processes (its cgroup's; without a cgroup,
        the first process)."""
        record = self._record(cid)
        if self._status(cid, record) == "stopped":
            return []
        path = record.get("cgroup_path")
        if path:
            with contextlib.suppress(FileNotFoundError):
                return _pids(self.driver.open(path).procs_files())
        return [record["pid"]]

    def update(self, cid: str, resources: oci.LinuxResources) -> None:
        """Change the limits of the running container (``runc update``): those that
        ``resources`` gives; the rest stay.

        Raises:
            SpecError: a value is not valid.
            ContainerSetupError: it does not run, or has no cgroup, or the kernel refused.
        """
        from containerlib.runtime.specconv import cgroup_limits

        limits = cgroup_limits(resources)
        cgroup = self._cgroup_of_running(cid, "update")
        try:
            cgroup.set_limits(limits, move=False)
        except OSError as e:
            raise ContainerSetupError(
                "update", e.errno or errno.EIO, cid, e.strerror or ""
            ) from None

    def stats(self, cid: str) -> dict[str, Any]:
        """The figures of the container's cgroup, as ``runc events --stats`` prints
        them: ``{"type": "stats", "id": ..., "data": {...}}``.

        Raises:
            ContainerSetupError: it does not run, or has no cgroup.
        """
        figures = self._cgroup_of_running(cid, "events --stats").stats()
        data = {
            "cpu": {
                "usage": {
                    "total": _nano(figures.cpu_usage_usec),
                    "user": _nano(figures.cpu_user_usec),
                    "kernel": _nano(figures.cpu_system_usec),
                }
            },
            "memory": {
                "usage": {"usage": figures.memory_current, "max": figures.memory_peak},
                "oom_kills": figures.oom_kills,
            },
            "pids": {"current": figures.pids_current},
            "blkio": {"read_bytes": figures.io_read_bytes, "write_bytes": figures.io_write_bytes},
        }
        return {"type": "stats", "id": cid, "data": data}

    def pause(self, cid: str) -> None:
        """Freeze every process of the running container (its cgroup's freezer).

        Raises:
            ContainerSetupError: it does not run, or has no cgroup.
        """
        self._cgroup_of_running(cid, "pause").freeze()

    def resume(self, cid: str) -> None:
        """Thaw the paused container.

        Raises:
            ContainerSetupError: it is not paused.
        """
        record = self._record(cid)
        status = self._status(cid, record)
        if status != "paused":
            raise ContainerSetupError("resume", errno.EINVAL, cid, f"it is {status}, not paused")
        self.driver.open(record["cgroup_path"]).thaw()

    def _cgroup_of_running(self, cid: str, action: str) -> Any:
        record = self._record(cid)
        status = self._status(cid, record)
        if status != "running":
            raise ContainerSetupError(action, errno.EINVAL, cid, f"it is {status}, not running")
        path = record.get("cgroup_path")
        if not path:
            raise ContainerSetupError(action, errno.ENOTSUP, cid, "it has no cgroup")
        return self.driver.open(path)

    # -- ending -------------------------------------------------------------------------

    def kill(self, cid: str, sig: int = signal.SIGTERM, *, all_processes: bool = False) -> None:
        """Send ``sig`` to the container's first process (with ``all_processes``, to every
        process in its cgroup).

        Raises:
            ContainerSetupError: it does not exist, or has stopped.
        """
        record = self._record(cid)
        if self._status(cid, record) == "stopped":
            raise ContainerSetupError("kill", errno.ESRCH, cid, "it is not running")
        pids = [record["pid"]]
        path = record.get("cgroup_path")
        if all_processes and path:
            with contextlib.suppress(OSError):
                pids = _pids(self.driver.open(path).procs_files()) or pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Remove container ``cid``: its cgroup and state. A created container is
        killed; a running or paused one only with ``force``. With ``force``, a container
        that does not exist is no error (what is left of a half-made one is removed), as
        with runc, whose callers clean up that way.

        Raises:
            ContainerSetupError: it does not exist (without ``force``), or runs and
                ``force`` is not given.
        """
        try:
            record = self._record(cid)
        except ContainerSetupError:
            if not force:
                raise
            _remove_state(self._dir(cid))
            return
        status = self._status(cid, record)
        if status in ("running", "paused") and not force:
            raise ContainerSetupError(
                "delete", errno.EBUSY, cid, f"it is {status}: stop it first, or use --force"
            )
        path = record.get("cgroup_path")
        if status != "stopped":
            with contextlib.suppress(ProcessLookupError):
                os.kill(record["pid"], signal.SIGKILL)
        if path:
            try:
                cgroup = self.driver.open(path)
            except FileNotFoundError:
                cgroup = None
            if cgroup is not None:
                cgroup.destroy()  # kills what is left in it first
            with contextlib.suppress(OSError):
                self.driver.remove_parents(path)
        deadline = time.monotonic() + 10
        while start_time(record["pid"]) == record["start_time"] is not None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        _remove_state(self._dir(cid))
        stopped = ContainerState(
            id=cid,
            status="stopped",
            pid=0,
            bundle=record["bundle"],
            created=record["created"],
            annotations=record.get("annotations", {}),
        )
        for hook in _hooks(record, "poststop"):  # a failure is a warning, by the spec
            try:
                _run_hook(hook, stopped, cid)
            except ContainerSetupError as e:
                print(f"containerlib-runtime: warning: {e}", file=sys.stderr)


def _make_fifo(path: Path, plan: Plan) -> None:
    """The exec FIFO. The process opens it for writing once it has become the command's
    user, in the container's user namespace if it has one: as runc does, the FIFO
    belongs to the container's root and anyone may write to it (the state directory
    is searchable, not readable, by others)."""
    from containerlib.linux.userns import host_id

    os.mkfifo(path, 0o600)
    if plan.uid_map:
        os.chown(path, host_id(plan.uid_map, 0) or 0, host_id(plan.gid_map, 0) or 0)
    os.chmod(path, 0o622)


def _read_start_answer(fd: int, pid: int, deadline: float | None) -> bytes:
    """What the first process writes to the exec FIFO (open for reading as ``fd``):
    ``b"0"`` when its command runs, else the report of what failed, up to the end of
    file; empty if it ended without a word, or did not answer by ``deadline``.

    The writer's open returns once this end exists; before that, and after it closes,
    a read finds nothing.
    """
    got = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        chunk = None
        if ready:
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(fd, 4096)
        if chunk:
            got += chunk
            if got == b"0":
                return got
            continue
        if chunk == b"" and got:
            return got
        # Nothing (more) to read: whatever it wrote before it ended has been read.
        if start_time(pid) is None:
            return got
        if deadline is not None and time.monotonic() > deadline:
            return got


def _state_json(state: ContainerState) -> bytes:
    return json.dumps(state.to_dict()).encode()


def _nano(usec: int | None) -> int | None:
    return None if usec is None else usec * 1000


def _hooks(record: dict[str, Any], kind: str) -> tuple[oci.Hook, ...]:
    """The hooks of ``kind`` (``"poststart"``...) the container was created with; the
    spec model is imported only for a container that has some."""
    raw = (record.get("hooks") or {}).get(kind)
    if not raw:
        return ()
    from containerlib.spec import oci

    return tuple(oci.Hook.from_dict(h) for h in raw)


def _run_hook(hook: oci.Hook, state: ContainerState, cid: str) -> None:
    """Run ``hook`` with the container's state on its stdin, as the runtime spec says:
    ``args`` as its argv (``path`` when there are none), ``env`` as its environment,
    killed after ``timeout`` seconds.

    Raises:
        ContainerSetupError: it could not run, failed, or timed out, naming it.
    """
    import subprocess

    argv = list(hook.args) or [hook.path]
    env = dict(item.partition("=")[::2] for item in hook.env)
    step = f"run hook {hook.path}"
    try:
        done = subprocess.run(
            argv,
            executable=hook.path,
            env=env,
            input=json.dumps(state.to_dict()).encode(),
            capture_output=True,
            timeout=hook.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ContainerSetupError(
            step, errno.ETIMEDOUT, cid, f"it ran past its timeout of {hook.timeout}s"
        ) from None
    except OSError as e:
        raise ContainerSetupError(step, e.errno or errno.EIO, cid) from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        raise ContainerSetupError(
            step, errno.EIO, cid, f"exit status {done.returncode}" + (f": {said}" if said else "")
        )


def _check_console(terminal: bool, path: str | os.PathLike[str] | None) -> None:
    if terminal and path is None:
        raise SpecError("process.terminal", "a terminal needs --console-socket")
    if path is not None and not terminal:
        raise SpecError("--console-socket", "is for a process with a terminal (process.terminal)")


@contextlib.contextmanager
def _console(terminal: bool, path: str | os.PathLike[str] | None) -> Iterator[int | None]:
    """A connection to the console socket for a process with a terminal (closed after),
    or None without one.

    Raises:
        SpecError: a terminal is asked for without a console socket, or the reverse.
        ContainerSetupError: the socket cannot be reached.
    """
    _check_console(terminal, path)
    if path is None:
        yield None
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(os.fspath(path))
        except OSError as e:
            raise ContainerSetupError(
                f"connect to the console socket {os.fspath(path)!r}", e.errno or errno.EIO, ""
            ) from None
        yield sock.fileno()
    finally:
        sock.close()


def _pids(procs_files: list[str]) -> list[int]:
    """The processes listed in a cgroup's ``cgroup.procs`` files."""
    found: set[int] = set()
    for path in procs_files:
        with contextlib.suppress(OSError):
            found.update(int(n) for n in Path(path).read_text().split())
    return sorted(found)


def _fds(fds: tuple[int, ...]) -> bytes:
    import array

    return array.array("i", fds).tobytes()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _remove_state(state_dir: Path) -> None:
    for name in (_STATE, _FIFO):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    with contextlib.suppress(FileNotFoundError):
        state_dir.rmdir()
