"""Probes: a readiness condition tried against one container during one wait.

A :class:`Watch` is one wait's view of its container: whether it has ended, and its
output, read on from where the last look stopped (an attached container's is in memory, a
detached one's in its log file, see :mod:`containerlib.runtime.logs`) and split into lines
for the log conditions. :func:`probe` makes, for a condition, the probe that holds what
its tries have learnt (lines counted so far, a part of an ``all_of`` already met) and why
its last try failed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from containerlib.errors import ContainerlibError, ContainerNotRunning, ContainerSetupError
from containerlib.readiness.conditions import (
    AllOf,
    AnyOf,
    Check,
    Condition,
    Exec,
    File,
    Http,
    Log,
    Port,
)

if TYPE_CHECKING:
    from containerlib.detached import DetachedContainer
    from containerlib.readiness import Box

__all__ = ["LOG_LINES", "Probe", "Watch", "probe"]

#: How many of the container's last lines of output a ContainerNotReady carries.
LOG_LINES = 20
# A try made when the deadline has (nearly) passed still gets this many seconds: a
# connect or an exec needs a moment, and the last try should be a real one.
_LEAST_TRY = 0.05
_STREAMS = ("stdout", "stderr")
_RUNNING_STATES = ("creating", "running", "paused")
# An HTTP status line is short; an answer that has no line end this far in is no HTTP.
_STATUS_LINE_MAX = 8192
_STATUS = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})(?: ([^\r\n]*))?\r?\n?")


# -- what a wait watches: the container's output and its end --------------------------------


class _Output:
    """Where the output written since the last look comes from."""

    def new(self) -> list[tuple[str, bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _BytesOutput(_Output):
    """Output that can be had whole, per stream; only the part after what was seen is
    handed on. ``whole(stream)`` is cheap for an attached container (its output is in
    memory)."""

    def __init__(self, whole: Callable[[str], bytes]) -> None:
        self._whole = whole
        self._seen = dict.fromkeys(_STREAMS, 0)

    def new(self) -> list[tuple[str, bytes]]:
        found = []
        for stream in _STREAMS:
            data = self._whole(stream)
            if len(data) > self._seen[stream]:
                found.append((stream, data[self._seen[stream] :]))
                self._seen[stream] = len(data)
        return found


class _FileOutput(_Output):
    """A detached container's log file, read on from where the last look stopped
    (across a rotation), never again from its start."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from containerlib.runtime.logs import _LogFiles

        self._files = _LogFiles(path)
        self._started = False

    def new(self) -> list[tuple[str, bytes]]:
        if self._started:
            records = self._files.more()
        else:
            records, self._started = self._files.start(), True
        return [(r.stream, r.data if r.partial else r.data + b"\n") for r in records]

    def close(self) -> None:
        self._files.close()


class Watch:
    """One wait's view of its container: its output, split into lines for the
    :class:`Log` probes, whether it has ended, and what must be closed after the wait."""

    def __init__(self, box: Box) -> None:
        from containerlib.container import RunningContainer
        from containerlib.detached import DetachedContainer

        self.box = box
        self.closing = contextlib.ExitStack()
        self._listeners: list[Callable[[str, list[bytes]], None]] = []
        self._unended = dict.fromkeys(_STREAMS, b"")
        output: _Output
        if isinstance(box, DetachedContainer):
            output = _FileOutput(box.log_path)
            self._ended: Callable[[], tuple[bool, int | None]] = lambda: _detached_ended(box)
        else:
            if isinstance(box, RunningContainer):
                # In memory: whole, per stream, with no record to parse.
                pipes = box._pipes
                output = _BytesOutput(lambda s: pipes.stdout if s == "stdout" else pipes.stderr)
            else:  # any other handle with the same methods (a test's fake, say)
                output = _BytesOutput(
                    lambda s: box.logs(stdout=s == "stdout", stderr=s != "stdout")
                )
            self._ended = lambda: _attached_ended(box)
        self._output = output
        self.closing.callback(output.close)

    def on_lines(self, listener: Callable[[str, list[bytes]], None]) -> None:
        """Call ``listener(stream, lines)`` with each batch of whole lines (without
        their line end), those written so far included."""
        self._listeners.append(listener)

    def unended(self, stream: str) -> bytes:
        """The line of ``stream`` being written: what follows its last line end."""
        return self._unended[stream]

    def refresh(self) -> None:
        """Read what the container wrote since the last look and hand on its lines;
        with no :class:`Log` condition to feed, the output is not read at all."""
        if not self._listeners:
            return
        for stream, data in self._output.new():
            lines = (self._unended[stream] + data).split(b"\n")
            self._unended[stream] = lines.pop()
            if lines:
                for listener in self._listeners:
                    listener(stream, lines)

    def ended(self) -> tuple[bool, int | None]:
        """Whether the container has ended, and its exit code (None when unknown: a
        removed container's)."""
        return self._ended()

    def last_lines(self) -> bytes:
        """The container's last lines of output, for the error; empty if they cannot
        be read any more."""
        try:
            return self.box.logs(tail=LOG_LINES)
        except (ContainerlibError, OSError):
            return b""


