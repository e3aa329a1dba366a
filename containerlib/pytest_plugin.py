"""pytest fixtures for test suites that run containers.

pytest loads this plugin by itself wherever containerlib is installed (the ``pytest11``
entry point ``containerlib``). A test asks for a fixture and gets containers that are gone
when it ends, whether it passed, failed or was interrupted with Ctrl-C; the logs of the
containers of a failed test are part of its report. See ``docs/pytest.md``.

Fixtures:

- ``busybox_image`` (session): a busybox :class:`~containerlib.images.Image` made from
  the host's static busybox, so that tests start without a registry.
- ``containers`` (function) and ``session_containers`` (session): a :class:`Containers`
  factory that starts containers and removes them at the end of its scope.
- ``networks`` (function): a :class:`Networks` factory of
  :class:`~containerlib.networks.Network` objects with names of their own.

Markers: ``@pytest.mark.containerlib`` (``root=True``) skips a test, saying why, where
this host cannot run containers. Options: ``--containerlib-keep``,
``--containerlib-log-lines``, ``--containerlib-require``.

An attached container dies with its owner already: its first process has
``PR_SET_PDEATHSIG`` set for the spawner, which kills its containers when this process's
end of their socket closes, whatever ends it. A detached one outlives it, so the plugin
removes those it started: at the end of their fixture's scope, again at the end of the
session (``pytest_sessionfinish``, which also runs after Ctrl-C), and at exit.

Importing this module imports nothing of containerlib but its exceptions: pytest loads it
in every run of every project where containerlib is installed. The fixtures import the
rest when first used.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shlex
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Literal, overload

import pytest

from containerlib.errors import ContainerlibError, ContainerNotFound

if TYPE_CHECKING:
    from containerlib.container import Container, RunningContainer
    from containerlib.detached import DetachedContainer
    from containerlib.images import Image
    from containerlib.networks import Network

__all__ = ["Containers", "Networks", "unique_name"]

#: How many of a container's last log lines go into a failed test's report by default.
DEFAULT_LOG_LINES = 100

_names = itertools.count(1)


def unique_name(base: str, *, limit: int = 64) -> str:
    """``base`` made unique to this process: the pytest-xdist worker (``gw0``; ``main``
    without xdist), the pid and a counter are appended, so that parallel runs and
    workers of one run do not take each other's names.

    Args:
        base: the start of the name.
        limit: the longest name allowed; ``base`` is shortened to fit.

    Example:
        >>> unique_name("backend")  # doctest: +SKIP
        'backend-gw0-41237-1'
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    suffix = f"-{worker}-{os.getpid()}-{next(_names)}"
    return base[: max(1, limit - len(suffix))] + suffix


# -- what the plugin started ------------------------------------------------------------


class _Started:
    """A container a factory started, or was asked to start (``handle`` None: the start
    failed or was interrupted; a detached one may have been made all the same)."""

    def __init__(self, cid: str, command: Sequence[str] | None, state_dir: str | None) -> None:
        self.id = cid
        self.command = list(command) if command is not None else []
        #: A detached container's state directory, None for an attached one.
        self.state_dir = state_dir
        self.handle: RunningContainer | DetachedContainer | None = None

    @property
    def label(self) -> str:
        what = shlex.join(self.command) if self.command else "its image's command"
        if len(what) > 60:
            what = what[:57] + "..."
        return f"{self.id[:12]} ({what})"

    def remove(self) -> None:
        """Kill the container if it runs and remove what it left.

        Raises:
            ContainerlibError, OSError: it could not be removed.
        """
        from containerlib.container import RunningContainer
        from containerlib.detached import DetachedContainer

        handle = self.handle
        if isinstance(handle, RunningContainer):
            handle.__exit__(None, None, None)
            return
        if handle is None and self.state_dir is not None:
            if not os.path.isdir(self.state_dir):
                return
            with contextlib.suppress(ContainerNotFound):
                handle = DetachedContainer(self.state_dir)
        if isinstance(handle, DetachedContainer):
            with contextlib.suppress(ContainerNotFound):  # auto_remove: gone already
                handle.remove(force=True)

    def status(self) -> str:
        """``running``, ``exited N`` or the like, for a report; never raises."""
        from containerlib.detached import DetachedContainer

        handle = self.handle
        try:
            if isinstance(handle, DetachedContainer):
                state = handle.status
                return f"exited {handle.exit_code}" if state in ("exited", "dead") else state
            if handle is not None:
                try:
                    return f"exited {handle.wait(timeout=0).exit_code}"
                except TimeoutError:
                    return "running"
        except (ContainerlibError, OSError) as e:
            return f"unknown ({e})"
        return "not started"

    def log_tail(self, lines: int) -> str:
        """The container's last ``lines`` lines of output; never raises."""
        if self.handle is None:
            return "(it did not start)"
        try:
            text = self.handle.logs(tail=lines).decode(errors="replace")
        except (ContainerlibError, OSError) as e:
            return f"(its log could not be read: {e})"
        return text or "(it wrote nothing)"


