"""The ``containerlib`` subcommands for detached containers, as docker's: exec, ps, logs,
stop, kill, rm, inspect, stats and container prune (``run -d`` is in
:mod:`containerlib.cli.main`, docker's formats in :mod:`containerlib.cli.formats`).

Each command finds containers with :func:`containerlib.get` (an id, a unique id prefix or
a name) and acts through :class:`~containerlib.DetachedContainer`. As with docker, a
command given several containers goes on after one fails, names each failure on one line
of standard error and exits with 1; ``exec`` exits with the code of the command it ran.
Only the standard library is imported here: ``containerlib --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from containerlib.cli.formats import (
    bytes_size,
    command_column,
    env_variables,
    human_duration,
    parse_signal,
    parse_time,
    status_column,
    table,
)
from containerlib.errors import (
    ContainerlibError,
    ContainerNotFound,
    ContainerSetupError,
    SpecError,
)

if TYPE_CHECKING:
    from containerlib.detached import DetachedContainer
    from containerlib.linux.cgroups import CgroupStats
    from containerlib.runtime.client import Process
    from containerlib.runtime.signals import SignalRelay

__all__ = ["HANDLERS", "add_parsers", "docker_inspect"]

#: The exit code of a command that could not act on a container (docker's, for a daemon's
#: error such as "No such container").
EXIT_FAILED = 1
#: ``exec``'s exit code when its process could not be started (docker exec's).
EXIT_EXEC_FAILED = 126
#: Seconds between two tables of ``stats`` (as docker's).
STATS_INTERVAL = 1.0
#: Seconds over which ``stats --no-stream`` measures the CPU use.
STATS_SAMPLE = 0.5


# -- the parsers --------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Add the container subcommands to ``sub`` (the ``containerlib`` command's
    subparsers)."""
    p = sub.add_parser("exec", help="run a command in a running detached container")
    p.add_argument("-i", "--interactive", action="store_true", help="give it this stdin")
    p.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    p.add_argument("-u", "--user", help="name, name:group, uid or uid:gid")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("container", metavar="CONTAINER", help="id, id prefix or name")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD...")

    p = sub.add_parser("ps", help="list the detached containers")
    p.add_argument("-a", "--all", action="store_true", help="also those that have ended")
    p.add_argument("-q", "--quiet", action="store_true", help="only their ids")
    p.add_argument("--no-trunc", action="store_true", help="whole ids and commands")

    p = sub.add_parser("logs", help="print a detached container's output")
    p.add_argument("-f", "--follow", action="store_true", help="go on until it ends")
    p.add_argument("--since", help="from this time: 2026-11-29T21:30:00Z, 1796074200, 10m")
    p.add_argument("--until", help="before this time (as --since)")
    p.add_argument("-n", "--tail", default="all", help="the last N lines of each stream")
    p.add_argument("-t", "--timestamps", action="store_true", help="the time of each line")
    p.add_argument("container", metavar="CONTAINER")

    p = sub.add_parser("stop", help="SIGTERM, then SIGKILL after a grace period")
    p.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = sub.add_parser("kill", help="send a signal to a container's first process")
    p.add_argument("-s", "--signal", default="KILL", help="KILL, SIGTERM, 15...")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = sub.add_parser("rm", help="remove detached containers that have ended")
    p.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = sub.add_parser("inspect", help="what is known of containers, as JSON")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = sub.add_parser("stats", help="CPU, memory and processes of running containers")
    p.add_argument("--no-stream", action="store_true", help="one table, not one a second")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")

    p = sub.add_parser("container", help="manage detached containers: prune")
    actions = p.add_subparsers(dest="action", required=True)
    prune = actions.add_parser("prune", help="remove every detached container that has ended")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask")


def _message(error: BaseException) -> str:
    if isinstance(error, ContainerNotFound):
        detail = f" ({error.detail})" if error.detail else ""
        return f"no such container: {error.reference}{detail}"
    return str(error)


