"""``containerlib-runtime``: an OCI runtime command line, as runc's, for podman, conmon and
containerd to drive (``podman --runtime containerlib-runtime``).

Commands so far: ``create``, ``start``, ``exec``, ``state``, ``ps``, ``pause``, ``resume``,
``update``, ``events --stats``, ``kill``, ``delete``, ``run``, ``list``, ``features`` and
``spec``, with runc's global
flags ``--root``, ``--log`` and ``--log-format``
(``--systemd-cgroup`` is refused: containerlib manages cgroups itself). Errors go to
standard error and, with ``--log``, to that file (one JSON object a line with
``--log-format json``, as conmon reads runc's); the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from containerlib.runtime.signals import FORWARDED, SignalRelay, to_pidfd

if TYPE_CHECKING:
    from containerlib.runtime.bundle import BundleRuntime
    from containerlib.spec.oci import LinuxResources

__all__ = ["main"]

DEFAULT_ROOT = "/run/containerlib"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="containerlib-runtime", description="An OCI runtime, as runc, from containerlib."
    )
    parser.add_argument("--root", default=None, help=f"state directory ({DEFAULT_ROOT})")
    parser.add_argument("--log", help="also write errors to this file")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--debug", action="store_true", help="accepted, as runc's")
    parser.add_argument(
        "--systemd-cgroup", action="store_true", help="refused: cgroups are containerlib's"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def with_bundle(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bundle", "-b", default=".", help="the bundle directory (.)")
        p.add_argument("--pid-file", help="write the first process's pid here")
        p.add_argument("--console-socket", help="for a terminal: where its master end goes")
        p.add_argument("--no-pivot", action="store_true", help="accepted, as runc's")
        p.add_argument("--no-new-keyring", action="store_true", help="accepted, as runc's")
        p.add_argument("id")

    with_bundle(commands.add_parser("create", help="create a container, not started"))
    run = commands.add_parser("run", help="create, start and wait for a container")
    with_bundle(run)
    run.add_argument("--detach", "-d", action="store_true", help="do not wait for it")
    commands.add_parser("start", help="start a created container").add_argument("id")
    exec_ = commands.add_parser("exec", help="run a process in a running container")
    exec_.add_argument("--process", "-p", help="an OCI process JSON file")
    exec_.add_argument("--detach", "-d", action="store_true", help="do not wait for it")
    exec_.add_argument("--pid-file", help="write the process's pid here")
    exec_.add_argument("--console-socket", help="for a terminal: where its master end goes")
    exec_.add_argument("--cwd", help="the working directory")
    exec_.add_argument("--env", "-e", action="append", default=[], metavar="KEY=VALUE")
    exec_.add_argument("--user", "-u", help="UID[:GID]")
    exec_.add_argument("--tty", "-t", action="store_true", help="give it a terminal")
    exec_.add_argument("id")
    exec_.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND")
    commands.add_parser("state", help="print a container's state").add_argument("id")
    ps = commands.add_parser("ps", help="the processes of a container")
    ps.add_argument("--format", "-f", choices=("table", "json"), default="table")
    ps.add_argument("id")
    commands.add_parser("pause", help="freeze a container").add_argument("id")
    commands.add_parser("resume", help="thaw a paused container").add_argument("id")
    commands.add_parser("features", help="what this runtime supports, as JSON")
    update = commands.add_parser("update", help="change a running container's limits")
    update.add_argument("--resources", "-r", help="an OCI linux.resources JSON file; - stdin")
    update.add_argument("--memory", type=int, help="bytes")
    update.add_argument("--pids-limit", type=int)
    update.add_argument("--cpu-quota", type=int, help="microseconds a period")
    update.add_argument("--cpu-period", type=int, help="microseconds")
    update.add_argument("--cpu-shares", type=int)
    update.add_argument("id")
    events = commands.add_parser(
        "events", help="the container's figures and OOM kills, as JSON lines, until it stops"
    )
    events.add_argument("--stats", action="store_true", help="the figures once, and end")
    events.add_argument(
        "--interval", default="5s", help="between two figures: 5s (the default), 500ms"
    )
    events.add_argument("id")
    kill = commands.add_parser("kill", help="send a signal to a container")
    kill.add_argument("--all", "-a", action="store_true", help="to every process in it")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = commands.add_parser("delete", help="remove a container")
    delete.add_argument("--force", "-f", action="store_true", help="kill it if it runs")
    delete.add_argument("id")
    listing = commands.add_parser("list", help="list the containers")
    listing.add_argument("--format", "-f", choices=("table", "json"), default="table")
    listing.add_argument("--quiet", "-q", action="store_true", help="ids only")
    spec = commands.add_parser("spec", help="write a default config.json")
    spec.add_argument("--bundle", "-b", default=".")
    spec.add_argument("--rootless", action="store_true")
    return parser


def _log(args: argparse.Namespace, message: str) -> None:
    print(f"containerlib-runtime: {message}", file=sys.stderr)
    if not args.log:
        return
    line = message
    if args.log_format == "json":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = json.dumps({"level": "error", "msg": message, "time": stamp})
    try:
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _run(args: argparse.Namespace) -> int:
    from containerlib.errors import SpecError
    from containerlib.runtime.bundle import BundleRuntime

    if args.systemd_cgroup:
        raise SpecError(
            "--systemd-cgroup", "is not supported: containerlib makes its cgroups itself"
        )
    runtime = BundleRuntime(args.root or DEFAULT_ROOT)
    command = args.command
    if command == "create":
        runtime.create(
            args.id, args.bundle, pid_file=args.pid_file, console_socket=args.console_socket
        )
    elif command == "run":
        return _run_container(runtime, args)
    elif command == "start":
        runtime.start(args.id)
    elif command == "exec":
        return _exec(runtime, args)
    elif command == "state":
        print(json.dumps(runtime.state(args.id).to_dict(), indent=2))
    elif command == "ps":
        pids = runtime.pids(args.id)
        if args.format == "json":
            print(json.dumps(pids))
        else:
            print("PID")
            for pid in pids:
                print(pid)
    elif command == "pause":
        runtime.pause(args.id)
    elif command == "resume":
        runtime.resume(args.id)
    elif command == "update":
        runtime.update(args.id, _resources(args))
    elif command == "events":
        if args.stats:
            print(json.dumps(runtime.stats(args.id)))
        else:
            _events(runtime, args.id, _duration(args.interval))
    elif command == "features":
        print(json.dumps(_features(), indent=2))
    elif command == "kill":
        from containerlib.cli.formats import parse_signal

        runtime.kill(args.id, parse_signal(args.signal), all_processes=args.all)
    elif command == "delete":
        runtime.delete(args.id, force=args.force)
    elif command == "list":
        states = runtime.containers()
        if args.quiet:
            for s in states:
                print(s.id)
        elif args.format == "json":
            print(json.dumps([s.to_dict() for s in states]))
        else:
            print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
            for s in states:
                print(f"{s.id:<20} {s.pid:<8} {s.status:<10} {s.bundle:<40} {s.created}")
    elif command == "spec":
        from containerlib.spec.defaults import default_spec

        path = os.path.join(args.bundle, "config.json")
        if os.path.exists(path):
            raise SpecError("spec", f"{path} exists already")
        text = json.dumps(default_spec(rootless=args.rootless).to_dict(), indent="\t")
        with open(path, "x", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


def _duration(text: str) -> float:
    """``5s``, ``500ms``, ``1m`` or a number of seconds, as seconds.

    Raises:
        SpecError: not a positive duration.
    """
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = text, "s"
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number, unit = text[: -len(suffix)], suffix
            break
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        from containerlib.errors import SpecError

        raise SpecError("--interval", f"{text!r} is not a duration such as 5s or 500ms")
    return seconds


#: How often ``events`` looks for OOM kills between two figures (seconds).
OOM_POLL = 0.1


def _events(runtime: BundleRuntime, cid: str, interval: float) -> None:
    """Print the container's figures every ``interval`` seconds and an ``oom`` event for
    each OOM kill, one JSON document a line, as ``runc events`` does, until it stops."""
    from containerlib.errors import ContainerSetupError

    figures = runtime.stats(cid)  # one that does not run is an error, as with runc
    kills = figures["data"]["memory"]["oom_kills"]
    due = 0.0
    while True:
        now = time.monotonic()
        if now >= due:
            print(json.dumps(figures), flush=True)
            due = now + interval
        time.sleep(min(OOM_POLL, max(0.0, due - time.monotonic())))
        try:
            figures = runtime.stats(cid)
        except ContainerSetupError:
            return  # it has stopped
        now_kills = figures["data"]["memory"]["oom_kills"]
        for _ in range(now_kills - kills):
            print(json.dumps({"type": "oom", "id": cid, "data": {}}), flush=True)
        kills = max(kills, now_kills)


def _resources(args: argparse.Namespace) -> LinuxResources:
    """``update``'s limits: the ``--resources`` document, then the flags over it."""
    from containerlib.spec import oci

    doc: dict[str, object] = {}
    if args.resources:
        if args.resources == "-":
            doc = json.loads(sys.stdin.read())
        else:
            with open(args.resources, "rb") as f:
                doc = json.loads(f.read())

    def section(name: str) -> dict[str, object]:
        value = doc.setdefault(name, {})
        assert isinstance(value, dict)
        return value

    if args.memory is not None:
        section("memory")["limit"] = args.memory
    if args.pids_limit is not None:
        section("pids")["limit"] = args.pids_limit
    for flag, key in (("cpu_quota", "quota"), ("cpu_period", "period"), ("cpu_shares", "shares")):
        if getattr(args, flag) is not None:
            section("cpu")[key] = getattr(args, flag)
    return oci.LinuxResources.from_dict(doc)


