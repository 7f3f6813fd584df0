"""A pinnace image source in a package of its own: ``dir:PATH[@CHANGES]`` makes a
one-layer image from the host directory ``PATH``.

The directory is tarred the way pinnace tars trees (sorted entries, numeric
owners, modes, links, device nodes, xattrs), so the same tree always gives the
same layer. The image's creation time is the directory's modification time, so
fetching an unchanged directory again gives the same image ID and stores
nothing new. ``@CHANGES`` names a file of Dockerfile instructions, one per line
(``CMD``, ``ENTRYPOINT``, ``ENV``, ``WORKDIR``, ``USER``, ``LABEL``,
``EXPOSE``), as ``pinnace import -c`` takes them; blank lines and ``#``
comments are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pinnace.plugin import InvalidConfig, NotFound, Plugin, hookimpl

if TYPE_CHECKING:
    from pinnace.plugin import ImageStore


def split_reference(reference: str) -> tuple[Path, Path | None]:
    """``(directory, changes file or None)`` of ``PATH[@CHANGES]``: the whole reference
    is the directory when it exists, else it splits at the last ``@``."""
    path, at, changes = reference.rpartition("@")
    if not at or Path(reference).exists():
        return Path(reference), None
    return Path(path), Path(changes)


def read_changes(path: Path) -> list[str]:
    """The Dockerfile instructions in ``path``, one a line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NotFound(f"dir: changes file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidConfig(f"dir: cannot read changes file {path}: {err}") from None
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


class DirSource(Plugin):
    """Host directories as an image transport."""

    @hookimpl
    def pinnace_image_source_fetch(self, reference: str, store: ImageStore) -> str:
        """Store the directory ``reference`` names as an untagged one-layer image; return
        its ID."""
        from pinnace.plugin import new_config, parse_changes

        directory, changes_file = split_reference(reference)
        try:
            created = directory.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"dir: {directory} does not exist") from None
        if not directory.is_dir():
            raise InvalidConfig(f"dir: {directory} is not a directory (tar:PATH takes a "
                                f"rootfs tarball)")
        container_config = parse_changes(read_changes(changes_file) if changes_file else [])
        with store.staging() as written:
            layer = store.add_tree(directory)
            written.append(layer.digest)
            config = new_config([layer.digest], container_config, "pinnace-dirsource",
                                comment=f"from dir:{directory.resolve()}", created=created)
            return store.add_image(config, [layer], [], "dir", written)
