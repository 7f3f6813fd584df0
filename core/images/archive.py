"""Image archives: load docker-archive and OCI archives or layouts, save either format.

**docker-archive** is what ``docker save`` and ``podman save`` write: a tar
with ``manifest.json`` (per image: ``Config``, ``RepoTags``, ``Layers``, each
a path inside the tar), the config JSON files and the layer tars (plain or
compressed; docker links repeated layers to one copy with symlinks).
**OCI archive** is a tar of an **OCI layout** (``oci-layout``, ``index.json``,
``blobs/sha256/...``), as skopeo writes it; an OCI layout may also be a
directory. docker 25 writes both at once; ``manifest.json`` wins, for its tags.

Loading never trusts the archive: a path it names must be a file inside it
(``..``, absolute paths and links that climb out are refused), every OCI blob
is checked against its descriptor's digest and size, every layer against the
config's ``rootfs.diff_ids``, and a layer must be a whole tar. Loaded layers
are stored uncompressed. On any error the blobs written so far that no image
uses are deleted, so a failed load leaves the store as it was.

docker-archive is saved in the classic layout (``<config hex>.json``, ``<diff
id hex>/layer.tar``, ``manifest.json``, ``repositories``) that every docker and
podman loads, with plain tar layers: a compressed stored layer (a pulled one) is
decompressed, and checked against its diff ID, on the way. An OCI archive holds
the blobs as stored (compressed or not) and has one ``index.json`` entry per
saved reference, named by ``org.opencontainers.image.ref.name``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pinnace import faults
from pinnace.errors import InvalidConfig, NotFound, writing
from pinnace.images.compression import COMPRESSION, Hashing, decompressed

if TYPE_CHECKING:
    from pinnace.images.store import Blob, ImageStore, Layer

FORMATS = ("docker-archive", "oci-archive")
_JSON_LIMIT = 16 << 20           # manifests and configs are small; refuse to read more
_LINK_HOPS = 16
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"
_MANIFESTS = ("application/vnd.oci.image.manifest.v1+json",
              "application/vnd.docker.distribution.manifest.v2+json")
_INDEXES = ("application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass
class Loaded:
    """One image a load brought into the store."""

    id: str
    tags: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- archive readers


class _Files:
    """Named files of an archive (a tar or a directory), opened by their path inside it."""

    label: str

    def open(self, name: str) -> BinaryIO:
        """The file ``name`` for reading; InvalidConfig if the archive has no such file."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        """Whether the archive holds a file ``name``."""
        raise NotImplementedError

    def read_json(self, name: str) -> Any:
        """The parsed JSON file ``name`` (at most 16 MiB)."""
        with self.open(name) as f:
            data = f.read(_JSON_LIMIT + 1)
        if len(data) > _JSON_LIMIT:
            raise InvalidConfig(f"{self.label}: {name} is larger than 16 MiB")
        return _parse_json(data, f"{self.label}: {name}")

    def missing(self, name: str) -> InvalidConfig:
        """The error for a path the archive's metadata names but the archive lacks."""
        return InvalidConfig(f"{self.label}: the archive names {name!r}, which it does not "
                             f"contain")


def _inside(name: str, label: str) -> str:
    """``name`` normalised as a relative path, or InvalidConfig if it climbs out."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidConfig(f"{label}: invalid path {name!r} in the archive's metadata")
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith("../") or norm == ".":
        raise InvalidConfig(f"{label}: path {name!r} in the archive's metadata points outside "
                            f"the archive")
    return norm


class _TarFiles(_Files):
    """Files of an uncompressed tar on disk, found through its member index."""

    def __init__(self, path: Path, label: str) -> None:
        import tarfile

        self.label = label
        try:
            self.tar = tarfile.open(path, "r:")
            self.members = {posixpath.normpath(m.name): m for m in self.tar.getmembers()}
        except tarfile.TarError as err:
            raise InvalidConfig(f"{label}: not a tar archive: {err}") from None

    def _member(self, name: str) -> Any:
        norm = _inside(name, self.label)
        for _ in range(_LINK_HOPS):
            member = self.members.get(norm)
            if member is None:
                raise self.missing(name)
            if member.isreg():
                return member
            if member.issym():
                target = posixpath.join(posixpath.dirname(norm), member.linkname)
                norm = _inside(target, self.label)
            elif member.islnk():
                norm = _inside(member.linkname, self.label)
            else:
                raise InvalidConfig(f"{self.label}: {name!r} is not a file")
        raise InvalidConfig(f"{self.label}: too many links resolving {name!r}")

    def open(self, name: str) -> BinaryIO:
        """A reader over the member's bytes in the tar."""
        return _TarMember(self.tar.extractfile(self._member(name)), self.label)

    def exists(self, name: str) -> bool:
        """Whether ``name`` resolves to a regular file member (InvalidConfig if it climbs
        out of the archive)."""
        _inside(name, self.label)
        try:
            self._member(name)
        except InvalidConfig:
            return False
        return True

    def close(self) -> None:
        """Close the tar."""
        self.tar.close()


