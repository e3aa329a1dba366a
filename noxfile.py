"""Development sessions: ``nox`` runs the default set, ``nox -s NAME`` one of them.

Each session's docstring says what privilege it needs. The sessions that need root skip
themselves, saying so, when nox does not run as root; CI runs everything as root.

Tool versions are pinned here so that a new ruff or mypy release does not break main.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox
import nox.command

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "venv"
# Reinstalling into a kept venv is quick; creating one is the slow part.
nox.options.reuse_venv = "yes"
nox.options.sessions = [
    "lint",
    "typecheck",
    "unit",
    "integration",
    "e2e",
    "rootless",
    "docs",
    "notebooks",
]

ROOT = Path(__file__).parent
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
MKDOCS = "mkdocs==1.6.1"
DOCS_TOOLS = (
    MKDOCS,
    "mkdocs-material==9.8.2",
    "mkdocstrings==1.0.8",
    "mkdocstrings-python==2.0.11",
    # mkdocstrings formats the signatures in the API reference with it.
    RUFF,
)
NOTEBOOK_TOOLS = ("nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29")
LINT_PATHS = ("containerlib", "tests", "benchmarks", "docs/hooks", "noxfile.py")


def _is_root() -> bool:
    return os.geteuid() == 0


def _need_root(session: nox.Session) -> None:
    if not _is_root():
        session.skip(f"{session.name} needs root (namespaces, cgroups, overlayfs): run as root")


def _has_tests(folder: str) -> bool:
    return any((ROOT / folder).rglob("test_*.py"))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check. No privilege needed."""
    session.install(RUFF)
    # git does not keep empty folders, so a fresh clone may lack one of these yet.
    paths = [p for p in LINT_PATHS if (ROOT / p).exists()]
    failed = []
    # Run both, so that one run shows every problem.
    for args in (["check", *paths], ["format", "--check", "--diff", *paths]):
        try:
            session.run("ruff", *args)
        except nox.command.CommandFailed:
            failed.append(f"ruff {args[0]}")
    if failed:
        session.error(f"{' and '.join(failed)} found problems")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package. No privilege needed."""
    session.install(MYPY, "-e", ".[test]")
    session.run("mypy", "--strict", "containerlib")


@nox.session
def unit(session: nox.Session) -> None:
    """Fast tests with fakes and hypothesis (tests/unit). No privilege needed."""
    if not _has_tests("tests/unit"):
        session.skip("tests/unit has no tests yet")
    session.install("-e", ".[test]")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Tests against the real kernel (tests/integration). Needs root."""
    _need_root(session)
    if not _has_tests("tests/integration"):
        session.skip("tests/integration has no tests yet")
    session.install("-e", ".[test]")
    # The cache would be left root-owned in the work tree.
    session.run("pytest", "-p", "no:cacheprovider", "tests/integration", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Real outside programs with containerlib (tests/e2e): pytest runs a sample project
    that uses the pytest plugin, interrupted with SIGINT and under pytest-xdist too, and
    nothing may be left behind. Needs root (the leak checks look at cgroups)."""
    _need_root(session)
    if not _has_tests("tests/e2e"):
        session.skip("tests/e2e has no tests yet")
    session.install("-e", ".[test]")
    session.run("pytest", "-p", "no:cacheprovider", "tests/e2e", *session.posargs)


#: The user the session ``rootless`` runs the suite as, and the interpreter it uses:
#: Debian's, as the one nox runs under may live where that user cannot go (/root).
ROOTLESS_UID = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


class _Delegated:
    """A cgroup2 directory made for the session and handed to a user, with a leaf for
    the user's processes (cgroup v2 allows no process in a cgroup whose children have
    controllers, so a delegated subtree keeps its processes in a leaf)."""

    def __init__(self, mount: str, relative: str) -> None:
        self.mount = mount
        self.relative = relative
        self.top = os.path.join(mount, relative)
        self.leaf = os.path.join(self.top, "leaf")

    def remove(self) -> None:
        """Remove it, deepest first: only empty cgroups, which the tests leave."""
        for path in sorted(Path(self.top).glob("**/"), key=lambda p: -len(p.parts)):
            try:
                os.rmdir(path)
            except OSError as e:
                print(f"rootless: cgroup {path} left behind: {e}")


def _delegate_cgroup(uid: int) -> _Delegated | None:
    """Delegate a new cgroup2 directory to ``uid`` as systemd does (the directory and its
    cgroup.procs, cgroup.threads and cgroup.subtree_control become the user's); None
    where no cgroup2 is mounted."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    where = [line.split()[1] for line in mounts if line.split()[2] == "cgroup2"]
    if not where:
        return None
    delegated = _Delegated(where[0], f"containerlib-rootless-{os.getpid()}")
    for path in (delegated.top, delegated.leaf):
        os.mkdir(path)
        for name in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
            os.chown(os.path.join(path, name), uid, uid)
    return delegated


@nox.session(venv_backend="none")
def rootless(session: nox.Session) -> None:
    """The integration suite as ``nobody``, whose containers run in user namespaces:
    what a non-root user can do runs, the rest skips, saying why. Needs root (to become
    ``nobody`` with setpriv) and Debian's /usr/bin/python3 with its venv module.

    Everything goes to a temporary directory that ``nobody`` can read (a venv with
    containerlib installed, not linked to this tree, and a copy of the tests), as this
    tree may be where ``nobody`` cannot go; it is removed at the end. The suite runs in a
    cgroup2 subtree delegated to ``nobody`` (see :func:`_delegate_cgroup`), removed at
    the end too. /dev/net/tun is made usable by all, as distributions ship it, for the
    session only.
    """
    _need_root(session)
    if not _has_tests("tests/integration"):
        session.skip("tests/integration has no tests yet")
    if not Path(SYSTEM_PYTHON).exists():
        session.error(f"{SYSTEM_PYTHON} is missing: apt-get install python3 python3-venv")
    tmp = Path(tempfile.mkdtemp(prefix="containerlib-rootless-"))
    try:
        tmp.chmod(0o755)
        venv = tmp / "venv"
        session.run(SYSTEM_PYTHON, "-m", "venv", str(venv), external=True)
        session.run(str(venv / "bin" / "pip"), "install", "--quiet", f"{ROOT}[test]", external=True)
        shutil.copytree(ROOT / "tests", tmp / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
        home = tmp / "home"
        home.mkdir()
        os.chown(home, ROOTLESS_UID, ROOTLESS_UID)
        session.chdir(tmp)
        env = {"HOME": str(home)}
        # A cgroup2 subtree delegated to the user, as systemd's user@.service has one, with
        # the suite's process in it: the tests of placement under it use it.
        delegated = _delegate_cgroup(ROOTLESS_UID)
        if delegated is not None:
            env["CONTAINERLIB_TEST_DELEGATED_CGROUP"] = delegated.relative
        join = f"echo $$ > {delegated.leaf}/cgroup.procs && " if delegated else ""
        command = [
            "setpriv", f"--reuid={ROOTLESS_UID}", f"--regid={ROOTLESS_UID}", "--clear-groups",
            "--inh-caps=-all", "--", "env", "-u", "XDG_RUNTIME_DIR",
            *(f"{k}={v}" for k, v in env.items()),
            str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider",
            "tests/integration", *session.posargs,
        ]  # fmt: skip
        # User-mode networks (slirp4netns, pasta) open /dev/net/tun as the user:
        # distributions make it 0666; a host that made it 0600 gets it so for the
        # session, and back after.
        tun = Path("/dev/net/tun")
        tun_mode = tun.stat().st_mode & 0o777 if tun.exists() else None
        if tun_mode is not None and tun_mode != 0o666:
            tun.chmod(0o666)
        try:
            session.run("sh", "-c", join + 'exec "$@"', "sh", *command, external=True)
        finally:
            if tun_mode is not None and tun_mode != 0o666:
                tun.chmod(tun_mode)
            if delegated is not None:
                delegated.remove()
    finally:
        session.chdir(ROOT)
        shutil.rmtree(tmp, ignore_errors=True)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site (mkdocs-material, the API reference from the docstrings by
    mkdocstrings) with mkdocs --strict, so that a broken link or cross-reference fails it;
    check that every public name has a docstring with an example; and check the examples
    in README and docs/.

    The build needs no privilege. The examples that run containers need root and are
    skipped without it.
    """
    session.install(*DOCS_TOOLS, "-e", ".[test]")
    # Material's notice about its successor is not a problem of this site.
    env = {"NO_MKDOCS_2_WARNING": "1"}
    site = session.create_tmp() + "/site"
    session.run("mkdocs", "build", "--strict", "--site-dir", site, env=env)
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "tests/test_docs_examples.py",
        "tests/unit/test_docstrings.py",
    )


@nox.session
def notebooks(session: nox.Session) -> None:
    """Execute every notebook in notebooks/ and fail on the first error. Needs root."""
    _need_root(session)
    session.install(*NOTEBOOK_TOOLS, "-e", ".")
    tmp = Path(session.create_tmp()).resolve()
    # Keep kernels and IPython profiles of the user's home out of the run: the kernel is the
    # venv's own ipykernel, so the notebook imports the containerlib installed here.
    env = {
        "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
        "IPYTHONDIR": str(tmp / "ipython"),
        # And containerlib's own (images, layers, writable layers) out of the host's.
        "CONTAINERLIB_DATA_ROOT": str(tmp / "containerlib-data"),
        "CONTAINERLIB_RUN_ROOT": str(tmp / "containerlib-run"),
    }
    books = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    if not books:
        session.skip("notebooks/ has no notebooks")
    for book in books:
        session.run("jupyter-execute", "--kernel_name=python3", "--timeout=300", book, env=env)


@nox.session
def bench(session: nox.Session) -> None:
    """Compare containerlib with runc, crun and bubblewrap (benchmarks/run.py), back to back
    and one start at a time (benchmarks/sporadic.py), the cost of cgroups
    (benchmarks/cgroups.py), exec beside runc exec (benchmarks/exec.py), detached starts
    beside podman run -d and runc run -d (benchmarks/detached.py), pulling and
    unpacking a 200 MB image beside skopeo + umoci and GNU tar (benchmarks/images.py),
    bridge networking's start cost and published-port throughput beside podman's
    (benchmarks/network.py, in network and mount namespaces of its own), and a pytest
    session of 100 containers through the plugin beside testcontainers-python and a
    dockerd the benchmark starts (benchmarks/plugin.py, in namespaces of its own too).
    Needs root.

    Not in the default set. The peers come from Debian: apt-get install runc crun
    bubblewrap podman netavark skopeo umoci docker-registry docker.io; testcontainers
    from PyPI.
    """
    _need_root(session)
    session.install("-e", ".[test]", "testcontainers")
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/sporadic.py")
    session.run("python", "benchmarks/cgroups.py")
    session.run("python", "benchmarks/exec.py")
    session.run("python", "benchmarks/detached.py")
    session.run("python", "benchmarks/images.py")
    session.run("python", "benchmarks/network.py")
    session.run("python", "benchmarks/plugin.py")
