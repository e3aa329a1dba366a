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
    """:meth:`Container.run`, awaitable (see :meth:`Container.run_async`).

    Example:
        >>> import asyncio
        >>> from containerlib import Container, aio
        >>> async def both() -> list[int]:
        ...     box = Container("/srv/busybox")
        ...     results = await asyncio.gather(aio.run(box, ["true"]), aio.run(box, ["false"]))
        ...     return [r.exit_code for r in results]
        >>> asyncio.run(both())  # doctest: +SKIP
        [0, 1]
    """
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

    Example:
        >>> import asyncio
        >>> async def main() -> bytes:
        ...     async with Container("/srv/busybox").start_async(["sleep", "60"]) as box:
        ...         result = await box.exec(["echo", "hi"])
        ...         return result.stdout
        >>> asyncio.run(main())  # doctest: +SKIP
        b'hi\\n'
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
        """The container's id."""
        return self.running.id

    @property
    def pid(self) -> int:
        """The host pid of the container's first process."""
        return self.running.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the container's first process.

        Example:
            >>> async def main() -> int:
            ...     async with Container("/srv/busybox").start_async(["sleep", "60"]) as box:
            ...         box.kill()
            ...         return (await box.wait()).exit_code
            >>> asyncio.run(main())  # doctest: +SKIP
            137
        """
        self.running.kill(sig)

    async def wait(self, timeout: float | None = None) -> Result:
        """Wait for the container to end (TimeoutError after ``timeout``; it keeps
        running). A cancelled wait leaves the container running too.

        Example:
            >>> async def main() -> bytes:
            ...     async with Container("/srv/busybox").start_async(["echo", "hi"]) as box:
            ...         return (await box.wait(timeout=10)).stdout
            >>> asyncio.run(main())  # doctest: +SKIP
            b'hi\\n'
        """
        return await asyncio.to_thread(self.running.wait, timeout)

    async def stop(self, timeout: float = 10.0) -> Result:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the result.

        Example:
            >>> async def main() -> int:
            ...     async with Container("/srv/busybox").start_async(["sleep", "60"]) as box:
            ...         return (await box.stop(timeout=1)).exit_code
            >>> asyncio.run(main())  # sleep as PID 1 ignores SIGTERM: SIGKILL  # doctest: +SKIP
            137
        """
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
        """:meth:`RunningContainer.exec`, awaitable.

        Example:
            >>> async def main() -> bytes:
            ...     async with Container("/srv/busybox").start_async(["sleep", "60"]) as box:
            ...         return (await box.exec(["hostname"])).stdout
            >>> asyncio.run(main())  # the first 12 digits of its id  # doctest: +SKIP
            b'48a7fd331ce4\\n'
        """
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
        """What the container wrote so far (:meth:`RunningContainer.logs`).

        Example:
            >>> async def main() -> bytes:
            ...     async with Container("/srv/busybox").start_async(["echo", "hi"]) as box:
            ...         await box.wait()
            ...         return box.logs(stderr=False)  # no waiting: not awaitable
            >>> asyncio.run(main())  # doctest: +SKIP
            b'hi\\n'
        """
        result: bytes = self.running.logs(**filters, follow=False)
        return result

    def follow(self, **filters: Any) -> AsyncIterator[bytes]:
        """The container's output now and to come, until it ends: ``async for``.

        Example:
            >>> async def main() -> list[bytes]:
            ...     cmd = ["sh", "-c", "echo one; echo two"]
            ...     async with Container("/srv/busybox").start_async(cmd) as box:
            ...         return [chunk async for chunk in box.follow()]
            >>> b"".join(asyncio.run(main()))  # doctest: +SKIP
            b'one\\ntwo\\n'
        """
        return _aiter(lambda: self.running.logs(**filters, follow=True))

    def events(self) -> AsyncIterator[Event]:
        """:meth:`RunningContainer.events`: ``async for``.

        Example:
            >>> async def main() -> list[str]:
            ...     async with Container("/srv/busybox").start_async(["true"]) as box:
            ...         return [event.kind async for event in box.events()]
            >>> asyncio.run(main())  # doctest: +SKIP
            ['started', 'exited']
        """
        return _aiter(self.running.events)
