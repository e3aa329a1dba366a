"""Tests that fail while their containers run, in the test and in a fixture: the reports
show the containers' logs."""

from __future__ import annotations

import pytest
from helpers import get, note

from containerlib import Container, DetachedContainer, Image, RunningContainer
from containerlib.pytest_plugin import Containers
from containerlib.readiness import wait_for_log


def test_fails(web: RunningContainer | DetachedContainer) -> None:
    get(web, "/no-such-page-4f1e")


@pytest.fixture
def broken_server(containers: Containers, busybox_image: Image) -> None:
    cmd = ["sh", "-c", "echo config missing-7c2d; sleep 60"]
    box = containers.start(Container(busybox_image), cmd)
    note("containers", box.id)
    wait_for_log(box, "config missing")
    raise RuntimeError("the server did not come up")


def test_with_failing_fixture(broken_server: None) -> None:
    raise AssertionError("not reached")
