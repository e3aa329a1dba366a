"""Pushing an image from an OCI image layout to a registry (the distribution API v2).

A push sends the blobs first and the manifest last, so that a registry never holds a
manifest whose blobs it lacks. A blob the repository has already (``HEAD`` answers 200) is
skipped; one that another repository of the same registry has is *mounted* from it
(``POST …/blobs/uploads/?mount=<digest>&from=<repository>``, 201) without sending a byte;
anything else is uploaded in an upload session: ``POST`` opens it, its ``Location`` names
it, and a ``PUT ?digest=`` closes it, with the whole blob in the ``PUT`` (monolithic) or
sent before in ``PATCH`` requests with a ``Content-Range`` each (chunked). The registry
checks each blob against its digest, and containerlib checks it while reading it from the
layout. See the distribution spec's ``spec/api.md`` ("Pushing an image").

Example:
    >>> manifest = read_index(Path("layout")).manifests[0]  # doctest: +SKIP
    >>> push(Path("layout"), manifest, "localhost:5000/team/app:1")  # doctest: +SKIP
    Descriptor(media_type='application/vnd.oci.image.manifest.v1+json', ...)
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Final

import attrs
import httpx

from containerlib.errors import ImageError, LayerError, SpecError
from containerlib.image.layout import open_blob, read_blob
from containerlib.image.layout_write import read_index
from containerlib.image.reference import Reference, parse_reference
from containerlib.image.registry_auth import Credentials, credentials_for
from containerlib.image.registry_client import (
    RETRY_DELAYS,
    Progress,
    RegistryClient,
    registry_message,
)
from containerlib.spec.image import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
    Descriptor,
    Index,
    Manifest,
)

__all__ = ["push"]

# A push may retry on a plain 500 too: every step either starts anew (POST, HEAD) or is
# checked by the registry against a digest (PUT), so sending it twice does no harm.
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_CHUNK: Final = 1 << 20
_OCTET_STREAM: Final = "application/octet-stream"
_FOREIGN_LAYER_MEDIA_TYPES: Final = frozenset(
    {
        MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


class _Restart(Exception):
    """The upload session was lost (404) or got out of step (416): start a new one."""


@attrs.frozen
class _Target:
    """Where a push goes, and what every request of it needs."""

    client: RegistryClient
    repository: str
    what: str
    scopes: tuple[str, ...]


def push(
    layout: Path,
    manifest: Descriptor,
    reference: str | Reference,
    *,
    insecure: Collection[str] = (),
    credentials: Credentials | None = None,
    progress: Progress | None = None,
    transport: httpx.BaseTransport | None = None,
    chunk_size: int | None = None,
) -> Descriptor:
    """Upload the image whose manifest ``manifest`` names from the OCI layout ``layout``.

    The config and the layers go first: each is skipped if the repository has it, mounted
    from another repository of the same registry if an image of ``layout`` named on that
    registry (``index.json``'s ``org.opencontainers.image.ref.name``, e.g.
    ``localhost:5000/team/base:1``) uses it, and uploaded otherwise. Then the manifest is
    stored under the reference's tag (or digest) with its bytes exactly as in the layout.
    Foreign (non-distributable) layers are not sent, as with ``docker push``. Nothing in
    the layout changes.

    An index (a multi-platform image) is pushed with every platform's manifest, each
    under its digest, and then the index under the tag; every manifest it lists must be
    in the layout.

    Args:
        layout: the OCI layout directory.
        manifest: the descriptor of an image manifest (OCI or Docker schema 2) or of an
            index in it.
        reference: where to push, ``"localhost:5000/team/app:1"``; without a tag,
            ``latest``.
        insecure: registries to speak plain http to, besides this machine's.
        credentials: for registries that ask for them; by default those ``docker login``
            or ``podman login`` stored, looked up only if the registry asks.
        progress: called with a blob's descriptor and the bytes of it sent so far; not
            called for blobs that needed no upload.
        transport: an httpx transport to use instead of the network.
        chunk_size: upload each blob in ``PATCH`` requests of this many bytes (at least
            the registry's ``OCI-Chunk-Min-Length``) instead of one ``PUT``.

    Returns:
        The descriptor of the pushed manifest (media type, digest, size, platform).

    Raises:
        SpecError: ``reference`` is not an image reference, names another manifest's
            digest, or ``chunk_size`` is not positive.
        LayerError: a blob of the image is missing from the layout or fails its digest.
        ImageError: the registry cannot be reached, refuses
            access (``push <reference>: denied: …``), or rejects a blob or the manifest;
            the registry's own message is in the text.

    Example:
        >>> push(Path("layout"), manifest, "localhost:5000/team/app:1")  # doctest: +SKIP
    """
    ref = (
        reference
        if isinstance(reference, Reference)
        else parse_reference(reference, field="reference")
    )
    what = f"push {ref}"
    if chunk_size is not None and chunk_size <= 0:
        raise SpecError("chunk_size", f"must be a positive number of bytes, not {chunk_size}")
    if ref.digest is not None and ref.digest != manifest.digest:
        raise SpecError(
            "reference", f"{ref} names digest {ref.digest}, the manifest is {manifest.digest}"
        )
    data = read_blob(layout, manifest)
    if manifest.media_type in INDEX_MEDIA_TYPES:
        # A multi-platform image: every platform's manifest by digest, then the index.
        try:
            children = Index.from_dict(json.loads(data)).manifests
        except (ValueError, SpecError) as e:
            raise LayerError(f"{what}: index {manifest.digest}: {e}") from None
        images = [_read_manifest(layout, child, what) for child in children]
    elif manifest.media_type in MANIFEST_MEDIA_TYPES:
        images = []
    else:
        raise ImageError(f"{what}: {manifest.digest} has media type {manifest.media_type!r}")
    if not images:
        images = [_read_manifest(layout, manifest, what)]
        top = None
    else:
        top = (manifest, data)
    # Foreign (non-distributable) layers stay where their URLs say, as docker push does.
    wanted: dict[str, Descriptor] = {}
    for _, _, parsed in images:
        for d in (parsed.config, *parsed.layers):
            if d.media_type not in _FOREIGN_LAYER_MEDIA_TYPES:
                wanted.setdefault(d.digest, d)
    blobs = list(wanted.values())
    for blob in blobs:  # all there before the first request
        open_blob(layout, blob).close()
    sources = _mount_sources(layout, ref, {blob.digest for blob in blobs})
    others = sorted({found[0] for found in sources.values()})  # the ones mounted from
    scopes = (
        f"repository:{ref.repository}:pull,push",
        *(f"repository:{repository}:pull" for repository in others),
    )
    with RegistryClient(
        ref.registry,
        insecure=insecure,
        credentials=credentials,
        transport=transport,
        find_credentials=credentials_for,
    ) as client:
        target = _Target(client, ref.repository, what, scopes)
        client.ping(what)
        for blob in blobs:
            if not _blob_exists(target, blob):
                _send_blob(target, layout, blob, sources.get(blob.digest, ()), progress, chunk_size)
        tag = ref.tag or ref.digest or "latest"
        if top is None:
            _put_manifest(target, manifest, images[0][1], tag)
        else:
            for child, child_data, _ in images:
                _put_manifest(target, child, child_data, child.digest)
            _put_manifest(target, manifest, top[1], tag)
    return Descriptor(
        media_type=manifest.media_type,
        digest=manifest.digest,
        size=manifest.size,
        platform=manifest.platform,
    )


def _read_manifest(
    layout: Path, descriptor: Descriptor, what: str
) -> tuple[Descriptor, bytes, Manifest]:
    """An image manifest of the layout: its descriptor, bytes and contents.

    Raises:
        LayerError: it is missing, fails its digest, or is not an image manifest.
    """
    if descriptor.media_type not in MANIFEST_MEDIA_TYPES:
        raise LayerError(
            f"{what}: {descriptor.digest} has media type {descriptor.media_type!r}, "
            "not an image manifest"
        )
    data = read_blob(layout, descriptor)
    try:
        return descriptor, data, Manifest.from_dict(json.loads(data))
    except (ValueError, SpecError) as e:
        raise LayerError(f"{what}: manifest {descriptor.digest}: {e}") from None


def _mount_sources(layout: Path, ref: Reference, wanted: set[str]) -> dict[str, list[str]]:
    """For each wanted blob, the other repositories of ``ref``'s registry whose images in
    ``layout`` (by their full names in ``index.json``) use it. An entry that cannot be
    read offers nothing: mounting only saves an upload."""
    found: dict[str, list[str]] = {}
    for entry in read_index(layout).manifests:
        name = entry.ref_name
        if name is None or not name.startswith(f"{ref.registry}/"):
            continue
        try:
            other = parse_reference(name, default_tag=None)
        except SpecError:
            continue
        if other.registry != ref.registry or other.repository == ref.repository:
            continue
        for digest in _blobs_used(layout, entry) & wanted:
            if other.repository not in found.setdefault(digest, []):
                found[digest].append(other.repository)
    return found


def _blobs_used(layout: Path, descriptor: Descriptor) -> set[str]:
    used: set[str] = set()
    pending = [descriptor]
    while pending:
        d = pending.pop()
        if d.digest in used:
            continue
        used.add(d.digest)
        try:
            if d.media_type in INDEX_MEDIA_TYPES:
                pending += Index.from_dict(json.loads(read_blob(layout, d))).manifests
            elif d.media_type in MANIFEST_MEDIA_TYPES:
                manifest = Manifest.from_dict(json.loads(read_blob(layout, d)))
                used |= {manifest.config.digest, *(layer.digest for layer in manifest.layers)}
        except (ValueError, SpecError, LayerError):
            continue  # a platform that was not pulled, or a broken entry
    return used


def _fail(target: _Target, response: httpx.Response, action: str) -> ImageError:
    denied = "denied: " if response.status_code in (401, 403) else ""
    return ImageError(f"{target.what}: {denied}{action}: {registry_message(response)}")


def _blob_exists(target: _Target, blob: Descriptor) -> bool:
    response = target.client.request(
        "HEAD",
        f"/v2/{target.repository}/blobs/{blob.digest}",
        target.what,
        scopes=target.scopes,
        retry_statuses=_RETRY_STATUSES,
    )
    with contextlib.closing(response):
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise _fail(target, response, f"check blob {blob.digest}")


def _send_blob(
    target: _Target,
    layout: Path,
    blob: Descriptor,
    sources: Sequence[str],
    progress: Progress | None,
    chunk_size: int | None,
) -> None:
    """Mount or upload one blob, starting over with a new session if one is lost."""
    attempt = 0
    while True:
        # Mount only on the first try: a source that failed once will fail again.
        session = _start_upload(target, blob, sources if attempt == 0 else ())
        if session is None:
            return  # mounted
        try:
            if chunk_size is None:
                _upload_whole(target, layout, blob, session, progress)
            else:
                _upload_chunks(target, layout, blob, session, progress, chunk_size)
            return
        except _Restart as e:
            if attempt == len(RETRY_DELAYS):
                raise ImageError(f"{target.what}: upload blob {blob.digest}: {e}") from None
            time.sleep(RETRY_DELAYS[attempt])
            attempt += 1


@attrs.frozen
class _Session:
    """An open upload: where to send the next request, and the smallest chunk allowed."""

    url: httpx.URL
    min_chunk: int = 0


def _session_after(target: _Target, response: httpx.Response, action: str) -> _Session:
    location = response.headers.get("location")
    if not location:
        raise ImageError(f"{target.what}: {action}: the registry sent no Location")
    try:
        min_chunk = int(response.headers.get("oci-chunk-min-length", "0"))
    except ValueError:
        min_chunk = 0
    # Relative or absolute; its query (the registry's session state) is kept as it is.
    return _Session(response.url.join(location), max(min_chunk, 0))


def _start_upload(target: _Target, blob: Descriptor, sources: Sequence[str]) -> _Session | None:
    """Mount the blob from the first of ``sources`` (None when that worked), or open an
    upload session for it."""
    url = target.client.base.join(f"/v2/{target.repository}/blobs/uploads/")
    if sources:
        url = url.copy_merge_params({"mount": blob.digest, "from": sources[0]})
    response = target.client.request(
        "POST",
        url,
        target.what,
        headers={"Content-Length": "0"},
        body=b"",
        scopes=target.scopes,
        retry_statuses=_RETRY_STATUSES,
    )
    with contextlib.closing(response):
        action = f"upload blob {blob.digest}"
        if sources and response.status_code == 201:
            return None
        if response.status_code != 202:
            raise _fail(target, response, action)
        return _session_after(target, response, action)


def _check_upload_step(target: _Target, response: httpx.Response, ok: int, action: str) -> None:
    if response.status_code in (404, 416):
        raise _Restart(registry_message(response))
    if response.status_code != ok:
        raise _fail(target, response, action)


def _blob_chunks(
    layout: Path, blob: Descriptor, progress: Progress | None
) -> Callable[[], Iterator[bytes]]:
    """The blob's bytes, read anew for each try. The last chunk is held back until the
    whole blob is verified, so that a corrupt blob never reaches the registry whole."""

    def chunks() -> Iterator[bytes]:
        with open_blob(layout, blob) as reader:
            sent = 0
            held = reader.read(_CHUNK)
            if not held:
                reader.verify()
            while held:
                following = reader.read(_CHUNK)
                if not following:
                    reader.verify()
                yield held
                sent += len(held)
                if progress is not None:
                    progress(blob, sent)
                held = following

    return chunks


def _upload_whole(
    target: _Target,
    layout: Path,
    blob: Descriptor,
    session: _Session,
    progress: Progress | None,
) -> None:
    action = f"upload blob {blob.digest}"
    response = target.client.request(
        "PUT",
        session.url.copy_add_param("digest", blob.digest),
        target.what,
        headers={"Content-Type": _OCTET_STREAM, "Content-Length": str(blob.size)},
        body=_blob_chunks(layout, blob, progress),
        scopes=target.scopes,
        retry_statuses=_RETRY_STATUSES,
    )
    with contextlib.closing(response):
        _check_upload_step(target, response, 201, action)


def _upload_chunks(
    target: _Target,
    layout: Path,
    blob: Descriptor,
    session: _Session,
    progress: Progress | None,
    chunk_size: int,
) -> None:
    action = f"upload blob {blob.digest}"
    size = max(chunk_size, session.min_chunk)
    offset = 0
    with open_blob(layout, blob) as reader:
        while offset < blob.size:
            chunk = _read_exactly(reader.read, min(size, blob.size - offset))
            if offset + len(chunk) >= blob.size:
                reader.verify()  # before the last chunk goes
            if not chunk:
                raise LayerError(f"blob {blob.digest} in {layout} is shorter than described")
            end = offset + len(chunk) - 1
            response = target.client.request(
                "PATCH",
                session.url,
                target.what,
                headers={
                    "Content-Type": _OCTET_STREAM,
                    "Content-Range": f"{offset}-{end}",
                    "Content-Length": str(len(chunk)),
                },
                body=chunk,
                scopes=target.scopes,
                retry_statuses=_RETRY_STATUSES,
            )
            with contextlib.closing(response):
                _check_upload_step(target, response, 202, f"{action}: bytes {offset}-{end}")
                session = _session_after(target, response, action)
            offset += len(chunk)
            if progress is not None:
                progress(blob, offset)
        reader.verify()
    response = target.client.request(
        "PUT",
        session.url.copy_add_param("digest", blob.digest),
        target.what,
        headers={"Content-Type": _OCTET_STREAM, "Content-Length": "0"},
        body=b"",
        scopes=target.scopes,
        retry_statuses=_RETRY_STATUSES,
    )
    with contextlib.closing(response):
        _check_upload_step(target, response, 201, action)


def _read_exactly(read: Callable[[int], bytes | None], n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        piece = read(n - len(data))
        if not piece:
            break
        data += piece
    return bytes(data)


def _put_manifest(target: _Target, manifest: Descriptor, data: bytes, tag: str) -> None:
    response = target.client.request(
        "PUT",
        f"/v2/{target.repository}/manifests/{tag}",
        target.what,
        headers={"Content-Type": manifest.media_type},
        body=data,
        scopes=target.scopes,
        retry_statuses=_RETRY_STATUSES,
    )
    with contextlib.closing(response):
        if response.status_code not in (200, 201):
            raise _fail(target, response, f"put manifest {manifest.digest}")
        stored = response.headers.get("docker-content-digest")
    if stored is not None and stored != manifest.digest:
        raise ImageError(
            f"{target.what}: the registry stored manifest {manifest.digest} as {stored}"
        )
