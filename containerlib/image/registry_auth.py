"""Registry authentication helpers: credentials, ``WWW-Authenticate`` challenges (RFC 7235
section 4.1, as the distribution spec's ``docs/spec/auth/token.md`` uses them), and the
rule for when plain http is allowed.

Example:
    >>> parse_challenge('Basic realm="Registry"').scheme
    'basic'
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Mapping
from typing import Final

import attrs

from containerlib.image.reference import DEFAULT_REGISTRY

__all__ = [
    "Challenge",
    "Credentials",
    "basic_authorization",
    "is_insecure",
    "parse_challenge",
    "registry_base_url",
]

_DOCKER_HUB_API: Final = "registry-1.docker.io"
_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


@attrs.frozen(kw_only=True)
class Credentials:
    """A user name and password (or token) for a registry; the password is never shown."""

    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: the scheme (lowercase) and its parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse a ``WWW-Authenticate`` header with one challenge; None if it is not one.

    Example:
        >>> c = parse_challenge('Bearer realm="https://auth.example/token",service="reg"')
        >>> c.scheme, c.params["realm"], c.params["service"]
        ('bearer', 'https://auth.example/token', 'reg')
        >>> parse_challenge('Basic realm="Registry"').scheme
        'basic'
    """
    scheme, _, rest = header.strip().partition(" ")
    if not scheme or not re.fullmatch(r"[A-Za-z0-9_-]+", scheme):
        return None
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _AUTH_PARAM.match(rest, position)
        if match is None or match.end() == position:
            return None
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key] = value
        position = match.end()
    return Challenge(scheme=scheme.lower(), params=params)


def _host_of(registry: str) -> str:
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rpartition(":")[0] if ":" in registry else registry


def is_insecure(registry: str, insecure: Collection[str]) -> bool:
    """Whether ``registry`` (``host[:port]``) may be spoken to in plain http."""
    host = _host_of(registry)
    return host in _LOCAL_HOSTS or registry in insecure or host in insecure


def registry_base_url(registry: str, insecure: Collection[str] = ()) -> str:
    """The URL the API of ``registry`` answers at: plain http only for this machine
    (``localhost``, ``127.0.0.1``, ``::1``) and the hosts listed in ``insecure``.

    Example:
        >>> registry_base_url("localhost:5000"), registry_base_url("docker.io")
        ('http://localhost:5000', 'https://registry-1.docker.io')
    """
    scheme = "http" if is_insecure(registry, insecure) else "https"
    host = _DOCKER_HUB_API if registry == DEFAULT_REGISTRY else registry
    return f"{scheme}://{host}"


def basic_authorization(creds: Credentials) -> str:
    """The ``Authorization`` value for HTTP Basic auth with ``creds``."""
    pair = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
