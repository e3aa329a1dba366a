"""The examples in README.md and docs/ are true.

Every ```python block must compile and import only names that exist. As root, each page's
blocks run in order in one namespace, against a busybox root file system made for the test
(``/tmp/busybox`` in the text is replaced by its path). A block right after a line
``<!-- docs-test: skip (why) -->`` is not run. README's test command must be the one that
.ci/run runs. Run by ``nox -s docs``.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from containerlib.image.builtin import busybox_rootfs
from containerlib.runtime.client import spawner

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ROOTFS_IN_DOCS = "/tmp/busybox"

_BLOCK = re.compile(
    r"^(?P<skip><!-- docs-test: skip[^\n]*-->\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


def _blocks(page: Path, lang: str) -> list[tuple[str, bool]]:
    """The code of each ``lang`` block of ``page``, and whether it is to be run."""
    text = page.read_text()
    return [(m["code"], m["skip"] is None) for m in _BLOCK.finditer(text) if m["lang"] == lang]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_blocks_compile(page: Path) -> None:
    for code, _ in _blocks(page, "python"):
        compile(code, f"{page.name} example", "exec")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_blocks_import_names_that_exist(page: Path) -> None:
    for code, _ in _blocks(page, "python"):
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("containerlib"):
                assert node.module is not None
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), (
                        f"{_page_id(page)}: {node.module} has no {alias.name}"
                    )
                if node.module == "containerlib":
                    exported = set(getattr(module, "__all__", ()))
                    missing = {a.name for a in node.names} - exported
                    assert not missing, f"{_page_id(page)}: not in __all__: {missing}"


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    after = text.split("Run the tests", 1)[1]
    block = re.search(r"```sh\n(.*?)\n```", after, re.DOTALL)
    assert block is not None, "README.md has no sh block after 'Run the tests'"
    return block[1].strip()


def test_readme_test_command_is_what_ci_runs() -> None:
    command = _readme_test_command()
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in lines, f".ci/run does not run README's test command {command!r}"


_CLI_HELP = (
    "import sys; from containerlib.cli.main import main; "
    "sys.argv[1:] = ['run', '--help']; sys.exit(main())"
)


def test_cli_options_in_docs_exist() -> None:
    cli_page = (ROOT / "docs" / "cli.md").read_text()
    table = cli_page.split("## containerlib run", 1)[1].split("## containerlib spec", 1)[0]
    documented = set(re.findall(r"^\| `(-{1,2}[\w-]+)", table, re.MULTILINE))
    assert documented
    shown = subprocess.run(
        [sys.executable, "-c", _CLI_HELP],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    missing = {option for option in documented if option not in shown}
    assert not missing, f"docs/cli.md documents options that `run` lacks: {missing}"


def _why_not_run() -> str:
    if os.geteuid() != 0:
        return "running containers needs root"
    if not any(os.path.isfile(p) for p in ("/bin/busybox", "/usr/bin/busybox")):
        return "needs a static busybox (Debian: apt-get install busybox-static)"
    return ""


@pytest.mark.root
@pytest.mark.skipif(bool(_why_not_run()), reason=_why_not_run() or "runs")
@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(run for _, run in _blocks(p, "python"))], ids=_page_id
)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = tmp_path / "busybox"
    code = [c.replace(ROOTFS_IN_DOCS, str(rootfs)) for c, run in _blocks(page, "python") if run]
    if not any("busybox_rootfs(" in c for c in code):
        busybox_rootfs(rootfs)
    # Examples that make temporary directories make them here, so nothing is left behind.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # And what containerlib keeps (images, layers, writable layers) goes there too.
    monkeypatch.setenv("CONTAINERLIB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CONTAINERLIB_RUN_ROOT", str(tmp_path / "run"))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for n, block in enumerate(code, 1):
            try:
                exec(compile(block, f"{page.name} example {n}", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"{_page_id(page)}, example {n} failed:\n{block}") from e
    finally:
        spawner.stop()
