"""The registry image source (transport ``docker``, the default for plain references):
pull and push through the OCI distribution API v2, login and logout, and ``search``
through a registry's catalog.

HTTPS with verified certificates by default. Plain HTTP (after HTTPS failed)
and unverified certificates only for the registries in ``insecure_registries``
(``host``, ``host:port`` or a CIDR), for loopback registries (docker's
default, 127.0.0.0/8), and with ``--tls-verify=false``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pinnace.plugin import InvalidConfig, Option, Plugin, hookimpl

if TYPE_CHECKING:
    from pinnace.images.reference import Reference
    from pinnace.plugin import ImageStore, SearchResult, TransferOptions
    from pinnace_plugins.source_registry.client import Registry
    from pinnace_plugins.source_registry.files import BlobCache, Credentials


def insecure_allowed(host: str, listed: tuple[str, ...]) -> bool:
    """Whether ``host`` (``name[:port]``) may be reached without verified TLS."""
    import ipaddress

    name = host[1:host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    if host in listed or name in listed or name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    for entry in listed:
        try:
            if "/" in entry and ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            raise InvalidConfig(f"insecure_registries: invalid network {entry!r}") from None
    return False


def _server(text: str) -> str:
    """``https://host:port/`` or ``host:port`` -> ``host:port``."""
    server = text.split("://", 1)[-1].split("/", 1)[0]
    if not server:
        raise InvalidConfig(f"invalid registry {text!r}")
    return server


class RegistrySource(Plugin):
    """OCI / docker registries."""

    options = (
        Option("insecure_registries", (), "registries reachable over plain HTTP or "
               "unverified TLS: host, host:port or CIDR (loopback always is)"),
        Option("parallel", 3, "layers transferred at the same time"),
        Option("auth_file", "", "credentials file (default: auth.json in the plugin's data "
               "directory, readable by root only)"),
        Option("default_registry", "", "the registry `search TERM` asks when the term names "
               "none (host or host:port)"),
    )

    def _credentials(self) -> Credentials:
        from pathlib import Path

        from pinnace_plugins.source_registry.files import Credentials

        return Credentials(Path(self.opt("auth_file") or self.ctx.data_dir / "auth.json"))

    def _cache(self) -> BlobCache:
        from pinnace_plugins.source_registry.files import BlobCache

        return BlobCache(self.ctx.data_dir / "blobs.json")

    def _registry(self, server: str, options: TransferOptions, anonymous: bool = False
                  ) -> Registry:
        from pinnace_plugins.source_registry.client import Registry

        if options.tls_verify is None:
            insecure = insecure_allowed(server, self.opt("insecure_registries"))
        else:
            insecure = not options.tls_verify
        creds = None if anonymous else self._credentials().get(server)
        return Registry(server, insecure=insecure, verify=not insecure, credentials=creds)

    @staticmethod
    def _reference(text: str) -> Reference:
        from pinnace.images.reference import parse

        ref = parse(text)
        if ref.registry is None:
            raise InvalidConfig(f"{text} names no registry: give one, e.g. "
                                f"127.0.0.1:5000/{ref.repository} (pinnace has no default "
                                f"registry)")
        return ref

    @hookimpl
    def pinnace_image_source_fetch(self, reference: str, store: ImageStore,
                                   options: TransferOptions) -> str:
        """Pull ``reference`` (``registry/name[:tag][@digest]``)."""
        from pinnace_plugins.source_registry.pull import Puller

        ref = self._reference(reference)
        assert ref.registry is not None
        reg = self._registry(ref.registry, options)
        return Puller(reg, ref, store, options, self._cache(), self.opt("parallel")).run()

    @hookimpl
    def pinnace_image_source_push(self, image_id: str, destination: str, store: ImageStore,
                                  options: TransferOptions) -> str:
        """Push image ``image_id`` to ``destination`` (``registry/name[:tag]``)."""
        from pinnace_plugins.source_registry.push import Pusher

        dest = self._reference(destination)
        if dest.digest is not None:
            raise InvalidConfig(f"cannot push to a digest reference: {destination}")
        assert dest.registry is not None
        reg = self._registry(dest.registry, options)
        image = store.resolve(image_id)
        return Pusher(reg, dest, image, store, options, self._cache(),
                      self.opt("parallel")).run()

    @hookimpl
    def pinnace_image_source_login(self, server: str, username: str, password: str,
                                   options: TransferOptions) -> None:
        """Check the credentials with the registry, then store them."""
        from pinnace.plugin import FailedPrecondition

        server = _server(server)
        reg = self._registry(server, options, anonymous=True)
        reg.credentials = (username, password)
        reg.ping()
        if reg.challenge.scheme == "bearer":
            reg.token("")
        elif reg.challenge.scheme == "basic":
            resp = reg.request("GET", "/v2/", "", expect=(200, 401))
            reg.read_prefix(resp)
            if resp.status != 200:
                raise FailedPrecondition(f"login to {server} failed: unauthorized "
                                         f"(wrong username or password)")
        self._credentials().set(server, username, password)

    @hookimpl
    def pinnace_image_source_search(self, query: str, limit: int,
                                    options: TransferOptions) -> list[SearchResult]:
        """Repositories of a registry's catalog whose name contains the term of
        ``HOST/TERM`` (or of ``TERM``, in the configured ``default_registry``)."""
        from pinnace.images.reference import parse
        from pinnace_plugins.source_registry.search import search

        first, sep, rest = query.partition("/")
        server, term = (first, rest) if sep and parse(f"{first}/x").registry == first else \
            (self.opt("default_registry"), query)
        if not server:
            raise InvalidConfig(f"search {query!r} names no registry: give HOST/TERM (e.g. "
                                f"127.0.0.1:5000/{query}) or set the registry source's "
                                f"default_registry")
        return search(self._registry(_server(server), options), term, limit)

    @hookimpl
    def pinnace_image_source_logout(self, server: str) -> bool:
        """Forget the credentials of ``server``."""
        return self._credentials().remove(_server(server))
