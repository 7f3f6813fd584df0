"""Archive image sources, named like skopeo's transports:

- ``docker-archive:PATH[:REF]``: a tar from ``docker save`` or ``podman save``;
- ``oci-archive:PATH[:REF]``: a tar of an OCI layout (``skopeo copy ... oci-archive:``);
- ``oci:DIR[:REF]``: an OCI layout directory.

``REF`` picks one image of a multi-image archive: a reference it is tagged
with, or ``@N`` for the N-th. The work is :func:`pinnace.images.archive.load`,
which ``pinnace load`` uses too. ``push`` writes ``docker-archive:`` and
``oci-archive:`` destinations (``REF`` names the image in it), as ``save`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pinnace.plugin import Plugin, hookimpl

if TYPE_CHECKING:
    from pinnace.plugin import ImageStore


class ArchiveSource(Plugin):
    """One class for the three transports; the entry-point name says which format."""

    @hookimpl
    def pinnace_image_source_fetch(self, reference: str, store: ImageStore) -> str:
        """Load the image ``PATH[:REF]`` names and return its ID."""
        from pinnace.images.archive import load
        from pinnace.plugin import NotFound

        path, _, select = reference.partition(":")
        if not Path(path).exists():
            raise NotFound(f"{self.ctx.name}: {path} does not exist")
        return load(store, Path(path), kind=self.ctx.name, select=select or None)[0].id

    @hookimpl
    def pinnace_image_source_push(self, image_id: str, destination: str,
                                  store: ImageStore) -> str:
        """Write image ``image_id`` to the archive ``PATH[:REF]``; return its manifest digest."""
        from pinnace.images.archive import write, write_to
        from pinnace.images.reference import parse
        from pinnace.plugin import InvalidConfig

        if self.ctx.name == "oci":
            raise InvalidConfig("pushing to an OCI layout directory is not supported: push to "
                                "oci-archive:FILE instead")
        path, _, name = destination.partition(":")
        if not path:
            raise InvalidConfig(f"{self.ctx.name}: a destination needs a path: {destination!r}")
        image = store.resolve(image_id)
        tag = str(parse(name)) if name else None
        write_to(path, lambda fd: write(store, [(image, tag)], fd, self.ctx.name))
        return image.manifest_digest
