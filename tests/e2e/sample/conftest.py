"""A server in a container for the sample's tests: busybox httpd serving a page."""

from __future__ import annotations

import pytest
from helpers import SERVE, note

from containerlib import Container, DetachedContainer, Image, RunningContainer
from containerlib.pytest_plugin import Containers
from containerlib.readiness import wait_for_http


@pytest.fixture
def web(containers: Containers, busybox_image: Image) -> RunningContainer | DetachedContainer:
    box = containers.start(Container(busybox_image).publish(8080), ["sh", "-c", SERVE])
    wait_for_http(box, 8080, "/", timeout=30)
    note("containers", box.id)
    return box


@pytest.fixture(scope="session")
def shared_web(
    session_containers: Containers, busybox_image: Image
) -> RunningContainer | DetachedContainer:
    """A server the tests of the session share, removed at its end."""
    server = Container(busybox_image).publish(8080)
    box = session_containers.start(server, ["sh", "-c", SERVE])
    wait_for_http(box, 8080, "/", timeout=30)
    note("containers", box.id)
    return box
