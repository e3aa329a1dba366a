"""Image references, read as ``docker pull`` reads them (distribution/reference's grammar).

The expected parts in the tables come from Docker's documented grammar and normalisation,
not from the parser: a short name is on ``docker.io`` under ``library/``, the first
component is a registry only with a ``.``, a ``:`` or as ``localhost``, and so on.
"""

from __future__ import annotations

import doctest
import ipaddress

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from containerlib.errors import SpecError
from containerlib.image import reference as reference_module
from containerlib.image.reference import Reference, parse_reference

H64 = "0123456789abcdef" * 4
H96 = "fedcba9876543210" * 6
H128 = "0a1b2c3d4e5f6789" * 8
SHA256 = f"sha256:{H64}"

# (text, registry, repository, tag, digest, familiar)
GOOD = [
    ("busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    ("library/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None, "busybox:1"),
    ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None,
     "busybox:latest"),
    ("index.docker.io/busybox:x", "docker.io", "library/busybox", "x", None, "busybox:x"),
    ("index.docker.io/team/app", "docker.io", "team/app", "latest", None, "team/app:latest"),
    ("team/app:1.2", "docker.io", "team/app", "1.2", None, "team/app:1.2"),
    ("docker.io/team/app:1.2", "docker.io", "team/app", "1.2", None, "team/app:1.2"),
    ("a/b/c/d", "docker.io", "a/b/c/d", "latest", None, "a/b/c/d:latest"),
    ("library/a/b", "docker.io", "library/a/b", "latest", None, "library/a/b:latest"),
    ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest"),
    ("localhost:5000/a/b:c", "localhost:5000", "a/b", "c", None, "localhost:5000/a/b:c"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None, "127.0.0.1:5000/x:latest"),
    ("127.0.0.1/x", "127.0.0.1", "x", "latest", None, "127.0.0.1/x:latest"),
    ("[::1]:5000/x:y", "[::1]:5000", "x", "y", None, "[::1]:5000/x:y"),
    ("[::1]/x", "[::1]", "x", "latest", None, "[::1]/x:latest"),
    ("[2001:db8::1]:443/a/b", "[2001:db8::1]:443", "a/b", "latest", None,
     "[2001:db8::1]:443/a/b:latest"),
    ("[FE80::1]:5000/a", "[FE80::1]:5000", "a", "latest", None, "[FE80::1]:5000/a:latest"),
    ("registry.example/app", "registry.example", "app", "latest", None,
     "registry.example/app:latest"),
    ("registry.example:5000/app:v1", "registry.example:5000", "app", "v1", None,
     "registry.example:5000/app:v1"),
    ("Registry.Example/app", "Registry.Example", "app", "latest", None,
     "Registry.Example/app:latest"),
    ("my-registry.example.com:443/team/app:v1", "my-registry.example.com:443", "team/app", "v1",
     None, "my-registry.example.com:443/team/app:v1"),
    ("xn--bcher-kva.example/a", "xn--bcher-kva.example", "a", "latest", None,
     "xn--bcher-kva.example/a:latest"),
    ("host:1/a", "host:1", "a", "latest", None, "host:1/a:latest"),
    (f"registry.example/a/b/c@{SHA256}", "registry.example", "a/b/c", None, SHA256,
     f"registry.example/a/b/c@{SHA256}"),
    (f"busybox@{SHA256}", "docker.io", "library/busybox", None, SHA256, f"busybox@{SHA256}"),
    (f"busybox:1.36@{SHA256}", "docker.io", "library/busybox", "1.36", SHA256,
     f"busybox:1.36@{SHA256}"),
    (f"localhost:5000/a:t@{SHA256}", "localhost:5000", "a", "t", SHA256,
     f"localhost:5000/a:t@{SHA256}"),
    (f"busybox@sha384:{H96}", "docker.io", "library/busybox", None, f"sha384:{H96}",
     f"busybox@sha384:{H96}"),
    (f"busybox@sha512:{H128}", "docker.io", "library/busybox", None, f"sha512:{H128}",
     f"busybox@sha512:{H128}"),
    # Algorithms Docker does not know are held to the grammar: >= 32 hex digits, any case.
    ("a@blake3:" + "A" * 32, "docker.io", "library/a", None, "blake3:" + "A" * 32,
     "a@blake3:" + "A" * 32),
    ("a@multi.hash+b_c-D:" + "0" * 40, "docker.io", "library/a", None,
     "multi.hash+b_c-D:" + "0" * 40, "a@multi.hash+b_c-D:" + "0" * 40),
    ("a.b", "docker.io", "library/a.b", "latest", None, "a.b:latest"),
    ("a_b", "docker.io", "library/a_b", "latest", None, "a_b:latest"),
    ("a__b", "docker.io", "library/a__b", "latest", None, "a__b:latest"),
    ("a-b", "docker.io", "library/a-b", "latest", None, "a-b:latest"),
    ("a--b---c", "docker.io", "library/a--b---c", "latest", None, "a--b---c:latest"),
    ("team/a.b_c-d__e1", "docker.io", "team/a.b_c-d__e1", "latest", None,
     "team/a.b_c-d__e1:latest"),
    ("0", "docker.io", "library/0", "latest", None, "0:latest"),
    ("123/456:789", "docker.io", "123/456", "789", None, "123/456:789"),
    ("localhost", "docker.io", "library/localhost", "latest", None, "localhost:latest"),
    # With no '/', "localhost:5000" is the repository "localhost" with the tag "5000".
    ("localhost:5000", "docker.io", "library/localhost", "5000", None, "localhost:5000"),
    ("docker.io", "docker.io", "library/docker.io", "latest", None, "docker.io:latest"),
    ("busybox:Latest_TAG.1-2", "docker.io", "library/busybox", "Latest_TAG.1-2", None,
     "busybox:Latest_TAG.1-2"),
    ("busybox:_x", "docker.io", "library/busybox", "_x", None, "busybox:_x"),
    ("busybox:a", "docker.io", "library/busybox", "a", None, "busybox:a"),
    ("busybox:" + "t" * 128, "docker.io", "library/busybox", "t" * 128, None,
     "busybox:" + "t" * 128),
    (f"{H64}:tag", "docker.io", f"library/{H64}", "tag", None, f"{H64}:tag"),
    (H64[:63], "docker.io", f"library/{H64[:63]}", "latest", None, f"{H64[:63]}:latest"),
    # docker.io/ must stay when the rest would otherwise be read as a registry.
    ("docker.io/a.b/c", "docker.io", "a.b/c", "latest", None, "docker.io/a.b/c:latest"),
    ("docker.io/localhost/c", "docker.io", "localhost/c", "latest", None,
     "docker.io/localhost/c:latest"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "familiar"), GOOD, ids=[g[0] for g in GOOD]
)
def test_parse_gives_the_normalised_parts(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None, familiar: str
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert ref.name == f"{registry}/{repository}"
    assert ref.familiar == familiar


@pytest.mark.parametrize("text", [g[0] for g in GOOD])
def test_full_and_familiar_forms_parse_back_to_the_same_reference(text: str) -> None:
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref
    assert str(parse_reference(str(ref))) == str(ref)
    bare = parse_reference(text, default_tag=None)
    assert parse_reference(str(bare), default_tag=None) == bare
    assert parse_reference(bare.familiar, default_tag=None) == bare


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("team/app:1.2", "docker.io/team/app:1.2"),
        ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        (f"busybox:1@{SHA256}", f"docker.io/library/busybox:1@{SHA256}"),
        (f"busybox@{SHA256}", f"docker.io/library/busybox@{SHA256}"),
    ],
)
def test_str_is_the_canonical_full_form(text: str, full: str) -> None:
    assert str(parse_reference(text)) == full


