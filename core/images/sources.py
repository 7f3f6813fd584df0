"""Transport dispatch: a reference ``TRANSPORT:rest`` goes to the image source plugin
named ``TRANSPORT``, like skopeo's transports; any other reference goes to the
default source (``[engine] image_source``, the registry plugin ``docker``).

``docker://127.0.0.1:5000/x:1``, ``oci-archive:app.tar`` and ``debootstrap:bookworm``
name their transport; ``127.0.0.1:5000/x:1`` and ``localhost:5000/x`` do not (a
prefix counts as a transport only when an installed image source has that name).
``TRANSPORT://rest`` and ``TRANSPORT:rest`` are the same reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinnace.images.store import ImageStore
    from pinnace.plugins import Plugins
    from pinnace.progress import Progress

_TRANSPORT = re.compile(r"([a-z][a-z0-9-]*):(.*)", re.S)


@dataclass
class TransferOptions:
    """What a user asked of a fetch, push or login; sources ignore what does not apply."""

    platform: str | None = None        # "os/arch[/variant]"; None: this host's
    tls_verify: bool | None = None     # None: the source's configuration decides
    progress: Progress | None = None   # per-layer progress display; None: quiet
    compression: str | None = None     # push: layer compression (gzip, zstd, none)


@dataclass
class SearchResult:
    """One repository a source's ``search`` found, with docker's ``search`` fields and
    the tags it has."""

    name: str                          # as ``pull`` takes it: registry/repository
    tags: list[str] = field(default_factory=list)
    description: str = ""
    stars: int = 0
    official: bool = False
    automated: bool = False


def split(reference: str, transports: list[str], default: str) -> tuple[str, str]:
    """``(transport, rest)`` of ``reference``: its prefix when that names one of
    ``transports``, else ``default`` and the whole reference."""
    match = _TRANSPORT.fullmatch(reference)
    if match and match.group(1) in transports:
        return match.group(1), match.group(2).removeprefix("//")
    return default, reference


class ImageSources:
    """The installed image source plugins, each serving the transport it is named after."""

    def __init__(self, plugins: Plugins, store: ImageStore, default: str) -> None:
        self.plugins = plugins
        self.store = store
        self.default = default
        """The transport of references that name none (``[engine] image_source``)."""

    def has_transport(self, reference: str) -> bool:
        """Whether ``reference`` names a transport or a registry, i.e. whether it can be
        fetched rather than only found in the store."""
        from pinnace.errors import InvalidConfig
        from pinnace.images.reference import parse

        match = _TRANSPORT.fullmatch(reference)
        if match and match.group(1) in self._transports():
            return True
        try:
            return parse(reference).registry is not None
        except InvalidConfig:
            return False

    def _transports(self) -> list[str]:
        from pinnace import plugins

        return plugins.available("image_source")

    def _split(self, reference: str) -> tuple[str, str]:
        return split(reference, self._transports(), self.default)

    def fetch(self, reference: str, options: TransferOptions) -> str:
        """Bring ``reference`` into the store through its transport; return the image ID."""
        transport, rest = self._split(reference)
        return str(self.plugins.call("image_source", transport, "fetch", reference=rest,
                                     store=self.store, options=options))

    def push(self, source: str, destination: str, options: TransferOptions) -> str:
        """Copy image ``source`` from the store to ``destination``; return the written digest."""
        image_id = self.store.resolve(source).id
        transport, rest = self._split(destination)
        return str(self.plugins.call("image_source", transport, "push", image_id=image_id,
                                     destination=rest, store=self.store, options=options))

    def login(self, server: str, username: str, password: str,
              options: TransferOptions) -> None:
        """Check and store credentials for ``server`` (``TRANSPORT:server`` picks the source)."""
        transport, rest = self._split(server)
        self.plugins.call("image_source", transport, "login", server=rest, username=username,
                          password=password, options=options)

    def search(self, query: str, limit: int, options: TransferOptions) -> list[SearchResult]:
        """At most ``limit`` repositories matching ``query`` (``[TRANSPORT:]HOST/TERM``, or
        a term the source's default location answers)."""
        transport, rest = self._split(query)
        return list(self.plugins.call("image_source", transport, "search", query=rest,
                                      limit=limit, options=options))

    def logout(self, server: str) -> bool:
        """Forget the credentials for ``server``; return whether there were any."""
        transport, rest = self._split(server)
        return bool(self.plugins.call("image_source", transport, "logout", server=rest))
