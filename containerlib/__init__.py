"""containerlib: Linux containers in your own Python process, no daemon.

Example:
    >>> from containerlib import Container
    >>> Container("/srv/busybox").limit(mem="64M").run(["echo", "hi"]).stdout  # doctest: +SKIP
    b'hi\\n'
"""

import builtins
from typing import TYPE_CHECKING, Any

from containerlib.errors import (
    CallError,
    ContainerError,
    ContainerlibError,
    ContainerNotFound,
    ContainerNotReady,
    ContainerNotRunning,
    ContainerSetupError,
    ImageError,
    ImageNotFound,
    LayerError,
    SpawnerError,
    SpecError,
)

if TYPE_CHECKING:
    from containerlib.container import Container, Event, Result, RunningContainer
    from containerlib.detached import DetachedContainer
    from containerlib.detached import get as get
    from containerlib.detached import list as list
    from containerlib.detached import prune as prune
    from containerlib.images import Image
    from containerlib.linux.cgroups import CgroupStats, Pressure
    from containerlib.networks import Network

# The facade is imported on first use, so that the spawner process, which imports
# containerlib.runtime only, stays small: forking it is then cheaper.
_LAZY = {
    "Container": "containerlib.container",
    "Result": "containerlib.container",
    "RunningContainer": "containerlib.container",
    "DetachedContainer": "containerlib.detached",
    "Event": "containerlib.container",
    "get": "containerlib.detached",
    "list": "containerlib.detached",
    "prune": "containerlib.detached",
    "Image": "containerlib.images",
    "CgroupStats": "containerlib.linux.cgroups",
    "Pressure": "containerlib.linux.cgroups",
    "Network": "containerlib.networks",
}


def __dir__() -> builtins.list[str]:
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'containerlib' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CallError",
    "CgroupStats",
    "Container",
    "ContainerError",
    "ContainerNotFound",
    "ContainerNotReady",
    "ContainerNotRunning",
    "ContainerSetupError",
    "ContainerlibError",
    "DetachedContainer",
    "Event",
    "Image",
    "ImageError",
    "ImageNotFound",
    "LayerError",
    "Network",
    "Pressure",
    "Result",
    "RunningContainer",
    "SpawnerError",
    "SpecError",
]
# get, list and prune are containerlib.get() and so on, and not in __all__: a star import
# must not hide the built-in list.