def test_spellings_of_one_image_are_equal_and_hash_alike() -> None:
    spellings = [
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
    ]
    refs = {parse_reference(s) for s in spellings}
    assert refs == {
        Reference(registry="docker.io", repository="library/busybox", tag="latest", digest=None)
    }


def test_default_tag_can_be_changed_or_turned_off() -> None:
    assert parse_reference("busybox", default_tag=None).tag is None
    assert str(parse_reference("busybox", default_tag=None)) == "docker.io/library/busybox"
    assert parse_reference("busybox", default_tag="stable").tag == "stable"
    # A digest alone pins the image: no tag is added to it.
    assert parse_reference(f"busybox@{SHA256}", default_tag="stable").tag is None
    assert parse_reference("busybox:1", default_tag=None).tag == "1"


def test_a_bad_default_tag_is_refused_naming_default_tag() -> None:
    with pytest.raises(SpecError) as caught:
        parse_reference("busybox", default_tag="-x")
    assert caught.value.field == "default_tag"
    assert "'-x'" in str(caught.value)


def test_name_length_counts_the_normalised_name_up_to_255() -> None:
    # "docker.io/library/" is 18 characters.
    assert len(parse_reference("a" * 237).name) == 255
    assert len(parse_reference("localhost:5000/" + "b" * 240).name) == 255
    for text in ("a" * 238, "docker.io/" + "a" * 238, "localhost:5000/" + "b" * 241):
        with pytest.raises(SpecError, match="256 characters long; the most is 255"):
            parse_reference(text)


