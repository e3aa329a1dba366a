"""An image built in Python goes out and comes back: saved and loaded, pushed and pulled,
through the Image API and the command line, and runs the same every time."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib import Container, Image, ImageNotFound
from containerlib.cli.main import main
from tests.registry_server import DOCKER_REGISTRY, docker_registry

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]

needs_registry = pytest.mark.skipif(
    DOCKER_REGISTRY is None or not os.access("/usr/bin/skopeo", os.X_OK),
    reason="needs docker-registry and skopeo (apt-get install docker-registry skopeo)",
)


@pytest.fixture(autouse=True)
def no_stored_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if DOCKER_REGISTRY is None:
        pytest.skip("needs docker-registry")
    with docker_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture
def app(image: Image) -> Image:
    return (
        image.add(b"#!/bin/sh\necho app says $WORD\n", "/usr/bin/app", mode=0o755)
        .run("echo built > /etc/built")
        .config(cmd=["/usr/bin/app"], env={"WORD": "hello"})
    )


@pytest.mark.parametrize("format", ["docker", "oci"])
def test_save_then_load_runs_the_same(app: Image, tmp_path: Path, format: str) -> None:
    named = app.tag(f"localhost/roundtrip-{format}:1")
    archive = tmp_path / "app.tar"
    named.save(archive, format=format)  # type: ignore[arg-type]
    Image.remove(named.name)
    with pytest.raises(ImageNotFound):
        Image.from_registry(named.name, pull="never")
    (loaded,) = Image.load(archive)
    assert loaded.name == named.name
    assert loaded.cmd == ("/usr/bin/app",)
    assert Container(loaded).run(check=True).stdout == b"app says hello\n"
    if format == "oci":
        assert loaded.digest == named.digest  # the same bytes, the same manifest
    Image.remove(named.name)


def test_saving_an_unnamed_image_gives_an_unnamed_load(app: Image, tmp_path: Path) -> None:
    app.save(tmp_path / "plain.tar")
    (loaded,) = Image.load(tmp_path / "plain.tar")
    assert loaded.name.startswith("sha256:")
    assert Container(loaded).run(["cat", "/etc/built"], check=True).stdout == b"built\n"


@needs_registry
def test_push_then_pull_back(app: Image, registry: str) -> None:
    reference = f"{registry}/team/app:1"
    sent: list[str] = []
    digest = app.push(reference, progress=lambda d, n: sent.append(d.digest))
    assert digest == app.digest
    assert len(set(sent)) == 4  # the base layer, two built layers, the config
    shown = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["Digest"] == digest
    pulled = Image.from_registry(reference, pull="always")
    assert pulled.digest == digest
    assert Container(pulled).run(check=True).stdout == b"app says hello\n"
    Image.remove(reference)


@needs_registry
def test_cli_push_save_load(
    app: Image, registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{registry}/team/cli:2"
    app.tag(name)
    assert main(["push", name]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{name}@{app.digest}"
    assert "push sha256:" in err  # not a terminal: one line per blob
    assert main(["save", name, "-o", str(tmp_path / "cli.tar")]) == 0
    assert main(["rmi", name]) == 0
    assert main(["load", "-i", str(tmp_path / "cli.tar")]) == 0
    assert f"loaded {name}" in capsys.readouterr().out
    # A docker archive holds plain tar layers: a new manifest, until pulled again.
    assert Image.from_registry(name, pull="never").digest != app.digest
    assert main(["pull", name]) == 0
    assert Image.from_registry(name, pull="never").digest == app.digest
    Image.remove(name)


def test_cli_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "-i", str(tmp_path / "missing.tar")]) == 125
    assert "missing.tar" in capsys.readouterr().err
    assert main(["save", "localhost/nothing:1", "-o", str(tmp_path / "x.tar")]) == 125
    assert "localhost/nothing:1" in capsys.readouterr().err
    assert not (tmp_path / "x.tar").exists()
