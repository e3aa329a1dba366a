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
    │   └── CallError                   ``call()`` got no result (OOM, timeout, an exit)
    ├── ContainerNotRunning (RuntimeError)  the container has ended: it cannot be changed
    ├── ContainerNotReady (TimeoutError)    a readiness wait gave up, or the container
    │                                   ended first; it carries the last lines of output
    └── SpawnerError (RuntimeError)     the helper process that forks containers went away

Messages name the operation and the object, for example
``mount '/proc' in container 3f2a: Operation not permitted``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from containerlib.container import Result
    from containerlib.readiness import Condition

__all__ = [
    "CallError",
    "ContainerError",
    "ContainerNotFound",
    "ContainerNotReady",
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
    """The root of every error containerlib raises.

    Example:
        >>> from containerlib import Container, ContainerlibError
        >>> try:
        ...     Container("/").limit(mem="lots")
        ... except ContainerlibError as e:
        ...     print(type(e).__name__)
        SpecError
    """


class SpecError(ContainerlibError, ValueError):
    """Input that cannot describe a container; nothing was created.

    Attributes:
        field: the dotted name of the bad field, for example ``"linux.resources.memory"``.

    Example:
        >>> from containerlib import Container, SpecError
        >>> try:
        ...     Container("/").limit(mem="lots")
        ... except SpecError as e:
        ...     print(e.field, "|", e)
        mem | mem: must be a size like '512m' or '1.5g', not 'lots'
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.message))


class ImageError(ContainerlibError):
    """An image could not be read, stored or unpacked.

    Example:
        >>> from containerlib import Image, ImageError
        >>> try:  # doctest: +SKIP
        ...     Image.from_registry("registry.example:5000/busybox:latest")
        ... except ImageError as e:
        ...     print("no busybox:", e)
    """


class ImageNotFound(ImageError, LookupError):
    """No image, layout or reference by that name.

    Example:
        >>> from containerlib import Image, ImageNotFound
        >>> try:  # doctest: +SKIP
        ...     Image.from_oci_layout("/srv/layout", "no-such-tag")
        ... except ImageNotFound as e:
        ...     print(e)
    """


class LayerError(ImageError, ValueError):
    """A layer, manifest or blob that is corrupt, truncated or would write out of bounds.

    Example:
        >>> from containerlib import Image, LayerError
        >>> try:  # doctest: +SKIP
        ...     Image.from_oci_layout("/srv/tampered-layout")
        ... except LayerError as e:
        ...     print(e)  # names the blob whose digest does not match
    """


class ContainerSetupError(ContainerlibError, OSError):
    """A kernel call failed while a container was being made.

    Attributes:
        step: what was being done, for example ``"mount '/proc'"``.
        container_id: the container's id; empty when the failure came before it had one.
        errno: the ``errno`` of the failed call (``OSError.errno``).

    Example:
        >>> import errno
        >>> from containerlib import Container, ContainerSetupError
        >>> bad = {"net.ipv4.no_such_thing": "1"}
        >>> try:  # doctest: +SKIP
        ...     Container("/srv/busybox").sysctl(**bad).run(["true"])
        ... except ContainerSetupError as e:
        ...     print(e.step, "|", e.errno == errno.ENOENT)
        set sysctl net.ipv4.no_such_thing | True
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

    Example:
        >>> from containerlib import Container, ContainerError
        >>> try:  # doctest: +SKIP
        ...     Container("/srv/busybox").run(["sh", "-c", "echo no >&2; exit 3"], check=True)
        ... except ContainerError as e:
        ...     print(e.result.exit_code, e.result.stderr)
        3 b'no\\n'
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


class CallError(ContainerError):
    """A function run by :func:`call` ended without a result that can come back.

    It was killed (out of memory: :attr:`oom_killed`; past its ``timeout``), its process
    exited without an outcome, it could not be loaded inside, or what it returned or
    raised does not pickle. The message says which; a :class:`ContainerError`, so
    ``result`` has the exit code and the output.

    Attributes:
        reason: what went wrong, in words.
        remote_traceback: the traceback printed inside the container, when there is one.

    Example:
        >>> from containerlib import CallError, Container
        >>> try:  # bytes(1 << 30): a GiB of zeros, in 64 MiB  # doctest: +SKIP
        ...     Container.host().limit(mem="64M").call(bytes, 1 << 30)
        ... except CallError as e:
        ...     print(e.oom_killed)
        True
    """

    def __init__(
        self, result: Result, command: list[str], reason: str, remote_traceback: str = ""
    ) -> None:
        super().__init__(result, command)
        self.reason = reason
        self.remote_traceback = remote_traceback
        text = reason
        if remote_traceback:
            text += "\n\nTraceback in the container:\n" + remote_traceback.rstrip()
        else:
            tail = result.stderr[-500:].decode(errors="replace").strip()
            if tail:
                text += f"\n\nits stderr ended with:\n{tail}"
        self.args = (text,)

    @property
    def oom_killed(self) -> bool:
        """The kernel killed the function's process for lack of memory."""
        return self.result.oom_killed

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result, self.command, self.reason, self.remote_traceback))


