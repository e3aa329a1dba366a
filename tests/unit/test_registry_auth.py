"""The pure parts of the registry client: WWW-Authenticate challenges and which scheme
a registry is spoken to with."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from containerlib.image.registry_auth import (
    Challenge,
    Credentials,
    parse_challenge,
    registry_base_url,
)


def test_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert parse_challenge(header) == Challenge(
        scheme="bearer",
        params={
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/busybox:pull",
        },
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="Registry Realm"', ("basic", {"realm": "Registry Realm"})),
        ("Basic", ("basic", {})),
        (
            "bearer realm=http://x/token , service=s",
            ("bearer", {"realm": "http://x/token", "service": "s"}),
        ),
        (r'Bearer realm="a\"b",Scope="x"', ("bearer", {"realm": 'a"b', "scope": "x"})),
    ],
)
def test_other_challenges(header: str, expected: tuple[str, dict[str, str]]) -> None:
    challenge = parse_challenge(header)
    assert challenge is not None
    assert (challenge.scheme, dict(challenge.params)) == expected


@pytest.mark.parametrize("header", ["", "   ", 'realm="x"', "Bearer realm", 'Bearer ="x"'])
def test_not_a_challenge(header: str) -> None:
    assert parse_challenge(header) is None


@given(st.text())
def test_parse_challenge_never_raises(header: str) -> None:
    parse_challenge(header)


@pytest.mark.parametrize(
    ("registry", "insecure", "url"),
    [
        ("localhost:5000", (), "http://localhost:5000"),
        ("localhost", (), "http://localhost"),
        ("127.0.0.1:5000", (), "http://127.0.0.1:5000"),
        ("[::1]:5000", (), "http://[::1]:5000"),
        ("127.0.0.2:5000", (), "https://127.0.0.2:5000"),
        ("registry.example", (), "https://registry.example"),
        ("registry.example:5000", ("registry.example:5000",), "http://registry.example:5000"),
        ("registry.example:5000", ("registry.example",), "http://registry.example:5000"),
        ("registry.example:5000", ("other.example",), "https://registry.example:5000"),
        ("docker.io", (), "https://registry-1.docker.io"),
    ],
)
def test_scheme(registry: str, insecure: tuple[str, ...], url: str) -> None:
    assert registry_base_url(registry, insecure) == url


def test_credentials_hide_the_password() -> None:
    assert "hunter2" not in repr(Credentials(username="me", password="hunter2"))