# (text, part of the reason); each message must also quote the text.
BAD = [
    ("", "it is empty"),
    ("Busybox", "repository 'Busybox' must be lowercase"),
    ("team/App:1", "repository 'team/App' must be lowercase"),
    ("localhost:5000/A", "repository 'A' must be lowercase"),
    # Docker >= 24 reads an uppercase first component as a registry host; we refuse it.
    ("Team/app", "repository 'Team/app' must be lowercase"),
    (H64, "image id"),
    ("busybox:", "no tag after ':'"),
    ("busybox@", "no digest after '@'"),
    ("busybox:1@", "no digest after '@'"),
    (":tag", "no repository name"),
    (f"@{SHA256}", "no repository name"),
    ("a@b@c", "more than one '@'"),
    ("busybox/", "must not end with '/'"),
    ("localhost:5000/", "the repository name is empty"),
    ("/busybox", "must not start with '/'"),
    ("a//b", "empty component between '//'"),
    ("busybox:-x", "tag '-x' may hold only letters"),
    ("busybox:.x", "must not start with '.' or '-'"),
    ("busybox:a b", "tag 'a b'"),
    ("busybox:tag\n", "tag 'tag\\n'"),
    ("busybox:" + "t" * 129, "129 characters long; the most is 128"),
    ("busybox::1", "tag ':1' must not contain ':'"),
    ("a:b:c", "tag 'b:c' must not contain ':'"),
    ("busybox@sha256:abc", "must have 64 lowercase hex digits after 'sha256:', not 3"),
    ("busybox@sha256:" + "A" * 64, "'A' is not one"),
    (f"busybox@sha512:{H64}", "must have 128 lowercase hex digits after 'sha512:', not 64"),
    (f"busybox@sha384:{H64}", "must have 96 lowercase hex digits"),
    (f"busybox@sha256:{H64}0", "not 65"),
    ("busybox@md5", "must be algorithm:hex"),
    ("busybox@foo:" + "a" * 31, "at least 32 hex digits after 'foo:'"),
    ("busybox@foo:" + "g" * 40, "at least 32 hex digits"),
    ("busybox@1sha:" + "a" * 32, "bad algorithm '1sha'"),
    ("busybox@sha--x:" + "a" * 32, "bad algorithm 'sha--x'"),
    (f"busybox@SHA256:{H64}", "must name its algorithm in lowercase: 'sha256'"),
    ("-busybox", "'-busybox' must start and end with a letter or digit"),
    ("busybox-", "must start and end with a letter or digit"),
    ("team/.app", "'.app' must start and end"),
    ("a..b", "bad separator"),
    ("a___b", "bad separator"),
    ("a._b", "bad separator"),
    ("a_-b", "bad separator"),
    ("bü", "not 'ü'"),
    (" busybox", "not ' '"),
    ("busy box", "not ' '"),
    ("a/b:c/d", "component 'b:c' may hold only"),
    ("::1/x", "more than one ':'; an IPv6 address must be in brackets"),
    ("fe80::1:5000/x", "more than one ':'"),
    ("[1::2::3]:5000/x", "does not hold an IPv6 address"),
    ("[::1/x", "opens '[' but does not close it"),
    ("[::1]x/y", "only ':' and a port after ']'"),
    ("[::g]/x", "only hex digits and ':' between '[' and ']'"),
    ("[::1]:/x", "must have a port of digits after ':', not ''"),
    ("localhost:/x", "must have a port of digits after ':', not ''"),
    ("localhost:50a0/x", "not '50a0'"),
    (":5000/x", "has no host name"),
    ("-bad.example/x", "part that starts or ends with '-'"),
    ("bad-.example/x", "part that starts or ends with '-'"),
    ("bad_host.example/x", "may hold only letters, digits, '-' and '.', not '_'"),
    ("a..example/x", "empty part between dots"),
    (".example/x", "empty part between dots"),
]