def _attached_ended(box: Box) -> tuple[bool, int | None]:
    try:
        # wait(0) does not block: it looks. It also starts the thread that reads the
        # container's pipes, if nothing has yet, so that its output comes in.
        return True, box.wait(0).exit_code
    except TimeoutError:
        return False, None


def _detached_ended(box: DetachedContainer) -> tuple[bool, int | None]:
    state = box.status
    if state in _RUNNING_STATES:
        return False, None
    return True, (None if state == "removed" else box.exit_code)


# -- probes: one condition's tries during one wait -------------------------------------------


class Probe:
    """Tries one condition during one wait, and says why it is not met."""

    condition: Condition

    def ready(self, deadline: float) -> bool:
        """Try the condition now; True when met. A try may block until ``deadline``."""
        raise NotImplementedError

    def unmet(self) -> Condition:
        """What is not met: the condition, or of an ``all_of``, the parts not met."""
        return self.condition

    def reasons(self) -> list[str]:
        """Each leaf condition not met, with why its last try failed."""
        raise NotImplementedError


def _budget(deadline: float) -> float:
    return max(deadline - time.monotonic(), _LEAST_TRY)


def _oserror_text(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


class _Leaf(Probe):
    """A condition that is tried on its own; once met, it stays met."""

    def __init__(self, condition: Condition, watch: Watch) -> None:
        self.condition = condition
        self.watch = watch
        self.why = "not tried"
        self.met = False

    def ready(self, deadline: float) -> bool:
        if not self.met:
            self.met = self.attempt(deadline)
        return self.met

    def attempt(self, deadline: float) -> bool:
        """One try; on failure, sets :attr:`why`."""
        raise NotImplementedError

    def reasons(self) -> list[str]:
        return [f"{self.condition}: {self.why}"]


def _searcher(pattern: re.Pattern[str] | re.Pattern[bytes]) -> Callable[[bytes], bool]:
    """Whether a line of output (bytes) holds a match of ``pattern``."""
    if isinstance(pattern.pattern, str):
        text = pattern
        return lambda line: text.search(line.decode(errors="replace")) is not None
    raw = pattern
    return lambda line: raw.search(line) is not None


class _LogProbe(_Leaf):
    condition: Log

    def __init__(self, condition: Log, watch: Watch) -> None:
        super().__init__(condition, watch)
        self._streams = _STREAMS if condition.stream == "both" else (condition.stream,)
        self._search = _searcher(condition.pattern)
        self._found = 0
        watch.on_lines(self._count)

    def _matches(self, line: bytes) -> bool:
        return self._search(line.removesuffix(b"\r"))  # a terminal's line end is \r\n

    def _count(self, stream: str, lines: list[bytes]) -> None:
        if stream in self._streams and self._found < self.condition.count:
            self._found += sum(1 for line in lines if self._matches(line))

    def attempt(self, deadline: float) -> bool:
        found = self._found + sum(
            1
            for s in self._streams
            if self.watch.unended(s) and self._matches(self.watch.unended(s))
        )
        if found >= self.condition.count:
            return True
        self.why = (
            "no line matched yet"
            if not found
            else f"{found} of {self.condition.count} lines matched so far"
        )
        return False


class _PortProbe(_Leaf):
    condition: Port

    def attempt(self, deadline: float) -> bool:
        try:
            sock = self.watch.box.connect(self.condition.port, timeout=_budget(deadline))
        except ContainerNotRunning:
            self.why = "the container does not run"
            return False
        except OSError as e:  # refused, timed out, or the namespace cannot be entered
            self.why = _oserror_text(e)
            return False
        sock.close()
        return True


class _HttpProbe(_Leaf):
    condition: Http

    def attempt(self, deadline: float) -> bool:
        port, path = self.condition.port, self.condition.path
        request = (
            f"GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\n"
            "User-Agent: containerlib\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        try:
            with self.watch.box.connect(port, timeout=_budget(deadline)) as sock:
                sock.settimeout(_budget(deadline))
                sock.sendall(request)
                head = b""
                while b"\n" not in head and len(head) < _STATUS_LINE_MAX:
                    sock.settimeout(_budget(deadline))
                    chunk = sock.recv(_STATUS_LINE_MAX)
                    if not chunk:
                        break
                    head += chunk
        except ContainerNotRunning:
            self.why = "the container does not run"
            return False
        except OSError as e:
            self.why = _oserror_text(e)
            return False
        if not head:
            self.why = "the connection was closed with no answer"
            return False
        answer = _STATUS.match(head)
        if answer is None:
            self.why = f"the answer is not HTTP: {head[:60]!r}"
            return False
        status = int(answer[1])
        if status == self.condition.status:
            return True
        reason = (answer[2] or b"").decode(errors="replace").strip()
        self.why = f"it answered {status}" + (f" {reason}" if reason else "")
        return False


class _ExecProbe(_Leaf):
    condition: Exec

    def attempt(self, deadline: float) -> bool:
        try:
            result = self.watch.box.exec(list(self.condition.cmd), timeout=_budget(deadline))
        except ContainerNotRunning:
            self.why = "the container does not run"
            return False
        except ContainerSetupError as e:  # no such program, say: the message says
            self.why = str(e)
            return False
        if result.exit_code == 0 and not result.timed_out:
            return True
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()
        if result.timed_out:
            self.why = "it was killed at the deadline"
        else:
            self.why = f"exit code {result.exit_code}"
        if said:
            self.why += f": {said[-1].decode(errors='replace')[:200]}"
        return False


class _CheckProbe(_Leaf):
    condition: Check

    def attempt(self, deadline: float) -> bool:
        try:
            value = self.condition.check(self.watch.box)
        except Exception as e:  # "not yet", as testcontainers takes any exception
            self.why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            return False
        if value:
            return True
        self.why = f"it returned {value!r}"
        return False


_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_DIR_FLAGS = _PATH_FLAGS | os.O_DIRECTORY


class _FileProbe(_Leaf):
    condition: File

    def __init__(self, condition: File, watch: Watch) -> None:
        super().__init__(condition, watch)
        # /proc/PID of the container's first process, opened while it ran: lookups
        # through it fail once that process has ended, even if its pid is used again.
        self._proc: int | None = None

    def _open_proc(self) -> int | None:
        pid = self.watch.box.pid
        if pid is None:
            self.why = "the container does not run"
            return None
        try:
            fd = os.open(f"/proc/{pid}", _DIR_FLAGS)
        except OSError as e:
            self.why = f"open /proc/{pid}: {_oserror_text(e)}"
            return None
        if self.watch.ended()[0]:  # the pid may have been another process's by then
            os.close(fd)
            self.why = "the container does not run"
            return None
        self.watch.closing.callback(os.close, fd)
        return fd

    def attempt(self, deadline: float) -> bool:
        from containerlib.linux import syscalls as sc

        if self._proc is None:
            self._proc = self._open_proc()
            if self._proc is None:
                return False
        try:
            # Following the magic link gives the container's root in its own mount
            # namespace: its mounts are seen under it.
            root = os.open("root", _DIR_FLAGS, dir_fd=self._proc)
        except OSError as e:
            self.why = (
                "the container does not run"
                if e.errno in (errno.ENOENT, errno.ESRCH)
                else f"open its /proc/PID/root: {_oserror_text(e)}"
            )
            return False
        try:
            relative = self.condition.path.lstrip("/") or "."
            fd = sc.openat2(
                root,
                os.fsencode(relative),
                _PATH_FLAGS,
                sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS,
            )
        except OSError as e:
            self.why = (
                "it does not exist"
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
                else f"look it up: {_oserror_text(e)}"
            )
            return False
        finally:
            os.close(root)
        os.close(fd)
        return True


class _AllProbe(Probe):
    def __init__(self, condition: AllOf, parts: list[Probe]) -> None:
        self.condition = condition
        self._left = parts

    def ready(self, deadline: float) -> bool:
        # Every part not met yet is tried, not only the first: the error can then say
        # which are missing.
        self._left = [p for p in self._left if not p.ready(deadline)]
        return not self._left

    def unmet(self) -> Condition:
        parts = [p.unmet() for p in self._left]
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def reasons(self) -> list[str]:
        return [r for p in self._left for r in p.reasons()]


class _AnyProbe(Probe):
    def __init__(self, condition: AnyOf, parts: list[Probe]) -> None:
        self.condition = condition
        self._parts = parts

    def ready(self, deadline: float) -> bool:
        return any(p.ready(deadline) for p in self._parts)

    def reasons(self) -> list[str]:
        return [r for p in self._parts for r in p.reasons()]


def probe(condition: Condition, watch: Watch) -> Probe:
    """The probe that tries ``condition`` against the container of ``watch``."""
    if isinstance(condition, AllOf):
        return _AllProbe(condition, [probe(c, watch) for c in condition.conditions])
    if isinstance(condition, AnyOf):
        return _AnyProbe(condition, [probe(c, watch) for c in condition.conditions])
    if isinstance(condition, Log):
        return _LogProbe(condition, watch)
    if isinstance(condition, Port):
        return _PortProbe(condition, watch)
    if isinstance(condition, Http):
        return _HttpProbe(condition, watch)
    if isinstance(condition, Exec):
        return _ExecProbe(condition, watch)
    if isinstance(condition, File):
        return _FileProbe(condition, watch)
    if isinstance(condition, Check):
        return _CheckProbe(condition, watch)
    raise TypeError(f"no probe for {condition!r}")
