"""The OCI image store on real files and a real SQLite state: import, resolve, tag, rmi."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinnace.errors import FailedPrecondition, InvalidConfig, NotFound
from pinnace.images.store import ImageStore, chain_ids, new_config, parse_changes
from pinnace.images.unpack import apply_layer
from pinnace.state import State


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    st = State(tmp_path / "state.db")
    yield st
    st.close()


@pytest.fixture
def store(tmp_path: Path, state: State) -> ImageStore:
    return ImageStore(tmp_path / "images", state)


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    """A small rootfs tar with the given regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def blob_files(store: ImageStore) -> list[str]:
    """Every file in the blob directory, temp files included."""
    return sorted(os.listdir(store.blobs)) if store.blobs.exists() else []


def no_users(image_id: str) -> list[str]:
    return []


# ------------------------------------------------------------------ import

def test_import_tar_writes_layout_blobs_rows_and_event(store: ImageStore, tmp_path: Path,
                                                       state: State) -> None:
    data = rootfs_tar({"etc/hostname": b"box\n"})
    image_id = store.import_rootfs(write(tmp_path / "r.tar", data), "box", ['CMD ["sh"]'], "hi")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    image = store.resolve("box:latest")
    assert image.id == image_id and image.tags == ["box:latest"]
    assert [(layer.diff_id, layer.chain_id, layer.blob_digest, layer.size)
            for layer in image.layers] == [(digest, digest, digest, len(data))]
    assert image.size == len(data)
    assert image.config["rootfs"] == {"type": "layers", "diff_ids": [digest]}
    assert image.config["os"] == "linux" and image.config["config"]["Cmd"] == ["sh"]
    assert image.config["history"][0]["created_by"] == "pinnace import"
    assert image.config["history"][0]["comment"] == "hi"
    for d in (image_id, image.manifest_digest, digest):  # every blob's name is its digest
        assert hashlib.sha256(store.blob_path(d).read_bytes()).hexdigest() == d[7:]
    manifest = json.loads(store.blob_path(image.manifest_digest).read_bytes())
    assert manifest["layers"] == [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": digest, "size": len(data)}]
    assert manifest["config"]["digest"] == image_id
    assert store.resolve(f"box@{image.manifest_digest}").id == image_id
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert state.one("SELECT action FROM events WHERE actor = ?", image_id)["action"] == "import"
    with store.layer_stream(image.layers[0]) as stream:
        assert stream.read() == data


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_sources_store_the_same_uncompressed_layer(store: ImageStore, tmp_path: Path,
                                                              compress) -> None:
    data = rootfs_tar({"a": b"1" * 5000, "b/c": b"2"})
    plain = store.resolve(store.import_rootfs(write(tmp_path / "p.tar", data), None))
    packed = store.resolve(store.import_rootfs(write(tmp_path / "c.tar", compress(data)), None))
    assert packed.layers[0].diff_id == plain.layers[0].diff_id
    assert packed.layers[0].size == len(data)


def test_import_from_a_stream(store: ImageStore) -> None:
    data = rootfs_tar({"x": b"y"})
    image = store.resolve(store.import_rootfs(io.BytesIO(gzip.compress(data)), "s:1"))
    assert image.layers[0].diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("content", [b"just some text\n" * 100, b"", b"\x1f\x8b\x08garbage"])
def test_a_non_tar_source_leaves_no_blob_and_no_row(store: ImageStore, tmp_path: Path,
                                                    state: State, content: bytes) -> None:
    with pytest.raises(InvalidConfig, match="^not a tar archive: .*notes.txt"):
        store.import_rootfs(write(tmp_path / "notes.txt", content), "x")
    assert blob_files(store) == []
    assert state.query("SELECT * FROM images") == [] and state.query("SELECT * FROM tags") == []


def test_a_truncated_gzip_source_leaves_nothing(store: ImageStore, tmp_path: Path,
                                                state: State) -> None:
    data = gzip.compress(rootfs_tar({"big": os.urandom(100_000)}))
    with pytest.raises(InvalidConfig, match="not a tar archive"):
        store.import_rootfs(io.BytesIO(data[:-100]), "x")
    assert blob_files(store) == [] and state.query("SELECT * FROM images") == []


def test_a_bad_change_is_refused_before_anything_is_written(store: ImageStore, tmp_path: Path,
                                                            state: State) -> None:
    with pytest.raises(InvalidConfig, match="'ONBUILD'"):
        store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "x", ["ONBUILD RUN x"])
    with pytest.raises(InvalidConfig, match="HEALTHCHECK needs CMD"):
        store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "x", ["HEALTHCHECK ls"])
    with pytest.raises(InvalidConfig, match="invalid port 'http'"):
        store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "x", ["EXPOSE http"])
    assert blob_files(store) == [] and state.query("SELECT * FROM images") == []


