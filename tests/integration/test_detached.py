"""Detached containers on the real kernel: they outlive their creator, keep their output
and exit code, are found again, exec'd into, stopped, and removed by prune()."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import containerlib
from containerlib import CgroupStats, Container, Image
from containerlib.errors import (
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSetupError,
    SpecError,
)
from containerlib.runtime.records import start_time

from .conftest import ROOT, cgroups_left, needs_root


@pytest.fixture
def clean(roots: dict[str, str], state: None, adopter: None) -> Iterator[None]:
    """Whatever a test left detached is removed; then ``adopter`` reaps the keepers and
    ``state`` checks that nothing is left (fixtures end in the reverse order)."""
    yield
    for box in containerlib.list(all=True):
        box.remove(force=True)
    assert containerlib.list(all=True) == []


def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_detached_container_outlives_the_process_that_started_it(
    image: Image, roots: dict[str, str], clean: None
) -> None:
    script = textwrap.dedent(
        f"""
        from containerlib import Container, Image
        box = Container(Image.from_rootfs({str(image.layers[0])!r})).start(
            ["sh", "-c", "echo started; trap 'echo bye; exit 3' TERM; sleep 60 & wait"],
            detach=True, name="survivor")
        print(box.id)
        """
    )
    env = {**os.environ, **roots}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    cid = done.stdout.strip()
    # Its creator has exited, and with it its spawner: the container runs on.
    box = containerlib.get("survivor")
    assert box.id == cid
    assert box.status == "running"
    assert [c.id for c in containerlib.list()] == [cid]
    assert containerlib.get(cid[:6]).id == cid
    _until(lambda: box.logs() == b"started\n")
    assert box.exec(["echo", "from", "exec"]).stdout == b"from exec\n"
    result = box.stop(timeout=10)
    assert result.exit_code == 3
    assert result.stdout == b"started\nbye\n"
    assert box.status == "exited"
    assert box.exit_code == 3
    # Ended, it is still listed with -a, until prune() removes it.
    assert containerlib.list() == []
    assert [c.id for c in containerlib.list(all=True)] == [cid]
    assert containerlib.prune() == [cid]
    with pytest.raises(ContainerNotFound, match="survivor"):
        containerlib.get("survivor")


def test_the_exit_code_is_kept_when_nobody_watched(image: Image, clean: None) -> None:
    box = Container(image).start(["sh", "-c", "echo out; echo err >&2; exit 7"], detach=True)
    _until(lambda: box.status == "exited")
    # A fresh handle, as another process would get.
    again = containerlib.get(box.id)
    assert again.exit_code == 7
    result = again.wait()
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert again.logs(stderr=False) == b"out\n"
    assert again.logs(stdout=False) == b"err\n"
    with pytest.raises(ContainerNotRunning):
        again.exec(["true"])
    with pytest.raises(ContainerNotRunning):
        again.kill()
    again.remove()
    assert again.status == "removed"


def test_logs_since_tail_and_follow(image: Image, clean: None) -> None:
    box = Container(image).start(
        ["sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 0.5; echo late"],
        detach=True,
    )
    _until(lambda: box.logs().count(b"\n") >= 3)
    assert box.logs(tail=2) == b"line 2\nline 3\n"
    stamped = box.logs(timestamps=True).splitlines()
    assert all(line.split(b" ", 1)[0].endswith(b"Z") for line in stamped)
    mark = time.time()
    followed = b"".join(box.logs(follow=True))
    assert followed == b"line 1\nline 2\nline 3\nlate\n"
    assert box.logs(since=mark) == b"late\n"
    assert box.logs(until=mark) == b"line 1\nline 2\nline 3\n"


def test_input_goes_to_a_detached_container(image: Image, clean: None) -> None:
    box = Container(image).start(["tr", "a-z", "A-Z"], input=b"shout\n", detach=True)
    assert box.wait(timeout=30).stdout == b"SHOUT\n"


def test_auto_remove_leaves_nothing_once_it_ends(
    image: Image, roots: dict[str, str], clean: None
) -> None:
    box = Container(image).start(["sh", "-c", "exit 4"], detach=True, auto_remove=True)
    cid = box.id
    _until(lambda: box.status == "removed")
    assert not (Path(roots["CONTAINERLIB_RUN_ROOT"]) / cid).exists()
    with pytest.raises(ContainerNotFound):
        containerlib.get(cid)


def test_a_waiter_learns_the_end_of_an_auto_removed_container(
    image: Image, roots: dict[str, str], clean: None
) -> None:
    box = Container(image).start(
        ["sh", "-c", "sleep 0.3; echo done; exit 5"], detach=True, auto_remove=True
    )
    # The keeper tells those waiting, and lets them read the log, before it removes it.
    result = box.wait(timeout=30)
    assert (result.exit_code, result.stdout) == (5, b"done\n")
    _until(lambda: box.status == "removed")
    with pytest.raises(ContainerNotFound, match="removed"):
        box.wait()


def test_names_are_unique_and_checked(image: Image, roots: dict[str, str], clean: None) -> None:
    first = Container(image).start(["sleep", "30"], detach=True, name="db")
    with pytest.raises(ContainerSetupError, match=f"container {first.id[:12]} has that name") as e:
        Container(image).start(["sleep", "30"], detach=True, name="db")
    assert e.value.errno == errno.EEXIST
    with pytest.raises(SpecError, match="not a valid container name"):
        Container(image).start(["true"], detach=True, name="../etc")
    with pytest.raises(SpecError, match="detached"):
        Container(image).start(["true"], name="attached")
    with pytest.raises(ContainerNotFound, match="nosuch"):
        containerlib.get("nosuch")
    with pytest.raises(ContainerNotFound, match="not a container id"):
        containerlib.get("../db")
    # Only the first is there: the refused ones left nothing.
    assert [c.name for c in containerlib.list(all=True)] == ["db"]
    first.stop(timeout=0.5)


def test_an_ambiguous_prefix_names_the_candidates(image: Image, clean: None) -> None:
    a = Container(image).start(["true"], detach=True, id="abc1")
    b = Container(image).start(["true"], detach=True, id="abc2")
    with pytest.raises(ContainerNotFound, match="abc1, abc2"):
        containerlib.get("abc")
    assert containerlib.get("abc2") == b
    for box in (a, b):
        box.wait(timeout=30)


def test_a_failed_setup_leaves_nothing(image: Image, roots: dict[str, str], clean: None) -> None:
    with pytest.raises(ContainerSetupError, match="nosuchuser"):
        Container(image).user("nosuchuser").start(["true"], detach=True, name="broken")
    assert containerlib.list(all=True) == []
    assert not cgroups_left()


def test_a_killed_keeper_leaves_a_dead_container_that_prune_removes(
    image: Image, roots: dict[str, str], clean: None
) -> None:
    box = Container(image).start(["sleep", "60"], detach=True)
    record = box.inspect()
    os.kill(record["keeper_pid"], signal.SIGKILL)
    # The container dies with its keeper (the parent-death signal).
    _until(lambda: box.status == "dead")
    _until(lambda: start_time(record["pid"]) is None)  # gone, or a zombie
    assert box.exit_code == 137
    rw_dir = Path(record["rw_dir"])
    assert rw_dir.exists()
    assert containerlib.prune() == [box.id]
    assert not rw_dir.exists()
    if ROOT:
        assert not cgroups_left()


def test_a_dead_containers_name_can_be_taken_again(image: Image, clean: None) -> None:
    box = Container(image).start(["sleep", "60"], detach=True, name="phoenix")
    os.kill(box.inspect()["keeper_pid"], signal.SIGKILL)
    _until(lambda: box.status == "dead")
    again = Container(image).start(["true"], detach=True, name="phoenix")
    assert containerlib.get("phoenix") == again
    again.wait(timeout=30)


def test_remove_refuses_a_running_container_without_force(image: Image, clean: None) -> None:
    box = Container(image).start(["sleep", "60"], detach=True)
    with pytest.raises(ContainerSetupError, match="force=True") as e:
        box.remove()
    assert e.value.errno == errno.EBUSY
    box.remove(force=True)
    assert box.status == "removed"


@needs_root("cgroup limits and figures")
def test_stats_update_pause_and_events(image: Image, clean: None) -> None:
    box = Container(image).limit(mem="32M").start(["sleep", "60"], detach=True)
    assert box.stats().pids_current == 1
    box.pause()
    assert box.status == "paused"
    box.resume()
    assert box.status == "running"
    box.update(pids=50)
    events = box.events()
    assert next(events).kind == "started"
    box.kill(signal.SIGKILL)
    assert [(e.kind, e.exit_code) for e in events] == [("exited", 137)]
    assert box.wait().exit_code == 137


@needs_root("cgroup limits and figures")
def test_an_oom_kill_of_a_detached_container_is_an_event(image: Image, clean: None) -> None:
    hog = "head -c 200m /dev/zero | tail; sleep 60"
    box = Container(image).limit(mem="32M").start(["sh", "-c", hog], detach=True)
    events = box.events()
    assert next(events).kind == "started"
    assert next(events).kind == "oom"
    assert box.stats().oom_kills >= 1
    box.remove(force=True)


def test_a_run_root_too_long_for_a_socket_address_works(
    image: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean: None
) -> None:
    # <root>/<id>/keeper.sock is past the 108 bytes of a unix socket address.
    long = tmp_path / ("d" * 100) / ("e" * 60)
    monkeypatch.setenv("CONTAINERLIB_RUN_ROOT", str(long))
    box = Container(image).start(["sleep", "30"], detach=True)
    assert len(str(long / box.id / "keeper.sock")) > 108
    assert box.exec(["echo", "reached"]).stdout == b"reached\n"
    assert box.stop(timeout=0.5).exit_code == 137
    box.remove()
    assert list(long.iterdir()) == []


def test_a_log_past_log_max_is_rotated_and_still_read(
    image: Image, roots: dict[str, str], clean: None
) -> None:
    # 30 bursts of 10 lines of 38 bytes, apart: about 12 KiB in chunks of about 400 bytes.
    script = (
        "i=0; while [ $i -lt 300 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
        "i=$((i+1)); [ $((i % 10)) = 0 ] && sleep 0.02; done"
    )
    box = Container(image).start(["sh", "-c", script], detach=True, log_max="4k")
    result = box.wait(timeout=30)
    log = Path(roots["CONTAINERLIB_RUN_ROOT"]) / box.id / "container.log"
    # Rotated before a write would pass the limit (a write is never split).
    assert log.stat().st_size <= 4096 + 1024
    assert Path(f"{log}.1").exists()
    # The rotated file is read too; what went before it is gone, as with Docker.
    assert result.stdout.endswith(b"line-299-xxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")
    assert not result.stdout.startswith(b"line-0-")
    assert box.logs(tail=1) == b"line-299-xxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
    with pytest.raises(SpecError, match="log_max"):
        Container(image).start(["true"], detach=True, log_max=0)
    with pytest.raises(SpecError, match="detached"):
        Container(image).start(["true"], log_max="1M")


def test_stats_of_a_running_detached_container(image: Image, clean: None) -> None:
    box = Container(image).start(["sleep", "30"], detach=True)
    stats = box.stats()
    if ROOT:
        assert stats.pids_current == 1
        assert stats.memory_current is not None
    else:  # no cgroup (none is delegated here): no figures, and no error
        assert stats == CgroupStats()
    box.remove(force=True)
