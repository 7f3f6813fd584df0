"""``COPY`` and ``ADD``: files from the context (or ``--from`` a stage or an image)
into a container's root filesystem, committed as the step's layer.

Where files land follows docker: a directory source copies its contents; several
sources, or a destination ending in ``/``, make the destination a directory; a single
file goes to the destination path, or into it when that is an existing directory;
a relative destination is taken from WORKDIR. Entries are owned by root, or by
``--chown`` (names looked up in the image's /etc/passwd and /etc/group); ``--chmod``
sets their mode. ``ADD`` unpacks a local tar (plain or compressed) into the
destination and fetches a URL (a clear error where it cannot).

The destination is resolved against a descriptor of the container's root
(:func:`pinnace.rootfs.mkdir_in`: its symlinks stay inside it) and written by
:func:`pinnace.images.unpack.extract`, one entry at a time relative to its
directory's descriptor.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace import rootfs
from pinnace.build import words
from pinnace.build.dockerfile import Instruction
from pinnace.build.stagestate import NOP, StageState, seen_args
from pinnace.build.tree import Placement, Tree
from pinnace.errors import InvalidConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from pinnace.build.builder import Builder

_URL_LIMIT = 1 << 30
"""The most ``ADD URL`` downloads, in bytes."""


def copy_step(builder: Builder, state: StageState, instruction: Instruction) -> None:
    """Run one COPY or ADD step (from the cache when its sources did not change)."""
    env = state.env
    listed = instruction.json_list()
    items = [words.expand(i, env, builder.escape) for i in listed] if listed is not None \
        else words.split(instruction.args, env, builder.escape)
    if len(items) < 2:
        raise instruction.error("needs a source and a destination")
    patterns, dest = items[:-1], items[-1]
    dest_path = posixpath.join(state.config.get("WorkingDir") or "/", dest)
    if dest.endswith("/") and not dest_path.endswith("/"):
        dest_path += "/"
    urls = [p for p in patterns if _is_url(p)]
    if urls and instruction.keyword == "COPY":
        raise instruction.error(f"COPY cannot fetch a URL ({urls[0]}): use ADD")
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(_source_tree(builder, instruction))
        groups: list[tuple[Tree, list[tuple[str, bool]]]] = []
        local = [p for p in patterns if not _is_url(p)]
        if local:
            groups.append((tree, [found for p in local for found in tree.find(p)]))
        if urls:
            groups.append(stack.enter_context(_fetched(urls, instruction)))
        checksums = [t.checksum([Placement(p, d, "" if d else posixpath.basename(p))
                                 for p, d in found]) for t, found in groups]
        count = sum(len(found) for _, found in groups)
        kind = "dir" if any(d for _, found in groups for _, d in found) else "file"
        created_by = f"{NOP}{instruction.keyword} {kind}:{'+'.join(checksums)} in {dest} "
        text = f"{instruction.text} |{dest_path}" + seen_args(state)
        config = state.config
        owner_spec = instruction.flags.get("chown")
        mode = _mode(instruction)
        unpack = instruction.keyword == "ADD"

        def make() -> str:
            with builder.container(state.image_id, ["/bin/sh", "-c", created_by], []) as cid, \
                    builder.rootfs(cid) as root:
                owner = _owner(root, owner_spec, instruction)
                for source_tree, found in groups:
                    _put(source_tree, found, root, dest_path, count, owner, mode,
                         unpack and source_tree is tree, instruction)
                return builder.commit(cid, config, created_by)

        builder.cached(state, text, make, checksum="+".join(checksums))


@contextlib.contextmanager
def _source_tree(builder: Builder, instruction: Instruction) -> Iterator[Tree]:
    """The context, or with ``--from`` a read-only view of a stage's or image's files."""
    ref = instruction.flags.get("from")
    if ref is None:
        yield builder.context
        return
    stage = builder.dockerfile.stage(ref)
    if stage is not None:
        if stage.index not in builder.stage_images:
            raise instruction.error(f"--from={ref}: the stage is not built before this one")
        image_id = builder.stage_images[stage.index]
    else:
        image_id = builder.image(ref)
    with builder.image_root(image_id) as root:
        yield Tree(root, f"--from={ref}")


def _put(tree: Tree, found: list[tuple[str, bool]], root: int, dest: str, count: int,
         owner: tuple[int, int], mode: int | None, unpack: bool,
         instruction: Instruction) -> None:
    """Write ``found`` (of ``tree``) at ``dest`` in the container's root ``root``."""
    from pinnace.images.copy import pipe
    from pinnace.images.unpack import extract

    as_dir = count > 1 or dest.endswith("/")
    placements, archives = [], []
    if not as_dir and not found[0][1] and not _is_dir(root, dest):
        into = posixpath.dirname(dest) or "/"
        placements.append(Placement(found[0][0], False, posixpath.basename(dest)))
        if unpack and _is_archive(tree, found[0][0]):
            archives, placements, into = [found[0][0]], [], dest
    else:
        into = dest
        for path, is_dir in found:
            if unpack and not is_dir and _is_archive(tree, path):
                archives.append(path)
            else:
                placements.append(Placement(path, is_dir, "" if is_dir else
                                            posixpath.basename(path)))
    missing = [prefix for prefix in _prefixes(into) if not _is_dir(root, prefix)]
    try:
        made = rootfs.mkdir_in(root, into)
        for prefix in missing:  # made for this copy: its owner's, as docker makes them
            fd = rootfs.open_in(root, prefix, os.O_PATH | os.O_DIRECTORY)
            try:
                os.chown(f"/proc/self/fd/{fd}", *owner)
            finally:
                os.close(fd)
    except OSError as err:
        raise instruction.error(f"cannot make the destination {into}: {err.strerror}") from None
    try:
        target = os.open(f"/proc/self/fd/{made}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(made)
    adjust = _chmod(mode) if mode is not None else None
    try:
        if placements:
            pipe(lambda out: tree.write(placements, out, adjust),
                 lambda stream: extract(stream, target, owner))
        for path in archives:
            with os.fdopen(tree.open_file(path), "rb") as archive:
                extract(archive, target, owner if instruction.flags.get("chown") else None)
    finally:
        os.close(target)


def _prefixes(path: str) -> list[str]:
    """``/a/b/c`` -> ``/a``, ``/a/b``, ``/a/b/c``."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _is_dir(root: int, path: str) -> bool:
    try:
        os.close(rootfs.open_in(root, path, os.O_PATH | os.O_DIRECTORY))
        return True
    except OSError:
        return False


def _is_archive(tree: Tree, path: str) -> bool:
    """Whether the context file ``path`` is a tar, plain or compressed (ADD unpacks it)."""
    from pinnace.build.context import is_archive

    fd = tree.open_file(path)
    try:
        return is_archive(os.pread(fd, 512, 0))
    except OSError:  # a directory, say
        return False
    finally:
        os.close(fd)


def _owner(root: int, spec: str | None, instruction: Instruction) -> tuple[int, int]:
    """``--chown``'s numeric owner (root without it)."""
    if spec is None:
        return 0, 0
    from pinnace.runtime.users import resolve

    user, _, group = spec.partition(":")
    try:
        resolved = resolve(Path(f"/proc/self/fd/{root}"), spec)
    except InvalidConfig as err:
        raise instruction.error(f"--chown={spec}: {err}") from None
    uid = resolved.user.uid  # a user without a group: that number as the group too
    return uid, resolved.user.gid if group else uid


def _mode(instruction: Instruction) -> int | None:
    value = instruction.flags.get("chmod")
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise instruction.error(f"--chmod={value}: expected an octal mode")
    return mode


def _chmod(mode: int) -> Callable[[Any], None]:
    def adjust(info: Any) -> None:
        if not info.issym():
            info.mode = mode

    return adjust


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


@contextlib.contextmanager
def _fetched(urls: list[str], instruction: Instruction
             ) -> Iterator[tuple[Tree, list[tuple[str, bool]]]]:
    """ADD's URLs downloaded into a temporary tree (files of mode 0600, as docker)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    with tempfile.TemporaryDirectory(prefix="pinnace-add-") as tmp:
        found = []
        for url in urls:
            name = posixpath.basename(urllib.parse.urlsplit(url).path) or "index.html"
            try:
                with urllib.request.urlopen(url, timeout=30) as response, \
                        open(os.path.join(tmp, name), "wb") as f:
                    size = 0
                    while chunk := response.read(1 << 20):
                        size += len(chunk)
                        if size > _URL_LIMIT:
                            raise instruction.error(f"{url} is larger than {_URL_LIMIT} bytes")
                        f.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", err)
                raise instruction.error(f"cannot fetch {url}: {reason}") from None
            os.chmod(os.path.join(tmp, name), 0o600)
            found.append((name, False))
        with rootfs.opened_root(tmp) as root:
            yield Tree(root, "downloaded files"), found
