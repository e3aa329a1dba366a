"""Image references: the ``registry/repository:tag@digest`` names that ``docker pull`` reads.

A reference says where an image lives (a registry host), which repository on it, and which
image in the repository: a tag, which the registry may move, or a digest, the hash of the
manifest, which pins the bytes. The grammar is that of Docker's ``distribution/reference``
package (``reference.go``), written out here::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [ registry "/" ] repository
    registry         := host [ ":" port ]
    host             := domain-name | "[" IPv6address "]"      ; RFC 3986 appendix A
    domain-name      := label ( "." label )*                   ; an IPv4 address is one too
    label            := /[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]/
    port             := /[0-9]+/
    repository       := component ( "/" component )*
    component        := /[a-z0-9]+/ ( separator /[a-z0-9]+/ )*
    separator        := "." | "_" | "__" | /-+/
    tag              := /[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}/
    digest           := algorithm ":" hex
    algorithm        := /[A-Za-z][A-Za-z0-9]*/ ( /[-_+.]/ /[A-Za-z][A-Za-z0-9]*/ )*
    hex              := /[0-9a-fA-F]{32,}/

and then normalised as ``docker`` does: see :func:`parse_reference`.

Example:
    >>> ref = parse_reference("busybox:1.36")
    >>> ref.registry, ref.repository, ref.tag
    ('docker.io', 'library/busybox', '1.36')
    >>> str(ref), ref.familiar
    ('docker.io/library/busybox:1.36', 'busybox:1.36')
    >>> parse_reference("Busybox")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    containerlib.errors.SpecError: image: invalid image reference 'Busybox': ... must be lowercase
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Self

import attrs

from containerlib.errors import SpecError

__all__ = ["DEFAULT_REGISTRY", "NAME_MAX_LENGTH", "Reference", "parse_reference"]

DEFAULT_REGISTRY: Final = "docker.io"
"""The registry of a reference that names none: Docker Hub."""

NAME_MAX_LENGTH: Final = 255
"""The most characters in ``registry/repository``, after normalisation, as in Docker."""

_LEGACY_REGISTRY: Final = "index.docker.io"
_OFFICIAL_PREFIX: Final = "library/"
_TAG_MAX_LENGTH: Final = 128

# Every pattern is used with fullmatch and spells its classes out, so that neither Unicode
# digits nor a trailing newline (which ``$`` would allow) slip through.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_COMPONENT_CHARS = re.compile(r"[a-z0-9._-]+")
_LABEL = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?")
_LABEL_CHARS = re.compile(r"[a-zA-Z0-9-]+")
_IPV6_CHARS = re.compile(r"[0-9a-fA-F:]+")
_PORT = re.compile(r"[0-9]+")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*")
_HEX = re.compile(r"[0-9a-fA-F]{32,}")
_LOWER_HEX = re.compile(r"[0-9a-f]+")
_IMAGE_ID = re.compile(r"[0-9a-f]{64}")
_UPPER = re.compile(r"[A-Z]")

# The algorithms Docker can verify (go-digest's registered ones) must have exactly their
# hash's length in lowercase hex; others are held to the grammar alone.
_HEX_LENGTHS: Final = {"sha256": 64, "sha384": 96, "sha512": 128}


def _first_bad_char(text: str, allowed: re.Pattern[str]) -> str | None:
    return next((c for c in text if not allowed.fullmatch(c)), None)


def _registry_problem(registry: str) -> str | None:
    """Why ``registry`` is not ``host[:port]``, or None if it is."""
    if registry.startswith("["):
        address, bracket, after = registry[1:].partition("]")
        if not bracket:
            return f"registry {registry!r} opens '[' but does not close it"
        if not _IPV6_CHARS.fullmatch(address):
            return f"registry {registry!r} may hold only hex digits and ':' between '[' and ']'"
        try:
            ipaddress.IPv6Address(address)
        except ValueError as e:
            return f"registry {registry!r} does not hold an IPv6 address: {e}"
        if after and not after.startswith(":"):
            return f"registry {registry!r} may have only ':' and a port after ']'"
        return _port_problem(registry, after[1:] if after else None)
    host, colon, port = registry.partition(":")
    if ":" in port:
        return (
            f"registry {registry!r} has more than one ':'; "
            "an IPv6 address must be in brackets, like '[::1]:5000'"
        )
    return _host_problem(registry, host) or _port_problem(registry, port if colon else None)


def _host_problem(registry: str, host: str) -> str | None:
    if not host:
        return f"registry {registry!r} has no host name"
    for label in host.split("."):
        if not label:
            return f"registry {registry!r} has an empty part between dots"
        if _LABEL.fullmatch(label):
            continue
        bad = _first_bad_char(label, _LABEL_CHARS)
        if bad is not None:
            return f"registry host {host!r} may hold only letters, digits, '-' and '.', not {bad!r}"
        return f"registry host {host!r} has a part that starts or ends with '-'"
    return None


def _port_problem(registry: str, port: str | None) -> str | None:
    if port is None or _PORT.fullmatch(port):
        return None
    return f"registry {registry!r} must have a port of digits after ':', not {port!r}"


def _repository_problem(path: str) -> str | None:
    """Why ``path`` is not a repository name, or None if it is."""
    if not path:
        return "the repository name is empty"
    if path.startswith("/"):
        return f"repository {path!r} must not start with '/'"
    if path.endswith("/"):
        return f"repository {path!r} must not end with '/'"
    if "//" in path:
        return f"repository {path!r} has an empty component between '//'"
    if _UPPER.search(path):
        return f"repository {path!r} must be lowercase"
    for component in path.split("/"):
        if _COMPONENT.fullmatch(component):
            continue
        bad = _first_bad_char(component, _COMPONENT_CHARS)
        if bad is not None:
            return (
                f"repository component {component!r} may hold only lowercase letters, "
                f"digits, '.', '_' and '-', not {bad!r}"
            )
        if not (component[0].isalnum() and component[-1].isalnum()):
            return f"repository component {component!r} must start and end with a letter or digit"
        return (
            f"repository component {component!r} has a bad separator: letters and digits "
            "are joined by one '.', one or two '_', or any number of '-'"
        )
    return None


def _tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a tag, or None if it is."""
    if len(tag) > _TAG_MAX_LENGTH:
        return f"tag {tag!r} is {len(tag)} characters long; the most is {_TAG_MAX_LENGTH}"
    if _TAG.fullmatch(tag):
        return None
    if ":" in tag:
        return f"tag {tag!r} must not contain ':'; only one ':' may follow the repository"
    return (
        f"tag {tag!r} may hold only letters, digits, '_', '.' and '-', "
        "and must not start with '.' or '-'"
    )


