"""Image.prune() never takes a layer from under a running container, and an image whose
layers were pruned unpacks them again at its next start."""

from __future__ import annotations

from pathlib import Path

import pytest

from containerlib import Container, Image

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]


def test_prune_keeps_what_runs_and_the_next_start_unpacks_again(image: Image) -> None:
    built = image.add(b"still here\n", "/note").config(cmd=["cat", "/note"])
    top = Path(built.layers[-1])
    with Container(built).start(["sleep", "30"]) as running:
        report = Image.prune()
        assert top.is_dir(), report  # held by the running container
        assert Container(built).run(check=True).stdout == b"still here\n"
        running.kill()
        running.wait()
    # Unnamed and fresh, the image's blobs stay; its unpacked layers are no one's now.
    report = Image.prune()
    assert not top.exists()
    assert report.layers
    assert report.bytes_freed > 0
    assert Container(built).run(check=True).stdout == b"still here\n"
    assert top.is_dir()


def test_a_named_image_keeps_its_layers(image: Image) -> None:
    named = image.add(b"named\n", "/named").tag("localhost/kept:1")
    Image.prune()
    assert all(Path(layer).is_dir() for layer in named.layers[1:])
    assert Container(named).run(["cat", "/named"], check=True).stdout == b"named\n"
    Image.remove("localhost/kept:1")
