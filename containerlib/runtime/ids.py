"""Container ids: what one may look like. Small, for the command lines that need only this.

Example:
    >>> check_id("web-1")
    'web-1'
"""

from __future__ import annotations

import re
from typing import Final

from containerlib.errors import SpecError

__all__ = ["ID_PATTERN", "check_id"]

#: What a container id may look like: it becomes a directory and a cgroup name.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


def check_id(container_id: str) -> str:
    """Return ``container_id`` if it can name a container, else raise :class:`SpecError`."""
    if not isinstance(container_id, str) or not ID_PATTERN.fullmatch(container_id):
        raise SpecError(
            "id",
            f"{container_id!r} is not a valid container id: use 1 to 128 letters, digits, "
            "'_', '.', '+' or '-', starting with a letter or digit",
        )
    return container_id
