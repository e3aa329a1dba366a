"""Registry authentication helpers: credentials, ``WWW-Authenticate`` challenges (RFC 7235
section 4.1, as the distribution spec's ``docs/spec/auth/token.md`` uses them), the rule
for when plain http is allowed, and the credentials ``docker login`` and ``podman login``
leave behind.

Docker keeps them in ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``), podman in
``$REGISTRY_AUTH_FILE`` (``$XDG_RUNTIME_DIR/containers/auth.json``): an ``auths`` object
keyed by registry host with a base64 ``user:password`` in ``auth`` (or ``username`` and
``password``, or an OAuth ``identitytoken``), and ``credHelpers``/``credsStore`` naming a
``docker-credential-<name>`` program that answers ``get`` with ``{"Username", "Secret"}``.
See docker's ``docs/reference/commandline/login.md`` and containers-auth.json(5).

Example:
    >>> parse_challenge('Basic realm="Registry"').scheme
    'basic'
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from containerlib.errors import ImageError
from containerlib.image.reference import DEFAULT_REGISTRY

__all__ = [
    "Challenge",
    "Credentials",
    "auth_files",
    "basic_authorization",
    "credentials_for",
    "is_insecure",
    "parse_challenge",
    "registry_base_url",
]

_DOCKER_HUB_API: Final = "registry-1.docker.io"
# The key ``docker login`` stores Docker Hub's credentials under, and the other names of it.
_DOCKER_HUB_KEY: Final = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES: Final = frozenset({DEFAULT_REGISTRY, "index.docker.io", _DOCKER_HUB_API})
# What a credential helper says (exit 1) when it has nothing for a server.
_HELPER_NOT_FOUND: Final = "credentials not found"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HELPER_TIMEOUT: Final = 60.0
_MAX_CONFIG_SIZE: Final = 1 << 20
_LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


@attrs.frozen(kw_only=True)
class Credentials:
    """A user name and password for a registry; the secrets are never shown.

    Attributes:
        username: the user name.
        password: the password (or a personal access token).
        identity_token: an OAuth refresh token (``docker login``'s ``identitytoken``),
            traded at the registry's token service for an access token instead of the
            password.
    """

    username: str
    password: str = attrs.field(repr=False)
    identity_token: str | None = attrs.field(default=None, repr=False)


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


# -- docker and podman credential files -------------------------------------------------


def auth_files() -> list[Path]:
    """The credential files :func:`credentials_for` reads, in order: docker's
    ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``), then podman's
    ``$REGISTRY_AUTH_FILE`` (``$XDG_RUNTIME_DIR/containers/auth.json``). They need not
    exist."""
    docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    files = [Path(docker_dir) / "config.json"]
    podman = os.environ.get("REGISTRY_AUTH_FILE")
    if podman:
        files.append(Path(podman))
    elif os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    return files


def credentials_for(registry: str) -> Credentials | None:
    """The credentials ``docker login`` or ``podman login`` stored for ``registry``.

    Each file of :func:`auth_files` is read in turn; the first that has credentials for
    the registry wins. In a file, a ``credHelpers`` entry for the registry comes first,
    then ``credsStore``, then the ``auths`` entry. A helper is run as
    ``docker-credential-<name> get`` with the server on its standard input.

    Args:
        registry: the registry as a reference names it: ``"docker.io"``,
            ``"localhost:5000"``.

    Returns:
        The credentials, or None if no file has any for the registry.

    Raises:
        ImageError: a file is not valid JSON or not shaped like a credential file (the
            error names it), or a helper it names is not installed or fails.

    Example:
        >>> credentials_for("registry.invalid:5000") is None  # doctest: +SKIP
        True
    """
    for path in auth_files():
        config = _read_auth_file(path)
        if config is not None:
            found = _credentials_in(config, registry, path)
            if found is not None:
                return found
    return None


def _read_auth_file(path: Path) -> Mapping[str, Any] | None:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_CONFIG_SIZE + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ImageError(f"read credentials {path}: {e.strerror}") from None
    if len(data) > _MAX_CONFIG_SIZE:
        raise ImageError(f"credentials {path}: larger than {_MAX_CONFIG_SIZE} bytes")
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"credentials {path}: not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ImageError(f"credentials {path}: expected a JSON object")
    for key in ("auths", "credHelpers"):
        if not isinstance(config.get(key, {}), dict):
            raise ImageError(f"credentials {path}: {key!r} is not an object")
    if not isinstance(config.get("credsStore", ""), str):
        raise ImageError(f"credentials {path}: 'credsStore' is not a string")
    return config


def _key_host(key: str) -> str | None:
    """The registry a key of ``auths`` or ``credHelpers`` stands for: docker writes URLs
    (``https://index.docker.io/v1/``), podman bare hosts; a podman key with a path
    (``quay.io/team``) is for that namespace only and stands for no whole registry."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            return key[len(scheme) :].partition("/")[0]
    return None if "/" in key else key


def _find_key(entries: Mapping[str, Any], registry: str) -> str | None:
    if registry in entries:
        return registry
    names = _DOCKER_HUB_NAMES if registry in _DOCKER_HUB_NAMES else {registry}
    return next((key for key in entries if _key_host(key) in names), None)


def _credentials_in(config: Mapping[str, Any], registry: str, path: Path) -> Credentials | None:
    helpers: Mapping[str, Any] = config.get("credHelpers", {})
    helper_key = _find_key(helpers, registry)
    helper = helpers[helper_key] if helper_key is not None else config.get("credsStore")
    if helper:
        if not isinstance(helper, str) or not _HELPER_NAME.fullmatch(helper):
            raise ImageError(f"credentials {path}: invalid credential helper name {helper!r}")
        found = _ask_helper(helper, registry, path)
        if found is not None:
            return found
    auths: Mapping[str, Any] = config.get("auths", {})
    key = _find_key(auths, registry)
    return None if key is None else _decode_entry(auths[key], f"credentials {path}: {key!r}")


def _decode_entry(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise ImageError(f"{where}: expected an object")
    fields = {k: entry.get(k) for k in ("auth", "username", "password", "identitytoken")}
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise ImageError(f"{where}: {name!r} is not a string")
    username, password = fields["username"] or "", fields["password"] or ""
    if fields["auth"]:
        try:
            pair = base64.b64decode(fields["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ImageError(f"{where}: 'auth' is not base64 of user:password") from None
        username, colon, password = pair.partition(":")
        if not colon:
            raise ImageError(f"{where}: 'auth' is not base64 of user:password")
    token = fields["identitytoken"] or None
    if not (username or password or token):
        return None  # an empty entry, as docker leaves next to a credsStore
    return Credentials(username=username or "<token>", password=password, identity_token=token)


def _ask_helper(name: str, registry: str, path: Path) -> Credentials | None:
    program = f"docker-credential-{name}"
    executable = shutil.which(program)
    if executable is None:
        raise ImageError(
            f"credentials {path} name the credential helper {program!r}, "
            "which is not installed (no such program on PATH)"
        )
    server = _DOCKER_HUB_KEY if registry in _DOCKER_HUB_NAMES else registry
    try:
        done = subprocess.run(
            [executable, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ImageError(f"{program} get {server}: {e}") from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()
        if _HELPER_NOT_FOUND in said.lower():
            return None
        raise ImageError(f"{program} get {server}: exit status {done.returncode}: {said}")
    try:
        answer = json.loads(done.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, LookupError, TypeError):
        raise ImageError(
            f"{program} get {server}: not a JSON object with Username and Secret"
        ) from None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise ImageError(f"{program} get {server}: Username and Secret must be strings")
    if username == "<token>":  # docker's sign for an identity token
        return Credentials(username=username, password="", identity_token=secret)
    return Credentials(username=username, password=secret)