@pytest.mark.parametrize(("text", "reason"), BAD, ids=[repr(b[0])[:40] for b in BAD])
def test_bad_references_are_refused_with_the_reason_and_the_text(text: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_reference(text)
    assert caught.value.field == "image"
    message = str(caught.value)
    assert message.startswith(f"image: invalid image reference {text!r}: ")
    assert reason in message


def test_errors_carry_the_field_passed() -> None:
    with pytest.raises(SpecError) as caught:
        parse_reference("Busybox", field="services.web.image")
    assert caught.value.field == "services.web.image"
    assert str(caught.value).startswith("services.web.image: invalid image reference 'Busybox'")


@pytest.mark.parametrize("value", [None, b"busybox", 5, ["busybox"]])
def test_a_reference_must_be_a_string(value: object) -> None:
    with pytest.raises(SpecError) as caught:
        parse_reference(value)  # type: ignore[arg-type]
    assert caught.value.field == "image"
    assert repr(value) in str(caught.value)


# --- Reference built directly ------------------------------------------------------------


def test_with_tag_and_with_digest_return_changed_copies() -> None:
    ref = parse_reference("busybox:1.36")
    pinned = ref.with_digest(SHA256)
    assert str(pinned) == f"docker.io/library/busybox:1.36@{SHA256}"
    assert str(pinned.with_tag("1.37")) == f"docker.io/library/busybox:1.37@{SHA256}"
    assert str(pinned.with_tag(None)) == f"docker.io/library/busybox@{SHA256}"
    assert pinned.with_digest(None) == ref
    assert str(ref) == "docker.io/library/busybox:1.36"


@pytest.mark.parametrize(
    ("change", "field", "quoted"),
    [
        (lambda r: r.with_tag("bad tag"), "tag", "'bad tag'"),
        (lambda r: r.with_tag(""), "tag", "''"),
        (lambda r: r.with_digest("md5:abc"), "digest", "'md5:abc'"),
        (lambda r: r.with_digest("sha256:" + "0" * 63), "digest", "not 63"),
    ],
)
def test_with_methods_validate(change: object, field: str, quoted: str) -> None:
    ref = parse_reference("busybox")
    with pytest.raises(SpecError) as caught:
        change(ref)  # type: ignore[operator]
    assert caught.value.field == field
    assert quoted in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"registry": "foo", "repository": "a/b"}, "registry", "would be read as part of"),
        ({"registry": "index.docker.io", "repository": "a/b"}, "registry", "'docker.io'"),
        ({"repository": "busybox"}, "repository", "is written 'library/busybox'"),
        ({"repository": "library/Busybox"}, "repository", "must be lowercase"),
        ({"registry": "a_b.example", "repository": "a"}, "registry", "not '_'"),
        ({"registry": 5000, "repository": "a/b"}, "registry", "must be a string, not 5000"),
        ({"repository": "a/b", "tag": ".x"}, "tag", "'.x'"),
        ({"repository": "a/b", "digest": "sha256:x"}, "digest", "'sha256:x'"),
        ({"registry": "localhost", "repository": "a" * 246}, "repository", "256 characters"),
    ],
)
def test_a_reference_is_validated_when_built(
    fields: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(SpecError) as caught:
        Reference(**fields)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert reason in str(caught.value)


def test_a_reference_is_frozen_and_keyword_only() -> None:
    ref = Reference(registry="localhost:5000", repository="a", tag="t")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ref.tag = "u"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Reference("docker.io", "library/a")  # type: ignore[call-arg]
    assert Reference(repository="library/a") == parse_reference("a", default_tag=None)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(reference_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- Properties, from the grammar ----------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
HEX = "0123456789abcdef"
alnums = st.text(ALNUM, min_size=1, max_size=4)
separators = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def components(draw: st.DrawFn) -> str:
    parts = [draw(alnums)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(separators), draw(alnums)]
    return "".join(parts)


paths = st.lists(components(), min_size=1, max_size=4).map("/".join)
labels = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?", fullmatch=True)
ports = st.integers(0, 65535).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]").filter(lambda a: "." not in a)
registries = st.one_of(
    st.lists(labels, min_size=2, max_size=4).map(".".join),
    st.tuples(labels, ports).map(":".join),
    st.tuples(st.lists(labels, min_size=2, max_size=3).map(".".join), ports).map(":".join),
    st.ip_addresses(v=4).map(str),
    st.tuples(st.ip_addresses(v=4).map(str), ports).map(":".join),
    ipv6,
    st.tuples(ipv6, ports).map(":".join),
    st.sampled_from(["localhost", "localhost:5000", "docker.io", "index.docker.io"]),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
known_digests = st.sampled_from([("sha256", 64), ("sha384", 96), ("sha512", 128)]).flatmap(
    lambda a: st.text(HEX, min_size=a[1], max_size=a[1]).map(lambda h: f"{a[0]}:{h}")
)
other_digests = st.tuples(
    st.from_regex(
        r"[A-Za-z][A-Za-z0-9]{0,3}([-_+.][A-Za-z][A-Za-z0-9]{0,3}){0,2}", fullmatch=True
    ).filter(lambda a: a.lower() not in {"sha256", "sha384", "sha512"}),
    st.from_regex(r"[0-9a-fA-F]{32,80}", fullmatch=True),
).map(":".join)
digests = st.one_of(known_digests, other_digests)


@given(
    registry=st.none() | registries,
    path=paths,
    tag=st.none() | tags,
    digest=st.none() | digests,
)
def test_any_reference_from_the_grammar_parses_to_its_parts(
    registry: str | None, path: str, tag: str | None, digest: str | None
) -> None:
    first = path.partition("/")[0]
    # Without a registry, a first component with a '.' would be read as one.
    assume(registry is not None or "/" not in path or ("." not in first and first != "localhost"))
    assume(not (registry is None and tag is None and digest is None and len(path) == 64))
    text = (f"{registry}/" if registry else "") + path
    text += (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest is not None else "")

    expected_registry = registry or "docker.io"
    if expected_registry == "index.docker.io":
        expected_registry = "docker.io"
    expected_path = path
    if expected_registry == "docker.io" and "/" not in path:
        expected_path = f"library/{path}"
    if len(f"{expected_registry}/{expected_path}") > 255:
        with pytest.raises(SpecError, match="the most is 255"):
            parse_reference(text)
        return

    ref = parse_reference(text, default_tag=None)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        expected_registry,
        expected_path,
        tag,
        digest,
    )
    assert parse_reference(text).tag == (tag if tag is not None or digest is not None else "latest")
    assert parse_reference(str(ref), default_tag=None) == ref
    assert parse_reference(ref.familiar, default_tag=None) == ref
    if registry and registry.startswith("["):
        assert ipaddress.IPv6Address(ref.registry[1:].partition("]")[0])


REFERENCE_ALPHABET = "abAZ09f:/@._-[] \n"


@given(st.text() | st.text(REFERENCE_ALPHABET, max_size=40))
def test_any_text_parses_or_raises_spec_error_quoting_it(text: str) -> None:
    try:
        ref = parse_reference(text)
    except SpecError as e:
        error = e
    else:
        assert parse_reference(str(ref)) == ref
        assert parse_reference(ref.familiar) == ref
        return
    assert error.field == "image"
    assert repr(text) in str(error)