class _TarMember:
    """A member's reader whose truncation errors become one-line InvalidConfig."""

    def __init__(self, inner: Any, label: str) -> None:
        self.inner, self.label = inner, label

    def read(self, n: int = -1) -> bytes:
        import tarfile

        try:
            return self.inner.read(n)
        except tarfile.TarError as err:
            raise InvalidConfig(f"{self.label}: corrupt archive: {err}") from None

    def __enter__(self) -> _TarMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()


class _DirFiles(_Files):
    """Files of an OCI layout directory; links may not lead outside it."""

    def __init__(self, path: Path) -> None:
        self.root = path.resolve()
        self.label = str(path)

    def _path(self, name: str) -> Path:
        path = (self.root / _inside(name, self.label)).resolve()
        if path != self.root and self.root not in path.parents:
            raise InvalidConfig(f"{self.label}: {name!r} leads outside the directory")
        return path

    def open(self, name: str) -> BinaryIO:
        """The file, opened for reading."""
        try:
            return open(self._path(name), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self.missing(name) from None

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a regular file inside the directory (InvalidConfig if it
        leads out of it)."""
        return self._path(name).is_file()

    def close(self) -> None:
        """Nothing to release."""


def _parse_json(data: bytes, label: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as err:
        raise InvalidConfig(f"{label} is not valid JSON: {err}") from None


@contextlib.contextmanager
def _open_archive(store: ImageStore, path: Path, label: str) -> Iterator[_Files]:
    """The archive at ``path``: a directory, a tar, or a compressed tar (decompressed
    first into a temp file next to the store, for random access)."""
    if path.is_dir():
        yield _DirFiles(path)
        return
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"archive {path} does not exist") from None
    except IsADirectoryError:  # raced with is_dir
        raise InvalidConfig(f"{path} is not an archive") from None
    with f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head.startswith(b"\xfd7zXZ\x00") \
            or head.startswith(b"\x28\xb5\x2f\xfd"):
        with _decompressed_copy(store, path, label) as plain:
            files = _TarFiles(plain, label)
            try:
                yield files
            finally:
                files.close()
        return
    files = _TarFiles(path, label)
    try:
        yield files
    finally:
        files.close()


@contextlib.contextmanager
def _decompressed_copy(store: ImageStore, path: Path, label: str) -> Iterator[Path]:
    import tarfile

    with store.scratch_file("load") as tmp:
        with writing(f"the decompressed copy of {label}", tmp, store.root), \
                open(path, "rb") as src, open(tmp, "xb") as dst:
            reader = decompressed(src)
            try:
                while chunk := reader.read(1 << 20):
                    dst.write(chunk)
            except tarfile.TarError as err:
                raise InvalidConfig(f"{label}: corrupt compressed archive: {err}") from None
        yield tmp


# ---------------------------------------------------------------- loading


def load(store: ImageStore, path: Path, kind: str | None = None, select: str | None = None,
         label: str | None = None) -> list[Loaded]:
    """Load the images of the archive or layout at ``path`` into ``store``.

    ``kind`` insists on a format (``docker-archive``, ``oci-archive`` or ``oci``
    for a layout directory); None detects it. ``select`` picks one image: a
    reference it is tagged with, or ``@N`` for the N-th (from 0). Returns what
    was loaded, in archive order; InvalidConfig (nothing kept) on bad input. Errors
    name the archive ``label`` (default: the path).
    """
    label = label or str(path)
    if kind == "oci" and not path.is_dir():
        raise InvalidConfig(f"{path} is not an OCI layout directory")
    if kind == "oci-archive" and path.is_dir():
        raise InvalidConfig(f"{path} is a directory; an OCI archive is a tar (use oci:)")
    with _open_archive(store, path, label) as files, store.staging() as written:
        docker = files.exists("manifest.json")
        if kind == "docker-archive" and not docker:
            raise InvalidConfig(f"{label}: not a docker archive (no manifest.json)")
        if not docker and not files.exists("index.json"):
            raise InvalidConfig(f"{label}: neither a docker archive (manifest.json) nor an OCI "
                                f"layout (index.json)")
        if docker and kind in (None, "docker-archive"):
            entries = _docker_entries(files)
        else:
            entries = _oci_entries(files)
        entries = _select(entries, select, label)
        loaded = []
        for entry in entries:
            diff_ids = _diff_ids(entry.config, len(entry.layers), files.label)
            layers = []
            for diff_id, layer in zip(diff_ids, entry.layers, strict=True):
                if not files.exists(layer.name):
                    raise files.missing(layer.name)
                if store.has_blob(diff_id):  # stored and verified before: no need to read it
                    layers.append((diff_id, store.blob_path(diff_id).stat().st_size))
                    written.append(diff_id)
                else:
                    layers.append(_store_layer(store, files, layer, written))
            image_id = store.add_image(entry.config, layers, entry.tags, "load", written)
            loaded.append(Loaded(image_id, entry.tags))
    for item in loaded:
        store.state.event("image", "load", item.id, name=",".join(item.tags))
    return loaded


@dataclass
class _LayerRef:
    """A layer inside the archive: its path, and (OCI) the descriptor to check it against."""

    name: str
    digest: str | None = None
    size: int | None = None


@dataclass
class _Entry:
    """One image found in an archive, before its layers are stored."""

    config: bytes
    layers: list[_LayerRef]
    tags: list[str]


def _docker_entries(files: _Files) -> list[_Entry]:
    manifest = files.read_json("manifest.json")
    if not isinstance(manifest, list):
        raise InvalidConfig(f"{files.label}: manifest.json is not a list of images")
    entries = []
    for item in manifest:
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str) \
                or not isinstance(item.get("Layers"), list):
            raise InvalidConfig(f"{files.label}: manifest.json entry without Config and Layers")
        with files.open(item["Config"]) as f:
            config = f.read(_JSON_LIMIT)
        tags = [_tag(t, files.label) for t in item.get("RepoTags") or []]
        entries.append(_Entry(config, [_LayerRef(_require_str(n, files.label))
                                       for n in item["Layers"]], tags))
    return entries


def _require_str(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise InvalidConfig(f"{label}: expected a path, got {value!r}")
    return value


def _tag(value: Any, label: str) -> str:
    from pinnace.images.reference import parse

    ref = parse(_require_str(value, label))
    if ref.digest is not None or ref.tag is None:
        raise InvalidConfig(f"{label}: {value!r} is not a tag")
    return str(ref)


def _blob_name(descriptor: Any, label: str) -> str:
    from pinnace.images.reference import is_id_prefix

    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    algo, _, hexdigest = str(digest).partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or not is_id_prefix(hexdigest):
        raise InvalidConfig(f"{label}: descriptor with an invalid digest {digest!r}")
    return f"blobs/sha256/{hexdigest}"


def _read_blob(files: _Files, descriptor: dict[str, Any]) -> bytes:
    """A small blob (manifest, config, index), checked against its descriptor."""
    name = _blob_name(descriptor, files.label)
    with files.open(name) as f:
        data = f.read(_JSON_LIMIT + 1)
    if len(data) > _JSON_LIMIT:
        raise InvalidConfig(f"{files.label}: {name} is larger than 16 MiB")
    if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor["digest"]:
        raise InvalidConfig(f"{files.label}: {name} does not match its digest")
    return data


def _oci_entries(files: _Files) -> list[_Entry]:
    index = files.read_json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidConfig(f"{files.label}: index.json has no manifests list")
    entries = []
    for descriptor in index["manifests"]:
        if not isinstance(descriptor, dict):
            raise InvalidConfig(f"{files.label}: index.json lists a non-object")
        annotations = descriptor.get("annotations") or {}
        manifest = _platform_manifest(files, descriptor)
        config = _read_blob(files, manifest.get("config") or {})
        layers = []
        for layer in manifest.get("layers") or []:
            media = layer.get("mediaType", "")
            if media not in COMPRESSION:
                raise InvalidConfig(f"{files.label}: layer media type {media!r} is not supported")
            layers.append(_LayerRef(_blob_name(layer, files.label), layer["digest"],
                                    layer.get("size")))
        name = annotations.get(_CONTAINERD_NAME) or annotations.get(_REF_NAME) or ""
        tags = [_tag(name, files.label)] if (":" in name or "/" in name) else []
        entries.append(_Entry(config, layers, tags))
    return entries


def _platform_manifest(files: _Files, descriptor: dict[str, Any]) -> dict[str, Any]:
    """The image manifest a descriptor names, following an index to this host's platform."""
    from pinnace.images.store import host_platform

    for _ in range(_LINK_HOPS):
        data = _parse_json(_read_blob(files, descriptor), f"{files.label}: manifest")
        media = data.get("mediaType") or descriptor.get("mediaType")
        if media in _MANIFESTS or (media is None and "config" in data):
            return data
        if media not in _INDEXES:
            raise InvalidConfig(f"{files.label}: unsupported manifest media type {media!r}")
        os_name, arch = host_platform()
        matches = [m for m in data.get("manifests") or []
                   if (m.get("platform") or {}).get("os") == os_name
                   and (m.get("platform") or {}).get("architecture") == arch]
        if not matches:
            raise InvalidConfig(f"{files.label}: the index has no image for {os_name}/{arch}")
        descriptor = matches[0]
    raise InvalidConfig(f"{files.label}: indexes nested too deeply")


def _select(entries: list[_Entry], select: str | None, label: str) -> list[_Entry]:
    if select is None:
        if not entries:
            raise InvalidConfig(f"{label}: the archive holds no image")
        return entries
    if select.startswith("@") and select[1:].isdigit():
        n = int(select[1:])
        if n >= len(entries):
            raise NotFound(f"{label}: no image @{n} (the archive holds {len(entries)})")
        return [entries[n]]
    wanted = _tag(select, label)
    found = [e for e in entries if wanted in e.tags]
    if not found:
        raise NotFound(f"{label}: no image tagged {wanted}")
    return found[:1]


def _store_layer(store: ImageStore, files: _Files, layer: _LayerRef,
                 written: list[str]) -> Blob:
    """Store one layer uncompressed, checking its blob digest when the archive gives one."""
    with files.open(layer.name) as f:
        source = Hashing(f) if layer.digest else f
        blob = store.add_layer(source, f"{files.label}: {layer.name}")
        written.append(blob.digest)
        if layer.digest:
            got = source.drain()
            if got != layer.digest or (layer.size is not None and source.size != layer.size):
                raise InvalidConfig(f"{files.label}: {layer.name} does not match its digest "
                                    f"(expected {layer.digest}, got {got})")
    return blob


def _diff_ids(config: bytes, count: int, label: str) -> list[str]:
    """The config's ``rootfs.diff_ids``, which must list ``count`` digests."""
    data = _parse_json(config, f"{label}: image config")
    diff_ids = (data.get("rootfs") or {}).get("diff_ids") if isinstance(data, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != count \
            or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidConfig(f"{label}: the image config does not list the archive's {count} "
                            f"layers in rootfs.diff_ids")
    return diff_ids


# ---------------------------------------------------------------- saving


class TarOut:
    """A tar written straight to a file descriptor; file data is copied in the kernel."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.dirs: set[str] = set()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def _header(self, name: str, size: int, kind: bytes, mode: int) -> None:
        import tarfile

        parent = posixpath.dirname(name.rstrip("/"))
        if parent and parent not in self.dirs:
            self.dirs.add(parent)
            self._header(parent + "/", 0, tarfile.DIRTYPE, 0o755)
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
        self._write(info.tobuf(tarfile.PAX_FORMAT))

    def add_bytes(self, name: str, data: bytes) -> None:
        """Add a regular file with ``data``."""
        import tarfile

        self._header(name, len(data), tarfile.REGTYPE, 0o644)
        self._write(data + b"\0" * (-len(data) % 512))

    def add_file(self, name: str, path: Path) -> None:
        """Add a regular file with the contents of ``path``."""
        import tarfile

        with open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            self._header(name, size, tarfile.REGTYPE, 0o644)
            left = size
            while left:
                try:
                    n = os.copy_file_range(src.fileno(), self.fd, left)
                except OSError:  # a pipe or a filesystem without it
                    n = os.sendfile(self.fd, src.fileno(), None, left)
                if n == 0:
                    raise InvalidConfig(f"blob {path} shrank while it was being saved")
                left -= n
        self._write(b"\0" * (-size % 512))

    def close(self) -> None:
        """Write the end-of-archive marker."""
        self._write(b"\0" * 1024)


def save(store: ImageStore, refs: Sequence[str], fd: int, fmt: str = "docker-archive") -> None:
    """Write the images ``refs`` name to the file descriptor ``fd`` as a ``fmt`` tar."""
    if fmt not in FORMATS:
        raise InvalidConfig(f"unknown archive format {fmt!r} (use {' or '.join(FORMATS)})")
    images = []
    for ref in refs:
        image_id, tag = store.find(ref)
        images.append((store.resolve(image_id), tag))
    write(store, images, fd, fmt)


def write(store: ImageStore, images: Sequence[tuple[Any, str | None]], fd: int,
          fmt: str) -> None:
    """Write ``(image, name or None)`` pairs to ``fd`` as a ``fmt`` tar; an image without
    a name is listed under all its tags."""
    out = TarOut(fd)
    if fmt == "docker-archive":
        _save_docker(store, images, out)
    else:
        _save_oci(store, images, out)
    out.close()


def _save_docker(store: ImageStore, images: Sequence[tuple[Any, str | None]],
                 out: TarOut) -> None:
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    done: set[str] = set()
    for image, tag in images:
        config_name = image.id.removeprefix("sha256:") + ".json"
        if config_name not in done:
            out.add_file(config_name, store.blob_path(image.id))
            done.add(config_name)
        names = []
        for layer in image.layers:
            name = layer.diff_id.removeprefix("sha256:") + "/layer.tar"
            if name not in done:
                _add_plain_layer(store, layer, name, out)
                done.add(name)
            names.append(name)
        tags = [tag] if tag else image.tags
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": names})
        for t in tags:
            repo, _, version = t.rpartition(":")
            if image.layers:
                repositories.setdefault(repo, {})[version] = \
                    image.layers[-1].diff_id.removeprefix("sha256:")
    out.add_bytes("manifest.json", json.dumps(manifest).encode())
    out.add_bytes("repositories", json.dumps(repositories).encode())


def _add_plain_layer(store: ImageStore, layer: Layer, name: str, out: TarOut) -> None:
    """Add ``layer`` as the plain tar ``name``: its blob, or (compressed) the tar it
    holds, decompressed into a scratch file first (a tar header needs the size)."""
    if layer.blob_digest == layer.diff_id:
        out.add_file(name, store.blob_path(layer.blob_digest))
        return
    with store.scratch_file("save") as tmp:
        with writing(f"the decompressed layer {layer.blob_digest}", tmp, store.root), \
                store.layer_stream(layer) as tar, open(tmp, "xb") as plain:
            while chunk := tar.read(1 << 20):
                plain.write(chunk)
        out.add_file(name, tmp)


def _save_oci(store: ImageStore, images: Sequence[tuple[Any, str | None]], out: TarOut) -> None:
    from pinnace.images.store import MEDIA_INDEX, MEDIA_MANIFEST

    out.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    done: set[str] = set()
    descriptors = []

    def blob(digest: str) -> None:
        if digest not in done:
            out.add_file("blobs/sha256/" + digest.removeprefix("sha256:"),
                         store.blob_path(digest))
            done.add(digest)

    for image, tag in images:
        manifest = json.loads(store.blob_path(image.manifest_digest).read_bytes())
        for descriptor in [manifest["config"], *manifest["layers"]]:
            blob(descriptor["digest"])
        blob(image.manifest_digest)
        for name in [tag] if tag else image.tags or [None]:
            entry: dict[str, Any] = {
                "mediaType": MEDIA_MANIFEST, "digest": image.manifest_digest,
                "size": store.blob_path(image.manifest_digest).stat().st_size}
            if name:
                entry["annotations"] = {_REF_NAME: name, _CONTAINERD_NAME: name}
            descriptors.append(entry)
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": descriptors}
    out.add_bytes("index.json", json.dumps(index).encode())


def write_to(path: str | None, write: Callable[[int], None]) -> None:
    """Call ``write(fd)`` on file ``path``, or on stdout when None (refused on a terminal).
    A file is written under a temp name and renamed when complete, so a failure never
    leaves half an archive under the name asked for."""
    import sys

    from pinnace.errors import FailedPrecondition, is_no_space, no_space

    if path is None:
        if sys.stdout.isatty():
            raise InvalidConfig("refusing to write an archive to a terminal: use -o FILE or "
                                "redirect stdout")
        sys.stdout.flush()
        write(sys.stdout.fileno())
        return
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:  # a file with no name until it is complete: a kill leaves nothing
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise InvalidConfig(f"cannot write {path}: {err.strerror}") from None
    try:
        try:
            write(fd)
            faults.point("save.written")
            parent = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:  # a directory descriptor makes it linkat(AT_SYMLINK_FOLLOW), not link(2)
                os.link(f"/proc/self/fd/{fd}", os.path.basename(tmp), dst_dir_fd=parent)
            finally:
                os.close(parent)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_no_space(err):  # one line, nothing left behind
            raise no_space(err, "the archive", path) from None  # type: ignore[arg-type]
        if isinstance(err, OSError):
            raise FailedPrecondition(f"writing {path}: {err.strerror or err}") from None
        raise
