"""The exceptions containerlib raises.

Every exception derives from :class:`ContainerlibError` and also from the built-in it
resembles, so callers can catch either::

    ContainerlibError
    ├── SpecError (ValueError)          bad input, found before anything was created
    ├── ImageError
    │   ├── ImageNotFound (LookupError) no such image, layout or reference
    │   └── LayerError (ValueError)     a layer or manifest that is corrupt or hostile
    ├── ContainerSetupError (OSError)   a kernel call failed while the container was made;
    │                                   ``step`` names it, ``errno`` keeps the cause
    ├── ContainerError (RuntimeError)   ``run(check=True)`` saw a non-zero exit; ``result``
    ├── ContainerNotRunning (RuntimeError)  the container has ended: it cannot be changed
    └── SpawnerError (RuntimeError)     the helper process that forks containers went away

Messages name the operation and the object, for example
``mount '/proc' in container 3f2a: Operation not permitted``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from containerlib.container import Result

__all__ = [
    "ContainerError",
    "ContainerNotFound",
    "ContainerNotRunning",
    "ContainerSetupError",
    "ContainerlibError",
    "ImageError",
    "ImageNotFound",
    "LayerError",
    "SpawnerError",
    "SpecError",
]


class ContainerlibError(Exception):
    """The root of every error containerlib raises."""


class SpecError(ContainerlibError, ValueError):
    """Input that cannot describe a container; nothing was created.

    Attributes:
        field: the dotted name of the bad field, for example ``"linux.resources.memory"``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.message))


class ImageError(ContainerlibError):
    """An image could not be read, stored or unpacked."""


class ImageNotFound(ImageError, LookupError):
    """No image, layout or reference by that name."""


class LayerError(ImageError, ValueError):
    """A layer, manifest or blob that is corrupt, truncated or would write out of bounds."""


class ContainerSetupError(ContainerlibError, OSError):
    """A kernel call failed while a container was being made.

    Attributes:
        step: what was being done, for example ``"mount '/proc'"``.
        container_id: the container's id; empty when the failure came before it had one.
        errno: the ``errno`` of the failed call (``OSError.errno``).
    """

    def __init__(self, step: str, err: int, container_id: str, detail: str = "") -> None:
        self.step = step
        self.container_id = container_id
        reason = os.strerror(err) if err else "failed"
        text = (
            f"{step} in container {container_id}: {reason}" if container_id else f"{step}: {reason}"
        )
        if detail:
            text += f" ({detail})"
        super().__init__(err, text)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_setup_error, (self.step, self.errno, self.container_id, self.strerror))


def _rebuild_setup_error(step: str, err: int, cid: str, text: str) -> ContainerSetupError:
    e = ContainerSetupError(step, err, cid)
    e.strerror = text
    return e


class ContainerError(ContainerlibError, RuntimeError):
    """A container's command failed and the caller asked for ``check=True``.

    Attributes:
        result: the :class:`~containerlib.Result`, with the exit code and the output.
    """

    def __init__(self, result: Result, command: list[str]) -> None:
        self.result = result
        self.command = command
        tail = result.stderr[-500:].decode(errors="replace").strip()
        why = f"exit code {result.exit_code}"
        if result.oom_killed:
            why += ", killed for lack of memory"
        if result.timed_out:
            why += ", timed out"
        text = f"command {command!r} failed: {why}"
        super().__init__(text + (f": {tail}" if tail else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result, self.command))


class SpawnerError(ContainerlibError, RuntimeError):
    """The helper process that forks containers died or could not be started."""


class ContainerNotFound(ContainerlibError, LookupError):
    """No detached container has that id, id prefix or name, or more than one has.

    Attributes:
        reference: what was looked for.
    """

    def __init__(self, reference: str, detail: str = "") -> None:
        self.reference = reference
        self.detail = detail
        super().__init__(
            f"no container {reference!r}: "
            + (detail or "none has that id, id prefix or name (see containerlib.list())")
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reference, self.detail))


class ContainerNotRunning(ContainerlibError, RuntimeError):
    """The container has ended, so it cannot be updated, paused or measured any more.

    Attributes:
        container_id: the container's id.
    """

    def __init__(self, container_id: str, action: str) -> None:
        self.container_id = container_id
        super().__init__(f"{action} container {container_id}: it is not running")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_not_running, (self.container_id, str(self)))


def _rebuild_not_running(container_id: str, text: str) -> ContainerNotRunning:
    e = ContainerNotRunning(container_id, "")
    e.args = (text,)
    return e
