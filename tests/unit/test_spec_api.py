"""The public face of containerlib.spec: exported names, runnable docstrings, layering."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import containerlib.spec

ROOT = Path(__file__).resolve().parents[2]

MODULES = [
    "containerlib.spec",
    "containerlib.spec._frozen",
    "containerlib.spec._oci_fields",
    "containerlib.spec.defaults",
    "containerlib.spec.oci",
    "containerlib.spec.oci_linux",
    "containerlib.spec.oci_resources",
    "containerlib.spec.units",
    "containerlib.spec.validate",
]

EXPORTED = {
    # model
    "Spec", "Process", "User", "Box", "LinuxCapabilities", "POSIXRlimit", "Root", "Mount",
    "Hook", "Hooks", "Scheduler", "LinuxIOPriority", "Linux", "LinuxNamespace",
    "LinuxIDMapping", "LinuxDevice", "LinuxSeccomp", "LinuxSyscall", "LinuxSeccompArg",
    "LinuxPersonality", "LinuxResources", "LinuxDeviceCgroup", "LinuxMemory", "LinuxCPU",
    "LinuxPids", "LinuxBlockIO", "LinuxWeightDevice", "LinuxThrottleDevice",
    "LinuxHugepageLimit", "LinuxNetwork", "LinuxInterfacePriority", "LinuxRdma",
    "FrozenDict", "OCI_VERSION", "NAMESPACE_TYPES",
    # rules, units, defaults
    "validate", "parse_bytes", "parse_cpus", "parse_pids", "cpus_to_quota",
    "default_spec", "default_mounts", "DEFAULT_CAPABILITIES", "DEFAULT_ENV",
    "DEFAULT_MASKED_PATHS", "DEFAULT_READONLY_PATHS",
}  # fmt: skip


def _module(name: str) -> object:
    # importlib, not attribute access: the package's "validate" is the function.
    return importlib.import_module(name)


def test_package_exports_exactly_the_intended_names() -> None:
    assert set(containerlib.spec.__all__) == EXPORTED
    for name in EXPORTED:
        assert getattr(containerlib.spec, name) is not None


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_all_and_a_docstring(name: str) -> None:
    module = _module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert sorted(set(exported)) == sorted(exported), "__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr!r}"
    assert (module.__doc__ or "").strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(_module(name), optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


HEAVY = "('ctypes', 'httpx', 'pyroute2')"


def test_spec_package_imports_only_spec_and_errors() -> None:
    # The parent package is stubbed so that only spec/ (and what it imports) runs: this is
    # the spec layer's own promise, whatever the facade in containerlib/__init__.py does.
    out = _run(
        "import sys, types\n"
        "pkg = types.ModuleType('containerlib')\n"
        f"pkg.__path__ = [{str(ROOT / 'containerlib')!r}]\n"
        "sys.modules['containerlib'] = pkg\n"
        "import containerlib.spec\n"
        f"heavy = [m for m in {HEAVY} if m in sys.modules]\n"
        "ours = sorted(m for m in sys.modules if m.startswith('containerlib.')\n"
        "              and not m.startswith('containerlib.spec') and m != 'containerlib.errors')\n"
        "print(heavy, ours)\n"
    )
    assert out == "[] []"


def test_importing_containerlib_spec_loads_no_kernel_or_network_modules() -> None:
    out = _run(f"import sys, containerlib.spec\nprint([m for m in {HEAVY} if m in sys.modules])\n")
    assert out == "[]", (
        f"importing containerlib.spec loaded {out}; containerlib/__init__.py must import "
        "the facade lazily for the layering of DESIGN.md to hold"
    )
