"""The OCI image-spec model: descriptors, indexes, manifests and image configs.

An OCI image is a graph of content-addressed blobs: an index (a Docker "manifest list")
points at one manifest per platform, and a manifest at one config blob and an ordered list
of layer tarballs, each by media type, digest and size. These frozen classes are that graph
as data, with ``from_dict``/``to_dict`` for the JSON documents; they do no I/O. Read the OCI
image-spec: ``descriptor.md``, ``image-index.md``, ``manifest.md`` and ``config.md``.

Example:
    >>> d = Descriptor.from_dict({
    ...     "mediaType": MEDIA_TYPE_OCI_LAYER_GZIP,
    ...     "digest": "sha256:" + "ab" * 32,
    ...     "size": 12,
    ... })
    >>> d.algorithm, d.size
    ('sha256', 12)
    >>> try:
    ...     Descriptor.from_dict({**d.to_dict(), "digest": "sha256:../../etc/passwd"})
    ... except SpecError as e:
    ...     print(e.field)
    digest
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import attrs

from containerlib.errors import SpecError
from containerlib.spec._frozen import FrozenDict

__all__ = [
    "ANNOTATION_REF_NAME",
    "CONFIG_MEDIA_TYPES",
    "INDEX_MEDIA_TYPES",
    "LAYER_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_LAYER_ZSTD",
    "MEDIA_TYPE_OCI_MANIFEST",
    "ContainerConfig",
    "Descriptor",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "RootFS",
    "split_digest",
    "validate_digest",
]

MEDIA_TYPE_OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: Final = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

INDEX_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
CONFIG_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG})

_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
#: Every layer media type containerlib unpacks, mapped to its declared compression.
LAYER_MEDIA_TYPES: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        MEDIA_TYPE_OCI_LAYER: "none",
        MEDIA_TYPE_OCI_LAYER_GZIP: "gzip",
        MEDIA_TYPE_OCI_LAYER_ZSTD: "zstd",
        _NONDISTRIBUTABLE: "none",
        _NONDISTRIBUTABLE + "+gzip": "gzip",
        _NONDISTRIBUTABLE + "+zstd": "zstd",
        MEDIA_TYPE_DOCKER_LAYER_GZIP: "gzip",
        MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: "gzip",
    }
)

#: The annotation that names an image inside an OCI layout's ``index.json``.
ANNOTATION_REF_NAME: Final = "org.opencontainers.image.ref.name"

_DIGEST_HEX_LENGTHS: Final = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]+")

_T = TypeVar("_T")

# Attribute names whose JSON keys differ, for error messages about documents.
_JSON_NAMES: Final = {
    "media_type": "mediaType",
    "schema_version": "schemaVersion",
    "os_version": "os.version",
    "os_features": "os.features",
}


def validate_digest(digest: object, field: str = "digest") -> str:
    """Check that ``digest`` is ``sha256:`` or ``sha512:`` followed by lowercase hex.

    Only algorithms containerlib can verify are accepted, and the hex part must have the
    algorithm's exact length, so a digest can be used as a file name without escaping.

    Args:
        digest: the value to check.
        field: the field name the error should carry.

    Returns:
        The digest, unchanged.

    Raises:
        SpecError: the digest is not a string, has another algorithm or is malformed.

    Example:
        >>> validate_digest("sha512:" + "0" * 128)[:10]
        'sha512:000'
    """
    if not isinstance(digest, str):
        raise SpecError(field, f"digest must be a string, not {type(digest).__name__}")
    algorithm, sep, hex_part = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if not sep or length is None:
        raise SpecError(field, f"unsupported digest {digest!r}: expected sha256: or sha512:")
    if len(hex_part) != length or not _LOWER_HEX.fullmatch(hex_part):
        raise SpecError(
            field,
            f"malformed digest {digest!r}: expected {algorithm}: and {length} lowercase hex digits",
        )
    return digest


def split_digest(digest: str) -> tuple[str, str]:
    """Validate ``digest`` and split it into its algorithm and hex parts.

    Example:
        >>> split_digest("sha256:" + "1" * 64)[0]
        'sha256'
    """
    algorithm, _, hex_part = validate_digest(digest).partition(":")
    return algorithm, hex_part


_NO_STRINGS: FrozenDict[str, str] = FrozenDict()


def _to_str_map(
    value: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> FrozenDict[str, str]:
    items = value if isinstance(value, FrozenDict) else FrozenDict(value or ())
    for k, v in items.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SpecError("", f"expected string keys and values, got {k!r}: {v!r}")
    return items


def _to_strs(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _to_optional_strs(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _digest(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    validate_digest(value, attribute.name)


def _digests(
    _: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for i, digest in enumerate(value):
        validate_digest(digest, f"{attribute.name}[{i}]")


def _non_empty(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise SpecError(attribute.name, f"must be a non-empty string, got {value!r}")


def _schema_version_2(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value != 2:
        raise SpecError(attribute.name, f"unsupported schema version {value!r}, expected 2")


def _media_type_in(allowed: frozenset[str]) -> Callable[[object, Any, str | None], None]:
    def check(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
        if value is not None and value not in allowed:
            raise SpecError(
                attribute.name,
                f"unexpected media type {value!r}, expected one of {sorted(allowed)}",
            )

    return check


class _Object:
    """Reads typed fields out of one JSON object; errors carry the dotted field path."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(path, f"expected a JSON object, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, kind: type[_T], required: bool) -> _T | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise SpecError(self.at(key), "required field is missing")
            return None
        # bool is an int in Python but never a JSON number.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SpecError(self.at(key), f"expected {kind.__name__}, got {value!r}")
        return value

    def opt_str(self, key: str, *, required: bool = False) -> str | None:
        return self._get(key, str, required)

    def req_str(self, key: str) -> str:
        value = self._get(key, str, True)
        assert value is not None
        return value

    def opt_int(self, key: str, *, required: bool = False) -> int | None:
        return self._get(key, int, required)

    def opt_bool(self, key: str) -> bool | None:
        return self._get(key, bool, False)

    def strs(self, key: str) -> tuple[str, ...] | None:
        value = self._get(key, list, False)
        if value is None:
            return None
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise SpecError(f"{self.at(key)}[{i}]", f"expected str, got {item!r}")
        return tuple(value)

    def keys_of(self, key: str) -> tuple[str, ...]:
        """The keys of a ``{"80/tcp": {}}`` style set."""
        value = self._get(key, dict, False)
        return tuple(sorted(value)) if value else ()

    def str_map(self, key: str) -> FrozenDict[str, str]:
        value = self._get(key, dict, False) or {}
        for k, v in value.items():
            if not isinstance(v, str):
                raise SpecError(f"{self.at(key)}.{k}", f"expected str, got {v!r}")
        return FrozenDict(value)

    def objects(self, key: str, *, required: bool = False) -> list[_Object]:
        value = self._get(key, list, required)
        return [_Object(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value or ())]

    def object(self, key: str, *, required: bool = False) -> _Object | None:
        value = self._get(key, dict, required)
        return None if value is None else _Object(value, self.at(key))

    def build(self, cls: Callable[..., _T], **kwargs: Any) -> _T:
        """Construct ``cls``, prefixing validator errors with this object's path."""
        try:
            return cls(**kwargs)
        except SpecError as e:
            message = str(e).removeprefix(f"{e.field}: ") if e.field else str(e)
            # Validators name Python attributes; a document's reader wants its JSON keys.
            name, bracket, rest = e.field.partition("[")
            local = _JSON_NAMES.get(name, name) + bracket + rest
            field = ".".join(p for p in (self.path, local) if p)
            raise SpecError(field, message) from None


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Add ``key`` to a JSON document unless ``value`` is None or empty."""
    if value is None or (isinstance(value, tuple | list | dict) and not value):
        return
    out[key] = value


@attrs.frozen(kw_only=True)
class Platform:
    """The platform an image runs on, in GOOS/GOARCH terms (``linux``/``amd64``).

    Example:
        >>> Platform(architecture="arm64", os="linux", variant="v8").to_dict()
        {'architecture': 'arm64', 'os': 'linux', 'variant': 'v8'}
    """

    architecture: str = attrs.field(validator=_non_empty)
    os: str = attrs.field(validator=_non_empty)
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = attrs.field(default=(), converter=_to_strs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Platform:
        """Build from the JSON ``platform`` object."""
        return _platform(_Object(data, ""))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON ``platform`` object."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        _put(out, "variant", self.variant)
        _put(out, "os.version", self.os_version)
        _put(out, "os.features", list(self.os_features))
        return out


def _platform(o: _Object) -> Platform:
    return o.build(
        Platform,
        architecture=o.req_str("architecture"),
        os=o.req_str("os"),
        variant=o.opt_str("variant"),
        os_version=o.opt_str("os.version"),
        os_features=o.strs("os.features") or (),
    )


@attrs.frozen(kw_only=True)
class Descriptor:
    """A typed, sized, content-addressed reference to a blob.

    Attributes:
        media_type: what the blob is, for example :data:`MEDIA_TYPE_OCI_LAYER_GZIP`.
        digest: ``sha256:<hex>`` of the blob's bytes, validated when built.
        size: the blob's length in bytes; a reader must not accept more or fewer.
        urls: where a non-distributable blob may be fetched from.
        annotations: string keys and values.
        platform: in an index, the platform the referenced manifest is for.
    """

    media_type: str = attrs.field(validator=_non_empty)
    digest: str = attrs.field(validator=_digest)
    size: int = attrs.field()
    urls: tuple[str, ...] = attrs.field(default=(), converter=_to_strs)
    annotations: FrozenDict[str, str] = attrs.field(default=_NO_STRINGS, converter=_to_str_map)
    platform: Platform | None = None

    @size.validator
    def _check_size(self, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(attribute.name, f"must be a non-negative integer, got {value!r}")

    @property
    def algorithm(self) -> str:
        """The digest algorithm, ``sha256`` or ``sha512``."""
        return self.digest.partition(":")[0]

    @property
    def hex(self) -> str:
        """The digest's hex part, safe to use as a file name."""
        return self.digest.partition(":")[2]

    @property
    def ref_name(self) -> str | None:
        """The ``org.opencontainers.image.ref.name`` annotation, if any."""
        return self.annotations.get(ANNOTATION_REF_NAME)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Descriptor:
        """Build from a JSON descriptor object."""
        return _descriptor(_Object(data, ""))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON descriptor object."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        _put(out, "urls", list(self.urls))
        _put(out, "annotations", dict(self.annotations))
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        return out