def test_parse_changes() -> None:
    config = parse_changes([
        "CMD sh -c 'echo hi'", 'entrypoint ["/bin/tini", "--"]', "ENV A=1 B='two words'",
        "ENV LEGACY some value", "ENV A=3", "WORKDIR /srv", "WORKDIR app", "USER 1000:1000",
        'LABEL org.x="y z" k=v',
    ])
    assert config == {
        "Cmd": ["/bin/sh", "-c", "sh -c 'echo hi'"],
        "Entrypoint": ["/bin/tini", "--"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "B=two words", "LEGACY=some value", "A=3"],
        "WorkingDir": "/srv/app",
        "User": "1000:1000",
        "Labels": {"org.x": "y z", "k": "v"},
    }
    assert parse_changes(['CMD ["sh"]'])["Cmd"] == ["sh"]
    assert parse_changes(["EXPOSE 80 53/udp", "EXPOSE 8080/tcp"])["ExposedPorts"] == {
        "80/tcp": {}, "53/udp": {}, "8080/tcp": {}}
    for bad in ("CMD", "ENV =x", "RUN true", "LABEL k"):
        with pytest.raises(InvalidConfig):
            parse_changes([bad])


def test_directory_round_trip_keeps_metadata(store: ImageStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/su").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "bin/su", 0o4755)
    os.symlink("su", src / "bin/link")
    os.link(src / "bin/su", src / "bin/hard")
    os.mkfifo(src / "fifo", 0o640)
    (src / "owned").write_bytes(b"mine\n")
    os.chown(src / "owned", 1234, 5678)
    os.setxattr(src / "owned", "user.pinnace", b"\x00\xffbinary")
    os.chmod(src / "bin", 0o750)
    os.utime(src / "owned", (1_500_000_000, 1_500_000_000))

    image = store.resolve(store.import_rootfs(src, "dir:1"))
    out = tmp_path / "out"
    out.mkdir()
    with store.layer_stream(image.layers[0]) as stream:
        stats = apply_layer(stream, out)
    assert (stats.files, stats.dirs, stats.symlinks, stats.hardlinks) == (3, 1, 1, 1)

    def meta(p: Path) -> tuple:
        st = p.lstat()
        return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                int(st.st_mtime) if not stat.S_ISDIR(st.st_mode) else None)

    for rel in ("bin", "bin/su", "bin/link", "bin/hard", "fifo", "owned"):
        assert meta(out / rel) == meta(src / rel), rel
    assert stat.S_IMODE((out / "bin/su").stat().st_mode) == 0o4755
    assert os.readlink(out / "bin/link") == "su"
    assert (out / "bin/hard").stat().st_ino == (out / "bin/su").stat().st_ino
    assert os.getxattr(out / "owned", "user.pinnace") == b"\x00\xffbinary"
    assert (out / "owned").stat().st_mtime == 1_500_000_000
    assert (out / "owned").read_bytes() == b"mine\n"


