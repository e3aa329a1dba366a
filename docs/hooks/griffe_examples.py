"""A griffe extension for the API reference: ``Example:`` is an examples section.

containerlib's docstrings head their examples ``Example:``, as Google's style guide and
the modules of the standard library do. griffe's Google parser knows only ``Examples:``
as a section of examples; anything else followed by a colon it makes an admonition whose
text is Markdown, where the ``>>>`` lines would turn into nested quotes. This extension
renames the heading before the docstrings are parsed, so that the examples are shown as
Python code. It is loaded by mkdocstrings (``extensions`` in mkdocs.yml) and not part of
the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


class SingularExample(griffe.Extension):
    """Rename ``Example:`` section headings to ``Examples:``."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of ``obj``, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\g<indent>Examples:", obj.docstring.value)
