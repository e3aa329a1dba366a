"""A base for objects that hold something until :meth:`close`, and close it at the end of
a ``with`` block."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["Closing"]


class Closing:
    """``with thing:`` gives ``thing`` and calls ``thing.close()`` at the end, however
    the block ends. Subclasses define :meth:`close`."""

    def close(self) -> None:
        """Release what the object holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
