"""Progress bars for pulls and pushes: redrawn in place on a terminal, a line per blob
elsewhere."""

from __future__ import annotations

import io
import threading

from containerlib.cli.progress import ProgressBars
from containerlib.spec.image import Descriptor

A = Descriptor(media_type="application/octet-stream", digest="sha256:" + "a" * 64, size=2_000_000)
B = Descriptor(media_type="application/octet-stream", digest="sha256:" + "b" * 64, size=10)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_finished_blob() -> None:
    out = io.StringIO()
    bars = ProgressBars("pull", out)
    for done in (0, 1_000_000, 2_000_000, 2_000_000):
        bars(A, done)
    bars(B, 10)
    assert out.getvalue().splitlines() == [
        f"pull {A.digest[:19]}: 2.0MB",
        f"pull {B.digest[:19]}: 0.0MB",
    ]


def test_a_terminal_gets_bars_redrawn_in_place() -> None:
    out = Terminal()
    bars = ProgressBars("push", out)
    bars(A, 0)
    bars(B, 10)  # finishing always draws
    bars(A, 2_000_000)
    text = out.getvalue()
    last = text.rsplit("\x1b[2A", 1)[1]
    lines = [line.removeprefix("\r\x1b[K") for line in last.split("\n") if line]
    assert lines == [
        f"{'a' * 12} [{'=' * 30}] done",
        f"{'b' * 12} [{'=' * 30}] done",
    ]


def test_threads_report_at_once() -> None:
    out = io.StringIO()
    bars = ProgressBars("pull", out)
    blobs = [Descriptor(media_type="x/y", digest=f"sha256:{i:064x}", size=100) for i in range(8)]

    def send(d: Descriptor) -> None:
        for done in range(0, 101, 10):
            bars(d, done)

    threads = [threading.Thread(target=send, args=(d,)) for d in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out.getvalue().splitlines()) == len(blobs)
