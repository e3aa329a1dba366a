"""Pulling images from a registry (the distribution API v2) into an OCI image layout, and
pushing them back (:func:`push`, from :mod:`containerlib.image.registry_push`).

A registry serves an image as JSON manifests and content-addressed blobs: ``GET
/v2/<repository>/manifests/<tag or digest>`` answers an image manifest or an index of
them (one per platform), and ``GET /v2/<repository>/blobs/<digest>`` the config and the
layers, often by a redirect to object storage. Access is anonymous, HTTP Basic, or a bearer
token got from the ``realm`` that a 401's ``WWW-Authenticate`` names. Nothing a registry
sends is trusted: every manifest and blob is checked against its digest and size before it
is stored under its final name; a pull fetches a few blobs at once, and resumes one that
broke off. The client itself is :mod:`containerlib.image.registry_client`. See the
distribution spec's ``spec/api.md`` and ``docs/spec/auth/token.md``.

Example:
    >>> pull("localhost:5000/team/app:1", "/var/lib/images/app")  # doctest: +SKIP
    Descriptor(media_type='application/vnd.oci.image.manifest.v1+json', ...)
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import httpx

from containerlib.errors import ImageError, LayerError, SpecError
from containerlib.image import layout_write
from containerlib.image.layout import choose_platform, host_platform
from containerlib.image.layout_write import locked_layout, read_index, write_index
from containerlib.image.reference import Reference, parse_reference
from containerlib.image.registry_auth import (
    Challenge,
    Credentials,
    credentials_for,
    parse_challenge,
    registry_base_url,
)
from containerlib.image.registry_client import (
    Body,
    Progress,
    RegistryClient,
    registry_message,
)
from containerlib.image.registry_push import push
from containerlib.spec.image import INDEX_MEDIA_TYPES, Descriptor, Index, Manifest, Platform

__all__ = [
    "Body",
    "Challenge",
    "Credentials",
    "Progress",
    "RegistryClient",
    "locked_layout",
    "parse_challenge",
    "pull",
    "push",
    "read_index",
    "registry_base_url",
    "registry_message",
    "write_index",
]

_MAX_NESTING: Final = 4
#: How many blobs a pull downloads at once.
_PARALLEL_DOWNLOADS: Final = 3

# The layout writers moved to layout_write.py; their old names here stay for the callers
# that imported them from this module.
_temporary = layout_write.temporary
_write_file_atomically = layout_write.write_file_atomically
_add_to_index = layout_write.add_to_index


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
        credentials: for registries that ask for them; by default those ``docker login``
            or ``podman login`` stored (see
            :func:`~containerlib.image.registry_auth.credentials_for`), looked up only if
            the registry asks.
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
        ref.registry,
        insecure=insecure,
        credentials=credentials,
        transport=transport,
        find_credentials=credentials_for,
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
            _fetch_all(client, ref.repository, manifest, root, what, progress)
            layout_write.store_blob_bytes(root, descriptor, data)
            layout_write.add_to_index(root, descriptor, name if name is not None else ref.tag)
    return descriptor


def _fetch_all(
    client: RegistryClient,
    repository: str,
    manifest: Manifest,
    layout: Path,
    what: str,
    progress: Progress | None,
) -> None:
    """Download the config and the layers, a few at a time.

    When one fails, the others stop (their temporary files removed) and the first
    failure is raised once all have ended.
    """
    wanted: dict[str, tuple[Descriptor, type[ImageError]]] = {
        manifest.config.digest: (manifest.config, ImageError)
    }
    for layer in manifest.layers:
        wanted.setdefault(layer.digest, (layer, LayerError))
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=_PARALLEL_DOWNLOADS, thread_name_prefix="containerlib-pull"
    ) as pool:
        try:
            futures = [
                pool.submit(
                    client.fetch_blob,
                    repository,
                    blob,
                    layout,
                    what,
                    error=error,
                    progress=progress,
                    cancel=cancel,
                )
                for blob, error in wanted.values()
            ]
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        except BaseException:  # interrupted: stop the downloads rather than finish them
            cancel.set()
            raise
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            cancel.set()
            for future in futures:
                future.cancel()
            concurrent.futures.wait(futures)
            first = failed[0].exception()
            assert first is not None
            raise first
