"""The ``tar`` image source: ``tar:PATH`` makes a one-layer image from a rootfs tarball
(plain, gzip, bzip2 or xz) or a directory, as ``pinnace import`` does. The image's
creation time is the path's modification time, so fetching the same tarball again
gives the same image."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pinnace.plugin import NotFound, Plugin, hookimpl

if TYPE_CHECKING:
    from pinnace.plugin import ImageStore


class TarSource(Plugin):
    """Rootfs tarballs as an image transport."""

    @hookimpl
    def pinnace_image_source_fetch(self, reference: str, store: ImageStore) -> str:
        """Import the rootfs at path ``reference`` as an untagged image; return its ID."""
        path = Path(reference)
        try:
            mtime = path.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"tar source {reference} does not exist") from None
        return store.import_rootfs(path, None, message=f"from tar:{reference}", created=mtime)
