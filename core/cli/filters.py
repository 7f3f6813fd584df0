"""``--filter KEY=VALUE`` as docker reads it, for every listing (``ps``, ``images``,
``network ls``, ``volume ls``, ``system prune``, ``search``, ``events``).

Values given for one key are alternatives (any may match), different keys all apply.
``label!=K[=V]`` is the key ``label!``. A listing names its keys, each with a
:data:`Compile`: it turns one value into a test on an item (checking the value there,
so a bad one is a one-line error before anything is listed).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pinnace.errors import InvalidConfig

KEYS: dict[str, tuple[str, ...]] = {
    "ps": ("ancestor", "before", "expose", "exited", "health", "id", "label", "label!", "name",
           "network", "publish", "since", "status", "volume"),
    "images": ("before", "dangling", "label", "label!", "reference", "since"),
    "network ls": ("dangling", "driver", "id", "label", "label!", "name", "type"),
    "volume ls": ("dangling", "driver", "label", "label!", "name"),
    "system prune": ("label", "label!", "until"),
    "search": ("is-automated", "is-official", "stars"),
    "events": ("container", "event", "image", "label", "network", "type"),
}
"""The filter keys of each listing (what completion offers)."""

T = TypeVar("T")
Test = Callable[[T], bool]
Compile = Callable[[str], Callable[[T], bool]]


@dataclass(frozen=True)
class Filter(Generic[T]):
    """The parsed ``--filter`` flags of one listing: for each key, the tests of its values."""

    tests: dict[str, list[Callable[[T], bool]]]

    def __call__(self, item: T) -> bool:
        """Whether ``item`` passes: some value of every key matches."""
        return all(any(test(item) for test in tests) for tests in self.tests.values())

    def select(self, items: Sequence[T]) -> list[T]:
        """The items that pass, in their order."""
        return [item for item in items if self(item)]


def split(item: str) -> tuple[str, str]:
    """``KEY=VALUE`` (``label!=...`` gives the key ``label!``); without ``=``, an error."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise InvalidConfig(f"invalid filter {item!r}: expected KEY=VALUE")
    return key, value


def parse(items: Sequence[str], keys: Mapping[str, Compile[T]], listing: str) -> Filter[T]:
    """The filter of ``items`` for a listing offering ``keys``; an unknown key is an error
    naming the known ones."""
    assert set(keys) == set(KEYS[listing]), listing
    tests: dict[str, list[Callable[[T], bool]]] = {}
    for item in items:
        key, value = split(item)
        if key not in keys:
            raise InvalidConfig(f"invalid filter {key!r} for {listing} (known: "
                                f"{', '.join(sorted(keys))})")
        tests.setdefault(key, []).append(keys[key](value))
    return Filter(tests)


def boolean(key: str, value: str) -> bool:
    """A ``true``/``false`` (``1``/``0``) filter value."""
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidConfig(f"invalid filter '{key}={value}': expected true or false")


def one_of(key: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``, else an error listing them."""
    if value not in allowed:
        raise InvalidConfig(f"invalid filter '{key}={value}' (expected one of: "
                            f"{', '.join(allowed)})")
    return value


def label(labels_of: Callable[[T], Mapping[str, str]], negate: bool = False) -> Compile[T]:
    """``label=K`` (has the key) or ``label=K=V`` (with that value); ``label!=`` inverts."""

    def compile_(value: str) -> Callable[[T], bool]:
        key, sep, wanted = value.partition("=")
        if not key:
            raise InvalidConfig(f"invalid filter 'label={value}': expected KEY or KEY=VALUE")

        def test(item: T) -> bool:
            labels = labels_of(item)
            found = key in labels and (not sep or labels[key] == wanted)
            return found != negate

        return test

    return compile_


def reference_matches(value: str, tag: str) -> bool:
    """Docker's ``reference`` match of ``repository:tag``: a shell pattern (``busy*``,
    ``*/app:1.*``) on the whole or on the repository."""
    return fnmatch.fnmatchcase(tag, value) or fnmatch.fnmatchcase(tag.rpartition(":")[0], value)
