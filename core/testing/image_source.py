r"""The image source contract: tests every image source plugin must pass
(``pinnace.testing.image_source``), the way the storage and network suites hold
their roles to theirs.

Subclass :class:`ImageSourceContract` in a test module, build your plugin in
``make_plugin``, turn the suite's rootfs into something your source fetches in
``make_reference``, name something that does not exist in
``missing_reference``, and run pytest as root::

    from pinnace.plugin import PluginContext
    from pinnace.testing.image_source import ImageSourceContract, write_rootfs_tar
    from my_plugin import MySource

    class TestMySource(ImageSourceContract):
        def make_plugin(self, tmp_path):
            return MySource(PluginContext.for_plugin(MySource, "mine", "image_source",
                                                     data_dir=tmp_path / "data"))

        def make_reference(self, rootfs, tmp_path):
            return str(write_rootfs_tar(rootfs, tmp_path / "rootfs.tar"))

        def missing_reference(self, tmp_path):
            return str(tmp_path / "nothing.tar")

References are given without the transport prefix, as pinnace passes them.

A source whose material cannot be made from a rootfs (debootstrap builds a
Debian release from a mirror) overrides :meth:`ImageSourceContract.material`
instead of ``make_reference``: it returns a reference to material that exists
and files the author knows its image holds, which the unpack check then looks
for in place of the suite's rootfs; every other check is the same (another
store fetching the reference gets the same image ID: a source that builds its
material keeps what it built)::

    def material(self, tmp_path):
        return Material("bookworm", (
            KnownFile("/etc/debian_version", content=re.compile(rb"\A12\.\d+\n\Z")),
            KnownFile("/usr/bin/apt", mode=0o755),
            KnownFile("/bin", type="symlink", target="usr/bin")))

The suite calls the hooks through pluggy, by keyword, as
:mod:`pinnace.images.sources` does, on a real :class:`~pinnace.images.store.ImageStore`
with its own state under the test's temp directory, and checks:

- the returned ID names an image in the store whose manifest, config and layer
  blobs are stored and hash to their digests, whose layers' diff IDs are the
  config's and chain IDs follow from them, and whose layers, unpacked through
  :meth:`~pinnace.images.store.ImageStore.layer_stream`, give back the rootfs'
  files (contents, modes, a symlink), or the known files of a material of the
  author's;
- fetching again returns the same ID and writes no blob, temp file or row;
  another store fetching the same material gets the same ID too;
- a missing reference raises :attr:`ImageSourceContract.missing_error`
  (``NotFound``) with a one-line message and leaves nothing in the store;
- ``TransferOptions`` fields that do not apply are ignored (every field set
  gives the same image), and progress bars a source draws are all finished;
- the optional hooks, when the plugin has them: push, then fetch what was
  pushed into another store (same image ID); login checks credentials (wrong
  ones fail in one line and store nothing), logout forgets them once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pinnace.images.store import chain_ids, host_platform
from pinnace.plugin import ImageStore, NotFound, PinnaceError, TransferOptions
from pinnace.testing import assert_implements_role

KNOWN_FILE = "etc/pinnace-contract"
"""A file of the suite's rootfs, checked in every fetched image."""

ROOTFS: dict[str, tuple[bytes, int]] = {
    KNOWN_FILE: (b"fetched through an image source\n", 0o644),
    "bin/hello": (b"#!/bin/sh\necho hello\n", 0o755),
    "usr/share/doc/contract/README": (b"a second directory level\n", 0o600),
}
"""The rootfs' regular files: relative path -> (content, mode)."""

SYMLINK = ("usr/bin/hello", "../../bin/hello")
"""A symlink of the rootfs: (path, target)."""

_TYPES = {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK}


@dataclass(frozen=True)
class KnownFile:
    """A path the image of some source material holds, and what is known of it:
    its type (``file``, ``dir`` or ``symlink``), a file's content (the whole of it as
    bytes, or a compiled bytes pattern found in it), its permission bits, a symlink's
    target. What is None is not checked."""

    path: str
    type: str = "file"
    content: bytes | re.Pattern[bytes] | None = None
    mode: int | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"{self.path}: type {self.type!r} is not one of {', '.join(_TYPES)}")
        if self.content is not None and self.type != "file":
            raise ValueError(f"{self.path}: only a file has content")
        if self.target is not None and self.type != "symlink":
            raise ValueError(f"{self.path}: only a symlink has a target")
        if self.mode is not None and self.type == "symlink":
            raise ValueError(f"{self.path}: a symlink's mode is not checked")


@dataclass(frozen=True)
class Material:
    """Source material the tests fetch: its reference (without the transport prefix) and
    files its image holds (at least one)."""

    reference: str
    files: tuple[KnownFile, ...]


