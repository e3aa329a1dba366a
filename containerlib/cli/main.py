"""The ``containerlib`` command: run and manage containers, images and specs, as docker's.

It runs containers in the foreground or detached and manages them as docker's command
does; it writes a default spec, manages images and makes a rootfs.

A thin shell over the library: each subcommand parses its arguments, calls the API and
turns its exceptions into a one-line message and an exit code (125 for containerlib's own
errors, as ``docker run`` does; the container's exit code otherwise). The commands for
detached containers (exec, ps, logs...) are in :mod:`containerlib.cli.containers`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from containerlib.cli import containers, formats
from containerlib.errors import ContainerlibError

if TYPE_CHECKING:
    from containerlib import Container

__all__ = ["main"]

#: The exit code for an error of containerlib itself, as docker run uses it.
EXIT_ERROR = 125


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="containerlib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a command in a container and pass its exit code on")
    run.add_argument("-d", "--detach", action="store_true", help="in the background: print its id")
    run.add_argument("-i", "--interactive", action="store_true", help="give it this stdin")
    run.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    run.add_argument("--rm", action="store_true", help="with -d: remove it when it ends")
    run.add_argument("--name", help="with -d: a name to find it by")
    run.add_argument(
        "-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
        help="bind-mount the host path SRC at DST, read-write unless :ro",
    )  # fmt: skip
    run.add_argument(
        "-p", "--publish", action="append", default=[],
        metavar="[IP:][HOST_PORT:]PORT[/udp]",
        help="publish a port of the container on the host (127.0.0.1 unless IP is given)",
    )  # fmt: skip
    run.add_argument("--memory", "-m", help="memory limit, as docker: 512M, 1g")
    run.add_argument("--cpus", help="CPUs of time, as docker: 1.5")
    run.add_argument("--pids", "--pids-limit", type=int, dest="pids", help="most processes")
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--hostname")
    run.add_argument("--user", "-u", help="name, name:group, uid or uid:gid")
    run.add_argument("--workdir", "-w")
    run.add_argument("--read-only", action="store_true", help="read-only root file system")
    run.add_argument(
        "--network", default="none",
        metavar="none|host|bridge|pasta|slirp4netns|container:NAME|ns:PATH|NAME",
        help="the container's network; container:NAME: that detached container's network "
        "namespace, hostname and /etc files (a pod); ns:PATH: the network namespace of "
        "that file; NAME: a user-defined network, made with its first container and "
        "removed with its last",
    )  # fmt: skip
    run.add_argument(
        "--network-alias", action="append", default=[], metavar="NAME",
        help="another name the container answers to on its --network NAME",
    )  # fmt: skip
    run.add_argument("--dns", action="append", default=[], metavar="IP", help="a name server")
    run.add_argument("--dns-search", action="append", default=None, metavar="DOMAIN")
    run.add_argument("--dns-option", action="append", default=None, metavar="OPTION")
    run.add_argument(
        "--add-host", action="append", default=[], metavar="HOST:IP",
        help="an entry in the container's /etc/hosts",
    )  # fmt: skip
    run.add_argument("--timeout", type=float, help="kill the container after this many seconds")
    run.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    run.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
    run.add_argument("--privileged", action="store_true", help="as docker run --privileged")
    run.add_argument("--init", action="store_true", help="a reaper as PID 1, as docker's")
    run.add_argument(
        "--security-opt", action="append", default=[], metavar="seccomp=unconfined|FILE",
        help="the seccomp profile: a Docker JSON file, or unconfined",
    )  # fmt: skip
    run.add_argument(
        "--userns",
        choices=("host", "auto"),
        help="auto: a user namespace with the default maps (always, for a non-root user)",
    )
    run.add_argument("--uidmap", metavar="0:HOST_UID:SIZE", help="container root's host uid")
    run.add_argument("--gidmap", metavar="0:HOST_GID:SIZE", help="container root's host gid")
    run.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    run.add_argument(
        "image",
        metavar="IMAGE",
        help="a rootfs directory, an OCI layout, or an image reference (pulled if missing)",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...")

    spec = sub.add_parser("spec", help="write a default config.json, as runc spec does")
    spec.add_argument("--rootless", action="store_true", help="for a non-root user")
    spec.add_argument("--bundle", "-b", default=".", help="directory to write config.json in")

    pull = sub.add_parser("pull", help="fetch an image from its registry into the image store")
    pull.add_argument("reference", help="busybox, host:5000/team/app:1.2, ...@sha256:...")
    pull.add_argument(
        "--insecure", action="append", default=[], metavar="HOST[:PORT]",
        help="a registry to speak plain http to (this machine's always are)",
    )  # fmt: skip

    push = sub.add_parser("push", help="upload an image of the image store to its registry")
    push.add_argument("reference", help="the image's name in the store")
    push.add_argument("destination", nargs="?", help="where to push, if not to its name")
    push.add_argument(
        "--insecure", action="append", default=[], metavar="HOST[:PORT]",
        help="a registry to speak plain http to (this machine's always are)",
    )  # fmt: skip

    sub.add_parser("images", help="list the images in the image store")
    rmi = sub.add_parser("rmi", help="remove images from the image store")
    rmi.add_argument("references", nargs="+", metavar="REFERENCE")
    sub.add_parser(
        "prune", help="remove unnamed images, unused blobs and unpacked layers no image uses"
    )

    save = sub.add_parser("save", help="write an image of the image store to an archive")
    save.add_argument("reference", help="the image's name in the store")
    save.add_argument("--output", "-o", required=True, help="the archive to write")
    save.add_argument(
        "--format", choices=("docker", "oci"), default="docker",
        help="docker: as docker save (default); oci: an OCI layout in a tar",
    )  # fmt: skip
    load = sub.add_parser("load", help="import the images of an archive into the image store")
    load.add_argument("--input", "-i", required=True, help="a docker save or OCI archive")

    rootfs = sub.add_parser("rootfs", help="make a root file system")
    rootfs.add_argument("kind", choices=("busybox",))
    rootfs.add_argument("dest", help="directory to create")
    containers.add_parsers(sub)
    return p


def _run(args: argparse.Namespace) -> int:
    from containerlib import Container, Image
    from containerlib.errors import SpecError

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if args.detach and args.tty:
        raise SpecError("tty", "-t with -d is not supported: there is no attach yet")
    if args.detach and args.interactive:
        raise SpecError("interactive", "-i with -d is not supported: there is no attach yet")
    if args.detach and args.timeout is not None:
        raise SpecError("timeout", "--timeout is for a container in the foreground")
    if args.name is not None and not args.detach:
        # A container in the foreground belongs to this process: nothing finds it by name.
        raise SpecError("name", "--name needs -d: a container in the foreground has none")
    volumes = [formats.parse_volume(v) for v in args.volume]
    ports = [formats.parse_publish(p) for p in args.publish]
    c = _network_options(Container(Image.from_path(args.image)), args)
    for host_ip, host_port, port, protocol in ports:
        c = c.publish(port, host_port, protocol, host_ip=host_ip)
    if args.memory is not None or args.pids is not None or args.cpus is not None:
        c = c.limit(mem=args.memory, pids=args.pids, cpus=args.cpus)
    env = formats.env_variables(args.env)
    if env:
        c = c.env(**env)
    for source, target, read_only in volumes:
        c = c.mount(source, target, read_only=read_only)
    if args.hostname:
        c = c.hostname(args.hostname)
    if args.user:
        c = c.user(args.user)
    if args.workdir:
        c = c.workdir(args.workdir)
    if args.read_only:
        c = c.read_only()
    c = _security_options(c, args)
    if args.detach:
        # Its keeper is forked from this small process: no spawner to start first.
        box = c._start_detached(cmd or None, None, None, args.name, args.rm, here=True)
        print(box.id)
        return 0
    if not args.interactive:  # as docker's: the container reads nothing of ours
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    # The command line is one small single-threaded process that runs one container: it
    # makes the container itself and hands it its own stdin, stdout and stderr. --rm is
    # what always happens to a container in the foreground.
    from containerlib.runtime.signals import FORWARDED

    if args.tty:
        from containerlib.cli.tty import run_in_terminal

        code, oom_killed, timed_out = run_in_terminal(
            c, cmd or None, interactive=args.interactive, timeout=args.timeout, forward=FORWARDED
        )
    else:
        result = c._run_in_this_process(cmd or None, timeout=args.timeout, forward=FORWARDED)
        code, oom_killed, timed_out = result.exit_code, result.oom_killed, result.timed_out
    if oom_killed:
        print("containerlib: the container ran out of memory", file=sys.stderr)
    if timed_out:
        print("containerlib: the container timed out", file=sys.stderr)
    return code


def _network_options(c: Container, args: argparse.Namespace) -> Container:
    """--network, --network-alias, --dns, --dns-search, --dns-option and --add-host."""
    from containerlib.errors import SpecError
    from containerlib.networks import Network

    if args.network in ("none", "host", "bridge", "pasta", "slirp4netns"):
        c = c.network(args.network, aliases=args.network_alias)
    elif args.network.startswith("container:"):  # docker's
        from containerlib.detached import get

        other = get(args.network.removeprefix("container:"))
        c = c.network(container=other, aliases=args.network_alias)
    elif args.network.startswith("ns:"):  # podman's
        c = c.network(netns=args.network.removeprefix("ns:"), aliases=args.network_alias)
    else:
        c = c.network(Network(args.network), aliases=args.network_alias)
    if args.dns or args.dns_search is not None or args.dns_option is not None:
        c = c.dns(args.dns, search=args.dns_search, options=args.dns_option)
    for entry in args.add_host:
        host, sep, address = entry.partition(":")
        if not sep:
            raise SpecError("add-host", f"{entry!r} is not HOST:IP")
        c = c.add_host(host, address)
    return c


def _security_options(c: Container, args: argparse.Namespace) -> Container:
    """--cap-add, --cap-drop, --privileged, --security-opt, --userns, --uidmap, --gidmap,
    --sysctl and --ulimit."""
    from containerlib.errors import SpecError

    if args.cap_add:
        c = c.cap_add(*args.cap_add)
    if args.cap_drop:
        c = c.cap_drop(*args.cap_drop)
    if args.privileged:
        c = c.privileged()
    if args.init:
        c = c.init()
    for opt in args.security_opt:
        key, eq, value = opt.partition("=")
        if key != "seccomp" or not eq:
            raise SpecError("security-opt", f"{opt!r}: only seccomp=unconfined|FILE is known")
        if value == "unconfined":
            c = c.seccomp(None)
        else:
            with open(value, encoding="utf-8") as f:
                c = c.seccomp(f.read())
    if args.userns == "auto":
        c = c.userns()
    elif args.userns == "host":
        c = c.userns(False)
    if args.uidmap or args.gidmap:
        uid, uid_size = _id_map(args.uidmap, "uidmap")
        gid, gid_size = _id_map(args.gidmap, "gidmap")
        sizes = {n for n in (uid_size, gid_size) if n is not None}
        if len(sizes) > 1:
            raise SpecError("gidmap", "must have the size of --uidmap")
        c = c.userns(uid=uid, gid=gid, size=sizes.pop())
    for item in args.sysctl:
        key, eq, value = item.partition("=")
        if not eq:
            raise SpecError("sysctl", f"{item!r} is not KEY=VALUE")
        c = c.sysctl(**{key: value})
    for item in args.ulimit:
        name, eq, limits = item.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            c = c.rlimit(name, int(soft), int(hard) if hard else None)
        except ValueError:
            raise SpecError("ulimit", f"{item!r} is not NAME=SOFT[:HARD]") from None
    return c


def _id_map(text: str | None, option: str) -> tuple[int | None, int | None]:
    """``0:HOST:SIZE`` (podman's --uidmap, for container id 0 only) as (HOST, SIZE)."""
    from containerlib.errors import SpecError

    if text is None:
        return None, None
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] != "0":
        raise SpecError(option, f"{text!r} is not 0:HOST_ID:SIZE")
    return int(parts[1]), int(parts[2])


