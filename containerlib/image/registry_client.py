"""A client of the distribution API v2: one registry, its authentication, its blobs.

Requests are retried when the registry is busy (429, 5xx) or the connection breaks, and
authenticated when it answers 401: with HTTP Basic, or with a bearer token got from the
``realm`` that the ``WWW-Authenticate`` challenge names (``docs/spec/auth/token.md``).
Redirects are followed here rather than by httpx, so that credentials never leave the
registry's own origin. Blob downloads resume where they broke off when the registry
honours ``Range`` (RFC 9110 section 14). See the distribution spec's ``spec/api.md``.

Example:
    >>> with RegistryClient("localhost:5000") as client:  # doctest: +SKIP
    ...     client.ping("ping")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import httpx

from containerlib._closing import Closing
from containerlib.errors import ImageError, ImageNotFound, LayerError
from containerlib.image import layout_write
from containerlib.image.layout import MAX_JSON_BLOB_SIZE, blob_path
from containerlib.image.registry_auth import (
    Challenge,
    Credentials,
    basic_authorization,
    is_insecure,
    parse_challenge,
    registry_base_url,
)
from containerlib.spec.image import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
)

__all__ = ["RETRY_DELAYS", "Body", "Cancelled", "Progress", "RegistryClient", "registry_message"]

#: Called as blobs are downloaded: the blob's descriptor and the bytes received so far.
#: A pull fetches several blobs at once, so it may be called from several threads.
Progress = Callable[[Descriptor, int], None]
#: A request's body: bytes, or a function that returns its chunks, called anew for each
#: time the request is sent (a retry, a redirect, a renewed authorization).
Body = bytes | Callable[[], Iterable[bytes]] | None

_ACCEPT: Final = ", ".join(
    (
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
    )
)
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: The pauses, in seconds, before each retry of a request.
RETRY_DELAYS: Final = (0.1, 0.3, 0.9)
_MAX_RETRY_AFTER: Final = 5.0
_MAX_REDIRECTS: Final = 5
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def registry_message(response: httpx.Response) -> str:
    """What went wrong, from the registry's ``{"errors": [...]}`` body if it sent one."""
    reason = response.reason_phrase.lower() or "error"
    try:
        response.read()
        errors = response.json().get("errors")
        first = errors[0]
        message = str(first.get("message") or first.get("code") or reason)
    except (ValueError, LookupError, TypeError, AttributeError, httpx.HTTPError):
        message = reason
    return f"{message} ({response.status_code})"


def _content_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).partition(";")[0].strip()


