"""A server in a container: started, waited for, talked to, and gone at the end."""

from __future__ import annotations

import pytest
from helpers import PAGE, SERVE, get, note

from containerlib import Container, DetachedContainer, Image, RunningContainer
from containerlib.pytest_plugin import Containers, Networks
from containerlib.readiness import wait_for_http


@pytest.mark.parametrize("path", ["/", "/index.html"])
def test_serves_the_page(web: RunningContainer | DetachedContainer, path: str) -> None:
    assert get(web, path).strip() == PAGE


def test_logs_the_request(web: RunningContainer | DetachedContainer) -> None:
    get(web)
    assert b"response:200" in web.logs()


def test_detached_server(containers: Containers, busybox_image: Image) -> None:
    box = containers.start(
        Container(busybox_image).publish(8080), ["sh", "-c", SERVE], detach=True, name="web"
    )
    note("containers", box.id)
    assert isinstance(box, DetachedContainer)
    assert box.name is not None
    assert box.name.startswith("web-")
    wait_for_http(box, 8080, "/", timeout=30)
    assert get(box).strip() == PAGE


def test_exec_in_server(web: RunningContainer | DetachedContainer) -> None:
    assert web.exec(["cat", "/www/index.html"]).stdout.decode().strip() == PAGE


@pytest.mark.containerlib(root=True)
def test_network_by_alias(containers: Containers, networks: Networks, busybox_image: Image) -> None:
    backend = networks("backend")
    note("networks", backend.name)
    server = Container(busybox_image).network(backend, aliases=["web"])
    box = containers.start(server, ["sh", "-c", SERVE])
    wait_for_http(box, 8080, "/", timeout=30)
    client = Container(busybox_image).network(backend)
    result = client.run(["wget", "-qO-", "http://web:8080/"], timeout=30)
    assert result.stdout.decode().strip() == PAGE


def test_shared_server(shared_web: RunningContainer | DetachedContainer) -> None:
    assert get(shared_web).strip() == PAGE