ROOTFS_FILES = (
    *(KnownFile(rel, content=data, mode=mode) for rel, (data, mode) in ROOTFS.items()),
    KnownFile(SYMLINK[0], type="symlink", target=SYMLINK[1]),
)
"""The suite's rootfs (:data:`ROOTFS` and :data:`SYMLINK`) as known files."""


def make_rootfs(path: Path) -> Path:
    """Write the suite's rootfs (:data:`ROOTFS` and :data:`SYMLINK`) under ``path``."""
    for rel, (data, mode) in ROOTFS.items():
        file = path / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        file.chmod(mode)
    link = path / SYMLINK[0]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(SYMLINK[1])
    return path


def write_rootfs_tar(rootfs: Path, path: Path) -> Path:
    """Write the directory ``rootfs`` to ``path`` as a plain layer tar (the way pinnace
    tars trees, :func:`pinnace.images.layers.write_tree`); return ``path``."""
    from pinnace.images.layers import write_tree

    with open(path, "wb") as out:
        write_tree(rootfs, out)
    return path


def check_files(tree: Path, files: Sequence[KnownFile]) -> None:
    """Assert that ``tree`` holds every one of ``files`` (a path relative to the tree, a
    leading ``/`` or not) as it is known."""
    assert files, "no known files to check the unpacked image against"
    for known in files:
        path = tree / known.path.lstrip("/")
        assert path.is_symlink() or path.exists(), \
            f"{known.path} is missing from the unpacked image"
        st = path.lstat()
        assert _TYPES[known.type](st.st_mode), \
            f"{known.path} is not a {known.type} in the unpacked image"
        if known.mode is not None:
            assert stat.S_IMODE(st.st_mode) == known.mode, \
                f"{known.path} has mode {stat.S_IMODE(st.st_mode):o}, not {known.mode:o}"
        if isinstance(known.content, bytes):
            assert path.read_bytes() == known.content, \
                f"{known.path} has other content in the unpacked image"
        elif known.content is not None:
            assert known.content.search(path.read_bytes()), \
                f"{known.path} does not match {known.content.pattern!r} in the unpacked image"
        if known.target is not None:
            assert os.readlink(path) == known.target, \
                f"{known.path} is not a symlink to {known.target} in the unpacked image"


def one_line(err: BaseException) -> str:
    """The error's message, asserted to be one non-empty line."""
    text = str(err).strip()
    assert text and "\n" not in text, f"not a one-line message: {text!r}"
    return text


def leftovers(store: ImageStore) -> list[str]:
    """What a store holds beyond an empty layout: files (blobs, temp files) and rows."""
    found = [str(p.relative_to(store.root)) for p in store.root.rglob("*")
             if not p.is_dir() and p.name not in ("oci-layout", "index.json")]
    for table in ("images", "tags", "image_layers", "repo_digests"):
        count = store.state.one(f"SELECT count(*) FROM {table}")[0]
        if count:
            found.append(f"{count} row(s) in {table}")
    return found


def store_files(store: ImageStore) -> list[str]:
    """Every file in the store's blob directory, temp files included."""
    return sorted(os.listdir(store.blobs)) if store.blobs.is_dir() else []


def temp_files(store: ImageStore) -> list[str]:
    """Temp files anywhere under the store."""
    return [str(p) for p in store.root.rglob(".tmp*")]


class Source:
    """An image source plugin, registered with pluggy on its own; its hooks called by
    keyword, as pinnace calls them."""

    def __init__(self, plugin: Any) -> None:
        from pinnace import hookspecs

        self.plugin = plugin
        self.pm = hookspecs.PluginManager()
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(plugin)
        self.pm.check_pending()

    def has(self, verb: str) -> bool:
        """Whether the plugin implements ``pinnace_image_source_<verb>``."""
        return hasattr(self.plugin, f"pinnace_image_source_{verb}")

    def fetch(self, reference: str, store: ImageStore,
              options: TransferOptions | None = None) -> str:
        """``pinnace_image_source_fetch``."""
        return self.pm.hook.pinnace_image_source_fetch(
            reference=reference, store=store, options=options or TransferOptions())

    def push(self, image_id: str, destination: str, store: ImageStore) -> str:
        """``pinnace_image_source_push``."""
        return self.pm.hook.pinnace_image_source_push(
            image_id=image_id, destination=destination, store=store, options=TransferOptions())

    def login(self, server: str, username: str, password: str) -> None:
        """``pinnace_image_source_login``."""
        self.pm.hook.pinnace_image_source_login(server=server, username=username,
                                                password=password, options=TransferOptions())

    def logout(self, server: str) -> bool:
        """``pinnace_image_source_logout``."""
        return self.pm.hook.pinnace_image_source_logout(server=server)


