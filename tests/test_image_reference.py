"""Image references: parsing, normalisation, and telling IDs from names."""

from __future__ import annotations

import pytest

from pinnace.errors import InvalidConfig
from pinnace.images.reference import Reference, is_id_prefix, normalize, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref, expected", [
    ("busybox", Reference("busybox", "latest", None, None)),
    ("busybox:1.36", Reference("busybox", "1.36", None, None)),
    ("library/debian:bookworm", Reference("library/debian", "bookworm", None, None)),
    ("127.0.0.1:5000/library/debian:bookworm",
     Reference("library/debian", "bookworm", None, "127.0.0.1:5000")),
    ("localhost:5000/x", Reference("x", "latest", None, "localhost:5000")),
    ("localhost/x:y", Reference("x", "y", None, "localhost")),
    ("registry.example.com/a/b/c", Reference("a/b/c", "latest", None, "registry.example.com")),
    ("[::1]:5000/img:t", Reference("img", "t", None, "[::1]:5000")),
    (f"busybox@{DIGEST}", Reference("busybox", None, DIGEST, None)),
    (f"busybox:1@{DIGEST}", Reference("busybox", "1", DIGEST, None)),
    ("x/a.b_c__d-e---f/g:T_a.g-1", Reference("x/a.b_c__d-e---f/g", "T_a.g-1", None, None)),
])
def test_parse(ref: str, expected: Reference) -> None:
    assert parse(ref) == expected


@pytest.mark.parametrize("ref, normal", [
    ("busybox", "busybox:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("127.0.0.1:5000/library/debian:bookworm", "127.0.0.1:5000/library/debian:bookworm"),
    (f"x@{DIGEST}", f"x@{DIGEST}"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest"),  # no rewriting either way
])
def test_normalize(ref: str, normal: str) -> None:
    assert normalize(ref) == normal
    assert str(parse(normal)) == normal


def test_name_joins_registry_and_repository() -> None:
    assert parse("localhost:5000/a/b:t").name == "localhost:5000/a/b"
    assert parse("a/b:t").name == "a/b" and parse("a/b").registry is None


@pytest.mark.parametrize("ref, message", [
    ("BusyBox", 'repository name must be lowercase: "BusyBox"'),
    ("Bad:Ref!", 'invalid tag: "Ref!"'),
    ("busybox:", 'invalid tag: ""'),
    ("busybox:" + "t" * 129, "invalid tag"),
    ("busybox:-x", 'invalid tag: "-x"'),
    ("a//b", 'invalid repository name component: ""'),
    ("a/b/", 'invalid repository name component: ""'),
    ("-abc", 'invalid repository name component: "-abc"'),
    ("abc_", 'invalid repository name component: "abc_"'),
    ("a___b", 'invalid repository name component: "a___b"'),
    ("busybox@sha256:abc", 'digest must be sha256:<64 lowercase hex digits>: "sha256:abc"'),
    ("busybox@md5:" + "a" * 32, "digest must be sha256"),
    ("bad_host!:5000/x", 'invalid registry host: "bad_host!:5000"'),
    ("a_b.c/x", 'invalid registry host: "a_b.c"'),  # dotted first component: a host
    ("", "empty reference"),
    (":tag", "empty repository name"),
    ("a" * 64, "64-digit hex string"),
    ("x/" + "a" * 260, "must not be more than 255 characters"),
])
def test_invalid(ref: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse(ref)
    text = str(info.value)
    assert text.startswith("invalid reference format: ") and message in text
    assert "\n" not in text


@pytest.mark.parametrize("value, expected", [
    ("abcd", True), ("0123456789ab", True), ("a" * 64, True), ("sha256:a", True),
    ("sha256:" + "f" * 64, True),
    ("abc", False), ("a" * 65, False), ("ABCD", False), ("busybox", False), ("sha256:", False),
    ("sha256:xyz", False), ("abcd:latest", False),
])
def test_is_id_prefix(value: str, expected: bool) -> None:
    assert is_id_prefix(value) is expected