def test_importing_a_directory_is_deterministic(store: ImageStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("b", "a", "c/d", "c/a"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    first = store.resolve(store.import_rootfs(src, None)).layers[0]
    second = store.resolve(store.import_rootfs(src, None)).layers[0]
    assert first.diff_id == second.diff_id
    with store.layer_stream(first) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        assert [m.name for m in tar] == ["a", "b", "c", "c/a", "c/d"]


def test_a_built_image_with_a_fixed_creation_time_is_stored_once(store: ImageStore,
                                                                 tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    with store.staging() as written:
        layer = store.add_tree(src)
        written.append(layer.digest)
        config = new_config([layer.digest], {"Cmd": ["sh"]}, "a test", "built", created=1e9)
        first = store.add_image(config, [layer], [], "test", written)
    blobs = blob_files(store)
    assert store.import_rootfs(src, None, message="built", created=1e9) != first  # other history
    image = store.resolve(first)
    assert image.config["created"] == "2001-09-09T01:46:40Z"
    assert image.config["config"] == {"Cmd": ["sh"]}
    assert image.config["history"] == [{"created": "2001-09-09T01:46:40Z",
                                        "created_by": "a test", "comment": "built"}]
    assert new_config([layer.digest], {"Cmd": ["sh"]}, "a test", "built", created=1e9) == config
    with store.staging() as written:
        again = store.add_image(config, [store.add_tree(src)], [], "test", written)
    assert again == first
    assert len(blob_files(store)) == len(blobs) + 2  # only the import's config and manifest


# ------------------------------------------------------------------ blobs

def test_a_blob_whose_bytes_do_not_match_is_refused(store: ImageStore) -> None:
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    with pytest.raises(InvalidConfig, match="does not match its digest"):
        store.add_blob(b"payload", expected=wrong)
    with pytest.raises(InvalidConfig, match="does not match its digest"):
        store.add_blob(io.BytesIO(b"payload"), expected=wrong)
    assert blob_files(store) == []
    right = "sha256:" + hashlib.sha256(b"payload").hexdigest()
    assert store.add_blob(io.BytesIO(b"payload"), expected=right) == (right, 7)
    assert blob_files(store) == [right[7:]]


def test_chain_ids() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    second = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    third = "sha256:" + hashlib.sha256(f"{second} {a}".encode()).hexdigest()
    assert chain_ids([a, b, a]) == [a, second, third]


# ------------------------------------------------------------------ tags and resolution

def test_importing_again_with_the_same_tag_moves_it(store: ImageStore, tmp_path: Path) -> None:
    tar = write(tmp_path / "r.tar", rootfs_tar({"f": b"1"}))
    old = store.import_rootfs(tar, "app:v1")
    store.tag("app:v1", "app:keep")
    new = store.import_rootfs(tar, "app:v1")
    assert old != new
    assert store.resolve("app:v1").id == new
    assert store.resolve(old).tags == ["app:keep"]
    store.untag("app:keep")
    assert store.resolve(old).tags == []  # dangling, still there
    assert [i.id for i in store.list()] == [new, old]  # newest first


def test_resolve_by_id_prefix_and_not_found(store: ImageStore, tmp_path: Path) -> None:
    image_id = store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "a")
    hexdigest = image_id[7:]
    for value in (image_id, hexdigest, hexdigest[:12], hexdigest[:4], "sha256:" + hexdigest[:5]):
        assert store.resolve(value).id == image_id
    with pytest.raises(NotFound, match="^No such image: nothere$"):
        store.resolve("nothere")
    with pytest.raises(InvalidConfig, match="invalid reference format"):
        store.resolve("Bad:Ref!")


def test_an_ambiguous_prefix_is_refused(store: ImageStore, tmp_path: Path) -> None:
    tar = write(tmp_path / "r.tar", rootfs_tar({}))
    first_digits: dict[str, str] = {}
    while True:  # at most 17 imports: two IDs must then share their first hex digit
        image_id = store.import_rootfs(tar, None)
        if image_id[7] in first_digits:
            break
        first_digits[image_id[7]] = image_id
    with pytest.raises(InvalidConfig, match="ambiguous"):
        store.resolve("sha256:" + image_id[7])
    assert store.resolve(image_id).id == image_id


def test_tag_validates_the_new_name(store: ImageStore, tmp_path: Path) -> None:
    store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "a")
    with pytest.raises(InvalidConfig, match="lowercase"):
        store.tag("a", "Upper")
    with pytest.raises(InvalidConfig, match="digest"):
        store.tag("a", "b@sha256:" + "0" * 64)
    with pytest.raises(NotFound):
        store.tag("missing", "b")
    with pytest.raises(NotFound):
        store.untag("b")


def test_index_json_follows_the_tags(store: ImageStore, tmp_path: Path) -> None:
    tar = write(tmp_path / "r.tar", rootfs_tar({}))
    one = store.import_rootfs(tar, "one")
    two = store.import_rootfs(tar, "two:v2")
    store.tag("one", "localhost:5000/one:x")
    store.import_rootfs(tar, "two:v2")  # two is now untagged
    store.remove("one:latest", False, no_users)

    index = json.loads((store.root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    named = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
             for m in index["manifests"] if "annotations" in m}
    expected = {t: store.resolve(t).manifest_digest for i in store.list() for t in i.tags}
    assert named == expected and set(named) == {"localhost:5000/one:x", "two:v2"}
    untagged = [m["digest"] for m in index["manifests"] if "annotations" not in m]
    assert untagged == [store.resolve(two).manifest_digest]
    for m in index["manifests"]:
        assert m["size"] == store.blob_path(m["digest"]).stat().st_size
    assert store.resolve(one).tags == ["localhost:5000/one:x"]


def test_inspect_is_docker_shaped(store: ImageStore, tmp_path: Path) -> None:
    image_id = store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "i",
                                   ["ENTRYPOINT sleep", "USER nobody"], "note")
    info = store.inspect("i")
    assert info["Id"] == image_id and info["RepoTags"] == ["i:latest"]
    assert info["RepoDigests"] == [] and info["Os"] == "linux" and info["Comment"] == "note"
    assert info["Config"]["Entrypoint"] == ["/bin/sh", "-c", "sleep"]
    assert info["Config"]["User"] == "nobody" and info["Config"]["Cmd"] is None
    assert info["RootFS"] == {"Type": "layers",
                              "Layers": [store.resolve("i").layers[0].diff_id]}
    assert info["Created"].endswith("Z") and info["Created"][:2] == "20"


# ------------------------------------------------------------------ rmi

def test_rmi_by_name_untags_then_deletes_with_the_last_tag(store: ImageStore, tmp_path: Path,
                                                          state: State) -> None:
    image_id = store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({"f": b"x"})), "a")
    store.tag("a", "b")
    layer = store.resolve("a").layers[0]
    result = store.remove("a", False, no_users)
    assert (result.untagged, result.deleted, result.orphan_chain_ids) == (["a:latest"], [], [])
    assert store.resolve("b").id == image_id
    result = store.remove("b", False, no_users)
    assert (result.untagged, result.deleted) == (["b:latest"], [image_id])
    assert result.orphan_chain_ids == [layer.chain_id]
    assert blob_files(store) == [] and state.query("SELECT * FROM images") == []
    assert state.query("SELECT * FROM image_layers") == []
    with pytest.raises(NotFound):
        store.resolve(image_id)


