"""Layer compression: the media types a stored layer blob may have, decompressing a
stream (by its compression, or by sniffing its magic), and reading a stored layer as
the uncompressed tar its diff ID names, checked as it is read.

The store keeps layer blobs as they came: pulled ones as the registry served them
(gzip, zstd or plain tar), built ones (import, commit, load) as plain tar. The
media type in the image's manifest says which; it is always the OCI name
(docker's names are mapped when an image is pulled).
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, BinaryIO

from pinnace.errors import InvalidConfig

if TYPE_CHECKING:
    from pinnace.progress import Bar

MEDIA_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA = {"none": MEDIA_TAR, "gzip": MEDIA_TAR + "+gzip", "zstd": MEDIA_TAR + "+zstd"}
"""The OCI media type of a layer blob of each compression."""
_DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
COMPRESSION = {
    MEDIA_TAR: "none", MEDIA["gzip"]: "gzip", MEDIA["zstd"]: "zstd",
    _NONDISTRIBUTABLE: "none", _NONDISTRIBUTABLE + "+gzip": "gzip",
    _DOCKER_TAR: "none", _DOCKER_TAR + ".gzip": "gzip", _DOCKER_TAR + ".zstd": "zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
"""The compression of each layer media type a registry or an archive may hold (OCI and
docker, foreign and non-distributable layers included): the one list of layer types."""
_READ = 1 << 20


def decompressor(source: IO[bytes], kind: str) -> BinaryIO:
    """``source`` decompressed as it is read: ``kind`` is none, gzip, bzip2, xz or zstd.
    Bad compressed data raises ``tarfile.ReadError``."""
    if kind == "none":
        return source  # type: ignore[return-value]
    if kind == "gzip":
        import zlib

        try:  # ISA-L inflates about twice as fast as zlib
            from isal import igzip, isal_zlib
        except ImportError:
            import gzip

            return _Checked(gzip.GzipFile(fileobj=source, mode="rb"), kind, (zlib.error,))
        return _Checked(igzip.IGzipFile(fileobj=source, mode="rb"), kind,
                        (zlib.error, isal_zlib.error))
    if kind == "bzip2":
        import bz2

        return _Checked(bz2.BZ2File(source), kind, ())
    if kind == "xz":
        import lzma

        return _Checked(lzma.LZMAFile(source), kind, (lzma.LZMAError,))
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise InvalidConfig("zstd-compressed layer: install pinnace[zstd]") from None
        reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        return _Checked(reader, kind, (zstandard.ZstdError,))
    raise InvalidConfig(f"unknown layer compression {kind!r}")


def decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` as plain tar bytes: gzip, bzip2, xz and zstd are recognised by their magic
    and decompressed as read; bad compressed data raises ``tarfile.ReadError``."""
    head = b""
    while len(head) < 6:
        chunk = stream.read(6 - len(head))
        if not chunk:
            break
        head += chunk
    source: Any = _Prefixed(head, stream)
    kind = sniff(head)
    return source if kind == "none" else decompressor(source, kind)


def sniff(head: bytes) -> str:
    """The compression of a stream that starts with ``head`` (its first 6 bytes):
    gzip, bzip2, xz or zstd by their magic, else none."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


class _Reader:
    """A reader defined by its ``read``; ``readinto`` (which ISA-L's gzip reader uses)
    follows from it."""

    def read(self, n: int | None = -1) -> bytes:
        raise NotImplementedError

    def readinto(self, buffer: Any) -> int:
        """Read up to ``len(buffer)`` bytes into ``buffer``; the number read."""
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _Prefixed(_Reader):
    """The bytes already read from a stream (to sniff its magic), then the rest of it."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def read(self, n: int | None = -1) -> bytes:
        if not self._head:
            return self._rest.read(n)
        if n is None or n < 0:
            data, self._head = self._head + self._rest.read(), b""
        else:
            data, self._head = self._head[:n], self._head[n:]
        return data


class _Checked:
    """A decompressing reader whose data errors surface as ``tarfile.ReadError``."""

    def __init__(self, inner: IO[bytes], kind: str, errors: tuple[type[Exception], ...]) -> None:
        self._inner, self._kind, self._errors = inner, kind, (EOFError, *errors)

    def read(self, n: int | None = -1) -> bytes:
        import tarfile

        try:
            return self._inner.read(n)
        except OSError as err:
            if err.errno is not None:  # a real I/O error, not bad compressed data
                raise
            raise tarfile.ReadError(f"{self._kind}: {err}") from None
        except self._errors as err:
            raise tarfile.ReadError(f"{self._kind}: {err}") from None


class Counted(_Reader):
    """A reader that advances ``bar`` (when there is one) by the bytes read through it,
    and closes what it reads."""

    def __init__(self, inner: IO[bytes], bar: Bar | None) -> None:
        self.inner, self.bar = inner, bar

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (all when ``n`` is negative)."""
        data = self.inner.read(n)
        if self.bar is not None:
            self.bar.advance(len(data))
        return data

    def close(self) -> None:
        """Close the inner reader."""
        self.inner.close()


class Hashing(_Reader):
    """A reader that hashes and counts what passes through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        import hashlib

        self.inner, self._hash, self.size = inner, hashlib.sha256(), 0

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (all when ``n`` is negative)."""
        data = self.inner.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> str:
        """Read (and hash) what the consumer left, such as the padding after a tar's
        end-of-archive marker or a compressor's trailer; the digest of all that passed."""
        while self.read(_READ):
            pass
        return "sha256:" + self._hash.hexdigest()


class LayerReader(Hashing):
    """The uncompressed tar of a stored layer blob, hashed as it is read.

    Bad compressed data raises InvalidConfig; :meth:`verify` reads what the
    consumer left and raises InvalidConfig unless the whole stream hashes to
    ``diff_id``.
    """

    def __init__(self, blob: IO[bytes], media_type: str, diff_id: str) -> None:
        kind = COMPRESSION.get(media_type)
        if kind is None:
            raise InvalidConfig(f"unsupported layer media type {media_type!r}")
        super().__init__(decompressor(blob, kind))
        self.diff_id = diff_id

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes of the uncompressed tar (all of it when ``n`` is negative)."""
        import tarfile

        try:
            return super().read(n)
        except tarfile.ReadError as err:
            raise InvalidConfig(f"corrupt compressed data: {err}") from None

    def verify(self) -> None:
        """Read to the end; InvalidConfig unless what was read hashes to the diff ID."""
        got = self.drain()
        if got != self.diff_id:
            raise InvalidConfig(f"its uncompressed tar hashes to {got}, not to the diff ID "
                                f"{self.diff_id} its image config lists")