def _fail(command: str, error: BaseException) -> int:
    print(f"containerlib: {command}: {_message(error)}", file=sys.stderr)
    return EXIT_FAILED


def _each(
    command: str, references: Sequence[str], act: Callable[[DetachedContainer, str], None]
) -> int:
    """``act`` on each container named, as docker does: a failure is printed, the others
    still done; returns the exit code."""
    from containerlib.detached import get

    code = 0
    for reference in references:
        try:
            act(get(reference), reference)
        except (ContainerlibError, OSError) as e:
            code = _fail(command, e)
    return code


# -- exec ---------------------------------------------------------------------------------


def _exec(args: argparse.Namespace) -> int:
    from containerlib.cli.tty import TerminalRelay
    from containerlib.container import exec_request
    from containerlib.detached import get
    from containerlib.errors import ContainerNotRunning
    from containerlib.runtime import records
    from containerlib.runtime.client import Process
    from containerlib.runtime.messages import send_message
    from containerlib.runtime.signals import FORWARDED, SignalRelay

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        return _fail("exec", SpecError("cmd", "give the command to run after the container"))
    try:
        box = get(args.container)
        request = exec_request(
            box.id, cmd, user=args.user, env=env_variables(args.env), workdir=args.workdir
        )
        conn = records.connect(box.log_path.parent)
        if conn is None:
            raise ContainerNotRunning(box.id, "exec in")
    except (ContainerlibError, OSError) as e:
        return _fail("exec", e)
    # The process gets this command's own stdout and stderr, so that its output
    # appears as it is written; its stdin only with -i, as docker's.
    stdin = 0 if args.interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    # With -t, its stdio is a new terminal, which the relay copies to and from ours.
    relay = TerminalRelay(interactive=args.interactive) if args.tty else None
    # The signals are ours to pass on before the request goes: the process may write
    # its first output, and whoever reads it send this command a signal, before the
    # keeper's answer is in. Caught only after that, the signal would end this command
    # and leave the process running (or, ignored since our start, be lost).
    with SignalRelay(FORWARDED) as signals:
        try:
            console = [relay.console()] if relay is not None else []
            send_message(conn, ("exec", request), [stdin, 1, 2, *console])
        except OSError:
            conn.close()
            return _fail("exec", ContainerNotRunning(box.id, "exec in"))
        finally:
            if stdin != 0:
                os.close(stdin)
        process = Process(conn)
        with relay if relay is not None else contextlib.nullcontext():
            return _wait_for_exec(process, signals)


def _wait_for_exec(process: Process, signals: SignalRelay) -> int:
    """Wait for an exec'd process, passing on the signals this command gets (through
    ``signals``, installed already); its exit code, or docker's 126 if it could not be
    started."""
    try:
        # A signal that comes before the keeper's answer (and so the process's pidfd)
        # waits in ``signals``: the keeper answers once the process runs.
        process.started()
        signals.send_to(process.signal)
        while (exited := process.wait(0)) is None:
            signals.wait([process.channel])
    except ContainerlibError as e:  # it could not be started: docker's 126
        print(f"containerlib: exec: {_message(e)}", file=sys.stderr)
        return EXIT_EXEC_FAILED
    finally:
        process.close()
    return exited.exit_code


# -- ps, inspect --------------------------------------------------------------------------


def _ps(args: argparse.Namespace) -> int:
    from containerlib.detached import list as containers

    found = containers(all=args.all)[::-1]  # newest first, as docker's
    if args.quiet:
        for box in found:
            print(box.id if args.no_trunc else box.id[:12])
        return 0
    now = time.time()
    rows = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]]
    for box in found:
        record = box.inspect()
        ports = ", ".join(
            f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in box.ports
        )
        rows.append(
            [
                box.id if args.no_trunc else box.id[:12],
                box.image,
                command_column(box.command, truncate=not args.no_trunc),
                f"{human_duration(now - box.created)} ago",
                status_column(record, now),
                ports,
                box.name or "",
            ]
        )
    print(table(rows))
    return 0


