"""containerlib: Linux containers in your own Python process, no daemon.

Example:
    >>> from containerlib import Container
    >>> Container("/srv/busybox").limit(mem="64M").run(["echo", "hi"]).stdout  # doctest: +SKIP
    b'hi\\n'
"""

from containerlib.container import Container, Result, RunningContainer
from containerlib.errors import (
    ContainerError,
    ContainerlibError,
    ContainerSetupError,
    ImageError,
    ImageNotFound,
    LayerError,
    SpawnerError,
    SpecError,
)
from containerlib.images import Image

__all__ = [
    "Container",
    "ContainerError",
    "ContainerSetupError",
    "ContainerlibError",
    "Image",
    "ImageError",
    "ImageNotFound",
    "LayerError",
    "Result",
    "RunningContainer",
    "SpawnerError",
    "SpecError",
]
