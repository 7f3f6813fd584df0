"""The Debian mirror this host's apt uses, read from ``/etc/apt/sources.list`` and
``/etc/apt/sources.list.d/*.{list,sources}`` (one-line and deb822 formats)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pinnace.plugin import FailedPrecondition

APT_DIR = Path("/etc/apt")


@dataclass
class Source:
    """One ``deb`` source: its URI, suites, components and keyring (if signed-by a file)."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    keyring: str = ""


def _one_line(text: str) -> list[Source]:
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        keyring = ""
        if words and words[0].startswith("["):
            options = []
            while words:
                word = words.pop(0)
                options.append(word.strip("[]"))
                if word.endswith("]"):
                    break
            for option in options:
                key, _, value = option.partition("=")
                if key == "signed-by":
                    keyring = value
        if len(words) >= 2:
            found.append(Source(words[0], (words[1],), tuple(words[2:]), keyring))
    return found


def _deb822(text: str) -> list[Source]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append(Source(uri, tuple(fields.get("suites", "").split()),
                                tuple(fields.get("components", "").split()),
                                fields.get("signed-by", "")))
    return found


def apt_sources(apt_dir: Path = APT_DIR) -> list[Source]:
    """Every enabled ``deb`` source, in the order apt reads them."""
    found = []
    main = apt_dir / "sources.list"
    if main.is_file():
        found += _one_line(main.read_text(encoding="utf-8", errors="replace"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += _one_line(path.read_text(encoding="utf-8", errors="replace"))
            elif path.suffix == ".sources":
                found += _deb822(path.read_text(encoding="utf-8", errors="replace"))
    return found


def debian_mirror(suite: str, apt_dir: Path = APT_DIR) -> Source:
    """The source to debootstrap ``suite`` from: the first one listing that suite, else
    the first Debian-like one (a suite without ``-updates``/``-security``, component main)."""
    sources = [s for s in apt_sources(apt_dir)
               if s.uri.startswith(("http://", "https://", "file:/")) and "main" in s.components]
    for source in sources:
        if suite in source.suites:
            return source
    for source in sources:
        if any("-" not in s and "/" not in s for s in source.suites):
            return source
    raise FailedPrecondition(f"no Debian mirror with component main in {apt_dir}/sources.list "
                             f"or sources.list.d: debootstrap needs one (or set the mirror "
                             f"option of the debootstrap source)")