def _rfc3339(when: float | None) -> str:
    if not when:
        return "0001-01-01T00:00:00Z"
    from containerlib.runtime.logs import format_time

    return format_time(when)


def docker_inspect(box: DetachedContainer) -> dict[str, Any]:
    """What ``docker inspect`` says of a container, in its shape, with containerlib's own
    record under ``Containerlib``."""
    record = box.inspect()
    state = record["status"]
    command = box.command
    return {
        "Id": box.id,
        "Created": _rfc3339(box.created),
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "Status": "created" if state == "creating" else state,
            "Running": state in ("running", "paused"),
            "Paused": state == "paused",
            "Restarting": False,
            "OOMKilled": bool(record.get("oom_killed")),
            "Dead": state == "dead",
            "Pid": record.get("pid", 0) if state in ("running", "paused") else 0,
            "ExitCode": record.get("exit_code", 137 if state == "dead" else 0),
            "Error": record.get("error") or "",
            "StartedAt": _rfc3339(record.get("started")),
            "FinishedAt": _rfc3339(record.get("finished")),
        },
        "Image": box.image,
        "Name": f"/{box.name}" if box.name else "",
        "LogPath": str(box.log_path),
        "Config": {"Image": box.image, "Cmd": command},
        "HostConfig": {"AutoRemove": bool(record.get("auto_remove"))},
        "Containerlib": record,
    }


def _inspect(args: argparse.Namespace) -> int:
    found: list[dict[str, Any]] = []
    code = _each("inspect", args.containers, lambda box, _ref: found.append(docker_inspect(box)))
    print(json.dumps(found, indent=4))
    return code


# -- logs ---------------------------------------------------------------------------------


def _pump(chunks: Iterator[bytes], out: Any, errors: list[BaseException]) -> None:
    """Copy ``chunks`` to ``out`` as they come (a thread of ``logs -f``)."""
    try:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
    except BrokenPipeError:  # the reader has gone (| head): nothing more to do
        pass
    except (ContainerlibError, OSError) as e:
        errors.append(e)


def _logs(args: argparse.Namespace) -> int:
    from containerlib.detached import get

    now = time.time()
    try:
        tail = None if args.tail == "all" else int(args.tail)
    except ValueError:
        return _fail("logs", SpecError("tail", f"{args.tail!r} is not a number of lines"))
    try:
        box = get(args.container)
        filters: dict[str, Any] = {
            "since": None if args.since is None else parse_time(args.since, "since", now),
            "until": None if args.until is None else parse_time(args.until, "until", now),
            "tail": tail,
            "timestamps": args.timestamps,
        }
        # The container's stdout to this stdout, its stderr to this stderr, as docker's.
        outputs = [(sys.stdout.buffer, True), (sys.stderr.buffer, False)]
        if not args.follow:
            for out, stdout in outputs:
                out.write(box.logs(stdout=stdout, stderr=not stdout, **filters))
                out.flush()
            return 0
        errors: list[BaseException] = []
        pumps = [
            threading.Thread(
                target=_pump,
                args=(
                    box.logs(stdout=stdout, stderr=not stdout, **filters, follow=True),
                    out,
                    errors,
                ),
                daemon=True,
            )
            for out, stdout in outputs
        ]
    except (ContainerlibError, OSError) as e:
        return _fail("logs", e)
    # Both streams are followed at once, each by a thread, so that neither waits for
    # the other; this one waits for both, in steps, so that Ctrl-C ends it.
    try:
        for pump in pumps:
            pump.start()
        for pump in pumps:
            while pump.is_alive():
                pump.join(0.5)
    except KeyboardInterrupt:
        return 0
    return _fail("logs", errors[0]) if errors else 0


# -- stop, kill, rm, prune ----------------------------------------------------------------


