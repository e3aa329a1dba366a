"""A test that waits to be interrupted (SIGINT) while its containers run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from helpers import SERVE, note

from containerlib import Container, DetachedContainer, Image, RunningContainer
from containerlib.pytest_plugin import Containers
from containerlib.readiness import wait_for_http


def test_interrupted(
    containers: Containers, busybox_image: Image, web: RunningContainer | DetachedContainer
) -> None:
    detached = containers.start(
        Container(busybox_image).publish(8080), ["sh", "-c", SERVE], detach=True
    )
    note("containers", detached.id)
    wait_for_http(detached, 8080, "/", timeout=30)
    Path(os.environ["SAMPLE_NOTES"], "running").touch()
    time.sleep(120)  # interrupted long before
    raise AssertionError("not interrupted")
