"""The image source contract (``pinnace.testing.image_source``) run against the built-in
sources: ``tar``, ``docker-archive``, ``oci-archive``, ``oci``, ``docker`` (the
registry, against Debian's docker-registry on loopback, with images skopeo put there)
and ``debootstrap`` (bookworm minbase from this host's Debian mirror, built once per
test session and checked for files every such build holds)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinnace.errors import InvalidConfig
from pinnace.images.store import ImageStore, host_platform
from pinnace.plugin import PluginContext
from pinnace.state import State
from pinnace.testing.image_source import (
    ImageSourceContract,
    KnownFile,
    Material,
    write_rootfs_tar,
)
from pinnace.testing.registry import (
    PASSWORD,
    USER,
    Layout,
    RegistryServer,
    docker_registry,
    htpasswd,
    skopeo_copy,
)
from pinnace_plugins.source_archive import ArchiveSource
from pinnace_plugins.source_debootstrap import DebootstrapSource
from pinnace_plugins.source_registry import RegistrySource
from pinnace_plugins.source_tar import TarSource


def context(name: str, tmp_path: Path, **options: object) -> PluginContext:
    return PluginContext(name, "image_source", dict(options), data_dir=tmp_path / "data")


class TestTarContract(ImageSourceContract):
    def make_plugin(self, tmp_path: Path) -> TarSource:
        return TarSource(context("tar", tmp_path))

    def make_reference(self, rootfs: Path, tmp_path: Path) -> str:
        return str(write_rootfs_tar(rootfs, tmp_path / "rootfs.tar"))

    def missing_reference(self, tmp_path: Path) -> str:
        return str(tmp_path / "no-such-rootfs.tar")


def saved_archive(rootfs: Path, path: Path, fmt: str, tag: str) -> Path:
    """The rootfs imported into a scratch store, then written as a ``fmt`` archive."""
    from pinnace.images.archive import write, write_to

    state = State(path.parent / "scratch" / "state.db")
    try:
        store = ImageStore(path.parent / "scratch" / "images", state)
        image = store.resolve(store.import_rootfs(rootfs, None))
        write_to(str(path), lambda fd: write(store, [(image, tag)], fd, fmt))
    finally:
        state.close()
    return path


class TestDockerArchiveContract(ImageSourceContract):
    def make_plugin(self, tmp_path: Path) -> ArchiveSource:
        return ArchiveSource(context("docker-archive", tmp_path))

    def make_reference(self, rootfs: Path, tmp_path: Path) -> str:
        path = saved_archive(rootfs, tmp_path / "saved.tar", "docker-archive", "contract/box:1")
        return f"{path}:contract/box:1"

    def missing_reference(self, tmp_path: Path) -> str:
        return f"{tmp_path / 'no-such-archive.tar'}:contract/box:1"

    def push_destination(self, tmp_path: Path) -> str:
        return f"{tmp_path / 'pushed.tar'}:contract/pushed:2"


class TestOciArchiveContract(ImageSourceContract):
    def make_plugin(self, tmp_path: Path) -> ArchiveSource:
        return ArchiveSource(context("oci-archive", tmp_path))

    def make_reference(self, rootfs: Path, tmp_path: Path) -> str:
        path = saved_archive(rootfs, tmp_path / "saved.tar", "oci-archive", "contract/box:1")
        return f"{path}:contract/box:1"

    def missing_reference(self, tmp_path: Path) -> str:
        return str(tmp_path / "no-such-archive.tar")

    def push_destination(self, tmp_path: Path) -> str:
        return f"{tmp_path / 'pushed.tar'}:contract/pushed:2"


def layout_of(rootfs: Path, path: Path) -> Layout:
    """An OCI layout (written by the test helpers, not by pinnace) holding the rootfs as
    a gzipped one-layer image tagged ``contract/box:1``."""
    tar = write_rootfs_tar(rootfs, path.parent / "rootfs.tar").read_bytes()
    layout = Layout(path)
    layout.tag(layout.image([tar], arch=host_platform()[1]), "contract/box:1")
    return layout


class TestOciLayoutContract(ImageSourceContract):
    push_refused = InvalidConfig  # pinnace writes archives, not layout directories

    def make_plugin(self, tmp_path: Path) -> ArchiveSource:
        return ArchiveSource(context("oci", tmp_path))

    def make_reference(self, rootfs: Path, tmp_path: Path) -> str:
        return f"{layout_of(rootfs, tmp_path / 'layout').path}:contract/box:1"

    def missing_reference(self, tmp_path: Path) -> str:
        return str(tmp_path / "no-such-layout")

    def push_destination(self, tmp_path: Path) -> str:
        return str(tmp_path / "pushed-layout")


@pytest.fixture(scope="session")
def contract_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain registry on loopback."""
    with docker_registry(tmp_path_factory.mktemp("contract-registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def contract_auth_registry(tmp_path_factory: pytest.TempPathFactory
                           ) -> Iterator[RegistryServer]:
    """A registry on loopback that wants htpasswd Basic auth (USER / PASSWORD)."""
    work = tmp_path_factory.mktemp("contract-auth-registry")
    auth = {"htpasswd": {"realm": "pinnace", "path": str(htpasswd(work / "htpasswd"))}}
    with docker_registry(work / "registry", auth=auth) as reg:
        yield reg


class TestRegistryContract(ImageSourceContract):
    @pytest.fixture(autouse=True)
    def registries(self, contract_registry: RegistryServer,
                   contract_auth_registry: RegistryServer) -> None:
        self.host = contract_registry.host
        self.auth_host = contract_auth_registry.host

    def make_plugin(self, tmp_path: Path) -> RegistrySource:
        return RegistrySource(context("docker", tmp_path, insecure_registries=(), parallel=3,
                                      auth_file=""))

    def make_reference(self, rootfs: Path, tmp_path: Path) -> str:
        layout = layout_of(rootfs, tmp_path / "layout")
        reference = f"{self.host}/contract/{uuid.uuid4().hex[:12]}:1"
        skopeo_copy(f"oci:{layout.path}:contract/box:1", f"docker://{reference}")
        return reference

    def missing_reference(self, tmp_path: Path) -> str:
        return f"{self.host}/contract/no-such-image:1"

    def push_destination(self, tmp_path: Path) -> str:
        return f"{self.host}/contract/pushed-{uuid.uuid4().hex[:12]}:2"

    def login_credentials(self) -> tuple[str, str, str]:
        return self.auth_host, USER, PASSWORD


@pytest.fixture(scope="session")
def debootstrap_data(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The debootstrap source's data directory for the whole session, shared by the
    xdist workers: the plugin keeps each recipe's build there, built once under its lock,
    so every test of the suite fetches the one bookworm build."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if worker_id != "master" else base) / "debootstrap-contract"


class TestDebootstrapContract(ImageSourceContract):
    """debootstrap's material is a Debian release from the mirror, not a rootfs of the
    suite's: it fetches the smallest recipe (bookworm, minbase) and names files every
    bookworm build holds."""

    @pytest.fixture(autouse=True)
    def shared_data(self, debootstrap_data: Path) -> None:
        self.data_dir = debootstrap_data

    def make_plugin(self, tmp_path: Path) -> DebootstrapSource:
        return DebootstrapSource(PluginContext.for_plugin(
            DebootstrapSource, "debootstrap", "image_source", data_dir=self.data_dir))

    def material(self, tmp_path: Path) -> Material:
        return Material("bookworm", (
            KnownFile("/etc/debian_version", content=re.compile(rb"\A12\.\d+\n\Z")),
            KnownFile("/etc/os-release", type="symlink", target="../usr/lib/os-release"),
            KnownFile("/usr/lib/os-release",
                      content=re.compile(rb"^VERSION_CODENAME=bookworm$", re.MULTILINE)),
            KnownFile("/usr/bin/apt", mode=0o755),
            KnownFile("/bin", type="symlink", target="usr/bin"),
            KnownFile("/var/lib/dpkg/status", content=re.compile(rb"^Package: apt$", re.MULTILINE)),
            KnownFile("/tmp", type="dir", mode=0o1777),
        ))

    def missing_reference(self, tmp_path: Path) -> str:
        return "nosuchsuite"
