"""The :class:`Image` users hand to :class:`~containerlib.Container`.

An image here is a stack of read-only directories (bottom layer first) plus the image's
configuration (default command, environment, working directory, user). A container mounts
the stack with overlayfs and writes only to its own upper directory, so starting one costs
nothing per image byte and never changes the image.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from containerlib.errors import ContainerError, ImageError, ImageNotFound, LayerError, SpecError
from containerlib.runtime.specconv import Roots

if TYPE_CHECKING:
    from containerlib.image.build import ImageSource
    from containerlib.image.cache import LayerHold
    from containerlib.image.layout import ResolvedImage
    from containerlib.image.registry import Progress
    from containerlib.image.store import PruneReport, StoredImage

__all__ = ["Image"]


def _strs(value: tuple[str, ...] | None) -> tuple[str, ...]:
    return tuple(value) if value else ()


def _data_root() -> Path:
    return Path(Roots.from_env().data)


def _store() -> Path:
    """The image store: one OCI layout, made (with its lock) when first needed."""
    from containerlib.image.registry import locked_layout

    store = _data_root() / "images"
    if not (store / "index.json").is_file():
        with locked_layout(store):
            pass
    return store


def _env_list(env: Mapping[str, str], what: str) -> list[str]:
    out = []
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or not isinstance(value, str) or "\0" in value:
            raise SpecError(f"{what}.{key}", f"not a valid variable: {key!r}={value!r}")
        out.append(f"{key}={value}")
    return out


def _str_list(value: str | Sequence[str], what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str) or "\0" in item:
            raise SpecError(f"{what}[{i}]", f"must be a string without NUL, not {item!r}")
    return items


@attrs.frozen(kw_only=True)
class Image:
    """A root file system to run containers from.

    Build one with :meth:`from_rootfs` or :meth:`from_oci_layout`; do not call the
    constructor directly.

    Attributes:
        layers: host directories, bottom layer first, stacked with overlayfs.
        name: where it came from, for messages.
        entrypoint, cmd, env, workdir, user: the image's configuration, as in an OCI
            image config; they give :meth:`Container.run` its defaults.

    Example:
        >>> from containerlib import Container, Image
        >>> image = Image.from_rootfs("/srv/busybox")  # doctest: +SKIP
        >>> image = Image.from_registry("busybox:1.36")  # doctest: +SKIP
        >>> Container(image).run(["echo", "hi"]).stdout  # doctest: +SKIP
        b'hi\\n'
    """

    layers: tuple[str, ...]
    name: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    source: ImageSource | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_rootfs(cls, path: str | os.PathLike[str]) -> Image:
        """An image whose only layer is the directory ``path``, used read-only.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            NotADirectoryError: ``path`` is not a directory.

        Example:
            >>> Image.from_rootfs("/nonexistent")
            Traceback (most recent call last):
            ...
            FileNotFoundError: [Errno 2] rootfs '/nonexistent' does not exist
        """
        p = os.path.abspath(os.fspath(path))
        if not os.path.exists(p):
            raise FileNotFoundError(2, f"rootfs {os.fspath(path)!r} does not exist")
        if not os.path.isdir(p):
            raise NotADirectoryError(20, f"rootfs {os.fspath(path)!r} is not a directory")
        if "," in p or ":" in p:
            raise ImageNotFound(f"rootfs {p!r}: overlayfs cannot use a path with ',' or ':'")
        return cls(layers=(p,), name=p)

    @classmethod
    def from_oci_layout(
        cls,
        path: str | os.PathLike[str],
        ref: str | None = None,
        *,
        cache: str | os.PathLike[str] | None = None,
    ) -> Image:
        """An image from a local OCI image layout (a directory with ``oci-layout``,
        ``index.json`` and ``blobs/``), as skopeo, umoci or ``podman save --format
        oci-dir`` write it.

        Each layer is unpacked once, verified, into a cache (``<data root>/layers`` by
        default) and reused by every later image that shares it.

        Args:
            path: the layout's directory.
            ref: the ``org.opencontainers.image.ref.name`` to pick; may be omitted when
                the layout holds one image.
            cache: where unpacked layers go.

        Raises:
            ImageNotFound: no layout at ``path``, or no image called ``ref`` in it.
            LayerError: a blob is corrupt, truncated or would write outside its layer.

        Example:
            >>> image = Image.from_oci_layout("/srv/layouts/busybox", "1.36")  # doctest: +SKIP
            >>> Container(image).run(["busybox", "true"]).exit_code  # doctest: +SKIP
            0
        """
        from containerlib.image.layout import open_layout

        p = Path(path)
        if not (p / "oci-layout").is_file():
            raise ImageNotFound(f"no OCI image layout at {os.fspath(path)!r} (no oci-layout file)")
        resolved = open_layout(p.absolute(), ref)
        name = f"{os.fspath(path)}:{ref}" if ref else os.fspath(path)
        return cls._from_resolved(resolved, name, cache)

    @classmethod
    def _from_resolved(
        cls, resolved: ResolvedImage, name: str, cache: str | os.PathLike[str] | None = None
    ) -> Image:
        from containerlib.image.build import ImageSource
        from containerlib.image.cache import LayerCache

        root = Path(cache) if cache is not None else _data_root()
        dirs = LayerCache(root).ensure(resolved)
        cfg = resolved.config.config
        return cls(
            layers=tuple(str(d) for d in dirs),
            name=name,
            entrypoint=_strs(cfg.entrypoint) if cfg else (),
            cmd=_strs(cfg.cmd) if cfg else (),
            env=_strs(cfg.env) if cfg else (),
            workdir=(cfg.working_dir or None) if cfg else None,
            user=(cfg.user or None) if cfg else None,
            source=ImageSource(layout=resolved.layout, manifest=resolved.descriptor),
        )

    @classmethod
    def _from_source(cls, source: ImageSource, name: str) -> Image:
        from containerlib.image.layout import open_manifest

        return cls._from_resolved(open_manifest(source.layout, source.manifest), name)

    def _hold_layers(self) -> LayerHold | None:
        """Hold this image's cached layers (see :meth:`LayerCache.hold`) for a container's
        life; a layer pruned since the image was made is unpacked again. None for an
        image whose layers are not in a cache (a plain directory)."""
        if self.source is None or not self.layers:
            return None
        from containerlib.image.cache import LayerCache
        from containerlib.image.layout import open_manifest

        # <root>/layers/sha256/<hex>/fs
        cache = LayerCache(Path(self.layers[0]).parents[3])
        try:
            return cache.hold(self.layers)
        except LayerError:
            return cache.ensure_held(open_manifest(self.source.layout, self.source.manifest))

    @property
    def digest(self) -> str | None:
        """The digest of the image's manifest (None for a plain directory)."""
        return self.source.manifest.digest if self.source is not None else None

    # -- building: each step returns a new image, stored in the image store -------------

    @classmethod
    def scratch(cls) -> Image:
        """An empty image, as ``FROM scratch``: add files to it with :meth:`add`.

        Example:
            >>> img = Image.scratch().add(b"hello\\n", "/hello.txt")  # doctest: +SKIP
        """
        from containerlib.image.build import commit

        return cls._from_source(commit(_store(), None, created_by="scratch"), "scratch")

    def _materialized(self) -> Image:
        """This image with its blobs in a layout: a plain directory (:meth:`from_rootfs`)
        is written as a layer first, keeping its owners."""
        if self.source is not None:
            return self
        from containerlib.image.build import commit
        from containerlib.image.layer_writer import LayerWriter

        store = _store()
        with LayerWriter(store) as writer:
            for layer in self.layers:
                writer.add_path(layer, "/", owner=None)
            written = writer.finish()
        source = commit(
            store,
            None,
            created_by=f"from_rootfs {self.name}",
            layer=written,
            edit=lambda c: _set_run_config(c, self),
        )
        return Image._from_source(source, self.name)

    def _step(self, created_by: str, **kwargs: Any) -> Image:
        from containerlib.image.build import commit

        base = self._materialized()
        assert base.source is not None
        source = commit(_store(), base.source, created_by=created_by, **kwargs)
        return Image._from_source(source, self.name)

    def add(
        self,
        source: str | os.PathLike[str] | bytes,
        dest: str,
        *,
        owner: tuple[int, int] | None = (0, 0),
        mode: int | None = None,
    ) -> Image:
        """This image plus a layer holding ``source`` at ``dest``, as ``COPY``.

        Args:
            source: a host file or directory (a directory's contents go under ``dest``),
                or the bytes of a file.
            dest: an absolute path in the image; ending in ``/``, a host file keeps its
                name under it.
            owner: ``(uid, gid)`` of what is added (root, as ``COPY``); None keeps the
                host's owners.
            mode: the permission bits of the file, or of the top directory.

        Raises:
            FileNotFoundError: ``source`` does not exist.
            SpecError: ``dest`` is not an absolute path.

        Example:
            >>> base = Image.from_registry("python:3.12-slim")  # doctest: +SKIP
            >>> app = base.add("app.py", "/srv/app.py")  # doctest: +SKIP
            >>> app = app.add(b"debug = false\\n", "/etc/app.toml", mode=0o644)  # doctest: +SKIP
        """
        from containerlib.image.layer_writer import LayerWriter

        if not isinstance(dest, str) or not dest.startswith("/"):
            raise SpecError("dest", f"must be an absolute path in the image, not {dest!r}")
        with LayerWriter(_store()) as writer:
            if isinstance(source, bytes):
                writer.add_bytes(dest, source, mode=0o644 if mode is None else mode)
                what = f"{len(source)} bytes"
            else:
                path = os.fspath(source)
                target = dest
                if dest.endswith("/") and not os.path.isdir(path):
                    target = dest + os.path.basename(path)
                writer.add_path(path, target, owner=owner, mode=mode)
                what = path
            written = writer.finish()
        return self._step(f"add {what} {dest}", layer=written)

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Image:
        """This image plus a layer holding what ``cmd`` changed, as ``RUN``.

        The command runs in a container of this image (its environment, working
        directory and user; not its entrypoint), without a network. A string runs with
        ``/bin/sh -c``.

        Raises:
            ContainerError: the command failed (its exit code and output are in the
                error's ``result``); no image is made.
            ImageError: the changes could not be stored.

        Example:
            >>> base = Image.from_registry("debian:12")  # doctest: +SKIP
            >>> image = base.run("apt-get update && apt-get install -y curl")  # doctest: +SKIP
        """
        from containerlib.container import Container
        from containerlib.image.layer_writer import LayerWriter

        args = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else _str_list(cmd, "cmd")
        base = self._materialized()
        container = Container(attrs.evolve(base, entrypoint=()))
        if env:
            container = container.env(**env)
        tmp = _data_root() / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        work = tempfile.mkdtemp(dir=tmp, prefix="build-")
        try:
            upper = os.path.join(work, "upper")
            result, command = container._run_keeping_upper(args, upper, timeout)
            if result.exit_code != 0:
                raise ContainerError(result, command)
            if not os.path.isdir(upper):
                raise ImageError(f"run {args!r}: the container's changes were not kept")
            with LayerWriter(_store()) as writer:
                writer.add_upper(upper)
                written = writer.finish()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        shown = cmd if isinstance(cmd, str) else " ".join(args)
        return base._step(f"run {shown}", layer=written)

    def config(
        self,
        *,
        entrypoint: str | Sequence[str] | None = None,
        cmd: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        labels: Mapping[str, str] | None = None,
        expose: Sequence[int | str] = (),
        stop_signal: str | None = None,
    ) -> Image:
        """This image with its configuration changed, as ``ENTRYPOINT``, ``CMD``, ``ENV``,
        ``WORKDIR``, ``USER``, ``LABEL``, ``EXPOSE`` and ``STOPSIGNAL``: what is not given
        stays. As in a Dockerfile, setting ``entrypoint`` without ``cmd`` clears the
        inherited ``cmd``. A string ``entrypoint`` or ``cmd`` runs with ``/bin/sh -c``.

        Raises:
            SpecError: a value that cannot be in an image config, naming it.

        Example:
            >>> base = Image.from_rootfs("/srv/busybox")  # doctest: +SKIP
            >>> image = base.config(cmd=["httpd", "-f"], expose=[80])  # doctest: +SKIP
            >>> image.cmd  # doctest: +SKIP
            ('httpd', '-f')
        """
        changes: dict[str, Any] = {}
        if entrypoint is not None:
            changes["Entrypoint"] = (
                ["/bin/sh", "-c", entrypoint]
                if isinstance(entrypoint, str)
                else _str_list(entrypoint, "entrypoint")
            )
            if cmd is None:
                changes["Cmd"] = None
        if cmd is not None:
            changes["Cmd"] = (
                ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else _str_list(cmd, "cmd")
            )
        if workdir is not None:
            if not workdir.startswith("/"):
                raise SpecError("workdir", f"must be an absolute path, not {workdir!r}")
            changes["WorkingDir"] = workdir
        if user is not None:
            if not user or "\0" in user:
                raise SpecError("user", f"not a user: {user!r}")
            changes["User"] = user
        if stop_signal is not None:
            changes["StopSignal"] = stop_signal
        new_env = _env_list(env, "env") if env else []
        new_labels = dict(labels or {})
        ports = [_port(p) for p in expose]

        def edit(c: dict[str, Any]) -> None:
            for key, value in changes.items():
                if value is None:
                    c.pop(key, None)
                else:
                    c[key] = value
            if new_env:
                merged = {e.partition("=")[0]: e for e in c.get("Env") or []}
                merged.update({e.partition("=")[0]: e for e in new_env})
                c["Env"] = list(merged.values())
            if new_labels:
                c["Labels"] = {**(c.get("Labels") or {}), **new_labels}
            if ports:
                c["ExposedPorts"] = {**(c.get("ExposedPorts") or {}), **{p: {} for p in ports}}

        shown = ", ".join(f"{k}={v!r}" for k, v in changes.items() if v is not None)
        return self._step(f"config {shown or '(env, labels, ports)'}", edit=edit)

    def tag(self, reference: str) -> Image:
        """Name this image ``reference`` in the image store (replacing an image of that
        name), so that ``Image.from_registry(reference, pull="never")``, :meth:`list` and
        :meth:`push` find it.

        Raises:
            SpecError: ``reference`` is not an image reference.

        Example:
            >>> image = Image.from_rootfs("/srv/busybox").config(cmd=["sh"])  # doctest: +SKIP
            >>> image.tag("localhost:5000/tools/busybox:1").name  # doctest: +SKIP
            'localhost:5000/tools/busybox:1'
        """
        from containerlib.image.reference import parse_reference
        from containerlib.image.registry import locked_layout, read_index, write_index
        from containerlib.spec.image import ANNOTATION_REF_NAME

        full = str(parse_reference(reference))
        base = self._materialized()
        assert base.source is not None
        from containerlib.image.build import ImageSource

        store = _store()
        if base.source.layout != store:
            from containerlib.image.build import _copy_blobs, read_config

            manifest, _ = read_config(base.source)
            _copy_blobs(
                base.source.layout, store, [base.source.manifest, manifest.config, *manifest.layers]
            )
        with locked_layout(store):
            index = read_index(store)
            entry = attrs.evolve(
                base.source.manifest,
                annotations={**base.source.manifest.annotations, ANNOTATION_REF_NAME: full},
            )
            kept = [d for d in index.manifests if d.ref_name != full]
            write_index(store, attrs.evolve(index, manifests=[*kept, entry]))
        return attrs.evolve(
            base, name=full, source=ImageSource(layout=store, manifest=base.source.manifest)
        )

    @classmethod
    def from_registry(
        cls,
        reference: str,
        *,
        pull: Literal["missing", "always", "never"] = "missing",
        insecure: Collection[str] = (),
        progress: Progress | None = None,
    ) -> Image:
        """An image from a registry, such as ``"busybox"`` or ``"host:5000/team/app:1.2"``,
        kept in the image store (``<data root>/images``, an OCI image layout) under its
        full name (``docker.io/library/busybox:latest``).

        Args:
            reference: read as ``docker pull`` reads it.
            pull: ``"missing"`` fetches it only when the store does not have it (as
                ``docker run`` does); ``"always"`` fetches what the registry has now;
                ``"never"`` uses the store only.
            insecure: registries to speak plain http to, besides this machine's.
            progress: called with each blob's descriptor and its bytes received so far.

        Raises:
            SpecError: ``reference`` is not an image reference.
            ImageNotFound: no such image (in the store, with ``pull="never"``).
            ImageError: the registry could not be reached or sent something wrong.

        Example:
            >>> image = Image.from_registry("busybox:1.36")  # doctest: +SKIP
            >>> image.name  # doctest: +SKIP
            'docker.io/library/busybox:1.36'
            >>> mine = "localhost:5000/app:dev"
            >>> local = Image.from_registry(mine, insecure=["localhost:5000"])  # doctest: +SKIP
        """
        from containerlib.image.reference import parse_reference
        from containerlib.image.registry import pull as pull_image

        ref = parse_reference(reference)
        full = str(ref)
        store = Path(Roots.from_env().data) / "images"
        if pull != "always" and (store / "oci-layout").is_file():
            try:
                return attrs.evolve(cls.from_oci_layout(store, full), name=full)
            except ImageNotFound:
                if pull == "never":
                    raise
        elif pull == "never":
            raise ImageNotFound(f"no image {full!r} in the image store {store}")
        pull_image(ref, store, insecure=insecure, name=full, progress=progress)
        return attrs.evolve(cls.from_oci_layout(store, full), name=full)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        format: Literal["docker", "oci"] = "docker",
    ) -> None:
        """Write this image to the archive ``path``: ``"docker"`` as ``docker save`` does
        (``docker load`` and ``podman load`` read it), ``"oci"`` as an OCI image layout in
        a tar. The archive names the image by :attr:`name` when that is a reference.

        Raises:
            ImageError: a blob is missing or corrupt; no archive is left at ``path``.

        Example:
            >>> Image.from_registry("busybox:1.36").save("/tmp/busybox.tar")  # doctest: +SKIP
            >>> busybox = Image.from_registry("busybox:1.36")  # doctest: +SKIP
            >>> busybox.save("/tmp/oci.tar", format="oci")  # doctest: +SKIP
        """
        from containerlib.image.archive import save_archive

        base = self._materialized()
        assert base.source is not None
        save_archive(
            base.source.layout, base.source.manifest, path, format=format, names=_names_of(self)
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> list[Image]:
        """Import the images of an archive (``docker save``, OCI archive; plain or
        gzip-compressed) into the image store, named as the archive names them.

        Returns:
            The images, in the archive's order.

        Raises:
            ImageError: the archive is malformed or hostile; the store gains nothing.
            LayerError: a blob fails its digest.

        Example:
            >>> [image.name for image in Image.load("/tmp/busybox.tar")]  # doctest: +SKIP
            ['docker.io/library/busybox:1.36']
        """
        from containerlib.image.archive import load_archive
        from containerlib.image.build import ImageSource

        store = _store()
        images = []
        for descriptor in load_archive(path, store):
            name = descriptor.ref_name or descriptor.digest
            plain = attrs.evolve(descriptor, annotations={})
            images.append(cls._from_source(ImageSource(layout=store, manifest=plain), name))
        return images

    def push(
        self,
        reference: str | None = None,
        *,
        insecure: Collection[str] = (),
        progress: Progress | None = None,
    ) -> str:
        """Upload this image to a registry, as ``reference`` (its :attr:`name` by
        default). Credentials come from ``~/.docker/config.json`` (or podman's auth file)
        when the registry asks for them.

        Args:
            reference: where to push, ``"host:5000/team/app:1.2"``.
            insecure: registries to speak plain http to, besides this machine's.
            progress: called with each blob's descriptor and its bytes sent so far.

        Returns:
            The digest of the pushed manifest.

        Raises:
            SpecError: no reference, or not a valid one.
            ImageError: the registry refused the image or could not be reached.

        Example:
            >>> base = Image.from_rootfs("/srv/busybox")  # doctest: +SKIP
            >>> image = base.tag("localhost:5000/busybox:1")  # doctest: +SKIP
            >>> image.push(insecure=["localhost:5000"])  # doctest: +SKIP
            'sha256:...'
        """
        from containerlib.image.registry import push

        target = reference if reference is not None else self.name
        from containerlib.image.reference import parse_reference

        ref = parse_reference(target, field="reference")
        base = self._materialized()
        assert base.source is not None
        pushed = push(
            base.source.layout, base.source.manifest, ref, insecure=insecure, progress=progress
        )
        return pushed.digest

    @staticmethod
    def prune() -> PruneReport:
        """Remove what no named image and no running container uses: unnamed images
        in the store (older than an hour), their blobs, and unpacked layers.

        Returns:
            What was removed and the bytes freed.

        Example:
            >>> report = Image.prune()  # doctest: +SKIP
            >>> report.bytes_freed >= 0  # doctest: +SKIP
            True
        """
        from containerlib.image.store import prune

        return prune(_data_root())

    @staticmethod
    def list() -> list[StoredImage]:
        """The images in the image store (see :meth:`from_registry`), by name, with their
        manifest digests and sizes.

        Example:
            >>> [(i.name, i.size) for i in Image.list()]  # doctest: +SKIP
            [('docker.io/library/busybox:1.36', 2157438)]
        """
        from containerlib.image.store import list_images

        return list_images(Path(Roots.from_env().data) / "images")

    @staticmethod
    def remove(reference: str) -> None:
        """Remove an image from the image store, and the blobs no other image uses; a
        container running from it is not disturbed.

        Raises:
            SpecError: ``reference`` is not an image reference.
            ImageNotFound: the store has no such image.

        Example:
            >>> Image.remove("busybox:1.36")  # doctest: +SKIP
        """
        from containerlib.image.reference import parse_reference
        from containerlib.image.store import remove_image

        remove_image(Path(Roots.from_env().data) / "images", str(parse_reference(reference)))

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Image:
        """:meth:`from_oci_layout` if ``path`` holds an OCI layout, :meth:`from_rootfs`
        if it is a directory, else :meth:`from_registry` when ``path`` reads as an image
        reference (``"busybox:1.36"``): an existing path always wins.

        Example:
            >>> Image.from_path("/srv/busybox").layers  # doctest: +SKIP
            ('/srv/busybox',)
        """
        if (Path(path) / "oci-layout").is_file():
            return cls.from_oci_layout(path)
        if not os.path.exists(path) and isinstance(path, str) and not path.startswith("/"):
            from containerlib.errors import SpecError
            from containerlib.image.reference import parse_reference

            try:
                parse_reference(path)
            except SpecError:
                pass
            else:
                return cls.from_registry(path)
        return cls.from_rootfs(path)


def _names_of(image: Image) -> list[str]:
    """The image's name as a full reference, if it is one."""
    from containerlib.image.reference import parse_reference

    try:
        full = str(parse_reference(image.name))
    except SpecError:
        return []
    # Only a name that already is a full reference (tagged or pulled), not "scratch".
    return [full] if full == image.name else []


def _port(port: int | str) -> str:
    text = str(port)
    number, _, protocol = text.partition("/")
    if (
        not number.isdigit()
        or not 0 < int(number) < 65536
        or protocol not in ("", "tcp", "udp", "sctp")
    ):
        raise SpecError("expose", f"{port!r} is not a port (80, '80/tcp', '53/udp')")
    return f"{int(number)}/{protocol or 'tcp'}"


def _set_run_config(config: dict[str, Any], image: Image) -> None:
    """The run defaults of ``image`` (a plain directory's, set by the caller) in an
    image config's ``config`` object."""
    for key, value in (
        ("Entrypoint", list(image.entrypoint)),
        ("Cmd", list(image.cmd)),
        ("Env", list(image.env)),
    ):
        if value:
            config[key] = value
    if image.workdir:
        config["WorkingDir"] = image.workdir
    if image.user:
        config["User"] = image.user