def _features() -> dict[str, object]:
    """The runtime-spec ``features`` document: what this runtime supports."""
    from containerlib.linux.capabilities import CAPABILITIES
    from containerlib.linux.seccomp import SUPPORTED_ACTIONS
    from containerlib.runtime.specconv import MOUNT_OPTIONS

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ],
        "mountOptions": sorted(MOUNT_OPTIONS),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": [f"CAP_{name}" for name in CAPABILITIES],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": sorted(SUPPORTED_ACTIONS),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.containerlib.runtime": "containerlib-runtime"},
    }


def _exec(runtime: object, args: argparse.Namespace) -> int:
    """``exec``: the process from ``--process``, or the container's with ``args``;
    without ``--detach``, wait for it and exit with its code."""
    from containerlib.errors import SpecError
    from containerlib.runtime.bundle import BundleRuntime
    from containerlib.spec import oci

    assert isinstance(runtime, BundleRuntime)
    if args.process:
        with open(args.process, "rb") as f:
            process = oci.Process.from_dict(json.loads(f.read()))
    else:
        if not args.args:
            raise SpecError("exec", "give a command, or --process")
        bundle = runtime.state(args.id).bundle
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = oci.Spec.from_json(f.read())
        if spec.process is None:
            raise SpecError("process", "the container's config.json has none")
        changes: dict[str, object] = {
            "args": tuple(args.args),
            "env": (*spec.process.env, *args.env),
            "terminal": args.tty,
        }
        if args.cwd:
            changes["cwd"] = args.cwd
        if args.user:
            uid, _, gid = args.user.partition(":")
            changes["user"] = oci.User(uid=int(uid), gid=int(gid or 0))
        import attrs

        process = attrs.evolve(spec.process, **changes)  # type: ignore[arg-type]
    # The relay goes in before the process starts (see containerlib.runtime.signals).
    with SignalRelay(() if args.detach else FORWARDED) as signals:
        pid = runtime.exec(
            args.id, process, pid_file=args.pid_file, console_socket=args.console_socket
        )
        if args.detach:
            return 0
        return _wait_relaying(pid, signals)


