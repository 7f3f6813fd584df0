"""Chown-on-snapshot: where a storage's snapshots cannot be mounted idmapped (the dir
storage on a filesystem without idmapped mounts, ramfs here; the overlay example, whose
overlay mounts cannot be), a container with a user namespace gets a copy of its image's
layer whose owners are shifted through its mapping, made once per mapping; commit,
diff and export shift them back; rmi removes the copies with the layer. A storage that
can do neither is refused in one line."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers
from test_userns import import_far_owned, pinnace_ranges


@pytest.fixture
def ramfs_dir(pn: Pinnace) -> Iterator[Path]:
    """The dir storage's data directory on a ramfs (no idmapped mounts there)."""
    data = pn.root / "storage" / "dir"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "ramfs", "-o", "mode=0700", "none", str(data)], check=True)
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)


def shifted_keys(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "snapshots").iterdir() if p.name.startswith("shift-"))


def root_mount_options(pid: int) -> str:
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        return next(line for line in f if line.split()[4] == "/").split()[5]


def check_shifted_container(pn: Pinnace, image: str, storage: str, data: Path) -> None:
    start, _ = pinnace_ranges()
    mapping = ("--uidmap", f"0:{start + 200000}:65536")
    cid = pn("run", "-d", f"--storage={storage}", *mapping, image, "sh", "-c",
             "mkdir -p /srv/made && echo hi > /srv/made/f && rm /bin/ls && sleep 60"
             ).stdout.strip()
    pid = json.loads(pn("inspect", cid).stdout)[0]["State"]["Pid"]
    assert "idmapped" not in root_mount_options(pid)  # the files themselves are shifted
    owners = pn("exec", cid, "sh", "-c", "sleep 0.3; stat -c %u:%g / /bin/busybox "
                                         "/srv/made/f").stdout.split()
    assert owners == ["0:0"] * 3
    shifted = shifted_keys(data)
    assert len(shifted) == 1, shifted
    layer_tree = data / "snapshots" / shifted[0] / "fs"
    assert (layer_tree / "bin" / "busybox").stat().st_uid == start + 200000  # on disk
    before = (layer_tree / "bin" / "busybox").stat().st_ctime_ns
    second = pn("run", "-d", f"--storage={storage}", *mapping, image, "sleep", "60"
                ).stdout.strip()
    assert shifted_keys(data) == shifted  # the same mapping: the copy is reused
    assert (layer_tree / "bin" / "busybox").stat().st_ctime_ns == before  # not chowned again
    other = pn("run", "--rm", f"--storage={storage}", "--uidmap", f"0:{start + 300000}:65536",
               image, "stat", "-c", "%u", "/bin/busybox").stdout.split()
    assert other == ["0"] and len(shifted_keys(data)) == 2  # another mapping, another copy
    (pn.root / "copied").write_text("in\n")
    pn("cp", str(pn.root / "copied"), f"{cid}:/srv/copied")
    assert pn("exec", cid, "stat", "-c", "%u:%g", "/srv/copied").stdout == "0:0\n"
    changes = pn("diff", cid).stdout.split("\n")
    assert {"A /srv/made/f", "A /srv/copied", "D /bin/ls"} <= set(changes), changes
    assert not any(line.endswith("/bin/busybox") for line in changes)  # unchanged files
    pn("commit", "--no-pause", cid, "shifted:1")
    exported = pn.root / "export.tar"
    pn("export", "-o", str(exported), second)
    pn("rm", "-f", cid, second)
    on_disk = pn("run", "--rm", "--userns=host", f"--storage={storage}", "shifted:1", "sh",
                 "-c", "stat -c %u:%g /srv/made/f /bin/busybox; test -e /bin/ls; echo ls=$?"
                 ).stdout.split()
    assert on_disk == ["0:0", "0:0", "ls=1"]  # stored unshifted, the removal kept
    with tarfile.open(exported) as tar:
        assert {(m.uid, m.gid) for m in tar.getmembers()} == {(0, 0)}
    pn("rmi", "shifted:1")
    pn("rmi", image)
    assert shifted_keys(data) == [] and list((data / "snapshots").iterdir()) == []
    assert [m for m in host_leftovers(pn.root) if m != f"mount {data}"] == []  # but the ramfs


def test_dir_storage_without_idmapped_mounts_shifts_owners(
        pn: Pinnace, busybox: str, ramfs_dir: Path) -> None:
    check_shifted_container(pn, busybox, "dir", ramfs_dir)


def test_a_plugin_that_declares_no_idmap_shifts_owners(
        pn: Pinnace, busybox: str, overlay_site: Path) -> None:
    """The overlay example: an overlay mount cannot be idmapped, and the plugin says so."""
    pn.add_site(overlay_site)
    check_shifted_container(pn, busybox, "overlay", pn.root / "storage" / "overlay")


def test_files_beyond_the_mapping_are_shifted_to_the_overflow_id(
        pn: Pinnace, busybox_tar: Path, tmp_path: Path, ramfs_dir: Path) -> None:
    import_far_owned(pn, busybox_tar, tmp_path)
    out = pn("run", "--rm", "--storage=dir", "--userns=auto", "wide:1", "sh", "-c",
             "exec 2>&1; stat -c %u:%g /far; echo x > /far; echo write=$?").stdout
    assert out.split()[0] == "65534:65534" and "write=1" in out, out


def test_a_storage_that_can_neither_idmap_nor_shift_is_refused(
        pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    package = site / "pinnace_noshift"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from pinnace.plugin import StorageCapabilities, hookimpl\n"
        "from pinnace_plugins.storage_dir import DirStorage\n\n\n"
        "class NoShift(DirStorage):\n"
        "    @hookimpl\n"
        "    def pinnace_storage_capabilities(self):\n"
        "        return StorageCapabilities(idmap=False, shift=False)\n")
    info = site / "pinnace_noshift-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pinnace-noshift\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[pinnace.storage]\nnoshift = pinnace_noshift:NoShift\n")
    pn.add_site(site)
    proc = pn("run", "--rm", "--storage=noshift", "--userns=auto", busybox, "true",
              check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1, proc.stderr
    assert "storage noshift can neither idmap its snapshots here nor shift" in proc.stderr
    assert pn("ps", "-aq").stdout == "" and host_leftovers(pn.root) == []
    left = [p.name for p in (pn.root / "storage" / "noshift" / "snapshots").iterdir()]
    assert left and all(name.startswith("sha256") for name in left), left  # layers only
    assert pn("run", "--rm", "--storage=noshift", busybox, "true").returncode == 0