def _descriptor(o: _Object) -> Descriptor:
    platform = o.object("platform")
    return o.build(
        Descriptor,
        media_type=o.req_str("mediaType"),
        digest=o.req_str("digest"),
        size=o.opt_int("size", required=True),
        urls=o.strs("urls") or (),
        annotations=o.str_map("annotations"),
        platform=None if platform is None else _platform(platform),
    )


def _to_descriptors(value: Iterable[Descriptor]) -> tuple[Descriptor, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Index:
    """An image index (OCI) or manifest list (Docker): manifests by platform or name.

    The ``index.json`` at the top of an OCI layout is an index too; its entries carry the
    image names as :data:`ANNOTATION_REF_NAME` annotations.
    """

    schema_version: int = attrs.field(default=2, validator=_schema_version_2)
    media_type: str | None = attrs.field(
        default=MEDIA_TYPE_OCI_INDEX, validator=_media_type_in(INDEX_MEDIA_TYPES)
    )
    manifests: tuple[Descriptor, ...] = attrs.field(default=(), converter=_to_descriptors)
    annotations: FrozenDict[str, str] = attrs.field(default=_NO_STRINGS, converter=_to_str_map)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Index:
        """Build from the JSON document; ``mediaType`` may be absent, as OCI allows."""
        o = _Object(data, "")
        return o.build(
            Index,
            schema_version=o.opt_int("schemaVersion", required=True),
            media_type=o.opt_str("mediaType"),
            manifests=[_descriptor(m) for m in o.objects("manifests", required=True)],
            annotations=o.str_map("annotations"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document."""
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        _put(out, "mediaType", self.media_type)
        out["manifests"] = [m.to_dict() for m in self.manifests]
        _put(out, "annotations", dict(self.annotations))
        return out


@attrs.frozen(kw_only=True)
class Manifest:
    """One image for one platform: its config blob and its layers, bottom layer first."""

    schema_version: int = attrs.field(default=2, validator=_schema_version_2)
    media_type: str | None = attrs.field(
        default=MEDIA_TYPE_OCI_MANIFEST, validator=_media_type_in(MANIFEST_MEDIA_TYPES)
    )
    config: Descriptor
    layers: tuple[Descriptor, ...] = attrs.field(default=(), converter=_to_descriptors)
    annotations: FrozenDict[str, str] = attrs.field(default=_NO_STRINGS, converter=_to_str_map)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Build from the JSON document; ``mediaType`` may be absent, as OCI allows."""
        o = _Object(data, "")
        config = o.object("config", required=True)
        assert config is not None
        return o.build(
            Manifest,
            schema_version=o.opt_int("schemaVersion", required=True),
            media_type=o.opt_str("mediaType"),
            config=_descriptor(config),
            layers=[_descriptor(m) for m in o.objects("layers", required=True)],
            annotations=o.str_map("annotations"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document."""
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        _put(out, "mediaType", self.media_type)
        out["config"] = self.config.to_dict()
        out["layers"] = [layer.to_dict() for layer in self.layers]
        _put(out, "annotations", dict(self.annotations))
        return out


@attrs.frozen(kw_only=True)
class ContainerConfig:
    """The defaults an image gives the containers run from it (the config's ``config``).

    ``entrypoint`` and ``cmd`` are None when the image leaves them unset, which differs from
    an empty list when a user overrides one of them.
    """

    user: str | None = None
    exposed_ports: tuple[str, ...] = attrs.field(default=(), converter=_to_strs)
    env: tuple[str, ...] = attrs.field(default=(), converter=_to_strs)
    entrypoint: tuple[str, ...] | None = attrs.field(default=None, converter=_to_optional_strs)
    cmd: tuple[str, ...] | None = attrs.field(default=None, converter=_to_optional_strs)
    volumes: tuple[str, ...] = attrs.field(default=(), converter=_to_strs)
    working_dir: str | None = None
    labels: FrozenDict[str, str] = attrs.field(default=_NO_STRINGS, converter=_to_str_map)
    stop_signal: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContainerConfig:
        """Build from the JSON object (Docker's capitalised keys)."""
        return _container_config(_Object(data, ""))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object."""
        out: dict[str, Any] = {}
        _put(out, "User", self.user)
        _put(out, "ExposedPorts", {port: {} for port in self.exposed_ports})
        _put(out, "Env", list(self.env))
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        _put(out, "Volumes", {volume: {} for volume in self.volumes})
        _put(out, "WorkingDir", self.working_dir)
        _put(out, "Labels", dict(self.labels))
        _put(out, "StopSignal", self.stop_signal)
        return out


def _container_config(o: _Object) -> ContainerConfig:
    return o.build(
        ContainerConfig,
        user=o.opt_str("User"),
        exposed_ports=o.keys_of("ExposedPorts"),
        env=o.strs("Env") or (),
        entrypoint=o.strs("Entrypoint"),
        cmd=o.strs("Cmd"),
        volumes=o.keys_of("Volumes"),
        working_dir=o.opt_str("WorkingDir"),
        labels=o.str_map("Labels"),
        stop_signal=o.opt_str("StopSignal"),
    )


@attrs.frozen(kw_only=True)
class RootFS:
    """The uncompressed digests (diff IDs) of the layers, bottom first."""

    type: str = attrs.field(default="layers")
    diff_ids: tuple[str, ...] = attrs.field(default=(), converter=_to_strs, validator=_digests)

    @type.validator
    def _check_type(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value != "layers":
            raise SpecError(attribute.name, f"unsupported rootfs type {value!r}, expected 'layers'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RootFS:
        """Build from the JSON ``rootfs`` object."""
        return _rootfs(_Object(data, ""))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON ``rootfs`` object."""
        return {"type": self.type, "diff_ids": list(self.diff_ids)}


@attrs.frozen(kw_only=True)
class History:
    """One step of how the image was built; ``empty_layer`` steps made no layer."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Build from one JSON ``history`` entry."""
        return _history(_Object(data, ""))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON ``history`` entry."""
        out: dict[str, Any] = {}
        _put(out, "created", self.created)
        _put(out, "created_by", self.created_by)
        _put(out, "author", self.author)
        _put(out, "comment", self.comment)
        if self.empty_layer:
            out["empty_layer"] = True
        return out


def _to_history(value: Iterable[History]) -> tuple[History, ...]:
    return tuple(value)


def _rootfs(o: _Object) -> RootFS:
    return o.build(RootFS, type=o.req_str("type"), diff_ids=o.strs("diff_ids") or ())


def _history(o: _Object) -> History:
    return o.build(
        History,
        created=o.opt_str("created"),
        created_by=o.opt_str("created_by"),
        author=o.opt_str("author"),
        comment=o.opt_str("comment"),
        empty_layer=bool(o.opt_bool("empty_layer")),
    )


@attrs.frozen(kw_only=True)
class ImageConfig:
    """The image configuration blob: platform, run defaults and the layers' diff IDs."""

    architecture: str = attrs.field(validator=_non_empty)
    os: str = attrs.field(validator=_non_empty)
    variant: str | None = None
    created: str | None = None
    author: str | None = None
    config: ContainerConfig | None = None
    rootfs: RootFS = attrs.field(factory=RootFS)
    history: tuple[History, ...] = attrs.field(default=(), converter=_to_history)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageConfig:
        """Build from the JSON document; fields not modelled here are ignored."""
        o = _Object(data, "")
        config = o.object("config")
        rootfs = o.object("rootfs", required=True)
        assert rootfs is not None
        return o.build(
            ImageConfig,
            architecture=o.req_str("architecture"),
            os=o.req_str("os"),
            variant=o.opt_str("variant"),
            created=o.opt_str("created"),
            author=o.opt_str("author"),
            config=None if config is None else _container_config(config),
            rootfs=_rootfs(rootfs),
            history=[_history(h) for h in o.objects("history")],
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        _put(out, "variant", self.variant)
        _put(out, "created", self.created)
        _put(out, "author", self.author)
        if self.config is not None:
            out["config"] = self.config.to_dict()
        out["rootfs"] = self.rootfs.to_dict()
        _put(out, "history", [h.to_dict() for h in self.history])
        return out

    @property
    def platform(self) -> Platform:
        """The platform this config says the image is for."""
        return Platform(architecture=self.architecture, os=self.os, variant=self.variant)