class _Live:
    """The detached containers started and not yet removed, for the sweeps at the end of
    the session and at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Started] = {}
        self._atexit = False

    def add(self, entry: _Started) -> None:
        with self._lock:
            self._entries[entry.id] = entry
            if not self._atexit:
                atexit.register(self.sweep)
                self._atexit = True

    def discard(self, entry: _Started) -> None:
        with self._lock:
            self._entries.pop(entry.id, None)

    def sweep(self) -> list[str]:
        """Remove every container still here; returns the problems met."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        problems = []
        for entry in entries:
            try:
                entry.remove()
            except (ContainerlibError, OSError) as e:
                problems.append(f"{entry.label}: {e}")
        return problems


_LIVE = _Live()


class _Tracker:
    """What one factory scope started: containers, oldest first, and networks."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.entries: list[_Started] = []
        self.networks: list[Network] = []
        #: A test that used these containers failed (setup or call).
        self.failed = False

    def kept(self) -> list[_Started]:
        """The containers kept for inspection if a test that used them failed: the
        detached ones that started (an attached container cannot outlive pytest)."""
        if not (self.keep and self.failed):
            return []
        return [e for e in self.entries if e.state_dir is not None and e.handle is not None]

    def close(self) -> list[str]:
        """Remove the containers, newest first, but those kept; then the detached
        containers still on the networks. Returns the problems met."""
        kept = {e.id for e in self.kept()}
        problems = []
        for entry in reversed(self.entries):
            if entry.id in kept:
                _LIVE.discard(entry)
                continue
            try:
                entry.remove()
            except (ContainerlibError, OSError) as e:
                problems.append(f"remove container {entry.label}: {e}")
            finally:
                _LIVE.discard(entry)
        for network in self.networks:
            problems += _empty_network(network, kept)
        self.entries.clear()
        return problems


def _empty_network(network: Network, kept: set[str]) -> list[str]:
    """Remove the detached containers left on ``network`` by the test (started without
    the factory), but those kept: the network goes with its last member. Attached ones
    die with their handles."""
    from containerlib.detached import DetachedContainer
    from containerlib.runtime.specconv import Roots

    problems = []
    try:
        members = network.members()
    except (ContainerlibError, OSError) as e:
        return [f"list the members of network {network.name!r}: {e}"]
    run_root = Roots.from_env().run
    for member in members:
        state_dir = os.path.join(run_root, member.id)
        if member.id in kept or not os.path.isdir(state_dir):
            continue
        try:
            DetachedContainer(state_dir).remove(force=True)
        except ContainerNotFound:
            pass
        except (ContainerlibError, OSError) as e:
            problems.append(f"remove container {member.id[:12]} of network {network.name}: {e}")
    return problems


# -- factories --------------------------------------------------------------------------


class Containers:
    """Starts containers for a test (the ``containers`` fixture) or a session
    (``session_containers``) and removes them when it ends.

    Attached containers are the default, as with :meth:`Container.start`; with
    ``--containerlib-keep`` they are started detached instead (when they can be: not
    ``interactive`` or ``tty``), so that those of a failed test can outlive pytest.

    Example:
        >>> def test_web(containers, busybox_image):  # doctest: +SKIP
        ...     web = Container(busybox_image).publish(8080)
        ...     box = containers.start(web, ["httpd", "-f", "-p", "8080"])
        ...     assert box.ports[0].host_port
    """

    def __init__(self, tracker: _Tracker) -> None:
        self._tracker = tracker

    @property
    def started(self) -> list[RunningContainer | DetachedContainer]:
        """The handles of the containers started so far, oldest first."""
        return [e.handle for e in self._tracker.entries if e.handle is not None]

    @overload
    def start(
        self,
        container: Container,
        cmd: Sequence[str] | None = None,
        *,
        detach: Literal[True],
        input: bytes | None = None,
        id: str | None = None,
        name: str | None = None,
        auto_remove: bool = False,
        log_max: str | int | None = None,
    ) -> DetachedContainer: ...

    @overload
    def start(
        self,
        container: Container,
        cmd: Sequence[str] | None = None,
        *,
        detach: bool | None = None,
        input: bytes | None = None,
        id: str | None = None,
        name: str | None = None,
        auto_remove: bool = False,
        log_max: str | int | None = None,
        interactive: bool = False,
        tty: bool = False,
    ) -> RunningContainer | DetachedContainer: ...

    def start(
        self,
        container: Container,
        cmd: Sequence[str] | None = None,
        *,
        detach: bool | None = None,
        input: bytes | None = None,
        id: str | None = None,
        name: str | None = None,
        auto_remove: bool = False,
        log_max: str | int | None = None,
        interactive: bool = False,
        tty: bool = False,
    ) -> RunningContainer | DetachedContainer:
        """Start ``container`` (see :meth:`Container.start`) and remove it at the end.

        Args:
            container: what to start.
            cmd: the command and its arguments; the image's by default.
            detach: start it detached (True) or attached (False); by default attached,
                but detached with ``--containerlib-keep``.
            input, id, auto_remove, log_max, interactive, tty: as for
                :meth:`Container.start`.
            name: a detached container's name, made unique with :func:`unique_name`
                (the handle's ``name`` is the one it got); on a network, give it an
                alias to be found by a fixed name.

        Returns:
            A :class:`~containerlib.container.RunningContainer`, or a
            :class:`~containerlib.detached.DetachedContainer` if it was started detached.

        Raises:
            The errors of :meth:`Container.start`.

        Example:
            >>> def test_server(containers, busybox_image):  # doctest: +SKIP
            ...     box = containers.start(Container(busybox_image), ["httpd", "-f", "-p", "80"])
            ...     wait_for_port(box, 80)
            ...     # no cleanup here: the fixture removes the container after the test
        """
        import secrets

        from containerlib.runtime.ids import check_id
        from containerlib.runtime.specconv import Roots

        if detach is None:
            detach = self._tracker.keep and not (interactive or tty)
        # The id is picked here, so that a start that is interrupted leaves a name to
        # look for.
        cid = check_id(id) if id is not None else secrets.token_hex(16)
        if name is not None:
            name = unique_name(name, limit=128)
        entry = _Started(cid, cmd, os.path.join(Roots.from_env().run, cid) if detach else None)
        self._tracker.entries.append(entry)
        if detach:
            # Registered before it exists: a Ctrl-C during the start leaves its state
            # directory to find.
            _LIVE.add(entry)
            entry.handle = container.start(
                cmd,
                input=input,
                id=cid,
                detach=True,
                name=name,
                auto_remove=auto_remove,
                log_max=log_max,
            )
        else:
            entry.handle = container.start(
                cmd, input=input, id=cid, interactive=interactive, tty=tty
            )
        return entry.handle

    __call__ = start


class Networks:
    """Makes :class:`~containerlib.networks.Network` objects with names unique to this
    run and worker (the ``networks`` fixture). A network goes with its last member: the
    containers the test started with ``containers`` are removed at its end, and then the
    detached ones it started on its own on these networks. Root only, as bridges are.

    Example:
        >>> def test_pair(containers, networks, busybox_image):  # doctest: +SKIP
        ...     backend = networks("backend")
        ...     db = Container(busybox_image).network(backend, aliases=["db"])
    """

    def __init__(self, tracker: _Tracker) -> None:
        self._tracker = tracker

    def __call__(
        self,
        name: str = "net",
        *,
        subnet: str | None = None,
        ipv6: bool = False,
        subnet6: str | None = None,
    ) -> Network:
        """A new :class:`~containerlib.networks.Network` whose name starts with
        ``name``; the other arguments are the network's.

        Raises:
            SpecError: a bad name or subnet.
        """
        from containerlib.networks import Network

        network = Network(unique_name(name), subnet=subnet, ipv6=ipv6, subnet6=subnet6)
        self._tracker.networks.append(network)
        return network


# -- pytest hooks -----------------------------------------------------------------------


class _Settings:
    def __init__(self, config: pytest.Config) -> None:
        self.keep: bool = config.getoption("containerlib_keep")
        self.log_lines: int = config.getoption("containerlib_log_lines")
        self.require: bool = config.getoption("containerlib_require")
        #: (test node id, container id) of the containers kept, as the reports tell.
        self.kept: list[tuple[str, str]] = []
        self.session_tracker: _Tracker | None = None


_SETTINGS = pytest.StashKey[_Settings]()
_TRACKER = pytest.StashKey[_Tracker]()
#: Why a marked test fails at once (``--containerlib-require`` on a host that cannot).
_MUST_FAIL = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("containerlib", "containers for tests (containerlib)")
    group.addoption(
        "--containerlib-keep",
        action="store_true",
        dest="containerlib_keep",
        help="keep the containers of failed tests running for inspection (the fixtures "
        "then start containers detached) and print their ids",
    )
    group.addoption(
        "--containerlib-log-lines",
        type=int,
        default=DEFAULT_LOG_LINES,
        dest="containerlib_log_lines",
        metavar="N",
        help="how many of each container's last log lines go into a failed test's report "
        f"(default {DEFAULT_LOG_LINES}; 0 for none)",
    )
    group.addoption(
        "--containerlib-require",
        action="store_true",
        dest="containerlib_require",
        help="fail, rather than skip, the tests that need containers where this host "
        "cannot run them",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "containerlib(root=False): the test runs containers; it is skipped, saying why, "
        "where this host cannot run them (with root=True: unless it runs as root)",
    )
    settings = _Settings(config)
    config.stash[_SETTINGS] = settings
    config.pluginmanager.register(_KeptReport(settings), "containerlib-kept-report")


class _KeptReport:
    """Collects the ids of the containers kept, from the reports (with pytest-xdist, the
    workers' come to the controller this way), and lists them at the end."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == "containerlib_kept" and isinstance(value, list):
                for cid in value:
                    if all(cid != seen for _, seen in self._settings.kept):
                        self._settings.kept.append((report.nodeid, str(cid)))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        kept = self._settings.kept
        if not kept:
            return
        terminalreporter.section("containerlib: containers kept for inspection")
        for nodeid, cid in kept:
            terminalreporter.write_line(f"{cid}  {nodeid}")
        terminalreporter.write_line(f"remove them with: {_env_hint()}containerlib rm -f ID...")


def _host_reason(root: bool) -> str | None:
    """Why this host cannot run the containers of a test, or None if it can."""
    from containerlib._hostcheck import host_problems

    problems = host_problems(root=root)
    if not problems:
        return None
    return "containerlib cannot run containers here: " + "; ".join(problems)


def _check_host(config: pytest.Config, *, root: bool = False) -> None:
    """Skip the test (fail it, with ``--containerlib-require``) where this host cannot
    run containers."""
    reason = _host_reason(root)
    if reason is not None:
        if config.stash[_SETTINGS].require:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The marked tests get a skip marker, so that the report names them, not this file.
    # The host is looked at once, and only if a test is marked.
    require = config.stash[_SETTINGS].require
    for item in items:
        marker = item.get_closest_marker("containerlib")
        if marker is None:
            continue
        unknown = set(marker.kwargs) - {"root"}
        if marker.args or unknown:
            given = [*map(repr, marker.args), *(f"{k}=..." for k in sorted(unknown))]
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.containerlib takes only root=True or "
                f"root=False, not {', '.join(given)}"
            )
        reason = _host_reason(bool(marker.kwargs.get("root", False)))
        if reason is None:
            continue
        if require:
            item.stash[_MUST_FAIL] = reason
        else:
            item.add_marker(pytest.mark.skip(reason=reason))


def _env_hint() -> str:
    """``CONTAINERLIB_RUN_ROOT=...`` and a space if the run root is not the default one,
    for the commands the plugin suggests."""
    root = os.environ.get("CONTAINERLIB_RUN_ROOT")
    return f"CONTAINERLIB_RUN_ROOT={shlex.quote(root)} " if root else ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = item.stash.get(_MUST_FAIL, None)
    if reason is not None:
        pytest.fail(reason, pytrace=False)


def _trackers(item: pytest.Item) -> list[_Tracker]:
    """The trackers of the containers ``item`` used: its own, and the session's if it
    asked for ``session_containers``."""
    found = []
    own = item.stash.get(_TRACKER, None)
    if own is not None:
        found.append(own)
    session = item.config.stash[_SETTINGS].session_tracker
    if session is not None and "session_containers" in getattr(item, "fixturenames", ()):
        found.append(session)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.failed or call.when == "teardown":
        return report
    settings = item.config.stash[_SETTINGS]
    for tracker in _trackers(item):
        tracker.failed = True
        if settings.log_lines > 0:
            for entry in tracker.entries:
                report.sections.append(
                    (
                        f"containerlib: {entry.label}, {entry.status()}, "
                        f"last {settings.log_lines} lines of its log",
                        entry.log_tail(settings.log_lines),
                    )
                )
        kept = tracker.kept()
        if kept:
            ids = [e.id for e in kept]
            report.user_properties.append(("containerlib_kept", ids))
            report.sections.append(("containerlib: kept for inspection", _kept_text(kept)))
    return report


def _kept_text(kept: Sequence[_Started]) -> str:
    lines = [f"{e.id}  {e.label.split(' ', 1)[1]}" for e in kept]
    env = _env_hint()
    lines.append(
        f"inspect with `{env}containerlib logs ID` or `{env}containerlib exec -it ID sh`; "
        f"remove with `{env}containerlib rm -f ID`"
    )
    return "\n".join(lines)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # After pytest's own teardown of the fixtures (Ctrl-C included): anything a teardown
    # could not reach.
    problems = _LIVE.sweep()
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("containerlib: could not remove " + "; ".join(problems))


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def busybox_image(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """A busybox image made from the host's static busybox (Debian's ``busybox-static``)
    in the session's temporary directory: no registry needed. Skips where there is none.
    """
    _check_host(pytestconfig)
    from containerlib.errors import ImageNotFound
    from containerlib.image.builtin import busybox_rootfs, find_static_busybox
    from containerlib.images import Image

    try:
        find_static_busybox()
    except ImageNotFound as e:
        if pytestconfig.stash[_SETTINGS].require:
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))
    return Image.from_rootfs(busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs"))


def _finish(tracker: _Tracker) -> None:
    problems = tracker.close()
    if problems:
        pytest.fail("containerlib: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def containers(request: pytest.FixtureRequest) -> Iterator[Containers]:
    """A :class:`Containers` factory for the test: what it starts is removed at the
    test's end (with ``--containerlib-keep``, kept if the test failed)."""
    _check_host(request.config)
    tracker = _Tracker(request.config.stash[_SETTINGS].keep)
    request.node.stash[_TRACKER] = tracker
    yield Containers(tracker)
    _finish(tracker)


@pytest.fixture(scope="session")
def session_containers(request: pytest.FixtureRequest) -> Iterator[Containers]:
    """A :class:`Containers` factory for the session, for servers that tests share:
    what it starts is removed at the session's end. Their logs go into the report of
    each failed test that asked for this fixture (through another fixture too)."""
    _check_host(request.config)
    settings = request.config.stash[_SETTINGS]
    tracker = _Tracker(settings.keep)
    settings.session_tracker = tracker
    yield Containers(tracker)
    settings.session_tracker = None
    _finish(tracker)


@pytest.fixture
def networks(request: pytest.FixtureRequest, containers: Containers) -> Networks:
    """A :class:`Networks` factory for the test. It sets up ``containers`` first, so that
    the containers are removed before the networks are looked at. Root only."""
    _check_host(request.config, root=True)
    return Networks(containers._tracker)
