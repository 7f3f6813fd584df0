"""Pull: manifest (or index, narrowed to one platform), config, then the layers in
parallel, each streamed from the socket into the store as the registry serves it
(gzip, zstd or plain tar), its digest checked on the way, never whole in memory.

A blob whose bytes do not hash to its digest is rejected before it is moved into
place (fsynced first, in its transfer's thread, so the fsyncs overlap the other
transfers); an interrupted transfer is retried from the start. A layer's
diff ID, and whether it is a whole tar a layer may hold, are checked when it is
first unpacked (:meth:`pinnace.images.store.ImageStore.layer_stream`), not here:
a pull only downloads. If anything fails, the blobs this pull wrote and no image
uses are deleted, and no image row is written. An image already in the store
(same config digest) is not downloaded again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pinnace.images.compression import COMPRESSION, MEDIA
from pinnace.images.reference import Reference
from pinnace.plugin import InvalidConfig, NoSpace, NotFound, PinnaceError, Unavailable
from pinnace_plugins.source_registry.client import RETRIES, Registry, Transient, describe

if TYPE_CHECKING:
    import http.client

    from pinnace.images.store import Blob
    from pinnace.plugin import ImageStore, TransferOptions
    from pinnace.progress import Bar
    from pinnace_plugins.source_registry.files import BlobCache

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
_READ = 1 << 20


class Cancelled(Exception):
    """Another layer of the same pull failed: stop this one."""


def parse_platform(text: str) -> tuple[str, str, str | None]:
    """``os/arch[/variant]`` -> (os, arch, variant)."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidConfig(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT], "
                            f"e.g. linux/amd64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def get_manifest(reg: Registry, repo: str, ref: str, scope: str) -> tuple[bytes, str, str]:
    """(body, media type, digest) of manifest ``ref`` (a tag or digest), verified."""
    resp, body = reg.fetch_small(f"/v2/{repo}/manifests/{ref}", scope, {"Accept": ACCEPT})
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    claimed = resp.getheader("Docker-Content-Digest")
    if ref.startswith("sha256:") and digest != ref:
        raise InvalidConfig(f"manifest {repo}@{ref} does not match its digest (got {digest})")
    if claimed and claimed.startswith("sha256:") and claimed != digest:
        raise InvalidConfig(f"manifest {repo}:{ref} does not match the digest the registry "
                            f"claims ({claimed}, got {digest})")
    try:
        media = json.loads(body).get("mediaType") or resp.getheader("Content-Type", "")
    except (ValueError, AttributeError):
        raise InvalidConfig(f"manifest {repo}:{ref} is not JSON") from None
    return body, media.split(";")[0].strip(), digest


def select_platform(index: dict[str, Any], wanted: tuple[str, str, str | None],
                    name: str) -> str:
    """The digest of the manifest for ``wanted`` in an index / manifest list."""
    os_, arch, variant = wanted
    offered = []
    for entry in index.get("manifests") or []:
        plat = entry.get("platform") or {}
        offered.append("/".join(p for p in (plat.get("os"), plat.get("architecture"),
                                            plat.get("variant")) if p))
        if plat.get("os") == os_ and plat.get("architecture") == arch and \
                (variant is None or plat.get("variant") in (variant, None)):
            return entry["digest"]
    want = "/".join(p for p in wanted if p)
    raise NotFound(f"{name} has no image for platform {want} "
                   f"(it has: {', '.join(offered) or 'none'}); choose one with --platform")


class _Body:
    """The body of a blob response, which must have the size its descriptor says,
    else InvalidConfig (its digest is checked by the store as it is written).
    Network failures surface as Transient."""

    def __init__(self, resp: http.client.HTTPResponse, digest: str, size: int,
                 bar: Bar | None, stop: threading.Event) -> None:
        self.resp, self.digest, self.size, self.bar, self.stop = resp, digest, size, bar, stop
        self.count = 0

    def read(self, n: int | None = -1) -> bytes:
        if self.stop.is_set():
            raise Cancelled()
        try:
            data = self.resp.read(n if n is not None and n >= 0 else _READ)
        except Exception as err:
            if isinstance(err, PinnaceError):
                raise
            raise Transient(f"blob {self.digest}: registry {describe(err)}") from None
        self.count += len(data)
        if self.count > self.size:
            raise InvalidConfig(f"blob {self.digest} is larger than the {self.size} bytes "
                                f"its manifest says: rejected")
        if data:
            if self.bar is not None:
                self.bar.advance(len(data))
            return data
        if self.count < self.size:
            raise Transient(f"blob {self.digest}: registry closed the connection after "
                            f"{self.count} of {self.size} bytes")
        return b""


