"""Pulling images from a registry (the distribution API v2) into an OCI image layout.

A registry serves an image as JSON manifests and content-addressed blobs: ``GET
/v2/<repository>/manifests/<tag or digest>`` answers an image manifest or an index of
them (one per platform), and ``GET /v2/<repository>/blobs/<digest>`` the config and the
layers, often by a redirect to object storage. Access is anonymous, HTTP Basic, or a bearer
token got from the ``realm`` that a 401's ``WWW-Authenticate`` names. Nothing a registry
sends is trusted: every manifest and blob is checked against its digest and size before it
is stored under its final name. See the distribution spec's ``spec/api.md`` and
``docs/spec/auth/token.md``.

Example:
    >>> pull("localhost:5000/team/app:1", "/var/lib/images/app")  # doctest: +SKIP
    Descriptor(media_type='application/vnd.oci.image.manifest.v1+json', ...)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import attrs
import httpx

from containerlib.errors import ImageError, ImageNotFound, LayerError, SpecError
from containerlib.image.layout import (
    MAX_JSON_BLOB_SIZE,
    blob_path,
    choose_platform,
    host_platform,
    open_blob,
)
from containerlib.image.reference import Reference, parse_reference
from containerlib.image.registry_auth import (
    Challenge,
    Credentials,
    basic_authorization,
    is_insecure,
    parse_challenge,
    registry_base_url,
)
from containerlib.spec.image import (
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
)

__all__ = [
    "Challenge",
    "Credentials",
    "Progress",
    "RegistryClient",
    "locked_layout",
    "parse_challenge",
    "pull",
    "read_index",
    "registry_base_url",
    "write_index",
]

#: Called as blobs are downloaded: the blob's descriptor and the bytes received so far.
Progress = Callable[[Descriptor, int], None]

_ACCEPT: Final = ", ".join(
    (
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        MEDIA_TYPE_DOCKER_MANIFEST,
    )
)
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_RETRY_DELAYS: Final = (0.1, 0.3, 0.9)
_MAX_RETRY_AFTER: Final = 5.0
_MAX_REDIRECTS: Final = 5
_MAX_NESTING: Final = 4
_CHUNK: Final = 1 << 20
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _registry_message(response: httpx.Response) -> str:
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


class RegistryClient:
    """A connection to one registry, with its authentication state.

    Authorization goes only to the registry's own origin: a redirect to another host (blob
    storage) is followed without it, and so is everything but the token request.

    Args:
        registry: the registry as a reference names it, ``"localhost:5000"``.
        insecure: registries (``host`` or ``host:port``) to speak plain http to.
        credentials: for Basic auth, and for the bearer token's realm.
        timeout: seconds for each connect and read.
        transport: an httpx transport to use instead of the network.
        name: the name the image gets in ``index.json``; the reference's tag by default.

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
    ) -> None:
        self.registry = registry
        self.base = httpx.URL(registry_base_url(registry, insecure))
        self._insecure = insecure
        self._credentials = credentials
        self._authorization: str | None = None
        self._client = httpx.Client(
            follow_redirects=False, timeout=timeout, transport=transport, trust_env=False
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    # -- sending ---------------------------------------------------------------------------

    def _send(self, method: str, url: httpx.URL, headers: Mapping[str, str]) -> httpx.Response:
        """Send, following redirects here so that credentials stay with the registry."""
        for _ in range(_MAX_REDIRECTS + 1):
            sent = dict(headers)
            if self._authorization is not None and _origin(url) == _origin(self.base):
                sent["Authorization"] = self._authorization
            request = self._client.build_request(method, url, headers=sent)
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
            url = target
        raise ImageError(f"{method} {url}: more than {_MAX_REDIRECTS} redirects")

    def _open(
        self, path: str, what: str, *, headers: Mapping[str, str] | None = None, scope: str = ""
    ) -> httpx.Response:
        """GET ``path`` with retries and authentication; the caller closes the response.

        The response may have any status but 401 (raised as an error) and the retried ones
        while retries last.
        """
        url = self.base.join(path)
        authenticated = False
        attempt = 0
        while True:
            try:
                response = self._send("GET", url, headers or {})
            except httpx.TransportError as e:
                if attempt < len(_RETRY_DELAYS):
                    time.sleep(_RETRY_DELAYS[attempt])
                    attempt += 1
                    continue
                raise ImageError(f"{what}: GET {url}: {type(e).__name__}: {e}") from e
            status = response.status_code
            if status in _RETRY_STATUSES and attempt < len(_RETRY_DELAYS):
                response.close()
                time.sleep(_retry_delay(response, attempt))
                attempt += 1
                continue
            if status == 401 and scope:
                header = response.headers.get("www-authenticate", "")
                response.close()
                if authenticated:
                    raise ImageError(f"{what}: the registry refused the credentials (401)")
                self._authenticate(parse_challenge(header), scope, what)
                authenticated = True
                continue
            return response

    def _authenticate(self, challenge: Challenge | None, scope: str, what: str) -> None:
        if challenge is None:
            raise ImageError(f"{what}: unauthorized (401) and no usable WWW-Authenticate")
        creds = self._credentials
        if challenge.scheme == "basic":
            if creds is None:
                raise ImageError(f"{what}: the registry asks for credentials (Basic auth)")
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
        params = {"scope": challenge.params.get("scope") or scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        auth = httpx.BasicAuth(creds.username, creds.password) if creds is not None else None
        try:
            response = self._client.get(realm_url, params=params, auth=auth)
        except httpx.TransportError as e:
            raise ImageError(f"{what}: get a token from {realm}: {e}") from e
        if response.status_code != 200:
            raise ImageError(f"{what}: get a token from {realm}: {_registry_message(response)}")
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
        response = self._open("/v2/", what)
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
        response = self._open(
            f"/v2/{repository}/manifests/{reference}",
            what,
            headers={"Accept": _ACCEPT},
            scope=f"repository:{repository}:pull",
        )
        with contextlib.closing(response):
            if response.status_code == 404:
                raise ImageNotFound(f"{what}: {_registry_message(response)}")
            if response.status_code != 200:
                raise ImageError(f"{what}: manifest {reference}: {_registry_message(response)}")
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
    ) -> bool:
        """Download a blob into ``layout`` unless a valid copy is there already.

        The bytes go to a temporary file next to the blob, are checked against the
        descriptor's size and digest, and only then renamed to the blob's name.

        Returns:
            True if the blob was downloaded, False if it was already there.

        Raises:
            ImageError: ``error`` (a LayerError by default) for a missing, truncated or
                corrupt blob, naming its digest.
        """
        final = blob_path(layout, descriptor.digest)
        if _has_valid_blob(layout, descriptor):
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        attempt = 0
        while True:
            try:
                self._download(repository, descriptor, final, what, error, progress)
                return True
            except _Retry as e:
                if attempt >= len(_RETRY_DELAYS):
                    raise error(f"{what}: blob {descriptor.digest}: {e}") from None
                time.sleep(_RETRY_DELAYS[attempt])
                attempt += 1

    def _download(
        self,
        repository: str,
        descriptor: Descriptor,
        final: Path,
        what: str,
        error: type[ImageError],
        progress: Progress | None,
    ) -> None:
        name = f"blob {descriptor.digest}"
        response = self._open(
            f"/v2/{repository}/blobs/{descriptor.digest}",
            what,
            scope=f"repository:{repository}:pull",
        )
        with contextlib.closing(response), _temporary(final) as (fd, temp):
            if response.status_code != 200:
                raise error(f"{what}: {name}: {_registry_message(response)}")
            digest = hashlib.new(descriptor.algorithm)
            count = 0
            try:
                for chunk in response.iter_raw(_CHUNK):
                    count += len(chunk)
                    if count > descriptor.size:
                        raise error(f"{what}: {name} is larger than its {descriptor.size} bytes")
                    digest.update(chunk)
                    _write_all(fd, chunk)
                    if progress is not None:
                        progress(descriptor, count)
            except httpx.TransportError as e:
                raise _Retry(f"truncated after {count} of {descriptor.size} bytes: {e}") from e
            if count != descriptor.size:
                raise error(
                    f"{what}: {name} is truncated: {count} of {descriptor.size} bytes received"
                )
            actual = f"{descriptor.algorithm}:{digest.hexdigest()}"
            if actual != descriptor.digest:
                raise error(f"{what}: {name} does not match its digest: got {actual}")
            os.fsync(fd)
            os.replace(temp, final)


class _Retry(Exception):
    """A download that broke off and may succeed if tried again."""


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    try:
        after = float(response.headers.get("retry-after", ""))
    except ValueError:
        after = 0.0
    return min(max(after, _RETRY_DELAYS[attempt]), _MAX_RETRY_AFTER)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def _temporary(final: Path) -> Iterator[tuple[int, Path]]:
    """A temporary file next to ``final``, removed unless it was renamed to ``final``."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".partial-{final.name[:16]}-")
    temp = Path(name)
    try:
        yield fd, temp
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _has_valid_blob(layout: Path, descriptor: Descriptor) -> bool:
    try:
        with open_blob(layout, descriptor) as reader:
            reader.verify()
    except LayerError:
        return False
    return True


def _write_file_atomically(path: Path, data: bytes) -> None:
    with _temporary(path) as (fd, temp):
        _write_all(fd, data)
        os.fsync(fd)
        os.replace(temp, path)


def _store_manifest(layout: Path, descriptor: Descriptor, data: bytes) -> None:
    if not _has_valid_blob(layout, descriptor):
        _write_file_atomically(blob_path(layout, descriptor.digest), data)


@contextlib.contextmanager
def locked_layout(layout: Path) -> Iterator[None]:
    """Make ``layout`` an OCI layout if it is not one, and hold its lock (flock on the
    directory) so that concurrent pulls do not lose each other's ``index.json`` entries."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    fd = os.open(layout, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        marker = layout / "oci-layout"
        if not marker.exists():
            _write_file_atomically(marker, b'{"imageLayoutVersion":"1.0.0"}')
        if not (layout / "index.json").exists():
            write_index(layout, Index())
        yield
    finally:
        os.close(fd)


def read_index(layout: Path) -> Index:
    """The layout's ``index.json`` (empty if there is none yet).

    Raises:
        ImageError: it is not a valid index.
    """
    path = layout / "index.json"
    try:
        return Index.from_dict(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return Index()
    except (ValueError, SpecError) as e:
        raise ImageError(f"read {path}: {e}") from None


def write_index(layout: Path, index: Index) -> None:
    """Replace the layout's ``index.json`` at once (written aside, then renamed)."""
    data = json.dumps(index.to_dict(), separators=(",", ":"), sort_keys=True).encode()
    _write_file_atomically(layout / "index.json", data)


def _add_to_index(layout: Path, descriptor: Descriptor, name: str | None) -> None:
    index = read_index(layout)
    if name is not None:
        descriptor = attrs.evolve(
            descriptor, annotations={**descriptor.annotations, ANNOTATION_REF_NAME: name}
        )
        kept = [d for d in index.manifests if d.ref_name != name]
    elif any(d.digest == descriptor.digest for d in index.manifests):
        return  # pulled by digest: the layout finds it by digest already
    else:
        kept = list(index.manifests)
    write_index(layout, attrs.evolve(index, manifests=[*kept, descriptor]))


def _parse_json(data: bytes, what: str, parse: Callable[[Mapping[str, Any]], Any]) -> Any:
    try:
        return parse(json.loads(data))
    except (ValueError, SpecError) as e:
        raise LayerError(f"{what}: {e}") from None


def pull(
    reference: str | Reference,
    layout: str | os.PathLike[str],
    *,
    insecure: Collection[str] = (),
    credentials: Credentials | None = None,
    platform: Platform | None = None,
    progress: Progress | None = None,
    transport: httpx.BaseTransport | None = None,
    name: str | None = None,
) -> Descriptor:
    """Download an image from its registry into the OCI image layout ``layout``.

    The layout is made if it does not exist. An index or manifest list is resolved to the
    manifest for ``platform``; that manifest, its config and its layers are stored as blobs
    (those already present and valid are not downloaded again), and ``index.json`` gains
    the manifest, named by the reference's tag (replacing an older image of that name).
    Docker and OCI media types are stored as the registry sends them.

    Args:
        reference: what to pull, ``"localhost:5000/team/app:1"`` or ``…@sha256:…``.
        layout: the OCI layout directory.
        insecure: registries to speak plain http to, besides this machine's.
        credentials: for registries that ask for them.
        platform: the platform to choose from a multi-platform image; this machine's
            by default.
        progress: called with a blob's descriptor and its bytes received so far.
        transport: an httpx transport to use instead of the network.

    Returns:
        The descriptor of the stored manifest, as added to ``index.json``.

    Raises:
        SpecError: ``reference`` is not a valid image reference.
        ImageNotFound: no such repository, tag or digest, or no manifest for the platform.
        LayerError: a manifest or blob fails its digest or size, or is truncated.
        ImageError: the registry cannot be reached, refuses access, or sends nonsense.

    Example:
        >>> d = pull("localhost:5000/test/busybox:1", "/tmp/layout")  # doctest: +SKIP
        >>> Image.from_oci_layout("/tmp/layout", ref="1")  # doctest: +SKIP
    """
    ref = (
        reference
        if isinstance(reference, Reference)
        else parse_reference(reference, field="reference")
    )
    wanted = platform or host_platform()
    root = Path(layout)
    what = f"pull {ref}"
    with RegistryClient(
        ref.registry, insecure=insecure, credentials=credentials, transport=transport
    ) as client:
        client.ping(what)
        target = ref.digest or ref.tag or "latest"
        descriptor, data = client.get_manifest(ref.repository, target, what)
        for _ in range(_MAX_NESTING):
            if descriptor.media_type not in INDEX_MEDIA_TYPES:
                break
            index: Index = _parse_json(data, f"{what}: index {descriptor.digest}", Index.from_dict)
            chosen = choose_platform(index.manifests, wanted, f"{what}: index {descriptor.digest}")
            descriptor, data = client.get_manifest(ref.repository, chosen.digest, what)
            if descriptor.size != chosen.size:
                raise LayerError(
                    f"{what}: manifest {chosen.digest} has {descriptor.size} bytes, "
                    f"its index says {chosen.size}"
                )
            descriptor = attrs.evolve(descriptor, platform=chosen.platform)
        else:
            raise LayerError(f"{what}: indexes nested deeper than {_MAX_NESTING}")
        manifest: Manifest = _parse_json(
            data, f"{what}: manifest {descriptor.digest}", Manifest.from_dict
        )
        with locked_layout(root):
            client.fetch_blob(
                ref.repository, manifest.config, root, what, error=ImageError, progress=progress
            )
            for layer in manifest.layers:
                client.fetch_blob(ref.repository, layer, root, what, progress=progress)
            _store_manifest(root, descriptor, data)
            _add_to_index(root, descriptor, name if name is not None else ref.tag)
    return descriptor