def _wait_relaying(pid: int, signals: SignalRelay) -> int:
    """Wait for child ``pid``, passing on the signals that ``signals`` (installed already)
    catches, those that came before first; its exit code (128 + N if signal N ended it).
    Signals that come once it has ended are dropped."""
    pidfd = os.pidfd_open(pid)
    try:
        signals.send_to(to_pidfd(pidfd))
        signals.wait([pidfd])
        _, status = os.waitpid(pid, 0)
    finally:
        signals.drop()
        os.close(pidfd)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _run_container(runtime: object, args: argparse.Namespace) -> int:
    """``run``: create and start; without ``--detach``, wait, pass on SIGINT, SIGTERM and
    SIGHUP, remove the container and exit with its code."""
    from containerlib.runtime.bundle import BundleRuntime

    assert isinstance(runtime, BundleRuntime)
    # As runc's, the relay goes in before the container is made: a signal that comes
    # before it runs is passed on once it does.
    with SignalRelay(() if args.detach else FORWARDED) as signals:
        state = runtime.create(
            args.id,
            args.bundle,
            pid_file=args.pid_file,
            console_socket=args.console_socket,
            detached=args.detach,
        )
        try:
            runtime.start(args.id)
        except BaseException:
            runtime.delete(args.id, force=True)
            raise
        if args.detach:
            return 0
        code = _wait_relaying(state.pid, signals)
        runtime.delete(args.id, force=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code."""
    args = _parser().parse_args(argv)
    from containerlib.errors import ContainerlibError

    try:
        return _run(args)
    except (ContainerlibError, OSError) as e:
        _log(args, str(e))
        return 1


def console_main() -> None:
    """The ``containerlib-runtime`` console script."""
    sys.exit(main())