class Puller:
    """One pull of one reference from one registry."""

    def __init__(self, reg: Registry, ref: Reference, store: ImageStore,
                 options: TransferOptions, cache: BlobCache, parallel: int) -> None:
        self.reg, self.ref, self.store, self.options = reg, ref, store, options
        self.cache, self.parallel = cache, parallel
        self.scope = f"repository:{ref.repository}:pull"
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> str:
        """Pull; return the image ID."""
        from pinnace.images.store import host_platform

        repo, name = self.ref.repository, str(self.ref)
        wanted = parse_platform(self.options.platform) if self.options.platform else \
            (*host_platform(), None)
        body, media, digest = get_manifest(self.reg, repo, self.ref.digest or self.ref.tag or
                                           "latest", self.scope)
        if media in (OCI_INDEX, DOCKER_LIST):
            chosen = select_platform(json.loads(body), wanted, name)
            body, media, _ = get_manifest(self.reg, repo, chosen, self.scope)
        if media not in (OCI_MANIFEST, DOCKER_MANIFEST):
            raise InvalidConfig(f"{name}: unsupported manifest type {media!r} (pinnace reads "
                                f"OCI and docker schema 2 manifests and indexes)")
        manifest = json.loads(body)
        config = self._config(manifest["config"])
        if self.options.platform and (config.get("os"), config.get("architecture")) != \
                wanted[:2]:
            raise NotFound(f"{name} is for {config.get('os')}/{config.get('architecture')}, "
                           f"not the requested {self.options.platform}")
        layers = manifest.get("layers") or []
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(layers):
            raise InvalidConfig(f"{name}: the manifest has {len(layers)} layers, its config "
                                f"{len(diff_ids)}")
        try:
            with self.store.staging() as written:
                stored = self._layers(layers, diff_ids, written)
                tags = [name] if self.ref.tag else []
                image_id = self.store.add_image(self.config_bytes, stored, tags, "pull",
                                                written)
                self.store.add_repo_digest(self.ref.name, digest, image_id)
        except NoSpace as err:
            raise NoSpace(f"{err} while pulling {name}; nothing was kept") from None
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"no space left in {self.store.root} while pulling {name}; "
                              f"nothing was kept") from None
            raise
        self.cache.save()
        return image_id

    def _config(self, desc: dict[str, Any]) -> dict[str, Any]:
        _, body = self.reg.fetch_small(f"/v2/{self.ref.repository}/blobs/{desc['digest']}",
                                       self.scope)
        got = "sha256:" + hashlib.sha256(body).hexdigest()
        if got != desc["digest"]:
            raise InvalidConfig(f"image config {desc['digest']} does not match its digest "
                                f"(got {got}): rejected")
        self.config_bytes, self.config_digest = body, got
        try:
            config = json.loads(body)
        except ValueError:
            raise InvalidConfig(f"image config {desc['digest']} is not JSON") from None
        if not isinstance(config, dict):
            raise InvalidConfig(f"image config {desc['digest']} is not a JSON object")
        return config

    def _layers(self, layers: list[dict[str, Any]], diff_ids: list[str],
                written: list[str]) -> list[Blob]:
        """Fetch the layer blobs the store lacks (appending them to ``written``); return
        every layer's blob. None is fetched when the image itself is stored."""
        from pinnace.images.store import Blob

        progress = self.options.progress
        image_stored = self.store.has_image(self.config_digest)
        blobs, jobs = [], []
        for desc, diff_id in zip(layers, diff_ids, strict=True):
            kind = COMPRESSION.get(desc.get("mediaType", ""))
            if kind is None:
                raise InvalidConfig(f"{self.ref}: unsupported layer type "
                                    f"{desc.get('mediaType')!r}")
            if not isinstance(desc.get("size"), int) or desc["size"] < 0:
                raise InvalidConfig(f"{self.ref}: layer {desc['digest']} has no valid size")
            blobs.append(Blob(desc["digest"], desc["size"], MEDIA[kind]))
            if image_stored or self.store.has_blob(desc["digest"]):
                if progress is not None:
                    progress.bar(desc["digest"][7:19]).finish("Already exists")
                continue
            bar = progress.bar(desc["digest"][7:19], desc["size"]) if progress else None
            jobs.append((desc, diff_id, kind, bar))
        with ThreadPoolExecutor(max_workers=max(1, self.parallel)) as pool:
            futures = [pool.submit(self._layer, *job, written) for job in jobs]
            errors = []
            for future in futures:
                try:
                    future.result()
                except BaseException as err:
                    self.stop.set()
                    errors.append(err)
        real = [e for e in errors if not isinstance(e, Cancelled)]
        if real:
            raise real[0]
        return blobs

    def _layer(self, desc: dict[str, Any], diff_id: str, kind: str, bar: Bar | None,
               written: list[str]) -> None:
        """Download, verify and store one layer blob as served (retried from the start
        when the transfer breaks), appending it to ``written``."""
        path = f"/v2/{self.ref.repository}/blobs/{desc['digest']}"
        try:
            for attempt in range(1, RETRIES + 1):
                resp = self.reg.request("GET", path, self.scope)
                body = _Body(resp, desc["digest"], desc["size"], bar, self.stop)
                try:
                    self.store.add_blob(body, expected=desc["digest"])
                    written.append(desc["digest"])
                    break
                except Transient as err:
                    self.reg.close()
                    if attempt == RETRIES:
                        raise Unavailable(f"{err} ({RETRIES} attempts)") from None
                    if bar is not None:
                        bar.restart()
        finally:
            self.reg.close()
        with self.lock:
            self.cache.record(diff_id, kind, desc["digest"], desc["size"],
                              f"{self.reg.host}/{self.ref.repository}")
        if bar is not None:
            bar.finish("Pull complete")
