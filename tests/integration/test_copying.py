"""put, get and path on running containers: files go in and come out, owned by the
container's root, and no symlink or ``..`` of a container leads a copy out of its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from containerlib import Container, ContainerNotRunning, Image, SpecError

pytestmark = pytest.mark.usefixtures("state")


def test_put_bytes_a_file_and_a_tree_and_get_them_back(image: Image, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("echo from the host\n")
    script.chmod(0o750)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "data").write_bytes(b"x" * 100_000)
    (tree / "link").symlink_to("sub/data")
    with Container(image).start(["sleep", "60"]) as box:
        box.put(b"listen 8080\n", "/etc/app/app.conf")  # /etc/app is made
        box.put(script, "/usr/local/bin/run.sh")
        box.put(tree, "/srv/tree")
        out = box.exec(
            ["sh", "-c", "cat /etc/app/app.conf; run.sh; stat -c '%a %u %g' /usr/local/bin/run.sh;"
             " wc -c < /srv/tree/link; stat -c %u /srv/tree/sub/data"]
        )  # fmt: skip
        assert out.stdout.decode().split("\n") == [
            "listen 8080",
            "from the host",
            "750 0 0",
            "100000",
            "0",
            "",
        ]
        assert box.get("/etc/app/app.conf") == b"listen 8080\n"
        assert box.get("/srv/tree/sub/data") == b"x" * 100_000
        assert box.path("/etc/app/app.conf").read_bytes() == b"listen 8080\n"
        with pytest.raises(IsADirectoryError):
            box.get("/srv/tree")
        with pytest.raises(FileNotFoundError):
            box.get("/nowhere")
        with pytest.raises(FileNotFoundError):
            box.path("/nowhere")
        with pytest.raises(SpecError, match="absolute"):
            box.put(b"x", "relative")
        box.kill()
    with pytest.raises(ContainerNotRunning):
        box.get("/etc/app/app.conf")


def test_symlinks_and_dotdot_of_the_container_stay_inside_it(image: Image, tmp_path: Path) -> None:
    host_file = tmp_path / "secret"
    host_file.write_text("the host's\n")
    links = (
        f"ln -s {host_file} /tmp/to-host; ln -s {tmp_path} /tmp/dir-to-host;"
        " ln -s /nowhere /tmp/dangling; touch /tmp/made"
    )
    with Container(image).start(["sh", "-c", links + "; exec sleep 60"]) as box:
        box.wait_for_file("/tmp/made")
        # Absolute symlinks resolve at the container's root, where there is no such file.
        with pytest.raises(FileNotFoundError):
            box.get("/tmp/to-host")
        with pytest.raises(FileNotFoundError, match="symlink"):
            box.put(b"x", "/tmp/dangling/x")
        # The link leads to the same path in the container, made there now.
        assert box.exec(["mkdir", "-p", str(tmp_path)]).exit_code == 0
        box.put(b"written through a link\n", "/tmp/dir-to-host/secret")
        assert host_file.read_text() == "the host's\n"
        assert box.exec(["cat", f"{tmp_path}/secret"]).stdout == b"written through a link\n"
        hostname = box.exec(["cat", "/etc/hostname"]).stdout
        assert box.get("/../../../etc/hostname") == hostname
        assert box.get("/../../../etc/hostname") != Path("/etc/hostname").read_bytes()
        box.kill()


def test_a_detached_container_too(image: Image) -> None:
    box = Container(image).start(["sleep", "60"], detach=True)
    try:
        box.put(b"detached\n", "/tmp/note")
        assert box.exec(["cat", "/tmp/note"]).stdout == b"detached\n"
        assert box.get("/tmp/note") == b"detached\n"
    finally:
        box.remove(force=True)
    with pytest.raises(ContainerNotRunning):
        box.get("/tmp/note")


def test_a_read_only_root_refuses_a_put(image: Image) -> None:
    with Container(image).read_only().start(["sleep", "60"]) as box:
        with pytest.raises(OSError, match="Read-only"):
            box.put(b"x", "/x")
        box.kill()
