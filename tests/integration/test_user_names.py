"""Users by name, looked up in the container's own /etc/passwd and /etc/group (never
the host's), with Docker's rules; by the native helper and by the Python child."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from containerlib import Container, ContainerSetupError, Image, SpecError
from containerlib.image.builtin import busybox_rootfs
from tests.integration.conftest import needs_root

pytestmark = [
    pytest.mark.root,
    needs_root("another uid inside, which a user namespace that maps one id lacks"),
    pytest.mark.usefixtures("state"),
]

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1200:1300:App:/home/app:/bin/sh\n"
    "nohome:x:1201:1301::/:/bin/sh\n"
    "# a comment, and a broken line follow\n"
    "broken:x:notanumber:1:::\n"
)
GROUP = "root:x:0:\nappgroup:x:1300:\nstaff:x:1400:app,other\nwheel:x:1500:other\n"


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = busybox_rootfs(tmp_path_factory.mktemp("accounts") / "root")
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return Image.from_rootfs(root)


def ids(box: Container) -> list[str]:
    out = box.run(["sh", "-c", "id -u; id -g; id -G; echo $HOME"], check=True).stdout
    return out.decode().split("\n")[:4]


def test_a_name_gives_uid_gid_groups_and_home(accounts: Image) -> None:
    assert ids(Container(accounts).user("app")) == ["1200", "1300", "1300 1400", "/home/app"]


def test_name_and_group(accounts: Image) -> None:
    assert ids(Container(accounts).user("app:wheel")) == ["1200", "1500", "1500", "/home/app"]
    assert ids(Container(accounts).user("app:77")) == ["1200", "77", "77", "/home/app"]


def test_numbers_found_and_not_found(accounts: Image) -> None:
    # A uid the image knows takes its group and home, as docker run --user 1200.
    assert ids(Container(accounts).user("1200")) == ["1200", "1300", "1300 1400", "/home/app"]
    assert ids(Container(accounts).user(4242)) == ["4242", "0", "0", "/"]
    assert ids(Container(accounts).user("4242:4343")) == ["4242", "4343", "4343", "/"]


def test_home_set_by_the_caller_wins(accounts: Image) -> None:
    box = Container(accounts).user("app").env(HOME="/elsewhere")
    assert ids(box)[3] == "/elsewhere"


def test_the_image_config_user(accounts: Image) -> None:
    configured = attrs.evolve(accounts, user="app")
    assert ids(Container(configured))[0] == "1200"


def test_unknown_names_fail_the_start_naming_them(accounts: Image) -> None:
    with pytest.raises(ContainerSetupError, match="find user 'ghost'"):
        Container(accounts).user("ghost").run(["true"])
    with pytest.raises(ContainerSetupError, match="find group 'nogroup'"):
        Container(accounts).user("app:nogroup").run(["true"])
    with pytest.raises(SpecError, match="user"):
        Container(accounts).user("a b")
    with pytest.raises(SpecError, match="user"):
        Container(accounts).user("a:b:c")


def test_the_host_accounts_are_not_used(tmp_path: Path) -> None:
    root = busybox_rootfs(tmp_path / "root")
    (root / "etc" / "passwd").unlink()
    with pytest.raises(ContainerSetupError, match="find user 'root'"):
        Container(Image.from_rootfs(root)).user("root").run(["true"])


def test_a_fifo_for_passwd_does_not_hang_the_start(tmp_path: Path) -> None:
    root = busybox_rootfs(tmp_path / "root")
    (root / "etc" / "passwd").unlink()
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(ContainerSetupError, match="not a regular file"):
        Container(Image.from_rootfs(root)).user("app").run(["true"], timeout=10)


def test_the_python_child_resolves_the_same(accounts: Image) -> None:
    """The fallback without a C compiler, in a process of its own (the spawner reads
    CONTAINERLIB_NATIVE_INIT when it starts)."""
    code = (
        "import sys\n"
        "from containerlib import Container, Image\n"
        f"img = Image.from_rootfs({accounts.layers[0]!r})\n"
        "out = Container(img).user('app').run(['sh', '-c', 'id -u; id -G; echo $HOME'])\n"
        "sys.stdout.write(out.stdout.decode())\n"
    )
    env = {**os.environ, "CONTAINERLIB_NATIVE_INIT": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["1200", "1300 1400", "/home/app"]
