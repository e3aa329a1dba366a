"""Credentials from the files ``docker login`` and ``podman login`` write, and from the
credential helpers they name (a fake ``docker-credential-*`` script on PATH)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from containerlib import ImageError
from containerlib.image.registry_auth import Credentials, auth_files, credentials_for


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home directory, and no other credential file the environment could name."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _write(path: Path, config: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def _docker_config(home: Path, config: Any) -> Path:
    return _write(home / ".docker" / "config.json", config)


def _helper(
    bin_dir: Path,
    name: str,
    answers: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A ``docker-credential-<name>`` that answers ``get`` from ``answers`` (by the server
    read on stdin) as the real helpers do, and logs each server it was asked for."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    log = bin_dir / f"{name}.log"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"answers = {answers!r}\n"
        "assert sys.argv[1:] == ['get'], sys.argv\n"
        "server = sys.stdin.read().strip()\n"
        f"open({str(log)!r}, 'a').write(server + '\\n')\n"
        "if server not in answers:\n"
        "    print('credentials not found in native keychain')\n"
        "    sys.exit(1)\n"
        "print(json.dumps(answers[server]))\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_no_file_means_no_credentials(home: Path) -> None:
    assert credentials_for("localhost:5000") is None
    assert auth_files() == [home / ".docker" / "config.json"]


def test_auth_entry_by_host(home: Path) -> None:
    _docker_config(
        home,
        {
            "auths": {
                "localhost:5000": {"auth": _auth("me", "pa:ss")},
                "https://registry.example/": {"username": "u2", "password": "p2"},
            }
        },
    )
    assert credentials_for("localhost:5000") == Credentials(username="me", password="pa:ss")
    assert credentials_for("registry.example") == Credentials(username="u2", password="p2")
    assert credentials_for("localhost:5001") is None
    assert credentials_for("other.example") is None


def test_docker_hub_is_stored_under_its_v1_url(home: Path) -> None:
    _docker_config(home, {"auths": {"https://index.docker.io/v1/": {"auth": _auth("hub", "x")}}})
    assert credentials_for("docker.io") == Credentials(username="hub", password="x")
    assert credentials_for("index.docker.io") == Credentials(username="hub", password="x")
    assert credentials_for("quay.io") is None


def test_identity_token(home: Path) -> None:
    _docker_config(
        home,
        {"auths": {"reg.example": {"auth": _auth("me", ""), "identitytoken": "refresh-me"}}},
    )
    found = credentials_for("reg.example")
    assert found == Credentials(username="me", password="", identity_token="refresh-me")
    assert "refresh-me" not in repr(found)


def test_docker_config_env_and_podman_auth_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _docker_config(home, {"auths": {"a.example": {"auth": _auth("home", "1")}}})
    elsewhere = _write(
        tmp_path / "dc" / "config.json", {"auths": {"a.example": {"auth": _auth("env", "2")}}}
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(elsewhere.parent))
    podman = _write(
        tmp_path / "run" / "containers" / "auth.json",
        {
            "auths": {
                "a.example": {"auth": _auth("podman", "3")},
                "b.example": {"auth": _auth("p", "4")},
            }
        },
    )
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    # Docker's file first; podman's for what docker's lacks.
    assert credentials_for("a.example") == Credentials(username="env", password="2")
    assert credentials_for("b.example") == Credentials(username="p", password="4")
    assert auth_files() == [elsewhere, podman]
    explicit = _write(tmp_path / "auth.json", {"auths": {"c.example": {"auth": _auth("c", "5")}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert credentials_for("c.example") == Credentials(username="c", password="5")
    assert credentials_for("b.example") is None  # REGISTRY_AUTH_FILE replaces the default


def test_a_podman_namespace_key_is_not_the_whole_registry(home: Path) -> None:
    _docker_config(home, {"auths": {"quay.io/team": {"auth": _auth("team", "x")}}})
    assert credentials_for("quay.io") is None


def test_cred_helper_for_one_registry(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _helper(
        tmp_path / "bin",
        "fake",
        {"reg.example:5000": {"ServerURL": "reg.example:5000", "Username": "h", "Secret": "s"}},
        monkeypatch,
    )
    _docker_config(
        home,
        {
            "auths": {"other.example": {"auth": _auth("file", "f")}},
            "credHelpers": {"reg.example:5000": "fake", "nothing.example": "fake"},
        },
    )
    assert credentials_for("reg.example:5000") == Credentials(username="h", password="s")
    assert credentials_for("other.example") == Credentials(username="file", password="f")
    assert credentials_for("nothing.example") is None  # the helper has none
    assert log.read_text().split() == ["reg.example:5000", "nothing.example"]


def test_creds_store_for_every_registry_and_docker_hub(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _helper(
        tmp_path / "bin",
        "store",
        {
            "https://index.docker.io/v1/": {"Username": "hub", "Secret": "hs"},
            "reg.example": {"Username": "<token>", "Secret": "identity"},
        },
        monkeypatch,
    )
    _docker_config(
        home, {"auths": {"kept.example": {"auth": _auth("k", "v")}}, "credsStore": "store"}
    )
    assert credentials_for("docker.io") == Credentials(username="hub", password="hs")
    assert credentials_for("reg.example") == Credentials(
        username="<token>", password="", identity_token="identity"
    )
    # Not in the store: the auths entry, as docker falls back to it.
    assert credentials_for("kept.example") == Credentials(username="k", password="v")
    assert log.read_text().split() == ["https://index.docker.io/v1/", "reg.example", "kept.example"]


def test_a_missing_helper_is_named(home: Path) -> None:
    path = _docker_config(home, {"credHelpers": {"reg.example": "no-such-helper-here"}})
    with pytest.raises(ImageError, match=r"docker-credential-no-such-helper-here.*not installed"):
        credentials_for("reg.example")
    with pytest.raises(ImageError, match=str(path)):
        credentials_for("reg.example")
    assert credentials_for("other.example") is None


def test_a_failing_helper(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "docker-credential-broken"
    broken.write_text("#!/bin/sh\necho 'keychain is locked' >&2\nexit 3\n")
    broken.chmod(0o755)
    garbled = bin_dir / "docker-credential-garbled"
    garbled.write_text("#!/bin/sh\necho 'not json'\n")
    garbled.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _docker_config(home, {"credHelpers": {"a.example": "broken", "b.example": "garbled"}})
    with pytest.raises(ImageError, match=r"docker-credential-broken get a\.example: .*locked"):
        credentials_for("a.example")
    with pytest.raises(ImageError, match=r"docker-credential-garbled .*Username and Secret"):
        credentials_for("b.example")


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ({"auths": []}, "'auths' is not an object"),
        ({"credHelpers": "x"}, "'credHelpers' is not an object"),
        ({"credsStore": 3}, "'credsStore' is not a string"),
        ({"auths": {"a.example": "me:pw"}}, "'a.example': expected an object"),
        ({"auths": {"a.example": {"auth": "%%%"}}}, "not base64"),
        ({"auths": {"a.example": {"auth": _auth("nocolon", "")[:-4]}}}, "not base64"),
        ({"auths": {"a.example": {"username": 7}}}, "'username' is not a string"),
        ({"credHelpers": {"a.example": "../../bin/sh"}}, "invalid credential helper name"),
    ],
)
def test_a_malformed_file_is_named(home: Path, config: Any, problem: str) -> None:
    path = _docker_config(home, config)
    with pytest.raises(ImageError, match=problem) as caught:
        credentials_for("a.example")
    assert str(path) in str(caught.value)


def test_an_empty_entry_next_to_a_store_is_nothing(home: Path) -> None:
    _docker_config(home, {"auths": {"a.example": {}}})
    assert credentials_for("a.example") is None
