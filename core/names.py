"""Container names: validation and docker-style random names."""

from __future__ import annotations

import os
import re

from pinnace.errors import InvalidConfig

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")

_ADJECTIVES = (
    "brave", "calm", "clever", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry",
    "nimble", "quiet", "rapid", "steady", "swift", "tidy", "vivid", "wise", "bold", "crisp",
)
_NOUNS = (
    "anchor", "beacon", "compass", "dinghy", "harbor", "keel", "lantern", "mast", "oar",
    "pinnace", "quay", "rudder", "sail", "skiff", "tiller", "wake", "yawl", "hull", "jib", "buoy",
)


def validate(name: str) -> str:
    """Return ``name`` if it is a valid container name, else raise ``InvalidConfig``."""
    if not NAME_RE.match(name):
        raise InvalidConfig(
            f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name


def random_name() -> str:
    """A readable random name such as ``swift_rudder``."""
    a, n = os.urandom(2)
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_NOUNS[n % len(_NOUNS)]}"


def new_id() -> str:
    """A new 64-hex-digit container ID."""
    return os.urandom(32).hex()
