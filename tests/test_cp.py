"""``pinnace cp``, both ways, with docker's rules, on stopped and running containers; and a
container's symlinks (static, or swapped in a loop) never make it read or write a host file."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import Pinnace

SETUP = """mkdir -p /data/sub /empty
echo one > /data/a
cp /bin/busybox /data/suid
chmod 4755 /data/suid
echo two > /data/sub/b
chown 1234:5678 /data/a
chmod 640 /data/a
ln -s a /data/link
"""


@pytest.fixture
def stopped(pn: Pinnace, busybox: str) -> str:
    """A stopped container with a /data tree (an owned file, a subdirectory, a symlink)."""
    pn("run", "--name", "stopped", busybox, "sh", "-c", SETUP)
    return "stopped"


@pytest.fixture
def live(pn: Pinnace, busybox: str) -> str:
    """A running container with the same /data tree."""
    pn("run", "-d", "--name", "live", busybox, "sh", "-c", SETUP + "exec sleep 600")
    deadline = time.monotonic() + 30
    while pn("exec", "live", "test", "-L", "/data/link", check=False).returncode != 0:
        assert time.monotonic() < deadline
    return "live"


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def names(data: bytes) -> list[str]:
    return tarfile.open(fileobj=io.BytesIO(data)).getnames()


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 125, proc
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_copy_out_of_a_stopped_container(pn: Pinnace, stopped: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    pn("cp", f"{stopped}:/data/a", str(out / "file"))           # to a new name
    assert (out / "file").read_text() == "one\n"
    assert owner_mode(out / "file") == (0, 0, 0o640)            # the caller's, mode kept
    pn("cp", "-a", f"{stopped}:data/a", str(out))              # into a directory, owners kept
    assert owner_mode(out / "a") == (1234, 5678, 0o640)
    pn("cp", f"{stopped}:/data/suid", str(out))                 # not setuid for its new owner
    pn("cp", "-a", f"{stopped}:/data/suid", str(out / "kept"))
    assert (owner_mode(out / "suid"), owner_mode(out / "kept")) == ((0, 0, 0o755), (0, 0, 0o4755))
    pn("cp", f"{stopped}:/data", str(out / "copy"))             # a directory to a new name
    assert (out / "copy" / "sub" / "b").read_text() == "two\n"
    assert os.readlink(out / "copy" / "link") == "a"            # a symlink stays one
    pn("cp", f"{stopped}:/data", f"{out}/")                      # into an existing directory
    assert (out / "data" / "a").read_text() == "one\n"
    (out / "contents").mkdir()
    pn("cp", f"{stopped}:/data/.", str(out / "contents"))       # a directory's contents
    assert sorted(p.name for p in (out / "contents").iterdir()) == ["a", "link", "sub", "suid"]
    pn("cp", f"{stopped}:/data/link", str(out / "nolink"))      # without -L: the link itself
    assert os.readlink(out / "nolink") == "a"
    pn("cp", "-L", f"{stopped}:/data/link", str(out / "followed"))
    assert (out / "followed").read_text() == "one\n" and not (out / "followed").is_symlink()
    (out / "over").write_text("old\n")
    pn("cp", f"{stopped}:/data/sub/b", str(out / "over"))       # a file over a file
    assert (out / "over").read_text() == "two\n"


def test_copy_out_as_a_tar_stream(pn: Pinnace, stopped: str) -> None:
    data = subprocess.run(pn.argv("cp", f"{stopped}:/data", "-"), capture_output=True,
                          check=True).stdout
    assert names(data) == ["data", "data/a", "data/link", "data/sub", "data/sub/b", "data/suid"]
    member = tarfile.open(fileobj=io.BytesIO(data)).getmember("data/a")
    assert (member.uid, member.gid, member.mode) == (1234, 5678, 0o640)
    data = subprocess.run(pn.argv("cp", f"{stopped}:/data/.", "-"), capture_output=True,
                          check=True).stdout
    assert names(data) == ["a", "link", "sub", "sub/b", "suid"]


def test_copy_into_a_running_container(pn: Pinnace, live: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "f").write_text("host file\n")
    (src / "deep" / "g").write_text("deeper\n")
    os.chown(src / "f", 4321, 8765)
    os.chmod(src / "f", 0o604)
    pn("cp", str(src / "f"), f"{live}:/data/new")                 # a new name
    pn("cp", "-a", str(src / "f"), f"{live}:/empty/")              # into a directory, -a
    pn("cp", str(src), f"{live}:/data/")                           # a directory into one
    pn("cp", f"{src}/.", f"{live}:/made")                          # contents to a new dir
    pn("cp", str(src / "f"), f"{live}:/data/a")                   # a file over a file
    out = pn("exec", live, "sh", "-c",
             "stat -c '%n %u:%g %a' /data/new /empty/f /data/src/deep/g /made/f /data/a;"
             " cat /data/new /made/deep/g").stdout
    assert out == ("/data/new 0:0 604\n/empty/f 4321:8765 604\n/data/src/deep/g 0:0 644\n"
                   "/made/f 0:0 604\n/data/a 0:0 604\nhost file\ndeeper\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("streamed/.wh.kept")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"yes"))
    subprocess.run(pn.argv("cp", "-", f"{live}:/data"), input=buf.getvalue(), check=True)
    assert pn("exec", live, "cat", "/data/streamed/.wh.kept").stdout == "yes"
    garbage = subprocess.run(pn.argv("cp", "-", f"{live}:/data"), input=b"not a tar" * 100,
                             capture_output=True, text=False)
    assert garbage.returncode == 125
    assert garbage.stderr.startswith(b"Error: corrupt tar stream") and \
        garbage.stderr.count(b"\n") == 1


def test_destination_rules_and_errors_are_one_line(pn: Pinnace, stopped: str,
                                                   tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x\n")
    cases = [
        (("cp", f"{stopped}:/data/a", f"{tmp_path}/missing/"), "does not exist"),
        (("cp", f"{stopped}:/data/a", f"{tmp_path}/no/such/parent"), "does not exist"),
        (("cp", f"{stopped}:/data", str(tmp_path / "file")), "onto the file"),
        (("cp", f"{stopped}:/nothing", str(tmp_path)), "no such file or directory"),
        (("cp", f"{stopped}:/data/a/", str(tmp_path)), "not a directory"),
        (("cp", "ghost:/data", str(tmp_path)), "No such container: ghost"),
        (("cp", str(tmp_path / "file"), str(tmp_path / "other")), "exactly one"),
        (("cp", str(tmp_path / "nothing"), f"{stopped}:/data"), "no such file"),
        (("cp", str(tmp_path / "file"), f"{stopped}:/data/a/"), "not a directory"),
        (("cp", str(tmp_path), f"{stopped}:/data/a"), "onto the file"),
        (("cp", "-", f"{stopped}:/data/a"), "onto the file"),
        (("cp", "-", f"{stopped}:/data/none"), "does not exist"),
    ]
    for args, words in cases:
        one_line_error(pn(*args, check=False), words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


HOST_MARKER = "HOST-MARKER-51f0"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory with a marker file, which no copy may read or change."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "secret").write_text(HOST_MARKER)
    return path


def host_unchanged(host: Path) -> None:
    assert [p.name for p in host.iterdir()] == ["secret"]
    assert (host / "secret").read_text() == HOST_MARKER


def test_symlinks_to_the_host_are_resolved_inside(pn: Pinnace, busybox: str, host: Path,
                                                   tmp_path: Path) -> None:
    """Absolute and ``..`` symlinks of the container naming a host directory, as source
    and destination (and on the way), with -L and without: they resolve inside the
    container, which first has no such path, then one of its own."""
    climb = "../../../../../../../.."
    pn("run", "--name", "c", busybox, "sh", "-c",
       f"ln -s {host} /abs; ln -s {climb}{host} /rel; ln -s {host}/secret /file;"
       f"ln -s {climb}{host}/secret /data-file")
    out = tmp_path / "out"
    out.mkdir()
    incoming = tmp_path / "incoming"
    incoming.write_text("incoming\n")
    refused = [("cp", "c:/abs/secret", str(out / "1")), ("cp", "c:/rel/secret", str(out / "2")),
               ("cp", "-L", "c:/file", str(out / "3")), ("cp", "-L", "c:/data-file", str(out)),
               ("cp", "-L", "c:/abs", str(out / "5")), ("cp", "c:/rel/.", str(out)),
               ("cp", str(incoming), "c:/abs/new"), ("cp", str(incoming), "c:/rel/"),
               ("cp", str(incoming), "c:/file"), ("cp", str(incoming), "c:/data-file"),
               ("cp", str(tmp_path / "out"), "c:/abs/")]
    for args in refused:
        proc = pn(*args, check=False)
        one_line_error(proc)
        assert "does not exist" in proc.stderr or "no such file" in proc.stderr, proc.stderr
    pn("cp", "c:/abs", str(out / "link"))  # the symlink itself, not what it names
    assert os.readlink(out / "link") == str(host)
    stream = subprocess.run(pn.argv("cp", "-L", "c:/", "-"), capture_output=True).stdout
    assert HOST_MARKER.encode() not in stream
    host_unchanged(host)
    assert sorted(p.name for p in out.iterdir()) == ["link"]
    # now the container has the path itself: copies read and write its own files there
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(f"{str(host).lstrip('/')}/secret")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"inside\n"))
    subprocess.run(pn.argv("cp", "-", "c:/"), input=buf.getvalue(), check=True)
    pn("cp", str(incoming), "c:/abs/new")
    pn("cp", "-L", "c:/data-file", str(out / "inside"))
    assert (out / "inside").read_text() == "inside\n"
    pn("cp", "c:/rel/.", str(out))
    assert (out / "secret").read_text() == "inside\n" and (out / "new").read_text() == \
        "incoming\n"
    host_unchanged(host)


SWAPPER = """mkdir /d
for i in $(seq 0 49); do echo inside > /d/f$i; done
ln -s {host} /l
touch /ready
while :; do mv /d /x; mv /l /d; mv /d /l; mv /x /d; done
"""


def test_a_swapping_container_never_leaks_a_host_file(pn: Pinnace, busybox: str,
                                                       tmp_path: Path) -> None:
    """The container swaps its directory /d with a symlink to a host directory (files of the
    same names, holding a marker) in a tight loop, while 50 copies run through /d: out as
    files, out as a tar, and in. No host byte comes out, nothing is written on the host."""
    host = tmp_path / "host"
    host.mkdir()
    for i in range(50):
        (host / f"f{i}").write_text(HOST_MARKER)
    pn("run", "-d", "--name", "swap", busybox, "sh", "-c", SWAPPER.format(host=host))
    deadline = time.monotonic() + 30
    while pn("cp", "swap:/ready", str(tmp_path / "ready"), check=False).returncode != 0:
        assert time.monotonic() < deadline
    out = tmp_path / "out"
    out.mkdir()
    incoming = tmp_path / "incoming"
    incoming.write_text("incoming\n")
    copied = written = met = 0
    for i in range(50):
        kind = i % 3
        args = [("cp", f"swap:/d/f{i}", str(out / f"file{i}")),
                ("cp", "swap:/d", "-"),
                ("cp", str(incoming), f"swap:/d/w{i}")][kind]
        proc = subprocess.run(pn.argv(*args), capture_output=True, timeout=60)
        assert HOST_MARKER.encode() not in proc.stdout
        if proc.returncode != 0:  # caught between two renames: one line, nothing done
            met += 1
            assert proc.stderr.count(b"\n") == 1, proc.stderr
            continue
        copied += kind < 2
        written += kind == 2
        if kind == 1:
            assert names(proc.stdout)[0] == "d"
            met += names(proc.stdout) == ["d"]  # the symlink, written as one
    for path in out.rglob("*"):
        assert not path.is_file() or HOST_MARKER not in path.read_text()
    assert sorted(p.name for p in host.iterdir()) == sorted(f"f{i}" for i in range(50))
    assert all((host / f"f{i}").read_text() == HOST_MARKER for i in range(50))
    assert copied > 0 and written > 0 and met > 0  # both states of /d were met
    pn("rm", "-f", "swap")