class RegistryClient(Closing):
    """A connection to one registry, with its authentication state.

    Authorization goes only to the registry's own origin: a redirect to another host (blob
    storage) is followed without it, and so is everything but the token request. A client
    may be used from several threads at once.

    Args:
        registry: the registry as a reference names it, ``"localhost:5000"``.
        insecure: registries (``host`` or ``host:port``) to speak plain http to.
        credentials: for Basic auth, and for the bearer token's realm.
        timeout: seconds for each connect and read.
        transport: an httpx transport to use instead of the network.
        find_credentials: called with the registry's name, the first time the registry
            asks for credentials, when ``credentials`` is None (see
            :func:`~containerlib.image.registry_auth.credentials_for`).

    Example:
        >>> with RegistryClient("localhost:5000") as client:  # doctest: +SKIP
        ...     client.ping("ping")
    """

    def __init__(
        self,
        registry: str,
        *,
        insecure: Collection[str] = (),
        credentials: Credentials | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        find_credentials: Callable[[str], Credentials | None] | None = None,
    ) -> None:
        self.registry = registry
        self.base = httpx.URL(registry_base_url(registry, insecure))
        self._insecure = insecure
        self._credentials = credentials
        self._find_credentials = find_credentials if credentials is None else None
        self._authorization: str | None = None
        # Held while the authorization is renewed, so that threads that all got a 401 at
        # once ask the token service once.
        self._auth_lock = threading.Lock()
        self._client = httpx.Client(
            follow_redirects=False, timeout=timeout, transport=transport, trust_env=False
        )

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    # -- sending ---------------------------------------------------------------------------

    def _send(
        self, method: str, url: httpx.URL, headers: Mapping[str, str], body: Body
    ) -> httpx.Response:
        """Send, following redirects here so that credentials stay with the registry.

        A 307 or 308 repeats the request with its body (made anew from ``body``); any
        other redirect of a request other than GET or HEAD becomes a GET, as in browsers.
        """
        for _ in range(_MAX_REDIRECTS + 1):
            sent = dict(headers)
            authorization = self._authorization
            if authorization is not None and _origin(url) == _origin(self.base):
                sent["Authorization"] = authorization
            content = body() if callable(body) else body
            request = self._client.build_request(method, url, headers=sent, content=content)
            response = self._client.send(request, stream=True)
            location = response.headers.get("location")
            if not (response.is_redirect and location):
                return response
            response.close()
            target = url.join(location)
            if target.scheme not in _DEFAULT_PORTS or (
                url.scheme == "https" and target.scheme == "http"
            ):
                raise ImageError(f"{method} {url}: refused redirect to {target}")
            if response.status_code not in (307, 308) and method not in ("GET", "HEAD"):
                method, body = "GET", None
                headers = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in ("content-length", "content-type", "content-range")
                }
            url = target
        raise ImageError(f"{method} {url}: more than {_MAX_REDIRECTS} redirects")

    def request(
        self,
        method: str,
        path: str | httpx.URL,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        scopes: Sequence[str] = (),
        retry_statuses: Collection[int] = _RETRY_STATUSES,
    ) -> httpx.Response:
        """Send a request with retries and authentication; the caller closes the response.

        Args:
            method: ``"GET"``, ``"HEAD"``, ``"PUT"``, ...
            path: a path on the registry, or a URL (an upload's ``Location``).
            what: the operation, to begin error messages with.
            headers: headers to send besides ``Authorization``.
            body: bytes, or a function that returns the body's chunks anew for each try
                (the request is sent again after a redirect, a retry or a 401).
            scopes: the token scopes to ask for when the registry answers 401; without
                them a 401 is returned like any other status.
            retry_statuses: statuses to try again after a pause (three times).

        Returns:
            The response, streamed: any status but 401 (raised as an error) and the
            retried ones while retries last.

        Raises:
            ImageError: the registry cannot be reached, or refuses the credentials.
        """
        url = self.base.join(path)
        authenticated = False
        attempt = 0
        while True:
            try:
                response = self._send(method, url, headers or {}, body)
            except httpx.TransportError as e:
                if attempt < len(RETRY_DELAYS):
                    time.sleep(RETRY_DELAYS[attempt])
                    attempt += 1
                    continue
                raise ImageError(f"{what}: {method} {url}: {type(e).__name__}: {e}") from e
            status = response.status_code
            if status in retry_statuses and attempt < len(RETRY_DELAYS):
                response.close()
                time.sleep(_retry_delay(response, attempt))
                attempt += 1
                continue
            if status == 401 and scopes:
                header = response.headers.get("www-authenticate", "")
                used = response.request.headers.get("authorization")
                message = registry_message(response) if method != "HEAD" else "(401)"
                response.close()
                if authenticated:
                    raise ImageError(
                        f"{what}: denied: the registry refused the credentials: {message}"
                    )
                with self._auth_lock:
                    if self._authorization == used:  # else another thread renewed it
                        self._authenticate(parse_challenge(header), scopes, what)
                authenticated = True
                continue
            return response

    def _credentials_to_use(self) -> Credentials | None:
        if self._credentials is None and self._find_credentials is not None:
            self._credentials = self._find_credentials(self.registry)
            self._find_credentials = None
        return self._credentials

    def _authenticate(self, challenge: Challenge | None, scopes: Sequence[str], what: str) -> None:
        if challenge is None:
            raise ImageError(f"{what}: unauthorized (401) and no usable WWW-Authenticate")
        creds = self._credentials_to_use()
        if challenge.scheme == "basic":
            if creds is None:
                raise ImageError(f"{what}: denied: the registry asks for credentials (Basic auth)")
            self._authorization = basic_authorization(creds)
            return
        if challenge.scheme != "bearer":
            raise ImageError(f"{what}: unsupported authentication scheme {challenge.scheme!r}")
        realm = challenge.params.get("realm")
        if not realm:
            raise ImageError(f"{what}: the registry's Bearer challenge names no realm")
        realm_url = httpx.URL(realm)
        if realm_url.scheme != "https" and not (
            realm_url.scheme == "http"
            and is_insecure(realm_url.netloc.decode("ascii"), self._insecure)
        ):
            raise ImageError(f"{what}: refusing token realm {realm!r}: not https")
        wanted = list(dict.fromkeys([challenge.params.get("scope") or scopes[0], *scopes]))
        service = challenge.params.get("service")
        try:
            if creds is not None and creds.identity_token:
                # docker login's identity token is an OAuth2 refresh token (token.md's
                # "oauth.md"): traded for an access token with a POST.
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "client_id": "containerlib",
                    "scope": " ".join(wanted),
                    **({"service": service} if service else {}),
                }
                response = self._client.post(realm_url, data=form)
            else:
                params: dict[str, str | list[str]] = {"scope": wanted}
                if service is not None:
                    params["service"] = service
                auth = (
                    httpx.BasicAuth(creds.username, creds.password) if creds is not None else None
                )
                response = self._client.get(realm_url, params=params, auth=auth)
        except httpx.TransportError as e:
            raise ImageError(f"{what}: get a token from {realm}: {e}") from e
        if response.status_code != 200:
            denied = "denied: " if response.status_code in (401, 403) else ""
            raise ImageError(
                f"{what}: {denied}get a token from {realm}: {registry_message(response)}"
            )
        try:
            answer = response.json()
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ImageError(f"{what}: the token service {realm} answered no token")
        self._authorization = f"Bearer {token}"

    # -- the API ---------------------------------------------------------------------------

    def ping(self, what: str) -> None:
        """Check that the registry speaks the v2 API (``GET /v2/``; a 401 is fine).

        Raises:
            ImageError: the registry cannot be reached or does not answer the v2 API.
        """
        response = self.request("GET", "/v2/", what)
        with contextlib.closing(response):
            if response.status_code not in (200, 401):
                raise ImageError(f"{what}: {self.base} is no v2 registry: {response.status_code}")

    def get_manifest(self, repository: str, reference: str, what: str) -> tuple[Descriptor, bytes]:
        """Fetch a manifest or index by tag or digest, verified if a digest names it.

        Returns:
            Its descriptor (media type, digest, size) and its bytes.

        Raises:
            ImageNotFound: the registry has no such repository or manifest.
            ImageError: any other failure; LayerError if the bytes fail their digest.
        """
        response = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            what,
            headers={"Accept": _ACCEPT},
            scopes=(f"repository:{repository}:pull",),
        )
        with contextlib.closing(response):
            if response.status_code == 404:
                raise ImageNotFound(f"{what}: {registry_message(response)}")
            if response.status_code != 200:
                raise ImageError(f"{what}: manifest {reference}: {registry_message(response)}")
            data = bytearray()
            try:
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_JSON_BLOB_SIZE:
                        raise LayerError(f"{what}: manifest {reference} is larger than 16 MiB")
            except httpx.TransportError as e:
                raise ImageError(f"{what}: manifest {reference}: {e}") from e
            media_type = _content_type(response)
            sent_digest = response.headers.get("docker-content-digest")
        body = bytes(data)
        if media_type not in INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES:
            try:
                document = json.loads(body)
                media_type = document.get("mediaType") or ""
            except (ValueError, AttributeError):
                media_type = ""
        if media_type not in INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES:
            raise ImageError(f"{what}: manifest {reference} has unsupported media type")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = reference if ":" in reference else sent_digest
        if expected is not None and expected.startswith("sha256:") and expected != digest:
            raise LayerError(f"{what}: manifest {expected} does not match its digest: {digest}")
        return Descriptor(media_type=media_type, digest=digest, size=len(body)), body

    def fetch_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        layout: Path,
        what: str,
        *,
        error: type[ImageError] = LayerError,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Download a blob into ``layout`` unless a valid copy is there already.

        The bytes go to a temporary file next to the blob, are checked against the
        descriptor's size and digest, and only then renamed to the blob's name. A download
        that breaks off is tried again from where it stopped (``Range: bytes=<n>-``) if
        the registry answers that with 206, and from the start otherwise.

        Args:
            repository: the repository on the registry.
            descriptor: the blob's descriptor, from its manifest.
            layout: the OCI layout to store it in.
            what: the operation, to begin error messages with.
            error: the error to raise for a bad blob.
            progress: called with the descriptor and the bytes received so far.
            cancel: set by another thread to stop the download (its temporary file is
                removed and ``Cancelled`` raised).

        Returns:
            True if the blob was downloaded, False if it was already there.

        Raises:
            ImageError: ``error`` (a LayerError by default) for a missing, truncated or
                corrupt blob, naming its digest.
        """
        final = blob_path(layout, descriptor.digest)
        if layout_write.has_valid_blob(layout, descriptor):
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        name = f"blob {descriptor.digest}"
        with layout_write.temporary(final) as (fd, temp):
            got = _Partial(fd, hashlib.new(descriptor.algorithm))
            attempt = 0
            while True:
                try:
                    self._download(repository, descriptor, got, what, error, progress, cancel)
                    break
                except _Retry as e:
                    if attempt >= len(RETRY_DELAYS):
                        raise error(f"{what}: {name}: {e}") from None
                    if cancel is not None and cancel.wait(RETRY_DELAYS[attempt]):
                        raise Cancelled from None
                    if cancel is None:
                        time.sleep(RETRY_DELAYS[attempt])
                    attempt += 1
            if got.count != descriptor.size:
                raise error(
                    f"{what}: {name} is truncated: {got.count} of {descriptor.size} bytes received"
                )
            actual = f"{descriptor.algorithm}:{got.hash.hexdigest()}"
            if actual != descriptor.digest:
                raise error(f"{what}: {name} does not match its digest: got {actual}")
            os.fsync(fd)
            os.replace(temp, final)
        return True

    def _download(
        self,
        repository: str,
        descriptor: Descriptor,
        got: _Partial,
        what: str,
        error: type[ImageError],
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> None:
        """One try at the blob's bytes, appended to what ``got`` holds already."""
        name = f"blob {descriptor.digest}"
        headers = {"Range": f"bytes={got.count}-"} if got.count else {}
        response = self.request(
            "GET",
            f"/v2/{repository}/blobs/{descriptor.digest}",
            what,
            headers=headers,
            scopes=(f"repository:{repository}:pull",),
        )
        with contextlib.closing(response):
            status = response.status_code
            if status == 206 and got.count:
                expected = f"bytes {got.count}-{descriptor.size - 1}/"
                answered = response.headers.get("content-range", "")
                if not answered.startswith(expected) or answered[len(expected) :] not in (
                    str(descriptor.size),
                    "*",
                ):
                    got.restart(descriptor.algorithm)
                    raise _Retry(f"the registry answered another range: {answered!r}")
            elif status == 200:
                got.restart(descriptor.algorithm)  # all of it again, from the start
            else:
                raise error(f"{what}: {name}: {registry_message(response)}")
            try:
                for chunk in response.iter_raw():  # as received: a break keeps every byte
                    if cancel is not None and cancel.is_set():
                        raise Cancelled
                    if got.count + len(chunk) > descriptor.size:
                        raise error(f"{what}: {name} is larger than its {descriptor.size} bytes")
                    got.append(chunk)
                    if progress is not None:
                        progress(descriptor, got.count)
            except httpx.TransportError as e:
                raise _Retry(f"truncated after {got.count} of {descriptor.size} bytes: {e}") from e


class _Partial:
    """A blob being downloaded: its temporary file, the bytes in it and their hash."""

    def __init__(self, fd: int, digest: hashlib._Hash) -> None:
        self.fd = fd
        self.hash = digest
        self.count = 0

    def append(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        layout_write.write_all(self.fd, chunk)
        self.count += len(chunk)

    def restart(self, algorithm: str) -> None:
        if self.count:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
            self.hash = hashlib.new(algorithm)
            self.count = 0


class Cancelled(Exception):
    """A download stopped because another one of the same pull failed."""


class _Retry(Exception):
    """A download that broke off and may succeed if tried again."""


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    try:
        after = float(response.headers.get("retry-after", ""))
    except ValueError:
        after = 0.0
    return min(max(after, RETRY_DELAYS[attempt]), _MAX_RETRY_AFTER)
