"""asyncio beside the blocking API: :meth:`Container.run_async` and
:meth:`Container.start_async`.

Each blocking step (starting, waiting, an exec) runs in a worker thread
(:func:`asyncio.to_thread`), so the event loop never blocks; the spawner does the forking
either way, so a thread costs no more than the blocking call would. A task that is
cancelled while it waits for a container kills the container and waits for its end before
the cancellation goes on: nothing is left running behind a cancelled task.

Example:
    >>> import asyncio
    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with Container(image).start_async(["sleep", "60"]) as box:
    ...         print((await box.exec(["echo", "hi"])).stdout)
    ...     print((await Container(image).run_async(["echo", "bye"])).stdout)
    >>> asyncio.run(main())  # doctest: +SKIP
    b'hi\\n'
    b'bye\\n'
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from containerlib.errors import ContainerError, SpecError

if TYPE_CHECKING:
    from containerlib.container import Container, Event, Result, RunningContainer

__all__ = ["AsyncRunningContainer", "run"]

T = TypeVar("T")


async def _until_done(running: RunningContainer, timeout: float | None) -> Result:
    """Wait for ``running`` to end; on ``timeout`` kill it (``timed_out``), on
    cancellation kill it and wait for its end, then let the cancellation go on."""
    try:
        return await asyncio.to_thread(running.wait, timeout)
    except TimeoutError:
        running._timed_out = True
        running.kill(signal.SIGKILL)
        return await asyncio.to_thread(running.wait)
    except asyncio.CancelledError:
        running.kill(signal.SIGKILL)
        await asyncio.shield(asyncio.to_thread(running.wait))
        raise


async def run(
    container: Container,
    cmd: Sequence[str] | None = None,
    *,
    input: bytes | None = None,
    timeout: float | None = None,
    check: bool = False,
    id: str | None = None,
) -> Result:
    """:meth:`Container.run`, awaitable (see :meth:`Container.run_async`)."""
    if timeout is not None and not timeout > 0:
        raise SpecError("timeout", f"must be a positive number of seconds, not {timeout!r}")
    running = await asyncio.to_thread(container.start, cmd, input=input, id=id)
    with running:
        result = await _until_done(running, timeout)
    if check and result.exit_code != 0:
        raise ContainerError(result, running.command)
    return result


async def _aiter(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """The items of a blocking iterator, each fetched in a worker thread."""
    items = await asyncio.to_thread(make)
    done = object()
    while True:
        item = await asyncio.to_thread(next, items, done)
        if item is done:
            return
        yield item  # type: ignore[misc]


class AsyncRunningContainer:
    """A container started by :meth:`Container.start_async`: ``await`` it, or better use
    it with ``async with``, which kills the container (if it still runs) at the end of the
    block. Its methods are those of :class:`RunningContainer`, awaitable where they wait.
    """

    def __init__(self, start: Callable[[], RunningContainer]) -> None:
        self._start = start
        self._running: RunningContainer | None = None

    async def _started(self) -> Self:
        if self._running is None:
            self._running = await asyncio.to_thread(self._start)
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self._started().__await__()

    async def __aenter__(self) -> Self:
        return await self._started()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._running is not None:
            await asyncio.shield(asyncio.to_thread(self._running.__exit__, None, None, None))

    @property
    def running(self) -> RunningContainer:
        """The blocking handle (for what needs no waiting: ``id``, ``pid``, ``stdin``)."""
        if self._running is None:
            raise RuntimeError("the container is not started yet: await it first")
        return self._running

    @property
    def id(self) -> str:
        return self.running.id

    @property
    def pid(self) -> int:
        return self.running.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the container's first process."""
        self.running.kill(sig)

    async def wait(self, timeout: float | None = None) -> Result:
        """Wait for the container to end (TimeoutError after ``timeout``; it keeps
        running). A cancelled wait leaves the container running too."""
        return await asyncio.to_thread(self.running.wait, timeout)

    async def stop(self, timeout: float = 10.0) -> Result:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the result."""
        return await asyncio.to_thread(self.running.stop, timeout)

    async def exec(
        self,
        cmd: Sequence[str],
        *,
        user: str | int | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        tty: bool = False,
    ) -> Result:
        """:meth:`RunningContainer.exec`, awaitable."""
        return await asyncio.to_thread(
            self.running.exec,
            cmd,
            user=user,
            env=env,
            workdir=workdir,
            input=input,
            timeout=timeout,
            check=check,
            tty=tty,
        )

    def logs(self, **filters: Any) -> bytes:
        """What the container wrote so far (:meth:`RunningContainer.logs`)."""
        result: bytes = self.running.logs(**filters, follow=False)
        return result

    def follow(self, **filters: Any) -> AsyncIterator[bytes]:
        """The container's output now and to come, until it ends: ``async for``."""
        return _aiter(lambda: self.running.logs(**filters, follow=True))

    def events(self) -> AsyncIterator[Event]:
        """:meth:`RunningContainer.events`: ``async for``."""
        return _aiter(self.running.events)
