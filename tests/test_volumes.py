"""Volumes through the real CLI: ``volume create/ls/inspect/rm/prune`` and the mount
flags of ``run`` (``-v``, ``--mount``, ``--tmpfs``, ``--volumes-from``, the image's
``VOLUME``s), with real containers, real mounts and the built-in ``local`` driver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import Pinnace, fails, host_leftovers


def names(pn: Pinnace, *args: str) -> list[str]:
    return pn("volume", "ls", "-q", *args).stdout.split()


def inspect(pn: Pinnace, name: str) -> dict:
    [info] = json.loads(pn("volume", "inspect", name).stdout)
    return info


def volume_rows(root: Path) -> tuple[list, list]:
    import sqlite3

    db = sqlite3.connect(root / "state.db")
    try:
        return (db.execute("SELECT name FROM volumes").fetchall(),
                db.execute("SELECT * FROM volume_users").fetchall())
    finally:
        db.close()


# ------------------------------------------------------------------ volume commands
def test_create_inspect_ls_rm(pn: Pinnace) -> None:
    assert pn("volume", "create", "--label", "team=a", "data").stdout == "data\n"
    info = inspect(pn, "data")
    assert info["Name"] == "data" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"team": "a"} and info["Options"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["CreatedAt"])
    assert info["Mountpoint"] == str(pn.root / "volume" / "local" / "data" / "_data")
    assert os.path.isdir(info["Mountpoint"])
    random = pn("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", random)
    assert sorted(names(pn)) == sorted(["data", random])
    assert pn("volume", "create", "data").stdout == "data\n"  # the same again: no error
    assert names(pn, "--filter", "label=team=a") == ["data"]
    assert names(pn, "--filter", "label=team") == ["data"]
    assert names(pn, "--filter", "name=dat", "--filter", "driver=local") == ["data"]
    assert names(pn, "--filter", "driver=other") == []
    assert "invalid filter" in fails(pn, "volume", "ls", "--filter", "colour=red")
    assert pn("volume", "rm", "data", random).stdout.split() == ["data", random]
    assert names(pn) == [] and not (pn.root / "volume" / "local" / "data").exists()
    assert "no such volume: data" in fails(pn, "volume", "rm", "data")
    assert pn("volume", "rm", "-f", "data").returncode == 0
    assert "invalid characters" in fails(pn, "volume", "create", "bad/name")


def test_create_with_options_and_unknown_driver(pn: Pinnace) -> None:
    pn("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=4m", "tm")
    assert inspect(pn, "tm")["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"}
    assert "invalid option key" in fails(pn, "volume", "create", "-o", "size=1g", "bad")
    assert "unknown volume plugin 'nope'" in fails(pn, "volume", "create", "-d", "nope", "xx")
    assert names(pn) == ["tm"]


def test_rm_refuses_a_volume_in_use_and_prune(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "-v", "held:/data", busybox, "sleep", "60").stdout.strip()
    line = fails(pn, "volume", "rm", "held")
    assert "volume is in use" in line and cid in line
    assert "volume is in use" in fails(pn, "volume", "rm", "-f", "held")
    pn("run", "-v", "/anon", busybox, "true")
    pn("volume", "create", "named")
    anonymous = [v for v in names(pn) if v not in ("held", "named")]
    assert len(anonymous) == 1
    assert names(pn, "--filter", "dangling=true") == ["named"]  # the anonymous one: used
    assert "not a terminal" in fails(pn, "volume", "prune")
    pn("rm", "-f", cid)
    left = pn("ps", "-aq", "--no-trunc").stdout.split()
    pn("rm", *left)  # without -v: its anonymous volume stays
    assert sorted(names(pn)) == sorted(["held", "named", *anonymous])
    assert pn("volume", "prune", "-f").stdout.split() == anonymous
    assert sorted(names(pn)) == ["held", "named"]
    assert sorted(pn("volume", "prune", "-f", "-a").stdout.split()) == ["held", "named"]
    assert names(pn) == []


# ------------------------------------------------------------------ run flags
def test_bind_mounts_read_write_and_read_only(pn: Pinnace, busybox: str,
                                              tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from host\n")
    out = pn("run", "--rm", "-v", f"{host}:/mnt", busybox, "sh", "-c",
             "cat /mnt/in; echo back > /mnt/out").stdout
    assert out == "from host\n" and (host / "out").read_text() == "back\n"
    proc = pn("run", "--rm", "-v", f"{host}:/mnt:ro", busybox, "sh", "-c",
              "echo x > /mnt/out2", check=False)
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr
    assert not (host / "out2").exists()
    proc = pn("run", "--rm", "--mount", f"type=bind,source={host},target=/m,readonly",
              busybox, "sh", "-c", "cat /m/in; touch /m/x", check=False)
    assert proc.stdout == "from host\n" and "Read-only file system" in proc.stderr
    # a file, bound onto a path the image lacks
    assert pn("run", "--rm", "-v", f"{host / 'in'}:/etc/in.txt", busybox,
              "cat", "/etc/in.txt").stdout == "from host\n"
    assert host_leftovers(pn.root) == []


def test_missing_bind_source_made_for_v_refused_for_mount(pn: Pinnace, busybox: str,
                                                          tmp_path: Path) -> None:
    made = tmp_path / "made" / "here"
    pn("run", "--rm", "-v", f"{made}:/x", busybox, "touch", "/x/f")
    assert (made / "f").exists()
    missing = tmp_path / "missing"
    line = fails(pn, "run", "--rm", "--mount", f"type=bind,src={missing},dst=/x", busybox, "true")
    assert f"bind source path does not exist: {missing}" in line
    assert not missing.exists()
    assert pn("ps", "-aq").stdout == "" and host_leftovers(pn.root) == []


def test_bind_source_symlink_is_followed_on_the_host(pn: Pinnace, busybox: str,
                                                     tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("real dir\n")
    (tmp_path / "link").symlink_to(real)
    assert pn("run", "--rm", "-v", f"{tmp_path / 'link'}:/mnt", busybox,
              "cat", "/mnt/f").stdout == "real dir\n"


def test_named_volume_keeps_data_and_copies_the_image_up(pn: Pinnace, busybox: str) -> None:
    pn("run", "--rm", "-v", "keep:/data", busybox, "sh", "-c", "echo one > /data/f")
    assert pn("run", "--rm", "-v", "keep:/data:ro", busybox, "cat", "/data/f").stdout == "one\n"
    proc = pn("run", "--rm", "-v", "keep:/data:ro", busybox, "touch", "/data/g", check=False)
    assert proc.returncode != 0 and "Read-only" in proc.stderr
    # a new volume at /etc gets the image's /etc first (docker's copy-up) ...
    out = pn("run", "--rm", "-v", "etc:/etc", busybox, "cat", "/etc/passwd").stdout
    assert out.startswith("root:")
    mountpoint = Path(inspect(pn, "etc")["Mountpoint"])
    assert (mountpoint / "passwd").read_text() == out
    # ... but not with nocopy, and never into one that has content
    pn("run", "--rm", "-v", "empty:/etc:nocopy", busybox, "true")
    assert not (Path(inspect(pn, "empty")["Mountpoint"]) / "passwd").exists()
    (mountpoint / "passwd").write_text("changed\n")
    assert pn("run", "--rm", "-v", "etc:/etc", busybox, "cat", "/etc/passwd").stdout \
        == "changed\n"
    assert host_leftovers(pn.root) == []


def test_mount_volume_with_driver_options(pn: Pinnace, busybox: str) -> None:
    out = pn("run", "--rm", "--mount",
             "type=volume,source=fast,target=/fast,volume-opt=type=tmpfs,"
             "volume-opt=device=tmpfs,volume-opt=o=size=8m,volume-label=k=v",
             busybox, "sh", "-c", "df -k /fast | tail -1; echo hi > /fast/f").stdout
    assert out.split()[1] == "8192"
    info = inspect(pn, "fast")
    assert info["Labels"] == {"k": "v"} and info["Options"]["type"] == "tmpfs"
    assert not os.path.ismount(info["Mountpoint"])  # unmounted when the container left
    assert host_leftovers(pn.root) == []


def test_anonymous_volumes_rm_v_and_rm(pn: Pinnace, busybox: str) -> None:
    cid = pn("run", "-d", "-v", "/a", "--mount", "type=volume,target=/b", busybox,
             "sh", "-c", "touch /a/x /b/y").stdout.strip()
    pn("wait", cid)
    made = names(pn)
    assert len(made) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", n) for n in made)
    pn("rm", "-v", cid)
    assert names(pn) == []
    pn("volume", "create", "named")
    pn("run", "--rm", "-v", "/c", "-v", "named:/n", busybox, "true")
    assert names(pn) == ["named"]  # --rm removes the anonymous volume, never a named one


def test_tmpfs_and_read_only_rootfs(pn: Pinnace, busybox: str) -> None:
    out = pn("run", "--rm", "--read-only", "--tmpfs", "/tmp:size=1m,mode=1770", busybox, "sh",
             "-c", "echo ok > /tmp/f && cat /tmp/f; grep ' /tmp ' /proc/mounts; "
             "touch /etc/x 2>&1 || true; stat -c %a /tmp").stdout
    lines = out.splitlines()
    assert lines[0] == "ok"
    assert "tmpfs /tmp tmpfs" in lines[1] and "size=1024k" in lines[1] and "noexec" in lines[1]
    assert "mode=1770" in lines[1] and lines[3] == "1770"
    assert "Read-only file system" in lines[2]
    out = pn("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=2m,tmpfs-mode=700",
             busybox, "sh", "-c", "grep ' /t ' /proc/mounts; stat -c %a /t").stdout
    assert "size=2048k" in out and "mode=700" in out and out.splitlines()[1] == "700"


def test_volumes_from(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    host = tmp_path / "h"
    host.mkdir()
    pn("run", "--name", "src", "-v", "shared:/s", "-v", f"{host}:/h", busybox,
       "sh", "-c", "echo data > /s/f")
    out = pn("run", "--rm", "--volumes-from", "src", busybox, "sh", "-c",
             "cat /s/f; echo w > /h/w").stdout
    assert out == "data\n" and (host / "w").read_text() == "w\n"
    proc = pn("run", "--rm", "--volumes-from", "src:ro", busybox, "touch", "/s/g", check=False)
    assert proc.returncode != 0 and "Read-only" in proc.stderr
    assert "No such container" in fails(pn, "run", "--rm", "--volumes-from", "nope", busybox,
                                        "true")


def test_image_volume_entries_become_anonymous_volumes(pn: Pinnace, busybox_tar: Path) -> None:
    pn("import", "-c", 'VOLUME ["/var/data"]', "-c", 'CMD ["sh"]', str(busybox_tar), "withvol")
    pn("run", "--name", "c", "withvol", "sh", "-c", "echo kept > /var/data/f")
    [anonymous] = names(pn)
    assert (Path(inspect(pn, anonymous)["Mountpoint"]) / "f").read_text() == "kept\n"
    # a -v for the same place replaces it
    pn("run", "--rm", "-v", "mine:/var/data", "withvol", "true")
    assert sorted(names(pn)) == sorted([anonymous, "mine"])
    pn("rm", "-v", "c")
    assert names(pn) == ["mine"]


def test_bind_propagation_private_unless_asked(pn: Pinnace, busybox: str,
                                               tmp_path: Path) -> None:
    host = tmp_path / "p"
    host.mkdir()
    default = pn("run", "--rm", "-v", f"{host}:/p", busybox, "grep", " /p ",
                 "/proc/self/mountinfo").stdout
    assert "shared:" not in default and "master:" not in default
    shared = pn("run", "--rm", "--mount", f"type=bind,src={host},dst=/p,bind-propagation=rshared",
                busybox, "grep", " /p ", "/proc/self/mountinfo").stdout
    assert "shared:" in shared


@pytest.mark.parametrize("args, message", [
    (("--mount", "type=bind,target=/x"), "field Source must not be empty"),
    (("--mount", "type=tmpfs,source=/x,target=/x"), "field Source must not be specified"),
    (("--mount", "type=volume,src=v"), "target is required"),
    (("--mount", "type=nfs,target=/x"), "invalid mount type"),
    (("--mount", "type=bind,src=/tmp,dst=/x,tmpfs-size=1m"),
     "cannot mix 'tmpfs-*' options with mount type 'bind'"),
    (("--mount", "type=volume,dst=/x,bind-propagation=shared"),
     "cannot mix 'bind-*' options with mount type 'volume'"),
    (("--mount", "type=bind,src=/tmp,dst=/x,bind-propagation=sideways"),
     "invalid value for bind-propagation"),
    (("--mount", "type=volume,dst=/x,colour=red"), "unexpected key 'colour'"),
    (("--mount", "type=volume,dst=/x,readonly=maybe"), "invalid value for readonly"),
    (("--mount", "type=volume,dst"), "must be a key=value pair"),
    (("--mount", "type=tmpfs,dst=/x,tmpfs-size=lots"), "invalid size for tmpfs-size"),
    (("--mount", "type=bind,src=relative,dst=/x"), "must be absolute"),
    (("-v", "data:relative"), "'relative' mount path must be absolute"),
    (("-v", "/a:/b:rw:ro"), "invalid volume specification"),
    (("-v", "data:/x:sideways"), "invalid mode: sideways"),
    (("-v", "bad name:/x"), "invalid characters"),
    (("-v", "/x", "-v", "vv:/x"), "duplicate mount point: /x"),
    (("-v", "vv:/"), "destination can't be '/'"),
    (("--volumes-from", "c:rx"), "invalid mode for volumes-from"),
])
def test_malformed_mounts_are_one_line_errors(pn: Pinnace, busybox: str, args: tuple,
                                              message: str) -> None:
    assert message in fails(pn, "run", "--rm", *args, busybox, "true")
    assert pn("ps", "-aq").stdout == "" and names(pn) == []
    assert volume_rows(pn.root) == ([], []) and host_leftovers(pn.root) == []


def test_concurrent_runs_make_one_volume(pn: Pinnace, busybox: str) -> None:
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda i=i: results.append(pn(
        "run", "--rm", "-v", "samename:/data", busybox, "sh", "-c", f"echo {i} > /data/{i}",
        check=False))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert names(pn) == ["samename"]
    assert sorted(os.listdir(inspect(pn, "samename")["Mountpoint"])) == ["0", "1", "2", "3"]


def test_volume_target_symlink_resolves_inside_the_rootfs(pn: Pinnace, busybox_tar: Path,
                                                          tmp_path: Path) -> None:
    """The image's /data is a symlink to /etc: the volume lands on the rootfs's /etc
    and its copy-up reads the image's /etc, never the host's."""
    import tarfile

    layered = tmp_path / "link.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(layered, "w") as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        link = tarfile.TarInfo("data")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        out.addfile(link)
    pn("import", "-c", 'CMD ["sh"]', str(layered), "linked")
    host_passwd = Path("/etc/passwd").read_text()
    out = pn("run", "--rm", "-v", "vol:/data", "linked", "sh", "-c",
             "echo inside > /etc/marker; cat /etc/passwd").stdout
    copied = Path(inspect(pn, "vol")["Mountpoint"])
    assert (copied / "marker").read_text() == "inside\n"  # mounted on the rootfs's /etc
    assert (copied / "passwd").read_text() == out != host_passwd
    assert "marker" not in os.listdir("/etc")


def test_create_then_start_mounts_on_first_use_until_the_last_leaves(pn: Pinnace,
                                                                      busybox: str) -> None:
    pn("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=4m", "tv")
    mountpoint = inspect(pn, "tv")["Mountpoint"]
    first = pn("create", "-v", "tv:/t", busybox, "sleep", "60").stdout.strip()
    second = pn("create", "-v", "tv:/t", busybox, "sleep", "60").stdout.strip()
    assert not os.path.ismount(mountpoint)  # created: nothing mounted yet
    pn("start", first, second)
    assert os.path.ismount(mountpoint)
    pn("exec", first, "sh", "-c", "echo shared > /t/f")
    assert pn("exec", second, "cat", "/t/f").stdout == "shared\n"
    pn("stop", "-t", "0", first)
    assert os.path.ismount(mountpoint)  # the second still uses it
    pn("stop", "-t", "0", second)
    assert not os.path.ismount(mountpoint)
    assert "volume is in use" in fails(pn, "volume", "rm", "tv")  # stopped containers use it
    pn("rm", first, second)
    pn("volume", "rm", "tv")
    assert host_leftovers(pn.root) == []


def test_system_check_finds_volumes_recorded_nowhere_and_lost_ones(pn: Pinnace) -> None:
    from pinnace.plugin import PluginContext
    from pinnace_plugins.volume_local import LocalVolumes

    pn("volume", "create", "kept")
    pn("volume", "create", "lost")
    driver = LocalVolumes(PluginContext.for_plugin(LocalVolumes, "local", "volume",
                                                   data_dir=pn.root / "volume" / "local"))
    driver.pinnace_volume_create(name="stray", options={}, labels={})  # as if killed here
    driver.pinnace_volume_remove(name="lost")
    proc = pn("system", "check", check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "volume stray of driver local is recorded nowhere",
        "volume lost is recorded but driver local does not hold it"]
    pn("system", "check", "--repair", check=False)
    assert pn("system", "check").stdout == ""
    assert names(pn) == ["kept"] and [v.name for v in driver.pinnace_volume_list()] == ["kept"]


def test_nested_mounts_go_on_in_path_order(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "f").write_text("inner\n")
    out = pn("run", "--rm", "-v", f"{inner}:/data/sub", "-v", "outer:/data", busybox,
             "cat", "/data/sub/f").stdout
    assert out == "inner\n"