def _digest_problem(digest: str) -> str | None:
    """Why ``digest`` is not ``algorithm:hex``, or None if it is."""
    algorithm, colon, hex_part = digest.partition(":")
    if not colon:
        return f"digest {digest!r} must be algorithm:hex, like 'sha256:' and 64 hex digits"
    length = _HEX_LENGTHS.get(algorithm)
    if length is not None:
        expected = f"digest {digest!r} must have {length} lowercase hex digits after '{algorithm}:'"
        if len(hex_part) != length:
            return f"{expected}, not {len(hex_part)}"
        bad = _first_bad_char(hex_part, _LOWER_HEX)
        if bad is not None:
            return f"{expected}; {bad!r} is not one"
        return None
    if algorithm.lower() in _HEX_LENGTHS:
        return f"digest {digest!r} must name its algorithm in lowercase: {algorithm.lower()!r}"
    if not _ALGORITHM.fullmatch(algorithm):
        return (
            f"digest {digest!r} has a bad algorithm {algorithm!r}: letters and digits, "
            "starting with a letter, in parts joined by '+', '.', '_' or '-'"
        )
    if not _HEX.fullmatch(hex_part):
        return f"digest {digest!r} must have at least 32 hex digits after '{algorithm}:'"
    return None


def _looks_like_registry(component: str) -> bool:
    # Docker's rule (splitDockerDomain) for whether the part before the first '/' is a
    # registry host or the first component of a Docker Hub repository.
    return "." in component or ":" in component or component == "localhost"


def _name_problem(registry: str, repository: str) -> tuple[str, str] | None:
    """The field and why ``registry`` and ``repository`` are not a normalised name."""
    if not _looks_like_registry(registry):
        return "registry", (
            f"registry {registry!r} would be read as part of the repository: a registry "
            "host has a '.' or a ':port', or is 'localhost'"
        )
    if registry == _LEGACY_REGISTRY:
        return "registry", f"registry {registry!r} is written {DEFAULT_REGISTRY!r}"
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        return "repository", (
            f"repository {repository!r} on {DEFAULT_REGISTRY} is written "
            f"{_OFFICIAL_PREFIX + repository!r}"
        )
    name = f"{registry}/{repository}"
    if len(name) > NAME_MAX_LENGTH:
        return "repository", (
            f"name {name!r} is {len(name)} characters long; the most is {NAME_MAX_LENGTH}"
        )
    return None