def test_rmi_by_id_with_several_tags_needs_force(store: ImageStore, tmp_path: Path) -> None:
    image_id = store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "a")
    store.tag("a", "b:2")
    with pytest.raises(FailedPrecondition, match="referenced in multiple repositories"):
        store.remove(image_id[7:19], False, no_users)
    assert store.resolve(image_id).tags == ["a:latest", "b:2"]
    result = store.remove(image_id[7:19], True, no_users)
    assert sorted(result.untagged) == ["a:latest", "b:2"] and result.deleted == [image_id]


def test_rmi_of_an_image_in_use(store: ImageStore, tmp_path: Path) -> None:
    image_id = store.import_rootfs(write(tmp_path / "r.tar", rootfs_tar({})), "a")
    users = {image_id: ["web"]}

    def in_use(i: str) -> list[str]:
        return users.get(i, [])

    with pytest.raises(FailedPrecondition, match="container web"):
        store.remove("a", False, in_use)
    with pytest.raises(FailedPrecondition, match="container web"):
        store.remove(image_id, False, in_use)
    assert store.resolve("a").id == image_id
    result = store.remove("a", True, in_use)  # forced: the tag goes, the image stays for web
    assert (result.untagged, result.deleted, result.orphan_chain_ids) == (["a:latest"], [], [])
    assert store.resolve(image_id).tags == []
    with pytest.raises(FailedPrecondition, match="container web"):
        store.remove(image_id, True, in_use)
    users.clear()  # web was removed
    assert store.remove(image_id, False, in_use).deleted == [image_id]
    assert blob_files(store) == []


def test_rmi_keeps_a_layer_another_image_shares(store: ImageStore, tmp_path: Path) -> None:
    tar = write(tmp_path / "r.tar", rootfs_tar({"f": b"shared"}))
    first = store.import_rootfs(tar, "a")
    second = store.import_rootfs(tar, "b")
    layer = store.resolve(second).layers[0]
    result = store.remove("a", False, no_users)
    assert result.deleted == [first] and result.orphan_chain_ids == []
    assert store.blob_path(layer.blob_digest).exists()
    assert not store.blob_path(first).exists()
    assert store.remove("b", False, no_users).orphan_chain_ids == [layer.chain_id]
    assert not store.blob_path(layer.blob_digest).exists()


def test_busybox_tar_imports_with_its_applets(store: ImageStore, busybox_tar: Path) -> None:
    image = store.resolve(store.import_rootfs(busybox_tar, "busybox", ['CMD ["sh"]']))
    with store.layer_stream(image.layers[0]) as stream, \
            tarfile.open(fileobj=stream, mode="r|") as tar:
        members = {m.name: m for m in tar}
    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["usr/bin/env"].linkname == "../../bin/busybox"
    assert members["tmp"].mode == 0o1777 and "etc/passwd" in members
    assert image.config["config"]["Cmd"] == ["sh"]