def _spec(args: argparse.Namespace) -> int:
    from containerlib.spec.defaults import default_spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        print(f"containerlib: spec: {path} already exists", file=sys.stderr)
        return 1
    text = json.dumps(default_spec(rootless=args.rootless).to_dict(), indent="\t")
    with open(path, "x", encoding="utf-8") as f:
        f.write(text)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from containerlib import Image
    from containerlib.cli.progress import ProgressBars
    from containerlib.image.reference import parse_reference

    bars = ProgressBars("pull")
    Image.from_registry(args.reference, pull="always", insecure=args.insecure, progress=bars)
    print(parse_reference(args.reference))
    return 0


def _push(args: argparse.Namespace) -> int:
    from containerlib import Image
    from containerlib.cli.progress import ProgressBars
    from containerlib.image.reference import parse_reference

    image = Image.from_registry(args.reference, pull="never")
    destination = str(parse_reference(args.destination or args.reference))
    bars = ProgressBars("push")
    digest = image.push(destination, insecure=args.insecure, progress=bars)
    print(f"{destination}@{digest}")
    return 0


def _save(args: argparse.Namespace) -> int:
    from containerlib import Image

    Image.from_registry(args.reference, pull="never").save(args.output, format=args.format)
    return 0


def _load(args: argparse.Namespace) -> int:
    from containerlib import Image

    for image in Image.load(args.input):
        print(f"loaded {image.name}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from containerlib import Image

    report = Image.prune()
    print(report)
    return 0


def _images(args: argparse.Namespace) -> int:
    from containerlib import Image

    print(f"{'NAME':<50} {'DIGEST':<19} {'SIZE':>10}")
    for image in Image.list():
        print(f"{image.name:<50} {image.digest[:19]:<19} {image.size / 1e6:>8.1f}MB")
    return 0


def _rmi(args: argparse.Namespace) -> int:
    from containerlib import Image

    for reference in args.references:
        Image.remove(reference)
        print(f"removed {reference}")
    return 0


def _rootfs(args: argparse.Namespace) -> int:
    from containerlib.image.builtin import busybox_rootfs

    print(busybox_rootfs(args.dest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (and exits with it as a script)."""
    args = _parser().parse_args(argv)
    handler = {
        "run": _run,
        "spec": _spec,
        "pull": _pull,
        "push": _push,
        "images": _images,
        "rmi": _rmi,
        "prune": _prune,
        "save": _save,
        "load": _load,
        "rootfs": _rootfs,
        **containers.HANDLERS,
    }[args.command]
    try:
        code = handler(args)
    except (ContainerlibError, OSError) as e:
        print(f"containerlib: {args.command}: {e}", file=sys.stderr)
        code = EXIT_ERROR
    if argv is None:
        sys.exit(code)
    return code