def _check(problem: str | None, field: str) -> None:
    if problem is not None:
        raise SpecError(field, problem)


def _valid_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise SpecError(field, f"must be a string, not {value!r}")
    return value


def _registry(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    _check(_registry_problem(_valid_str(value, attribute.name)), attribute.name)


def _repository(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    _check(_repository_problem(_valid_str(value, attribute.name)), attribute.name)


def _tag(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        _check(_tag_problem(_valid_str(value, attribute.name)), attribute.name)


def _digest(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        _check(_digest_problem(_valid_str(value, attribute.name)), attribute.name)


@attrs.frozen(kw_only=True)
class Reference:
    """A parsed, normalised image reference; build one with :func:`parse_reference`.

    Every field is checked against the grammar when the reference is built, and the name
    must already be normalised (``docker.io``, not ``index.docker.io``; ``library/busybox``,
    not ``busybox``), so that two references to the same image compare equal and
    ``parse_reference(str(ref), default_tag=None) == ref`` always holds.

    Attributes:
        registry: the registry host, with its port if any: ``"docker.io"``,
            ``"localhost:5000"``, ``"[::1]:5000"``, ``"registry.example"``.
        repository: the path on the registry, ``/``-separated lowercase components:
            ``"library/busybox"``, ``"team/app"``.
        tag: the tag, or None.
        digest: ``"algorithm:hex"``, or None. Both a tag and a digest may be set, as in
            ``busybox:1.36@sha256:...``; the digest is what identifies the image then.

    Example:
        >>> ref = Reference(registry="localhost:5000", repository="team/app", tag="v1")
        >>> str(ref), ref.name
        ('localhost:5000/team/app:v1', 'localhost:5000/team/app')
        >>> str(ref.with_digest("sha256:" + "0" * 64))[:40]
        'localhost:5000/team/app:v1@sha256:000000'
        >>> Reference(repository="busybox")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        containerlib.errors.SpecError: repository: ... is written 'library/busybox'
    """

    registry: str = attrs.field(default=DEFAULT_REGISTRY, validator=_registry)
    repository: str = attrs.field(validator=_repository)
    tag: str | None = attrs.field(default=None, validator=_tag)
    digest: str | None = attrs.field(default=None, validator=_digest)

    def __attrs_post_init__(self) -> None:
        problem = _name_problem(self.registry, self.repository)
        if problem is not None:
            raise SpecError(*problem)

    @property
    def name(self) -> str:
        """``registry/repository``, the full name Docker gives the repository.

        Example:
            >>> parse_reference("busybox").name
            'docker.io/library/busybox'
        """
        return f"{self.registry}/{self.repository}"

    @property
    def familiar(self) -> str:
        """The short form ``docker images`` shows, which parses back to this reference.

        ``docker.io/`` is left out, and so is ``library/`` before an official image's name,
        unless leaving it out would change how the rest is read: ``docker.io/a.b/c`` stays
        whole, since ``a.b/c`` names the registry ``a.b``.

        Example:
            >>> parse_reference("docker.io/library/busybox:1.36").familiar
            'busybox:1.36'
            >>> parse_reference("index.docker.io/team/app:1.2").familiar
            'team/app:1.2'
            >>> parse_reference("localhost:5000/a/b:t").familiar
            'localhost:5000/a/b:t'
        """
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            path = self.repository
            short = path.removeprefix(_OFFICIAL_PREFIX)
            if "/" not in short:
                path = short
            first, slash, _ = path.partition("/")
            if not (slash and _looks_like_registry(first)):
                name = path
        return name + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def __str__(self) -> str:
        """The full form, ``registry/repository[:tag][@digest]``.

        Example:
            >>> str(parse_reference("busybox"))
            'docker.io/library/busybox:latest'
        """
        return self.name + self._suffix()

    def with_tag(self, tag: str | None) -> Self:
        """Return a copy with ``tag`` instead of this tag (None: no tag); the digest stays.

        Raises:
            SpecError: ``tag`` is not a valid tag; the field is ``"tag"``.

        Example:
            >>> str(parse_reference("busybox:1.36").with_tag("1.37"))
            'docker.io/library/busybox:1.37'
        """
        return attrs.evolve(self, tag=tag)

    def with_digest(self, digest: str | None) -> Self:
        """Return a copy with ``digest`` instead of this digest (None: no digest); the tag stays.

        Raises:
            SpecError: ``digest`` is not ``algorithm:hex``; the field is ``"digest"``.

        Example:
            >>> ref = parse_reference("busybox:1.36").with_digest("sha256:" + "ab" * 32)
            >>> ref.tag, ref.digest[:12]
            ('1.36', 'sha256:ababa')
        """
        return attrs.evolve(self, digest=digest)


def parse_reference(
    text: str, *, default_tag: str | None = "latest", field: str = "image"
) -> Reference:
    """Parse an image reference the way ``docker pull`` reads it.

    Docker's normalisation is applied:

    * the part before the first ``/`` is a registry only if it contains ``.`` or ``:``, or
      is ``localhost``; otherwise the registry is ``docker.io``
      (``team/app`` is ``docker.io/team/app``, ``localhost:5000/app`` is not);
    * ``index.docker.io`` is written ``docker.io``;
    * a one-component repository on ``docker.io`` is an official image, under
      ``library/`` (``busybox`` is ``docker.io/library/busybox``);
    * with neither a tag nor a digest, the tag is ``default_tag``: ``"latest"`` unless the
      caller passes another, or None to leave the reference without a tag;
    * a tag and a digest may both be given (``busybox:1.36@sha256:...``); both are kept.

    Refused, as Docker refuses them: uppercase letters in the repository (``Team/app`` is
    an error, although recent Docker reads an uppercase first component as a registry host);
    64 lowercase hex digits alone, which would be mistaken for an image id; and a name
    ``registry/repository`` of more than 255 characters. A digest whose algorithm is
    ``sha256``, ``sha384`` or ``sha512`` must have exactly that hash's length in lowercase
    hex; other algorithms need only follow the grammar (at least 32 hex digits).

    Args:
        text: the reference, for example ``"busybox:1.36"`` or
            ``"localhost:5000/team/app@sha256:..."``.
        default_tag: the tag to use when ``text`` has neither a tag nor a digest.
        field: the field name errors carry.

    Returns:
        The normalised :class:`Reference`.

    Raises:
        SpecError: ``text`` is not a valid reference; the message says what is wrong and
            quotes ``text``. ``default_tag`` is not a valid tag (field ``"default_tag"``).

    Example:
        >>> parse_reference("localhost:5000/team/app")
        Reference(registry='localhost:5000', repository='team/app', tag='latest', digest=None)
        >>> parse_reference("index.docker.io/busybox", default_tag=None).familiar
        'busybox'
        >>> parse_reference("busybox::1.36", field="base")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        containerlib.errors.SpecError: base: ... 'busybox::1.36': tag ':1.36' must not contain...
    """
    if default_tag is not None:
        _check(_tag_problem(_valid_str(default_tag, "default_tag")), "default_tag")
    if not isinstance(text, str):
        raise SpecError(field, f"must be an image reference like 'busybox:1.36', not {text!r}")

    def fail(problem: str) -> SpecError:
        return SpecError(field, f"invalid image reference {text!r}: {problem}")

    if not text:
        raise fail("it is empty")
    if _IMAGE_ID.fullmatch(text):
        raise fail("64 hex digits alone are an image id, not a repository name")

    rest, at, digest_text = text.partition("@")
    digest: str | None = None
    if at:
        if "@" in digest_text:
            raise fail("it has more than one '@'")
        if not digest_text:
            raise fail("there is no digest after '@'")
        digest = digest_text
    # Only the registry may hold a ':' before the last '/', so a tag is what follows a ':'
    # after it.
    colon = rest.find(":", rest.rfind("/") + 1)
    tag: str | None = None
    name = rest
    if colon >= 0:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not tag:
            raise fail("there is no tag after ':'")
    if not name:
        raise fail("there is no repository name")

    first, slash, remainder = name.partition("/")
    if slash and _looks_like_registry(first):
        registry, path = first, remainder
        problem = _registry_problem(registry)
        if problem is not None:
            raise fail(problem)
    else:
        registry, path = DEFAULT_REGISTRY, name
    for problem in (
        _repository_problem(path),
        None if tag is None else _tag_problem(tag),
        None if digest is None else _digest_problem(digest),
    ):
        if problem is not None:
            raise fail(problem)

    if registry == _LEGACY_REGISTRY:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if tag is None and digest is None:
        tag = default_tag
    name_problem = _name_problem(registry, path)
    if name_problem is not None:
        raise fail(name_problem[1])
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
