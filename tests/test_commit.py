"""commit, export, history and images --digests through the real CLI, on btrfs and dir."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers

CHANGES = """
rm /etc/group
rm -r /usr/sbin
echo added > /etc/added
echo more >> /etc/passwd
mkdir -p /opt/deep/dir
echo linked > /opt/deep/dir/a
ln /opt/deep/dir/a /opt/b
ln -s ../etc/added /opt/sym
chmod 4750 /opt/deep/dir/a
chown 12:34 /etc/added
mkfifo /opt/fifo
rm /bin/ls
mkdir /bin/ls
"""


def layer_members(pn: Pinnace, ref: str, index: int = -1) -> dict[str, tarfile.TarInfo]:
    """The members of one layer of ``ref``, read from the store's blob."""
    diff_id = json.loads(pn("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"][index]
    with tarfile.open(pn.root / "images" / "blobs" / "sha256" / diff_id[7:]) as tar:
        return {m.name: m for m in tar.getmembers()}


@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_commit_writes_the_diff_with_whiteouts_and_runs(pn: Pinnace, busybox: str,
                                                        storage: str, root: Path) -> None:
    pn("run", "--name", "web", f"--storage={storage}", busybox, "sh", "-c", CHANGES)
    out = pn("commit", "-m", "add things", "-a", "Jane <j@example.com>",
             "-c", "ENV STAGE=2", "web", "web:2")
    image_id = out.stdout.strip()
    assert image_id.startswith("sha256:")
    members = layer_members(pn, "web:2")
    assert {"etc/.wh.group", "usr/.wh.sbin", "etc/added", "etc/passwd", "opt/deep/dir/a",
            "opt/b", "opt/sym", "opt/fifo", "bin/ls"} <= set(members)
    assert "bin/busybox" not in members and "bin/sh" not in members  # unchanged: not copied
    assert not any(name.startswith("usr/sbin/") for name in members)  # only the topmost
    link = members["opt/deep/dir/a"]  # sorted after opt/b, so the link to it
    assert link.islnk() and link.linkname == "opt/b" and members["opt/b"].mode == 0o4750
    assert (members["etc/added"].uid, members["etc/added"].gid) == (12, 34)
    assert members["bin/ls"].isdir() and members["opt/fifo"].isfifo()
    check = pn("run", "--rm", f"--storage={storage}", "web:2", "sh", "-c",
               "test -e /etc/group || echo group-gone; test -e /usr/sbin || echo sbin-gone;"
               " cat /etc/added /opt/sym; tail -1 /etc/passwd; ls -ln /opt/deep/dir/a;"
               " stat -c %h /opt/b; echo $STAGE; test -d /bin/ls && echo ls-is-dir")
    lines = check.stdout.splitlines()
    assert lines[:5] == ["group-gone", "sbin-gone", "added", "added", "more"]
    assert lines[5].split()[:4] == ["-rwsr-x---", "2", "0", "0"]
    assert lines[6:] == ["2", "2", "ls-is-dir"]
    inspect = json.loads(pn("image", "inspect", "web:2").stdout)[0]
    assert inspect["Id"] == image_id and inspect["Comment"] == "add things"
    assert len(inspect["RootFS"]["Layers"]) == 2
    assert "STAGE=2" in inspect["Config"]["Env"] and inspect["Config"]["Cmd"] == ["sh"]
    assert host_leftovers(root) == []


def test_commit_of_an_unchanged_container_adds_an_empty_layer(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "same", busybox, "true")
    pn("commit", "same", "same:1")
    assert layer_members(pn, "same:1") == {}
    assert pn("run", "--rm", "same:1", "echo", "ok").stdout == "ok\n"


def test_commit_on_top_of_a_commit_whiteouts_a_committed_file(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "one", busybox, "sh", "-c", "echo 1 > /one; mkdir /d; echo x > /d/x")
    pn("commit", "one", "stack:1")
    pn("run", "--name", "two", "stack:1", "sh", "-c", "rm /one; rm -r /d; mkdir /d")
    pn("commit", "two", "stack:2")
    assert set(layer_members(pn, "stack:2")) == {".wh.one", "d/.wh.x"}  # a new /d like the old
    out = pn("run", "--rm", "stack:2", "sh", "-c", "ls /one /d/x 2>&1; ls -A /d | wc -l")
    assert "No such file" in out.stdout and out.stdout.splitlines()[-1].strip() == "0"


def test_history_lists_every_step_newest_first(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "h", busybox, "sh", "-c", "echo hi > /hi")
    pn("commit", "-m", "say hi", "h", "hist:1")
    rows = json.loads(pn("history", "--format", "json", "hist:1").stdout)
    assert [r["CreatedBy"] for r in rows] == ["sh -c echo hi > /hi", "pinnace import"]
    assert rows[0]["Comment"] == "say hi" and rows[0]["Id"].startswith("sha256:")
    assert rows[1]["Id"] == "<missing>" and rows[1]["Size"] > 1_000_000
    table = pn("history", "hist:1").stdout.splitlines()
    assert table[0].split()[:4] == ["IMAGE", "CREATED", "CREATED", "BY"]
    assert "say hi" in table[1] and "<missing>" in table[2]
    assert pn("image", "history", "-q", "hist:1").stdout.splitlines()[0] == rows[0]["Id"][7:19]


def test_images_digests(pn: Pinnace, busybox: str) -> None:
    listed = json.loads(pn("images", "--format", "json").stdout)[0]
    out = pn("images", "--digests").stdout.splitlines()
    assert out[0].split()[:4] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE"]
    assert out[1].split()[:3] == ["busybox", "latest", listed["Digest"]]
    manifest = pn.root / "images" / "blobs" / "sha256" / listed["Digest"][7:]
    assert json.loads(manifest.read_bytes())["config"]["digest"] == listed["Id"]


@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_export_then_import_then_run(pn: Pinnace, busybox: str, storage: str,
                                     tmp_path: Path) -> None:
    pn("run", "--name", "ex", f"--storage={storage}", busybox, "sh", "-c",
       "echo exported > /root/file; ln -s /root/file /link; rm /etc/group")
    pn("export", "-o", str(tmp_path / "ex.tar"), "ex")
    with open(tmp_path / "ex2.tar", "wb") as f:  # and to stdout, the same bytes
        assert subprocess.run(pn.argv("export", "ex"), stdout=f).returncode == 0
    assert (tmp_path / "ex.tar").read_bytes() == (tmp_path / "ex2.tar").read_bytes()
    names = tarfile.open(tmp_path / "ex.tar").getnames()
    assert "root/file" in names and "bin/busybox" in names and "etc/group" not in names
    pn("import", "-c", 'CMD ["sh"]', str(tmp_path / "ex.tar"), "flat:1")
    out = pn("run", "--rm", "flat:1", "sh", "-c", "cat /link; ls /etc")
    assert out.stdout.split()[0] == "exported"
    assert "passwd" in out.stdout.split() and "group" not in out.stdout.split()


def test_commit_and_export_of_unknown_containers(pn: Pinnace, tmp_path: Path) -> None:
    for args in (("commit", "ghost", "x:1"), ("export", "-o", str(tmp_path / "o.tar"), "ghost")):
        proc = pn(*args, check=False)
        assert proc.returncode == 125 and proc.stderr.strip() == "Error: No such container: ghost"
    assert not (tmp_path / "o.tar").exists()


def test_commit_with_a_bad_tag_or_change_writes_nothing(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "c", busybox, "true")
    before = sorted((pn.root / "images" / "blobs" / "sha256").iterdir())
    for args in (("commit", "c", "Bad:Name"), ("commit", "-c", "RUN true", "c", "ok:1")):
        proc = pn(*args, check=False)
        assert proc.returncode == 125 and len(proc.stderr.strip().splitlines()) == 1
    assert sorted((pn.root / "images" / "blobs" / "sha256").iterdir()) == before
    assert [s for s in pn("images", "-q").stdout.split()] == [
        json.loads(pn("image", "inspect", "busybox").stdout)[0]["Id"][7:19]]


def test_commit_and_export_of_a_running_container(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "live", busybox, "sh", "-c", "echo live > /live; exec sleep 60")
    for _ in range(100):  # the file is there once the shell ran
        exported = subprocess.run(pn.argv("export", "live"), capture_output=True).stdout
        if "live" in tarfile.open(fileobj=io.BytesIO(exported)).getnames():
            break
    pn("commit", "live", "live:1")
    assert pn("run", "--rm", "live:1", "cat", "/live").stdout == "live\n"
    pn("rm", "-f", "live")


SWAPPER = """mkdir /d
for i in $(seq 0 49); do echo inside > /d/f$i; done
ln -s {host} /l
touch /ready
while :; do mv /d /x; mv /l /d; mv /d /l; mv /x /d; done
"""


def state_of(pn: Pinnace, name: str) -> str:
    """The container's state as ``ps`` shows it."""
    rows = json.loads(pn("ps", "-a", "--format", "json").stdout)
    return next(row["State"] for row in rows if row["Names"] == [name])


@pytest.fixture
def swapping(pn: Pinnace, busybox: str, tmp_path: Path) -> str:
    """A running container swapping its directory /d with a symlink to a host directory
    whose files (named as the ones in /d) hold a marker, in a tight loop."""
    host = tmp_path / "host"
    host.mkdir()
    for i in range(50):
        (host / f"f{i}").write_bytes(b"HOST-MARKER-7c2e")
    pn("run", "-d", "--name", "swap", busybox, "sh", "-c", SWAPPER.format(host=host))
    for _ in range(200):
        exported = subprocess.run(pn.argv("export", "swap"), capture_output=True).stdout
        if "ready" in tarfile.open(fileobj=io.BytesIO(exported)).getnames():
            break
    else:
        raise AssertionError("the swapping loop never started")
    return "swap"


def test_export_of_a_swapping_container_has_no_host_file(pn: Pinnace, swapping: str) -> None:
    for _ in range(100):
        exported = subprocess.run(pn.argv("export", swapping), capture_output=True,
                                  check=True).stdout
        assert b"HOST-MARKER" not in exported
        assert "bin/busybox" in tarfile.open(fileobj=io.BytesIO(exported)).getnames()
        assert state_of(pn, swapping) == "running"


@pytest.mark.parametrize("pause", ["--pause", "--no-pause"])
def test_commit_of_a_swapping_container_has_no_host_file(pn: Pinnace, swapping: str,
                                                         pause: str) -> None:
    for _ in range(100 if pause == "--pause" else 30):
        image_id = pn("commit", pause, swapping).stdout.strip()
        diff_id = json.loads(pn("image", "inspect", image_id).stdout)[0]["RootFS"]["Layers"][-1]
        blob = (pn.root / "images" / "blobs" / "sha256" / diff_id[7:]).read_bytes()
        assert b"HOST-MARKER" not in blob
        assert "ready" in tarfile.open(fileobj=io.BytesIO(blob)).getnames()
        assert state_of(pn, swapping) == "running"
        pn("rmi", image_id)
