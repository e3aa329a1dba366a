"""Progress of blob transfers (pulls and pushes) on standard error.

On a terminal, one line per blob is kept up to date in place (``\\x1b[NA`` moves the
cursor back up to redraw them); elsewhere (a log, CI), one line is printed when a blob is
done, so logs stay readable. Transfers may report from several threads at once.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Final, TextIO

from containerlib.spec.image import Descriptor

__all__ = ["ProgressBars"]

_WIDTH: Final = 30
_MIN_INTERVAL: Final = 0.1


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f}MB"


class ProgressBars:
    """A progress callback (``Descriptor``, bytes so far) drawing bars on ``stream``.

    Args:
        verb: what is done to the blobs, ``"pull"`` or ``"push"``.
        stream: where to draw; standard error by default.
    """

    def __init__(self, verb: str, stream: TextIO | None = None) -> None:
        self.verb = verb
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._lock = threading.Lock()
        self._blobs: dict[str, tuple[int, int]] = {}
        self._drawn = 0
        self._last = 0.0

    def __call__(self, descriptor: Descriptor, done: int) -> None:
        with self._lock:
            before = self._blobs.get(descriptor.digest, (0, descriptor.size))[0]
            self._blobs[descriptor.digest] = (done, descriptor.size)
            finished = done >= descriptor.size and before < descriptor.size
            if not self.tty:
                if finished:
                    short = descriptor.digest[:19]
                    print(f"{self.verb} {short}: {_megabytes(descriptor.size)}", file=self.stream)
                return
            now = time.monotonic()
            if finished or now - self._last >= _MIN_INTERVAL:
                self._last = now
                self._draw()

    def _line(self, digest: str, done: int, size: int) -> str:
        filled = _WIDTH if size == 0 else min(_WIDTH, _WIDTH * done // size)
        bar = "=" * filled + " " * (_WIDTH - filled)
        state = "done" if done >= size else f"{_megabytes(done)}/{_megabytes(size)}"
        return f"{digest[7:19]} [{bar}] {state}"

    def _draw(self) -> None:
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}A")
        for digest, (done, size) in self._blobs.items():
            out.append("\r\x1b[K" + self._line(digest, done, size) + "\n")
        self._drawn = len(self._blobs)
        self.stream.write("".join(out))
        self.stream.flush()
