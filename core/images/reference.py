"""Image references (``[registry/]name[:tag][@sha256:digest]``) and image-id prefixes.

The grammar is docker's (distribution/reference), without docker.io
rewriting: a local name stays as typed, so ``busybox`` normalises to
``busybox:latest``, not ``docker.io/library/busybox:latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pinnace.errors import InvalidConfig

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*")
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_ID = re.compile(r"(?:sha256:[a-f0-9]{1,64}|[a-f0-9]{4,64})")
_HEX64 = re.compile(r"[a-f0-9]{64}")
_MAX_NAME = 255


@dataclass
class Reference:
    """A parsed, normalised image reference; ``str()`` gives its canonical form."""

    repository: str                 # path without the registry, e.g. "library/debian"
    tag: str | None = "latest"      # None only when a digest is given without a tag
    digest: str | None = None       # "sha256:<hex>"
    registry: str | None = None     # "127.0.0.1:5000"; None for a local name

    @property
    def name(self) -> str:
        """Registry and repository: what a tag is attached to."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def _bad(why: str) -> InvalidConfig:
    return InvalidConfig(f"invalid reference format: {why}")


def parse(ref: str) -> Reference:
    """Parse and validate ``ref``; raise ``InvalidConfig`` naming the bad part."""
    if not ref:
        raise _bad("empty reference")
    rest, digest = ref, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise _bad(f'digest must be sha256:<64 lowercase hex digits>: "{digest}"')
    tag = None
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:  # a ':' after the last '/' starts the tag (before it, it is a port)
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise _bad(f'invalid tag: "{tag}"')
    if not rest:
        raise _bad("empty repository name")
    registry, path = None, rest
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST.fullmatch(first):
            raise _bad(f'invalid registry host: "{first}"')
        registry, path = first, remainder
    if len(rest) > _MAX_NAME:
        raise _bad(f"repository name must not be more than {_MAX_NAME} characters")
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            if _COMPONENT.fullmatch(component.lower()):
                raise _bad(f'repository name must be lowercase: "{path}"')
            raise _bad(f'invalid repository name component: "{component}"')
    if registry is None and _HEX64.fullmatch(path):
        raise _bad(f'repository name cannot be a 64-digit hex string (an image ID): "{path}"')
    if tag is None and digest is None:
        tag = "latest"
    return Reference(repository=path, tag=tag, digest=digest, registry=registry)


def normalize(ref: str) -> str:
    """The canonical string form of ``ref`` (``busybox`` -> ``busybox:latest``)."""
    return str(parse(ref))


def is_id_prefix(value: str) -> bool:
    """Whether ``value`` looks like an image ID or a prefix of one: 4-64 hex digits,
    or ``sha256:`` and 1-64 hex digits. A bare hex string may also be a valid name:
    callers try it as a name first, as docker does."""
    return _ID.fullmatch(value) is not None
