"""Push: the layers (in parallel), the config, then an OCI manifest.

Layers are pushed in the compression asked for (gzip by default). A stored blob
that already has it (a pulled gzip layer, an imported plain tar pushed with
``none``) is sent as it is, with a monolithic upload (its digest is known);
another is decompressed (checked against its diff ID) and compressed on the fly
with a chunked upload (its digest is known only at the end). A blob the
registry already has is skipped: found by ``HEAD`` from the digests of earlier
pulls and pushes (the blob cache), or mounted from another repository of the
same registry that holds it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode

from pinnace.images.compression import COMPRESSION, MEDIA, Counted
from pinnace.images.reference import Reference
from pinnace.plugin import FailedPrecondition, InvalidConfig
from pinnace_plugins.source_registry.client import Registry
from pinnace_plugins.source_registry.pull import OCI_MANIFEST

if TYPE_CHECKING:
    from pinnace.images.store import Image, Layer
    from pinnace.plugin import ImageStore, TransferOptions
    from pinnace_plugins.source_registry.files import BlobCache

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
CHUNK = 8 << 20        # bytes per PATCH of a chunked upload
GZIP_LEVEL = 1         # fast; a few percent larger than gzip's default
_READ = 1 << 20


def _compressed(tar: BinaryIO, compression: str) -> Iterator[bytes]:
    """The plain tar ``tar`` compressed (``none``: as it is), in pieces."""
    if compression == "none":
        while data := tar.read(_READ):
            yield data
        return
    if compression == "gzip":
        import zlib

        comp: Any = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    else:
        import zstandard

        comp = zstandard.ZstdCompressor(level=3).compressobj()
    while data := tar.read(_READ):
        if out := comp.compress(data):
            yield out
    yield comp.flush()


class Pusher:
    """One push of one image to one repository."""

    def __init__(self, reg: Registry, dest: Reference, image: Image, store: ImageStore,
                 options: TransferOptions, cache: BlobCache, parallel: int) -> None:
        self.reg, self.dest, self.image, self.store = reg, dest, image, store
        self.options, self.cache, self.parallel = options, cache, parallel
        self.repo = dest.repository
        self.scope = f"repository:{self.repo}:pull,push"
        self.compression = options.compression or "gzip"
        if self.compression not in MEDIA:
            raise InvalidConfig(f"unknown compression {self.compression!r} "
                                f"(gzip, zstd or none)")
        self.lock = threading.Lock()

    def run(self) -> str:
        """Push; return the manifest digest."""
        with ThreadPoolExecutor(max_workers=max(1, self.parallel)) as pool:
            layers = list(pool.map(self._layer, self.image.layers))
        config = self.store.blob_path(self.image.id).read_bytes()
        if not self._exists(self.image.id):
            self._monolithic(self.image.id, len(config), lambda: config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.image.id, "size": len(config)},
            "layers": layers,
        }, separators=(",", ":")).encode()
        self.reg.request("PUT", f"/v2/{self.repo}/manifests/{self.dest.tag or 'latest'}",
                         self.scope, {"Content-Type": OCI_MANIFEST}, manifest, expect=(201,))
        self.cache.save()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.store.add_repo_digest(self.dest.name, digest, self.image.id)
        return digest

    def _layer(self, layer: Layer) -> dict[str, Any]:
        bar = self.options.progress.bar(layer.diff_id[7:19], layer.size) \
            if self.options.progress else None
        as_stored = COMPRESSION[layer.media_type] == self.compression
        try:
            desc = self._existing(layer, as_stored)
            if desc is not None:
                if bar is not None:
                    bar.finish("Layer already exists")
                return desc
            if as_stored:
                path = self.store.blob_path(layer.blob_digest)
                self._monolithic(layer.blob_digest, layer.size,
                                 lambda: Counted(open(path, "rb"), bar))
                digest, size = layer.blob_digest, layer.size
            else:
                with self.store.layer_stream(layer, bar) as tar:
                    digest, size = self._chunked(_compressed(tar, self.compression))
            with self.lock:
                self.cache.record(layer.diff_id, self.compression, digest, size,
                                  f"{self.reg.host}/{self.repo}")
            if bar is not None:
                bar.finish("Pushed")
            return {"mediaType": MEDIA[self.compression], "digest": digest, "size": size}
        finally:
            self.reg.close()

    def _existing(self, layer: Layer, as_stored: bool) -> dict[str, Any] | None:
        """The descriptor of a blob the registry has (or can mount) for ``layer`` in the
        compression pushed: the stored blob itself when it has it, else one the
        blob cache knows."""
        known = self.cache.lookup(layer.diff_id, self.compression)
        if as_stored:
            repos = known["repos"] if known and known["digest"] == layer.blob_digest else []
            known = {"digest": layer.blob_digest, "size": layer.size, "repos": repos}
        if known is None:
            return None
        desc = {"mediaType": MEDIA[self.compression], "digest": known["digest"],
                "size": known["size"]}
        if self._exists(known["digest"]):
            return desc
        prefix = f"{self.reg.host}/"
        for repo in known["repos"]:
            if repo.startswith(prefix) and repo != prefix + self.repo:
                source = repo[len(prefix):]
                query = urlencode({"mount": known["digest"], "from": source})
                try:  # a mount needs pull access to the other repository as well
                    resp = self.reg.request("POST", f"/v2/{self.repo}/blobs/uploads/?{query}",
                                            f"{self.scope} repository:{source}:pull",
                                            {"Content-Length": "0"}, b"", expect=(201, 202))
                except FailedPrecondition:  # refused: upload it instead
                    continue
                self.reg.read_prefix(resp)
                if resp.status == 201:
                    return desc
                self._cancel(resp.getheader("Location"))
        return None

    def _exists(self, digest: str) -> bool:
        resp = self.reg.request("HEAD", f"/v2/{self.repo}/blobs/{digest}", self.scope,
                                expect=(200, 404))
        self.reg.read_prefix(resp)
        return resp.status == 200

    def _start(self) -> str:
        resp = self.reg.request("POST", f"/v2/{self.repo}/blobs/uploads/", self.scope,
                                {"Content-Length": "0"}, b"", expect=(202,))
        self.reg.read_prefix(resp)
        return self._location(resp)

    def _cancel(self, location: str | None) -> None:
        if location:
            resp = self.reg.request("DELETE", location, self.scope, expect=(204, 404))
            self.reg.read_prefix(resp)

    @staticmethod
    def _location(resp: Any) -> str:
        location = resp.getheader("Location")
        if not location:
            raise InvalidConfig("the registry started an upload without a Location")
        return location

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}{urlencode({'digest': digest})}"

    def _monolithic(self, digest: str, size: int, body: Any) -> None:
        """Upload a blob of known digest in one PUT (``body()`` opens it afresh)."""
        location = self._start()
        resp = self.reg.request("PUT", self._with_digest(location, digest), self.scope,
                                {"Content-Type": "application/octet-stream",
                                 "Content-Length": str(size)}, body, expect=(201,))
        self.reg.read_prefix(resp)

    def _chunked(self, pieces: Iterator[bytes]) -> tuple[str, int]:
        """Upload ``pieces`` in PATCHes of CHUNK bytes; return (digest, size)."""
        location = self._start()
        digest, offset, buf = hashlib.sha256(), 0, bytearray()

        def send(chunk: bytes) -> None:
            nonlocal location, offset
            resp = self.reg.request(
                "PATCH", location, self.scope,
                {"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                 "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}, chunk, expect=(202,))
            self.reg.read_prefix(resp)
            location = self._location(resp)
            offset += len(chunk)

        for piece in pieces:
            buf += piece
            digest.update(piece)
            while len(buf) >= CHUNK:
                send(bytes(buf[:CHUNK]))
                del buf[:CHUNK]
        if buf:
            send(bytes(buf))
        name = "sha256:" + digest.hexdigest()
        resp = self.reg.request("PUT", self._with_digest(location, name), self.scope,
                                {"Content-Length": "0"}, b"", expect=(201,))
        self.reg.read_prefix(resp)
        return name, offset
