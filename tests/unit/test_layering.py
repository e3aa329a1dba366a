"""Imports only go down the layers of DESIGN.md: facade -> services -> linux -> spec.

Two checks: what importing the spawner really loads, in a fresh interpreter, and a static
read (ast) of every import statement in the package, including those inside functions and
under ``if TYPE_CHECKING:``, since a type-only import upward is still a dependency upward.
That importing ``containerlib.spec`` loads no ctypes, httpx or pyroute2 is tested in
test_spec_api.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "containerlib"

#: Names the package re-exports from the facade modules (containerlib/__init__.py).
FACADE_NAMES = {"Container", "Result", "RunningContainer", "Image"}
FACADE_MODULES = {"container", "images", "cli", "pytest_plugin"}
LAYER_PACKAGES = {"spec", "linux", "runtime", "image", "network"}

#: Which layers each package's modules may import from (besides the bare package).
ALLOWED = {
    "spec": {"spec", "errors"},
    "linux": {"linux", "spec", "errors"},
    "runtime": {"runtime", "image", "network", "linux", "spec", "errors", "other"},
    "image": {"runtime", "image", "network", "linux", "spec", "errors", "other"},
    "network": {"runtime", "image", "network", "linux", "spec", "errors", "other"},
}


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every ``containerlib`` name ``source`` imports, as dotted absolute names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            # The imported name may be a submodule or an attribute: keep both readings.
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "containerlib"
            and not node.attr.startswith("__")  # containerlib.__file__ is no layer
        ):
            found.add(f"containerlib.{node.attr}")  # containerlib.Container after a bare import
    return {name for name in found if name == "containerlib" or name.startswith("containerlib.")}


def layer_of(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1:
        return "package"
    top = parts[1]
    if top in LAYER_PACKAGES:
        return top
    if top == "errors":
        return "errors"
    if top in FACADE_MODULES or top in FACADE_NAMES:
        return "facade"
    return "other"


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    layer = module.split(".")[1]
    allowed = ALLOWED[layer] | {"package"}
    bad = []
    for name in sorted(imports_of(source, module, is_package)):
        # "from containerlib.spec import oci" also yields "containerlib.spec"; only the
        # finer reading of a name decides.
        if layer_of(name) not in allowed:
            bad.append(f"{module} imports {name} ({layer_of(name)} layer)")
    return bad


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_go_down_the_layers(layer: str) -> None:
    paths = _modules(layer)
    assert paths, f"containerlib/{layer} has no modules"
    bad = []
    for path in paths:
        module, is_package = _module_name(path)
        bad += violations(path.read_text(encoding="utf-8"), module, is_package)
    assert bad == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("containerlib.spec.x", "from containerlib.linux import cgroups", "containerlib.linux"),
        ("containerlib.spec.x", "from ..runtime.plan import Plan", "containerlib.runtime.plan"),
        ("containerlib.spec.x", "import containerlib.image.layers", "containerlib.image.layers"),
        ("containerlib.spec.x", "from containerlib import Image", "containerlib.Image"),
        ("containerlib.linux.x", "from containerlib.runtime import plan", "containerlib.runtime"),
        (
            "containerlib.linux.x",
            "def f():\n    from containerlib.image.cache import LayerCache",
            "containerlib.image.cache",
        ),
        (
            "containerlib.runtime.x",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from containerlib.container import Result",
            "containerlib.container",
        ),
        ("containerlib.runtime.x", "from containerlib import Container", "containerlib.Container"),
        ("containerlib.runtime.x", "from ..cli.main import main", "containerlib.cli.main"),
        ("containerlib.image.x", "import containerlib\ncontainerlib.Image", "containerlib.Image"),
        ("containerlib.image.x", "from .. import images", "containerlib.images"),
    ],
)
def test_the_check_sees_an_upward_import(module: str, source: str, expected: str) -> None:
    bad = violations(source, module)
    assert any(f" imports {expected} " in line for line in bad), bad


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("containerlib.spec.x", "from containerlib.errors import SpecError\nfrom . import oci"),
        ("containerlib.linux.x", "from containerlib.spec import oci\nfrom . import syscalls"),
        ("containerlib.runtime.x", "import containerlib\nfrom containerlib.linux import cgroups"),
        ("containerlib.image.x", "from containerlib.spec.image import Descriptor"),
    ],
)
def test_the_check_lets_downward_imports_pass(module: str, source: str) -> None:
    assert violations(source, module) == []


def _loaded_after(statement: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_spawner_does_not_import_the_facade() -> None:
    # The owner starts the spawner with "from containerlib.runtime.spawner import main".
    loaded = _loaded_after("import containerlib.runtime.spawner")
    assert "containerlib.runtime.spawner" in loaded
    unwanted = {
        "containerlib.container",
        "containerlib.images",
        "containerlib.cli",
        "containerlib.cli.main",
        "httpx",  # the registry client belongs to the image service, not to the spawner
    }
    assert loaded & unwanted == set()