class SpawnerError(ContainerlibError, RuntimeError):
    """The helper process that forks containers died or could not be started.

    Example:
        >>> from containerlib import Container, SpawnerError
        >>> try:  # doctest: +SKIP
        ...     Container("/srv/busybox").run(["true"])
        ... except SpawnerError as e:
        ...     print("the spawner went away:", e)
    """


class ContainerNotFound(ContainerlibError, LookupError):
    """No detached container has that id, id prefix or name, or more than one has.

    Attributes:
        reference: what was looked for.

    Example:
        >>> import containerlib
        >>> try:
        ...     containerlib.get("no-such-container")
        ... except containerlib.ContainerNotFound as e:
        ...     print(e.reference)
        no-such-container
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

    Example:
        >>> from containerlib import Container, ContainerNotRunning
        >>> with Container("/srv/busybox").start(["true"]) as box:  # doctest: +SKIP
        ...     ended = box.wait()
        ...     try:
        ...         box.pause()
        ...     except ContainerNotRunning as e:
        ...         print(e)
        pause container ca3f242701dae622a855e3d2da317b07: it is not running
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


class ContainerNotReady(ContainerlibError, TimeoutError):
    """A readiness wait (:func:`containerlib.readiness.wait_for`) gave up, or the
    container ended before it was ready.

    It is a :class:`TimeoutError`, as testcontainers' waits raise, so code written for
    them goes on catching it.

    Attributes:
        container_id: the container's id.
        condition: what was not met: the condition waited for, or of an ``all_of``, the
            parts that were not met.
        waited: how long the wait went on, in seconds.
        logs: the container's last lines of output, both streams, as ``logs(tail=20)``.
        exit_code: the container's exit code when it ended first; None when it runs.
        reasons: for each part not met, what it is and why its last try failed.

    Example:
        >>> from containerlib import Container, ContainerNotReady
        >>> from containerlib.readiness import wait_for_port
        >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
        ...     try:
        ...         wait_for_port(box, 8080, timeout=1)
        ...     except ContainerNotReady as e:
        ...         print(e.waited >= 1, e.exit_code)
        True None
    """

    def __init__(
        self,
        container_id: str,
        condition: Condition,
        waited: float,
        logs: bytes,
        exit_code: int | None,
        reasons: tuple[str, ...] = (),
        *,
        ended: bool | None = None,
    ) -> None:
        self.container_id = container_id
        self.condition = condition
        self.waited = waited
        self.logs = logs
        self.exit_code = exit_code
        self.reasons = tuple(reasons)
        self.ended = exit_code is not None if ended is None else ended
        short = container_id[:12]
        if not self.ended:
            text = f"container {short} is not ready after {waited:.1f} s"
        elif exit_code is None:
            text = f"container {short} ended after {waited:.1f} s, before it was ready"
        else:
            text = (
                f"container {short} exited with code {exit_code} after {waited:.1f} s,"
                " before it was ready"
            )
        text += f": waited for {condition}"
        for reason in self.reasons:
            text += f"\n  - {reason}"
        lines = logs.decode(errors="replace").splitlines()
        if lines:
            many = f"its last {len(lines)} lines" if len(lines) > 1 else "its last line"
            text += f"\n{many} of output:"
            text += "".join(f"\n    {line}" for line in lines)
        else:
            text += "\nit wrote no output"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_not_ready,
            (
                self.container_id,
                self.condition,
                self.waited,
                self.logs,
                self.exit_code,
                self.reasons,
                self.ended,
            ),
        )


def _rebuild_not_ready(
    container_id: str,
    condition: Condition,
    waited: float,
    logs: bytes,
    exit_code: int | None,
    reasons: tuple[str, ...],
    ended: bool,
) -> ContainerNotReady:
    return ContainerNotReady(container_id, condition, waited, logs, exit_code, reasons, ended=ended)