def _stop(args: argparse.Namespace) -> int:
    def stop(box: DetachedContainer, reference: str) -> None:
        box.stop(args.time)
        print(reference)

    return _each("stop", args.containers, stop)


def _kill(args: argparse.Namespace) -> int:
    try:
        sig = parse_signal(args.signal)
    except SpecError as e:
        return _fail("kill", e)

    def kill(box: DetachedContainer, reference: str) -> None:
        box.kill(sig)
        print(reference)

    return _each("kill", args.containers, kill)


def _rm(args: argparse.Namespace) -> int:
    def remove(box: DetachedContainer, reference: str) -> None:
        state = box.status
        if state in ("running", "paused", "creating") and not args.force:
            raise ContainerSetupError(
                f"remove container {reference!r}",
                errno.EBUSY,
                "",
                f"it is {state}: stop it, or use -f",
            )
        box.remove(force=args.force)
        print(reference)

    return _each("rm", args.containers, remove)


def _container(args: argparse.Namespace) -> int:
    from containerlib.detached import prune

    if not args.force:
        print(
            "WARNING! This will remove all stopped containers.\n"
            "Are you sure you want to continue? [y/N] ",
            end="",
            flush=True,
        )
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    removed = prune()
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
    return 0


# -- stats --------------------------------------------------------------------------------


def _host_memory() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _stats_row(
    box: DetachedContainer,
    before: CgroupStats,
    after: CgroupStats,
    seconds: float,
    limit: int,
) -> list[str]:
    cpu = 0.0
    if before.cpu_usage_usec is not None and after.cpu_usage_usec is not None and seconds > 0:
        cpu = max(0, after.cpu_usage_usec - before.cpu_usage_usec) / (seconds * 1e6) * 100
    used = after.memory_current or 0
    blkio = f"{bytes_size(after.io_read_bytes or 0)} / {bytes_size(after.io_write_bytes or 0)}"
    return [
        box.id[:12],
        box.name or "--",
        f"{cpu:.2f}%",
        f"{bytes_size(used)} / {bytes_size(limit)}",
        f"{used / limit * 100 if limit else 0:.2f}%",
        blkio,
        str(after.pids_current or 0),
    ]


def _figures(box: DetachedContainer) -> CgroupStats:
    """The figures of ``box``'s cgroup; none (zeros) for a container without a cgroup
    (a non-root user's, where none is delegated)."""
    try:
        return box.stats()
    except ContainerSetupError as e:
        if e.errno != errno.ENOTSUP:
            raise
    from containerlib.linux.cgroups import CgroupStats

    return CgroupStats()


def _stats_table(boxes: Sequence[DetachedContainer], seconds: float) -> str:
    """Measure ``boxes`` over ``seconds``; the table of what they used."""
    before = [_figures(box) for box in boxes]
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    limit = _host_memory()
    rows = [["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O", "PIDS"]]
    rows += [
        _stats_row(box, b, _figures(box), elapsed, limit)
        for box, b in zip(boxes, before, strict=True)
    ]
    return table(rows)


def _stats(args: argparse.Namespace) -> int:
    from containerlib.detached import get
    from containerlib.detached import list as containers

    def chosen() -> list[DetachedContainer]:
        if args.containers:
            return [get(reference) for reference in args.containers]
        return containers()

    try:
        if args.no_stream:
            print(_stats_table(chosen(), STATS_SAMPLE))
            return 0
        while True:
            table = _stats_table(chosen(), STATS_INTERVAL)
            print("\033[2J\033[H" + table, flush=True)  # clear the screen, as docker's
    except (ContainerlibError, OSError) as e:
        return _fail("stats", e)
    except KeyboardInterrupt:
        return 0


#: The handler of each subcommand of this module.
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "exec": _exec,
    "ps": _ps,
    "logs": _logs,
    "stop": _stop,
    "kill": _kill,
    "rm": _rm,
    "inspect": _inspect,
    "stats": _stats,
    "container": _container,
}
