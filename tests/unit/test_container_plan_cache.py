"""The compiled plan is reused across runs: what a run gets must equal a fresh compile."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from containerlib import Container, Image, SpecError
from containerlib.container import _compile
from containerlib.runtime.specconv import Roots


def fresh(c: Container, cmd: list[str] | None, cid: str):  # type: ignore[no-untyped-def]
    """The plan compiled for ``cid`` from the start, as a container with bind mounts gets it."""
    return _compile(c, tuple(cmd) if cmd is not None else None, Roots.from_env(), cid)[1]


@pytest.fixture
def image(tmp_path: Path) -> Image:
    (tmp_path / "rootfs").mkdir()
    return Image.from_rootfs(tmp_path / "rootfs")


@pytest.mark.parametrize(
    "make",
    [
        lambda c: c,
        lambda c: c.hostname("box").limit(mem="64M", pids=8),
        lambda c: c.env(HOSTNAME="from-env").user("1000:1000").tmpfs("/scratch", size="1M"),
        lambda c: c.read_only().network("host").workdir("/tmp"),
    ],
    ids=["default", "hostname-limits", "env-hostname", "read-only-host"],
)
def test_reused_plan_equals_a_fresh_one(image: Image, make) -> None:  # type: ignore[no-untyped-def]
    c = make(Container(image))
    # Without an id, the plan goes to the spawner, which picks one and puts it in.
    _, unnamed = c._plan(["echo", "hi"], None)
    assert unnamed.spawner_picks_id
    for cid in ("a" * 32, "b1" * 16, "my-container"):
        args, plan = c._plan(["echo", "hi"], cid)
        expected = attrs.evolve(fresh(c, ["echo", "hi"], cid), hostname_is_id=False)
        assert attrs.evolve(plan, hostname_is_id=False) == expected
        assert attrs.evolve(unnamed.with_id(cid), hostname_is_id=False) == expected
        assert args == ("echo", "hi")


def test_only_a_hostname_taken_from_the_id_follows_it(image: Image) -> None:
    _, plan = Container(image)._plan(["true"], "c" * 32)
    assert plan.with_id("d" * 32).hostname == b"d" * 12
    assert b"HOSTNAME=" + b"d" * 12 in plan.with_id("d" * 32).env
    _, named = Container(image).hostname("box")._plan(["true"], "c" * 32)
    assert named.with_id("d" * 32).hostname == b"box"


def test_bind_mounts_are_looked_at_each_time(image: Image, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    c = Container(image).mount(src, "/data")
    c._plan(["true"], "x1")
    src.rmdir()
    with pytest.raises(FileNotFoundError, match="data"):
        c._plan(["true"], "x2")


def test_bad_commands_are_refused_before_the_cache(image: Image) -> None:
    with pytest.raises(SpecError, match="cmd"):
        Container(image)._plan("echo hi", "x")  # type: ignore[arg-type]