class ImageSourceContract:
    """The tests an image source plugin must pass. Subclass it as ``Test...`` and
    implement :meth:`make_plugin`, :meth:`make_reference` (or :meth:`material`) and
    :meth:`missing_reference` (and :meth:`push_destination` / :meth:`login_credentials`
    when the plugin pushes or logs in). A method that needs other fixtures can read
    attributes an autouse fixture of the subclass sets on ``self``."""

    missing_error: type[PinnaceError] = NotFound
    """What fetching :meth:`missing_reference` raises (any :class:`PinnaceError`
    category; ``NotFound`` unless the source cannot tell a missing thing apart)."""

    push_refused: type[PinnaceError] | None = None
    """For a plugin that has the push hook but cannot write this transport (one class
    serving several): the error push raises. None: push must work."""

    def make_plugin(self, tmp_path: Path) -> Any:
        """A fresh instance of the plugin under test, with its data under ``tmp_path``."""
        raise NotImplementedError("subclasses of ImageSourceContract return their plugin here")

    def make_reference(self, rootfs: Path, tmp_path: Path) -> str:
        """Make source material (a tar, an archive, a registry repository, a directory...)
        whose image holds exactly the files under ``rootfs``; return the reference that
        fetches it, without the transport prefix."""
        raise NotImplementedError("subclasses of ImageSourceContract make a reference here "
                                  "(or override material)")

    def material(self, tmp_path: Path) -> Material:
        """The material every test fetches. By default the suite's rootfs made into
        material by :meth:`make_reference`, whose image must hold :data:`ROOTFS_FILES`.
        A source whose material cannot be made from a rootfs overrides this instead:
        a reference to material that exists, and files the author knows its image holds."""
        where = tmp_path / "material"
        where.mkdir()
        return Material(self.make_reference(make_rootfs(where / "rootfs"), where), ROOTFS_FILES)

    def missing_reference(self, tmp_path: Path) -> str:
        """A well-formed reference to source material that does not exist."""
        raise NotImplementedError("subclasses of ImageSourceContract name a missing thing here")

    def push_destination(self, tmp_path: Path) -> str | None:
        """For a plugin with the push hook: a destination (without the transport prefix)
        that a fetch of the same string reads back. None for a plugin that does not push."""
        return None

    def login_credentials(self) -> tuple[str, str, str] | None:
        """For a plugin with login and logout hooks: ``(server, username, password)``
        that the server accepts. None for a plugin that does not log in."""
        return None

    # ------------------------------------------------------------- fixtures
    @pytest.fixture
    def source(self, tmp_path: Path) -> Source:
        """The plugin under test, registered with pluggy."""
        if os.geteuid() != 0:
            pytest.skip("the image source contract needs root (unpacking owners and modes)")
        return Source(self.make_plugin(tmp_path))

    @pytest.fixture
    def new_store(self, tmp_path: Path) -> Iterator[Callable[[], ImageStore]]:
        """Makes empty image stores, each with a state of its own under ``tmp_path``."""
        from pinnace.state import State

        states: list[State] = []

        def make() -> ImageStore:
            root = tmp_path / f"store-{len(states)}"
            states.append(State(root / "state.db"))
            return ImageStore(root / "images", states[-1])

        yield make
        for state in states:
            state.close()

    @pytest.fixture
    def store(self, new_store: Callable[[], ImageStore]) -> ImageStore:
        """An empty image store."""
        return new_store()

    @pytest.fixture(name="material")
    def material_fixture(self, source: Source, tmp_path: Path) -> Material:
        """The material the tests fetch (:meth:`material`)."""
        return self.material(tmp_path)

    def unpacked(self, store: ImageStore, image_id: str, tmp_path: Path) -> Path:
        """Unpack every layer of ``image_id``, bottom first, into a new directory."""
        from pinnace.images.unpack import apply_layer

        dest = tmp_path / f"unpacked-{image_id[7:19]}-{os.urandom(4).hex()}"
        dest.mkdir()
        for layer in store.resolve(image_id).layers:
            with store.layer_stream(layer) as stream:
                apply_layer(stream, dest)
        return dest

    def check_image(self, store: ImageStore, image_id: str, material: Material,
                    tmp_path: Path) -> None:
        """The image is stored whole and consistent, and unpacks to a tree that holds the
        material's known files."""
        assert isinstance(image_id, str) and image_id.startswith("sha256:"), \
            f"fetch returned {image_id!r}, not an image ID"
        assert store.has_image(image_id), f"fetch returned {image_id}, which is not in the store"
        image = store.resolve(image_id)
        for digest in (image.id, image.manifest_digest, *(ly.blob_digest for ly in image.layers)):
            data = store.blob_path(digest).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, \
                f"blob {digest} does not hash to its digest"
        manifest = json.loads(store.blob_path(image.manifest_digest).read_bytes())
        assert manifest["config"]["digest"] == image.id
        assert [d["digest"] for d in manifest["layers"]] == \
            [ly.blob_digest for ly in image.layers]
        diff_ids = [ly.diff_id for ly in image.layers]
        assert diff_ids, "the image has no layers"
        assert diff_ids == image.config["rootfs"]["diff_ids"]
        assert [ly.chain_id for ly in image.layers] == chain_ids(diff_ids)
        for layer in image.layers:
            assert store.blob_path(layer.blob_digest).stat().st_size == layer.size
        assert (image.config.get("os"), image.config.get("architecture")) == host_platform()
        check_files(self.unpacked(store, image_id, tmp_path), material.files)

    # ----------------------------------------------------------------- tests
    def test_implements_the_image_source_role(self, source: Source) -> None:
        """pluggy accepts the plugin (no misspelt hook) and finds the fetch hook on it."""
        assert_implements_role(source.plugin, "image_source")

    def test_fetch_stores_a_consistent_image(self, source: Source, store: ImageStore,
                                             material: Material, tmp_path: Path) -> None:
        image_id = source.fetch(material.reference, store)
        self.check_image(store, image_id, material, tmp_path)
        assert [image.id for image in store.list()] == [image_id]
        assert temp_files(store) == []

    def test_fetching_again_changes_nothing(self, source: Source, store: ImageStore,
                                            material: Material) -> None:
        first = source.fetch(material.reference, store)
        blobs = store_files(store)
        image = store.resolve(first)
        again = source.fetch(material.reference, store)
        assert again == first, "fetching the same reference twice gave two images"
        assert store_files(store) == blobs, "the second fetch wrote blobs"
        assert [i.id for i in store.list()] == [first]
        assert store.resolve(first).tags == image.tags
        assert temp_files(store) == []

    def test_a_missing_reference_fails_in_one_line_and_leaves_nothing(
            self, source: Source, store: ImageStore, tmp_path: Path) -> None:
        assert issubclass(self.missing_error, PinnaceError)
        with pytest.raises(self.missing_error) as err:
            source.fetch(self.missing_reference(tmp_path), store)
        one_line(err.value)
        assert leftovers(store) == []

    def test_options_that_do_not_apply_are_ignored(self, source: Source, material: Material,
                                                   new_store: Callable[[], ImageStore],
                                                   tmp_path: Path) -> None:
        """Every TransferOptions field set (the host's platform, no TLS verification,
        a progress display, a push compression) gives the image the defaults give,
        in a store of its own; the progress bars drawn are all finished."""
        from pinnace.progress import Progress

        plain = source.fetch(material.reference, new_store())
        progress = Progress(io.StringIO())
        store = new_store()
        options = TransferOptions(platform="/".join(host_platform()), tls_verify=False,
                                  progress=progress, compression="zstd")
        assert source.fetch(material.reference, store, options) == plain
        self.check_image(store, plain, material, tmp_path)
        unfinished = [bar.label for bar in progress.bars if not bar.status]
        assert not unfinished, f"progress bars left unfinished: {unfinished}"

    def test_push_then_fetch_round_trip(self, source: Source, store: ImageStore,
                                        material: Material,
                                        new_store: Callable[[], ImageStore],
                                        tmp_path: Path) -> None:
        """A plugin that pushes writes an image that fetching the destination brings back
        whole, with the same ID, into another store; one that does not names no
        destination."""
        destination = self.push_destination(tmp_path)
        if not source.has("push"):
            assert destination is None, "a push destination was given, but there is no push hook"
            return
        assert destination is not None, "the plugin has a push hook: give a push_destination"
        image_id = source.fetch(material.reference, store)
        if self.push_refused is not None:
            with pytest.raises(self.push_refused) as err:
                source.push(image_id, destination, store)
            one_line(err.value)
            return
        digest = source.push(image_id, destination, store)
        assert isinstance(digest, str) and digest.startswith("sha256:"), \
            f"push returned {digest!r}, not a digest"
        other = new_store()
        assert source.fetch(destination, other) == image_id
        self.check_image(other, image_id, material, tmp_path)

    def test_login_checks_credentials_and_logout_forgets_them(self, source: Source) -> None:
        """A plugin that logs in refuses wrong credentials in one line, accepts right
        ones, and logs out once; one that does not names no credentials."""
        credentials = self.login_credentials()
        if not (source.has("login") or source.has("logout")):
            assert credentials is None, "credentials were given, but there is no login hook"
            return
        assert source.has("login") and source.has("logout"), \
            "a plugin with login or logout needs both"
        assert credentials is not None, \
            "the plugin has login and logout hooks: give login_credentials"
        server, username, password = credentials
        with pytest.raises(PinnaceError) as err:
            source.login(server, username, password + "-wrong")
        one_line(err.value)
        assert source.logout(server) is False, "wrong credentials were stored"
        source.login(server, username, password)
        assert source.logout(server) is True
        assert source.logout(server) is False
