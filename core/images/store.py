"""The OCI image store: an OCI image layout on disk plus image rows in the state.

On disk, under ``root``: ``oci-layout``, ``index.json`` (one manifest
descriptor per tag, annotated with ``org.opencontainers.image.ref.name``,
plus one unannotated descriptor per untagged image) and
``blobs/sha256/<hex>``. A blob is written to a temp file in its final
directory, verified, fsynced, then renamed, so a crash never leaves a partial
blob under its final name. In the state: ``images``, ``tags`` and
``image_layers``.

Layer blobs are kept as they came, like containerd's content store: pulled ones
as the registry served them (gzip, zstd or plain tar), built ones (import,
commit, load) as plain tar, whose digest is then the diff ID. The manifest's
media type says which (:mod:`pinnace.images.compression`). A compressed layer's
diff ID (the config's ``rootfs.diff_ids``) is checked when it is first read,
which is when it is unpacked into a snapshot.

The store knows nothing of storage plugins: removing an image reports the
layer chain IDs no image uses any more, and the engine removes their snapshots.

Image sources (``pinnace_image_source_fetch``) write through this surface::

    with store.staging() as written:           # blobs of a failed block that no image uses go
        layer = store.add_tree(rootfs)         # or add_layer(stream), write_layer(fn),
        written.append(layer.digest)           #    add_blob(stream, expected=digest)
        config = new_config([layer.digest], {"Cmd": ["sh"]}, created_by="...")
        image_id = store.add_image(config, [layer], tags, "mysource", written)

:meth:`ImageStore.add_image` takes the config as bytes (a pulled one byte for
byte; :func:`new_config` for an image the source built), so the same source
material gives the same image ID and fetching it again changes nothing.
:meth:`ImageStore.has_image` and :meth:`ImageStore.has_blob` let a source skip
work already done, :meth:`ImageStore.add_repo_digest` records the registry
repository a pulled image came from, and :meth:`ImageStore.resolve` finds an
image by tag. Progress goes to ``TransferOptions.progress`` (one bar per
layer, each finished with a status).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from pinnace import faults
from pinnace.errors import FailedPrecondition, InvalidConfig, NotFound, TryAgain, writing
from pinnace.images.compression import MEDIA_TAR
from pinnace.images.reference import is_id_prefix
from pinnace.images.reference import parse as parse_reference

if TYPE_CHECKING:
    import sqlite3

    from pinnace.progress import Bar
    from pinnace.state import State

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386"}
_STALE_TEMP = 3600  # seconds without a write before a blob temp file counts as abandoned
TEMP_PREFIX = ".tmp-"
"""Blob temp files are ``.tmp-<pid of the writer>-...`` next to the blobs."""


@dataclass
class Layer:
    """One layer of an image, bottom first."""

    diff_id: str       # sha256 of the uncompressed tar
    chain_id: str      # identifies the layer *and everything below it* (the snapshot key)
    blob_digest: str   # the stored blob (the diff ID when it is a plain tar)
    size: int          # the blob's size in bytes
    media_type: str    # the blob's OCI media type: its compression


class Blob(NamedTuple):
    """A stored layer blob, as an image records it."""

    digest: str
    size: int
    media_type: str = MEDIA_TAR     # a plain tar: its digest is its diff ID


@dataclass
class Image:
    """An image in the store."""

    id: str                      # "sha256:<config digest>"
    tags: list[str]
    created: float               # when it entered the store (epoch seconds)
    size: int                    # sum of the layer blobs' sizes (as stored)
    layers: list[Layer]
    config: dict[str, Any]       # the parsed OCI image config
    manifest_digest: str
    repo_digests: list[str] = field(default_factory=list)  # "registry/repo@sha256:..."


@dataclass
class RemoveResult:
    """What ``rmi`` did: the tags it removed, the images it deleted, and the layer
    chain IDs no remaining image uses (their snapshots can go)."""

    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    orphan_chain_ids: list[str] = field(default_factory=list)
    reclaimed: int = 0  # bytes of the blobs deleted


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0),
    ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    import hashlib

    out: list[str] = []
    for diff_id in diff_ids:
        if out:
            diff_id = "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
        out.append(diff_id)
    return out


def host_platform() -> tuple[str, str]:
    """This host's OCI ``(os, architecture)``, e.g. ``("linux", "amd64")``."""
    return "linux", _ARCH.get(os.uname().machine, os.uname().machine)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def rfc3339(ts: float) -> str:
    """``ts`` as OCI image configs write times (UTC, ``Z``)."""
    from datetime import datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` (temp file created with ``mode`` less the umask,
    fsync, rename, fsync the directory)."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class _BlobWriter:
    """A blob being written: a temp file next to the blobs, hashed as it grows. A full
    filesystem raises NoSpace naming ``what`` it was writing and the store ``root``."""

    def __init__(self, directory: Path, what: str, root: Path) -> None:
        import hashlib

        self.directory, self.what, self.root = directory, what, root
        self.tmp = directory / f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(8).hex()}"
        with self._writing():
            self.file = open(self.tmp, "xb")
        self.hash = hashlib.sha256()
        self.size = 0

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return writing(self.what, self.directory, self.root)

    def write(self, data: bytes) -> int:
        with self._writing():
            self.file.write(data)
        self.hash.update(data)
        self.size += len(data)
        faults.point("blob.writing")
        return len(data)

    def commit(self, expected: str | None = None) -> str:
        """Verify against ``expected``, fsync, move into place; return the digest."""
        with self._writing():
            self.file.flush()
        digest = "sha256:" + self.hash.hexdigest()
        if expected is not None and digest != expected:
            raise InvalidConfig(f"blob {expected} does not match its digest (its bytes hash "
                                f"to {digest}): rejected, nothing stored")
        with self._writing():
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.directory / digest.removeprefix("sha256:"))
            _fsync_dir(self.directory)
        faults.point("blob.stored")
        return digest

    def discard(self) -> None:
        """Drop the temp file (nothing, once committed), even when closing it fails
        (a full disk refuses the buffered tail)."""
        try:
            self.file.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


class _Tee:
    """A reader that copies everything read from ``source`` into ``sink``."""

    def __init__(self, source: Any, sink: _BlobWriter) -> None:
        self.source, self.sink = source, sink

    def read(self, n: int | None = -1) -> bytes:
        data = self.source.read(n)
        self.sink.write(data)
        return data


class ImageStore:
    """OCI image layout under ``root``, indexed by the ``images``/``tags``/``image_layers`` rows."""

    def __init__(self, root: Path, state: State) -> None:
        self.root = root
        self.state = state
        self.blobs = root / "blobs" / "sha256"
        self._added: list[str] | None = None
        """IDs of the images added inside :meth:`recording` (None outside it)."""

    # ------------------------------------------------------------ blobs
    def blob_path(self, digest: str) -> Path:
        """Where the blob ``sha256:<hex>`` lives (whether or not it exists)."""
        algo, _, hexdigest = digest.partition(":")
        if algo != "sha256" or len(hexdigest) != 64 or not is_id_prefix(hexdigest):
            raise InvalidConfig(f"invalid digest {digest!r}")
        return self.blobs / hexdigest

    @contextlib.contextmanager
    def _writer(self, what: str = "image blob") -> Iterator[_BlobWriter]:
        with writing("the image store layout", self.root):
            if not self.blobs.is_dir():
                self.blobs.mkdir(parents=True, exist_ok=True)
            if not (self.root / "oci-layout").exists():
                atomic_write(self.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        writer = _BlobWriter(self.blobs, what, self.root)
        try:
            yield writer
        finally:
            writer.discard()

    def add_blob(self, source: BinaryIO | bytes, expected: str | None = None) -> tuple[str, int]:
        """Store ``source`` as a blob, verified against ``expected`` when given
        (a mismatch raises InvalidConfig and stores nothing); return (digest, size)."""
        with self._writer() as writer:
            if isinstance(source, bytes):
                writer.write(source)
            else:
                while chunk := source.read(1 << 20):
                    writer.write(chunk)
            return writer.commit(expected), writer.size

    def has_blob(self, digest: str) -> bool:
        """Whether the blob ``digest`` is stored (False for an invalid digest)."""
        try:
            return self.blob_path(digest).is_file()
        except InvalidConfig:
            return False

    def has_image(self, image_id: str) -> bool:
        """Whether the image ``image_id`` (a full ID) is in the store."""
        return self.state.one("SELECT 1 FROM images WHERE id = ?", image_id) is not None

    def _read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from the image store {self.root}") from None

    @contextlib.contextmanager
    def scratch_file(self, what: str) -> Iterator[Path]:
        """A path for a temporary file next to the blobs (same filesystem), removed after
        the block; one abandoned by a killed pinnace is swept like a blob temp file."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        path = self.blobs / f"{TEMP_PREFIX}{os.getpid()}-{what}-{os.urandom(4).hex()}"
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def abandoned(self) -> list[str]:
        """Names of the blob temp files a crashed pinnace left: their writer's process is
        gone, or they saw no write for an hour."""
        if not self.blobs.is_dir():
            return []
        found = []
        for entry in os.scandir(self.blobs):
            if not entry.name.startswith(TEMP_PREFIX):
                continue
            writer = entry.name[len(TEMP_PREFIX):].split("-", 1)[0]
            with contextlib.suppress(FileNotFoundError):
                gone = not writer.isdigit() or not os.path.exists(f"/proc/{writer}")
                if gone or time.time() - entry.stat().st_mtime > _STALE_TEMP:
                    found.append(entry.name)
        return found

    def sweep(self) -> list[str]:
        """Remove the :meth:`abandoned` blob temp files; return their names."""
        found = self.abandoned()
        for name in found:
            (self.blobs / name).unlink(missing_ok=True)
        return found

    def garbage(self, repair: bool) -> list[str]:
        """Blob files no image names (an ``rmi`` or an import killed between its rows and
        its blobs) and abandoned temp files; with ``repair`` they go and ``index.json``
        is written anew from the rows. Only while no operation runs: a blob being
        pulled is named by no image yet."""
        if not self.blobs.is_dir():
            return []
        with self.state.tx() as db:
            named = {r[0] for r in db.execute(
                "SELECT id FROM images UNION SELECT manifest_digest FROM images"
                " UNION SELECT blob_digest FROM image_layers")}
            found = self.abandoned() + sorted(
                name for name in os.listdir(self.blobs)
                if not name.startswith(TEMP_PREFIX) and f"sha256:{name}" not in named)
            if repair:
                for name in found:
                    (self.blobs / name).unlink(missing_ok=True)
                self._write_index(db)
        return found

    # ------------------------------------------------------------ import
    def import_rootfs(self, source: Path | BinaryIO, reference: str | None,
                      changes: Sequence[str] = (), message: str = "",
                      created: float | None = None) -> str:
        """Create a one-layer image from a rootfs, like ``docker import``; return its ID.

        ``source`` is a tar file (plain, gzip, bzip2 or xz), a directory (see
        :meth:`add_tree`) or a binary stream. ``changes`` are Dockerfile
        instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL). A
        ``reference`` tag moves to the new image. ``created`` (epoch seconds)
        goes into the config, now when None (each import is then a new image).
        A source that is not a tar raises InvalidConfig and leaves no blob or
        row behind.
        """
        ref = self.tag_reference(reference) if reference is not None else None
        container_config = parse_changes(changes)
        with self.staging() as written:
            layer = self._store_layer(source)
            written.append(layer.digest)
            config = new_config([layer.digest], container_config, "pinnace import", message,
                                created)
            image_id = self.add_image(config, [layer], [ref] if ref else [], "import", written)
        self.state.event("image", "import", image_id, name=ref or "")
        return image_id

    @contextlib.contextmanager
    def staging(self) -> Iterator[list[str]]:
        """A block that writes blobs: append each digest written to the yielded list;
        if the block fails, those no image references are deleted."""
        self.sweep()
        written: list[str] = []
        try:
            yield written
        except BaseException:
            self._drop_unreferenced(written)
            raise

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[str]]:
        """A block that adds images (a pull): yields the list of the IDs of the images
        it adds that were not stored before, so that the caller can remove them again
        when the block fails."""
        outer, self._added = self._added, []
        added = self._added
        try:
            yield added
        finally:
            self._added = outer
            if outer is not None:
                outer += added

    def add_image(self, config: bytes, layers: Sequence[Blob | tuple[str, int]],
                  tags: Sequence[str], source: str, written: list[str]) -> str:
        """Record an image whose layer blobs (:class:`Blob`, or ``(digest, size)`` of a
        plain tar) are stored: write ``config`` (kept byte for byte: its digest is the
        image ID) and an OCI manifest, then the rows, moving ``tags`` to it. A plain
        tar's digest must be its diff ID; a compressed blob's diff ID is checked when
        it is unpacked. Appends the blobs it writes to ``written``; use inside
        :meth:`staging`. An image already stored only gets the tags, and the blobs in
        ``written`` that no image uses go. Returns the image ID."""
        from pinnace.images.compression import COMPRESSION

        blobs = [Blob(*layer) for layer in layers]
        try:
            diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            raise InvalidConfig("image config is not JSON with rootfs.diff_ids") from None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(blobs) \
                or not all(isinstance(d, str) for d in diff_ids):
            raise InvalidConfig(f"the image config lists {len(diff_ids or [])} layers, "
                                f"not {len(blobs)}")
        for n, (want, blob) in enumerate(zip(diff_ids, blobs, strict=True)):
            if COMPRESSION.get(blob.media_type) == "none" and want != blob.digest:
                raise InvalidConfig(f"layer {n} has diff ID {blob.digest}, the image config "
                                    f"expects {want}")
        config_digest, config_size = self.add_blob(config)
        written.append(config_digest)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size}
                       for b in blobs],
        }
        manifest_digest, _ = self.add_blob(canonical_json(manifest))
        written.append(manifest_digest)
        names = [self.tag_reference(t) for t in tags]
        faults.point("image.blobs-stored")
        with self.state.tx() as db:
            if not all(self.blob_path(d).exists() for d in written):
                raise TryAgain("a concurrent rmi removed a blob of this image; retry")
            stored = db.execute("SELECT 1 FROM images WHERE id = ?", (config_digest,)).fetchone()
            if stored is None:
                if self._added is not None:
                    self._added.append(config_digest)
                db.execute("INSERT INTO images (id, manifest_digest, created, size, source)"
                           " VALUES (?,?,?,?,?)",
                           (config_digest, manifest_digest, time.time(),
                            sum(b.size for b in blobs), source))
                db.executemany(
                    "INSERT INTO image_layers (image_id, position, diff_id, chain_id,"
                    " blob_digest) VALUES (?,?,?,?,?)",
                    [(config_digest, position, diff_id, chain_id, blob.digest)
                     for position, (diff_id, chain_id, blob) in
                     enumerate(zip(diff_ids, chain_ids(diff_ids), blobs, strict=True))])
            for name in names:
                self._set_tag(db, name, config_digest)
            self._write_index(db)
            if stored is not None:  # the image as stored before (pulled, say) stays
                self._drop_unreferenced(written)
        return config_digest

    def _store_layer(self, source: Path | BinaryIO) -> Blob:
        """Store the rootfs as an uncompressed layer tar blob (its digest is its diff ID)."""
        if isinstance(source, Path):
            if source.is_dir():
                return self.add_tree(source)
            with open(source, "rb") as f:
                return self.add_layer(f, str(source))
        return self.add_layer(source, getattr(source, "name", "stream"))

    def add_tree(self, path: Path) -> Blob:
        """Store the directory ``path`` as a layer blob: a plain tar of everything below it
        in sorted order, with numeric owners, modes, links, FIFOs, devices and xattrs
        (:func:`pinnace.images.layers.write_tree`; the directory's own entry is left
        out), so the same tree gives the same blob. Its digest is its diff ID."""
        from pinnace.images.layers import write_tree

        return self.write_layer(lambda out: write_tree(path, out))

    def write_layer(self, write: Callable[[Any], None]) -> Blob:
        """Store as a layer blob the tar that ``write(out)`` writes to ``out`` (an object
        with ``write``); its digest is its diff ID."""
        with self._writer("layer blob") as writer:
            write(writer)
            return Blob(writer.commit(), writer.size)

    def add_layer(self, stream: BinaryIO, label: str) -> Blob:
        """Store the (plain, gzip, bzip2 or xz) tar ``stream`` uncompressed as a layer
        blob, checking on the way that it is a whole tar whose members a layer may hold
        (:class:`~pinnace.images.unpack.LayerChecker`); its digest is its diff ID.
        Bad input raises InvalidConfig and stores nothing."""
        import tarfile

        from pinnace.images.compression import decompressed
        from pinnace.images.unpack import LayerChecker

        with self._writer("layer blob") as writer:
            try:
                tee = _Tee(decompressed(stream), writer)
                checker = LayerChecker()
                with tarfile.open(fileobj=tee, mode="r|", bufsize=1 << 16) as tar:
                    for member in tar:
                        checker.check(member)
                while tee.read(1 << 20):  # blocks after the end-of-archive marker
                    pass
            except tarfile.TarError as err:
                raise InvalidConfig(f"not a tar archive: {label}: {err}") from None
            return Blob(writer.commit(), writer.size)

    # ------------------------------------------------------------ queries
    def resolve(self, ref_or_id: str) -> Image:
        """The image a tag (``busybox`` = ``busybox:latest``), a manifest digest
        reference (``name@sha256:...``), a full ID or a unique ID prefix names."""
        return self._load(self.find(ref_or_id)[0])

    def find(self, value: str) -> tuple[str, str | None]:
        """(image id, the tag it was found by or None when found by ID or digest)."""
        ref = None
        if not value.startswith("sha256:"):
            try:
                ref = parse_reference(value)
            except InvalidConfig:
                if not is_id_prefix(value):
                    raise
        if ref is not None:
            if ref.digest is not None:
                row = self.state.one(
                    "SELECT id FROM images WHERE manifest_digest = ?1 UNION ALL SELECT image_id"
                    " FROM repo_digests WHERE name = ?2 AND digest = ?1", ref.digest, ref.name)
                if row:
                    return row[0], None
            else:
                row = self.state.one("SELECT image_id FROM tags WHERE name = ?", str(ref))
                if row:
                    return row["image_id"], str(ref)
        if is_id_prefix(value):
            hexdigest = value.removeprefix("sha256:")
            rows = self.state.query("SELECT id FROM images WHERE substr(id, 8, ?) = ?",
                                    len(hexdigest), hexdigest)
            if len(rows) > 1:
                raise InvalidConfig(f"image ID prefix {value!r} is ambiguous "
                                    f"({len(rows)} images match); give more digits")
            if rows:
                return rows[0]["id"], None
        raise NotFound(f"No such image: {value}")

    def _tags(self, image_id: str) -> list[str]:
        return [r["name"] for r in self.state.query(
            "SELECT name FROM tags WHERE image_id = ? ORDER BY name", image_id)]

    def _load(self, image_id: str) -> Image:
        row = self.state.one("SELECT * FROM images WHERE id = ?", image_id)
        if row is None:
            raise NotFound(f"No such image: {image_id}")
        descriptors = json.loads(self._read_blob(row["manifest_digest"]))["layers"]
        layers = [
            Layer(r["diff_id"], r["chain_id"], r["blob_digest"],
                  descriptors[r["position"]]["size"], descriptors[r["position"]]["mediaType"])
            for r in self.state.query(
                "SELECT * FROM image_layers WHERE image_id = ? ORDER BY position", image_id)
        ]
        return Image(id=image_id, tags=self._tags(image_id), created=row["created"],
                     size=row["size"], layers=layers,
                     config=json.loads(self._read_blob(image_id)),
                     manifest_digest=row["manifest_digest"],
                     repo_digests=[f"{r['name']}@{r['digest']}" for r in self.state.query(
                         "SELECT name, digest FROM repo_digests WHERE image_id = ?"
                         " ORDER BY name, digest", image_id)])

    def list(self) -> list[Image]:
        """All images, newest first."""
        return [self._load(r["id"])
                for r in self.state.query("SELECT id FROM images ORDER BY created DESC, id")]

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker-shaped ``image inspect`` data for ``ref``."""
        image = self.resolve(ref)
        cfg = image.config.get("config") or {}
        history = image.config.get("history") or [{}]
        return {
            "Id": image.id,
            "RepoTags": image.tags,
            "RepoDigests": image.repo_digests,
            "Parent": "",
            "Comment": history[-1].get("comment", ""),
            "Created": image.config.get("created") or rfc3339(image.created),
            "Size": image.size,
            "Architecture": image.config.get("architecture", ""),
            "Os": image.config.get("os", ""),
            "Author": image.config.get("author", ""),
            "Config": {key: cfg.get(key) for key in
                       ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels",
                        "ExposedPorts", "Volumes", "StopSignal", "Healthcheck", "OnBuild",
                        "Shell")},
            "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }

    @contextlib.contextmanager
    def layer_stream(self, layer: Layer, progress: Bar | None = None) -> Iterator[BinaryIO]:
        """The uncompressed tar of ``layer``, open for reading, checked against its diff
        ID: when the block ends, the rest is read, and InvalidConfig is raised unless the
        whole tar hashes to the diff ID (the caller undoes what it made of the stream).
        A plain tar whose blob digest is its diff ID is read as it is: that digest was
        checked as the blob was stored. An InvalidConfig (corrupt data, a hostile tar)
        names the layer. ``progress`` advances by the blob bytes read."""
        from pinnace.images.compression import Counted, LayerReader

        try:
            f = open(self.blob_path(layer.blob_digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"layer blob {layer.blob_digest} is missing from the image store "
                           f"{self.root}") from None
        with f:
            try:
                blob = Counted(f, progress) if progress is not None else f
                if layer.blob_digest == layer.diff_id:
                    yield blob  # type: ignore[misc]
                    return
                reader = LayerReader(blob, layer.media_type, layer.diff_id)
                yield reader
                reader.verify()
            except InvalidConfig as err:
                raise InvalidConfig(f"layer {layer.blob_digest}: {err}") from None

    def add_repo_digest(self, name: str, digest: str, image_id: str) -> None:
        """Record that registry repository ``name`` holds image ``image_id`` as manifest
        ``digest`` (after a pull or a push): ``name@digest`` then finds it."""
        with self.state.tx() as db:
            db.execute("INSERT OR REPLACE INTO repo_digests (name, digest, image_id)"
                       " VALUES (?,?,?)", (name, digest, image_id))

    # ------------------------------------------------------------ tags
    @staticmethod
    def tag_reference(value: str) -> str:
        """``value`` normalised as a tag (``busybox`` -> ``busybox:latest``); digests refused."""
        ref = parse_reference(value)
        if ref.digest is not None:
            raise InvalidConfig(f"a tag cannot be a digest reference: {value}")
        return str(ref)

    def _set_tag(self, db: sqlite3.Connection, name: str, image_id: str) -> None:
        db.execute("INSERT INTO tags (name, image_id) VALUES (?, ?)"
                   " ON CONFLICT (name) DO UPDATE SET image_id = excluded.image_id",
                   (name, image_id))

    def tag(self, source_ref: str, new_ref: str) -> None:
        """Point tag ``new_ref`` at the image ``source_ref`` names (moving it if it exists)."""
        name = self.tag_reference(new_ref)
        with self.state.tx() as db:
            image_id, _ = self.find(source_ref)
            self._set_tag(db, name, image_id)
            self._write_index(db)
        self.state.event("image", "tag", image_id, name=name)

    def untag(self, ref: str) -> str:
        """Remove tag ``ref`` and return its image ID; the image stays (dangling if that
        was its last tag)."""
        name = self.tag_reference(ref)
        with self.state.tx() as db:
            row = db.execute("SELECT image_id FROM tags WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"No such image: {ref}")
            db.execute("DELETE FROM tags WHERE name = ?", (name,))
            self._write_index(db)
        self.state.event("image", "untag", row["image_id"], name=name)
        return row["image_id"]

    # ------------------------------------------------------------ removal
    def remove(self, ref: str, force: bool,
               in_use: Callable[[str], list[str]]) -> RemoveResult:
        """``rmi``, with docker's rules.

        By name: remove that tag; delete the image when it was the last one.
        By ID (or digest): untag and delete it, refused with several tags unless
        ``force``. An image used by a container (``in_use(image_id)`` returns
        their names) is refused unless ``force``; with ``force`` its tags go but
        the image itself stays, dangling, until no container uses it (its layer
        snapshots may be the containers' parents), and a forced ``rmi`` of an
        untagged image in use is refused. Deleted blobs go; the chain IDs no
        remaining image uses are returned for the engine to drop.
        """
        result, doomed = RemoveResult(), set[str]()
        with self.state.tx() as db:  # decide and act in one transaction: no concurrent rmi between
            image_id, by_tag = self.find(ref)
            tags, users = self._tags(image_id), in_use(image_id)
            short = _short(image_id)
            if by_tag is not None and len(tags) > 1:
                result.untagged = [by_tag]
            elif users and not force:
                what = (f'remove repository reference "{by_tag}"' if by_tag is not None
                        else f"delete {short}")
                raise FailedPrecondition(f"unable to {what} (must force) - image {short} is "
                                         f"being used by container {', '.join(users)}")
            elif by_tag is None and len(tags) > 1 and not force:
                raise FailedPrecondition(f"unable to delete {short} (must be forced) - image is "
                                         f"referenced in multiple repositories")
            elif users and not tags:
                raise FailedPrecondition(f"unable to delete {short} - image is being used by "
                                         f"container {', '.join(users)}; remove it first")
            else:
                result.untagged = tags
                result.deleted = [] if users else [image_id]
            for name in result.untagged:
                db.execute("DELETE FROM tags WHERE name = ?", (name,))
            if result.deleted:
                result.orphan_chain_ids, doomed = self._delete_image(db, image_id)
            self._write_index(db)
        faults.point("rmi.rows-deleted")
        if doomed:  # after the rows: a kill in between leaves blobs the collector reclaims
            with self.state.tx() as db:  # an import that stores them again checks in its own
                for digest in doomed:
                    if self._referenced(db, digest):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        result.reclaimed += self.blob_path(digest).stat().st_size
                        self.blob_path(digest).unlink()
        for name in result.untagged:
            self.state.event("image", "untag", image_id, name=name)
        for deleted in result.deleted:
            self.state.event("image", "delete", deleted)
        return result

    def _delete_image(self, db: sqlite3.Connection, image_id: str) -> tuple[list[str], set[str]]:
        """Delete the image's rows; return (chain IDs, blob digests) nothing else uses."""
        row = db.execute("SELECT manifest_digest FROM images WHERE id = ?", (image_id,)).fetchone()
        layers = db.execute("SELECT chain_id, blob_digest FROM image_layers WHERE image_id = ?"
                            " ORDER BY position", (image_id,)).fetchall()
        db.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
        db.execute("DELETE FROM repo_digests WHERE image_id = ?", (image_id,))
        db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        orphans = [r["chain_id"] for r in layers if db.execute(
            "SELECT 1 FROM image_layers WHERE chain_id = ?", (r["chain_id"],)).fetchone() is None]
        blobs = {image_id, row["manifest_digest"], *(r["blob_digest"] for r in layers)}
        return orphans, {d for d in blobs if not self._referenced(db, d)}

    @staticmethod
    def _referenced(db: sqlite3.Connection, digest: str) -> bool:
        return db.execute(
            "SELECT 1 FROM images WHERE id = ?1 OR manifest_digest = ?1"
            " UNION ALL SELECT 1 FROM image_layers WHERE blob_digest = ?1 LIMIT 1",
            (digest,)).fetchone() is not None

    def _drop_unreferenced(self, digests: Sequence[str]) -> None:
        """After a failed import: delete the blobs it wrote that no image uses."""
        if not digests:
            return
        with self.state.tx() as db:
            for digest in digests:
                if not self._referenced(db, digest):
                    self.blob_path(digest).unlink(missing_ok=True)

    def _write_index(self, db: sqlite3.Connection) -> None:
        """Rewrite ``index.json`` from the rows (inside the caller's transaction)."""
        manifests = []
        for row in db.execute("SELECT i.manifest_digest AS digest, t.name FROM images i"
                              " LEFT JOIN tags t ON t.image_id = i.id"
                              " ORDER BY t.name IS NULL, t.name, i.id"):
            entry: dict[str, Any] = {"mediaType": MEDIA_MANIFEST, "digest": row["digest"],
                                     "size": self.blob_path(row["digest"]).stat().st_size}
            if row["name"] is not None:
                entry["annotations"] = {REF_NAME: row["name"]}
            manifests.append(entry)
        self.root.mkdir(parents=True, exist_ok=True)
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
        atomic_write(self.root / "index.json", json.dumps(index, indent=2).encode() + b"\n")


def history(image: Image) -> list[dict[str, Any]]:
    """``history`` rows of ``image``, newest first: the config's history entries, each
    matched with its layer (entries marked ``empty_layer`` have none). The newest row
    carries the image ID, older ones ``<missing>``, as docker shows pulled images."""
    entries = list(image.config.get("history") or [])
    with_layer = [e for e in entries if not e.get("empty_layer")]
    entries = [{} for _ in range(len(image.layers) - len(with_layer))] + entries
    sizes = iter(layer.size for layer in image.layers)
    rows = []
    for entry in entries:
        rows.append({"Id": "<missing>", "Created": entry.get("created", ""),
                     "CreatedBy": entry.get("created_by", ""),
                     "Size": 0 if entry.get("empty_layer") else next(sizes, 0),
                     "Comment": entry.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["Id"] = image.id
    return rows


def canonical_json(data: dict[str, Any]) -> bytes:
    """An image config (or manifest) as the bytes the store hashes: sorted, compact."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def new_config(diff_ids: Sequence[str], container_config: dict[str, Any], created_by: str,
               comment: str = "", created: float | None = None) -> bytes:
    """The OCI config of an image built from the layers ``diff_ids`` (bottom first), for
    :meth:`ImageStore.add_image`: this host's platform, ``container_config`` (``Cmd``,
    ``Env``, ``Labels``...; :func:`parse_changes` makes one from Dockerfile lines) and
    one history entry saying how it was made. ``created`` is epoch seconds, now when
    None; a source that derives it from its material (a file's mtime) gives the same
    image ID each time the same material is fetched. Canonical JSON bytes."""
    when = rfc3339(time.time() if created is None else created)
    return canonical_json({
        "created": when,
        "architecture": host_platform()[1],
        "os": "linux",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": when, "created_by": created_by, "comment": comment}],
    })


def parse_changes(changes: Sequence[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OCI ``config`` object built from Dockerfile instructions (``import -c``,
    ``commit -c``) on top of ``base`` (a fresh default when None): CMD and
    ENTRYPOINT (JSON or shell form), ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME (a JSON
    list or paths separated by spaces), STOPSIGNAL, HEALTHCHECK."""
    import posixpath
    import re

    from pinnace.runtime.spec import DEFAULT_PATH

    config: dict[str, Any] = json.loads(json.dumps(base)) if base else \
        {"Env": [f"PATH={DEFAULT_PATH}"]}
    for change in changes:
        instruction, arg = (re.split(r"\s+", change.strip(), maxsplit=1) + [""])[:2]
        keyword = instruction.upper()
        if keyword not in ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "LABEL", "EXPOSE",
                           "VOLUME", "STOPSIGNAL", "HEALTHCHECK"):
            raise InvalidConfig(f"unsupported instruction in change {change!r}: {instruction!r} "
                                f"(supported: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, "
                                f"VOLUME, STOPSIGNAL, HEALTHCHECK)")
        if not arg:
            raise InvalidConfig(f"{keyword} needs an argument: {change!r}")
        if keyword in ("CMD", "ENTRYPOINT"):
            config["Cmd" if keyword == "CMD" else "Entrypoint"] = _command(arg)
        elif keyword == "ENV":
            env = config["Env"] = list(config.get("Env") or [])
            for key, value in _pairs(arg, keyword):
                env[:] = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
        elif keyword == "EXPOSE":
            for port in arg.split():
                number, _, proto = port.partition("/")
                if not number.isdigit() or proto not in ("", "tcp", "udp"):
                    raise InvalidConfig(f"invalid port {port!r} in {change!r}")
                config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}),
                                          f"{int(number)}/{proto or 'tcp'}": {}}
        elif keyword == "VOLUME":
            paths = _command(arg) if arg.startswith("[") else arg.split()
            if not all(p.startswith("/") for p in paths):
                raise InvalidConfig(f"VOLUME paths must be absolute: {change!r}")
            config["Volumes"] = {**(config.get("Volumes") or {}), **dict.fromkeys(paths, {})}
        elif keyword == "LABEL":
            config["Labels"] = {**(config.get("Labels") or {}), **dict(_pairs(arg, keyword))}
        elif keyword == "HEALTHCHECK":
            from pinnace.runtime.healthcheck import image_healthcheck

            config["Healthcheck"] = image_healthcheck(arg)
        elif keyword == "STOPSIGNAL":
            from pinnace.runtime.policy import parse_signal

            parse_signal(arg)  # refused now rather than at each run
            config["StopSignal"] = arg
        elif keyword == "WORKDIR":
            config["WorkingDir"] = posixpath.normpath(
                posixpath.join(config.get("WorkingDir") or "/", arg))
        else:
            config["User"] = arg
    return config


def _command(arg: str) -> list[str]:
    """Exec form (a JSON list of strings) or shell form (run by ``/bin/sh -c``)."""
    if arg.startswith("["):
        try:
            parsed = json.loads(arg)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
            return parsed
    return ["/bin/sh", "-c", arg]


def _pairs(arg: str, keyword: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` pairs, or the legacy ``K some value`` form."""
    import shlex

    try:
        words = shlex.split(arg)
    except ValueError as err:
        raise InvalidConfig(f"{keyword} {arg!r}: {err}") from None
    if "=" not in words[0]:
        key, _, value = arg.partition(" ")
        if not value.strip():
            raise InvalidConfig(f"{keyword} {arg!r}: expected KEY=VALUE")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidConfig(f"{keyword} {arg!r}: expected KEY=VALUE, got {word!r}")
        pairs.append((key, value))
    return pairs
