"""End to end through the real CLI: import, run, ps, rm, images, rmi, and the bad inputs."""

from __future__ import annotations

import glob
import json
import signal
import time
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers


def cgroup_leftovers(cid: str) -> list[str]:
    """pinnace cgroup directories of container ``cid`` left in any hierarchy."""
    return glob.glob(f"/sys/fs/cgroup/*/pinnace/{cid}") + glob.glob(f"/sys/fs/cgroup/pinnace/{cid}")


@pytest.mark.parametrize("storage", ["btrfs", "dir"])
def test_run_rm_prints_pid_1_hostname_and_rootfs(pn: Pinnace, busybox: str, storage: str) -> None:
    out = pn("run", "--rm", f"--storage={storage}", "--net=none", busybox,
             "sh", "-c", "echo $$; hostname; ls /").stdout.split()
    assert out[0] == "1"
    assert len(out[1]) == 12  # the short container id is the default hostname
    assert {"bin", "etc", "proc", "dev", "sys", "tmp"} <= set(out[2:])
    assert pn("ps", "-a", "-q").stdout.strip() == ""  # --rm removed it
    assert host_leftovers(pn.root) == []


def test_named_container_env_workdir_then_ps_rm(pn: Pinnace, busybox: str) -> None:
    out = pn("run", "--storage=dir", "--name", "web", "-e", "A=1", "-w", "/tmp", busybox,
             "sh", "-c", "env; pwd").stdout.splitlines()
    assert "A=1" in out and "/tmp" in out and "HOME=/root" in out
    assert any(line.startswith("PATH=") for line in out)
    rows = json.loads(pn("ps", "-a", "--format", "json").stdout)
    assert [(r["Names"], r["State"], r["ExitCode"], r["Storage"]) for r in rows] == [
        (["web"], "exited", 0, "dir")]
    assert "Exited (0)" in pn("ps", "-a").stdout
    assert pn("ps").stdout.count("\n") == 1  # only the header: nothing is running
    assert pn("rm", "web").stdout.strip() == "web"
    assert pn("ps", "-a", "-q").stdout.strip() == ""


def test_exit_code_user_and_hostname(pn: Pinnace, busybox: str) -> None:
    assert pn("run", "--rm", busybox, "sh", "-c", "exit 7", check=False).returncode == 7
    out = pn("run", "--rm", "-u", "65534:65534", "--hostname", "box", busybox,
             "sh", "-c", "id -u; id -g; hostname").stdout.split()
    assert out == ["65534", "65534", "box"]
    assert pn("run", "--rm", "-u", "nobody", busybox, "id", "-un").stdout.strip() == "nobody"


def test_image_default_cmd_and_entrypoint_override(pn: Pinnace, busybox: str) -> None:
    assert pn("run", "--rm", "-i", busybox,
              input="echo from-stdin\n").stdout.strip() == "from-stdin"
    # without -i the container's stdin is empty, as with docker
    assert pn("run", "--rm", busybox, "cat", input="ignored\n").stdout == ""
    out = pn("run", "--rm", "--entrypoint", "echo", busybox, "a", "b").stdout.strip()
    assert out == "a b"


def test_command_not_found_is_127_and_not_executable_is_126(pn: Pinnace, busybox: str) -> None:
    proc = pn("run", "--rm", busybox, "no-such-command", check=False)
    assert proc.returncode == 127
    assert proc.stderr.strip().startswith("Error:") and "no-such-command" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = pn("run", "--rm", busybox, "/etc/passwd", check=False)
    assert proc.returncode == 126, proc.stderr
    assert pn("ps", "-a", "-q").stdout.strip() == ""
    assert host_leftovers(pn.root) == []


def test_unknown_plugin_lists_the_available_ones(pn: Pinnace, busybox: str) -> None:
    proc = pn("run", "--storage=nope", busybox, "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip() == "Error: unknown storage plugin 'nope' (available: btrfs, dir)"
    proc = pn("run", "--net=nope", busybox, "true", check=False)
    assert proc.returncode == 125 and "available: bridge, host, none" in proc.stderr
    assert pn("ps", "-a", "-q").stdout.strip() == ""


def test_image_not_found(pn: Pinnace) -> None:
    proc = pn("run", "nosuchimage", "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.strip() == "Error: No such image: nosuchimage"
    proc = pn("run", "Bad:Ref!", "true", check=False)
    assert proc.returncode == 125 and proc.stderr.startswith("Error: invalid reference format")


def test_btrfs_storage_on_a_non_btrfs_root_says_how_to_fix(tmp_path: Path,
                                                           busybox_tar: Path) -> None:
    pn = Pinnace(tmp_path / "root")  # /tmp is not btrfs here
    pn("import", str(busybox_tar), "busybox")
    proc = pn("run", "--rm", "--storage=btrfs", "busybox", "true", check=False)
    assert proc.returncode == 125
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "not btrfs" in line and "loop_size" in line
    assert pn("ps", "-a", "-q").stdout.strip() == ""


def test_name_already_taken(pn: Pinnace, busybox: str) -> None:
    pn("run", "--name", "one", busybox, "true")
    proc = pn("run", "--name", "one", busybox, "true", check=False)
    assert proc.returncode == 125
    assert 'the container name "one" is already in use' in proc.stderr
    proc = pn("run", "--name", "bad/name", busybox, "true", check=False)
    assert proc.returncode == 125 and "invalid container name" in proc.stderr


def test_two_runs_with_one_name_exactly_one_wins(pn: Pinnace, busybox: str) -> None:
    procs = [pn.popen("run", "--name", "same", busybox, "sleep", "1",
                      stdout=-1, stderr=-1) for _ in range(2)]
    results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 125], results
    loser = next(r for r in results if r[2] == 125)
    assert "already in use" in loser[1]
    assert len(pn("ps", "-a", "-q").stdout.split()) == 1


def test_kill_9_of_pinnace_mid_run_leaves_a_consistent_state(pn: Pinnace, busybox: str) -> None:
    proc = pn.popen("run", "--name", "victim", busybox, "sleep", "60", stdout=-1, stderr=-1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = json.loads(pn("ps", "--format", "json").stdout)
        if rows and rows[0]["State"] == "running":
            break
        time.sleep(0.05)
    assert rows and rows[0]["State"] == "running"
    cid = rows[0]["Id"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10  # the container dies with its parent (PDEATHSIG)
    while time.monotonic() < deadline:
        rows = json.loads(pn("ps", "-a", "--format", "json").stdout)
        if rows[0]["State"] == "exited":
            break
        time.sleep(0.05)
    assert rows[0]["State"] == "exited" and rows[0]["ExitCode"] is None
    assert "Exited (unknown)" in pn("ps", "-a").stdout
    pn("rm", "victim")
    assert pn("ps", "-a", "-q").stdout.strip() == ""
    assert host_leftovers(pn.root) == []
    assert cgroup_leftovers(cid) == []


def test_rm_refuses_running_container_without_force(pn: Pinnace, busybox: str) -> None:
    proc = pn.popen("run", "--name", "busy", busybox, "sleep", "60", stdout=-1, stderr=-1)
    try:
        deadline = time.monotonic() + 30
        while not pn("ps", "-q").stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = pn("rm", "busy", check=False)
        assert refused.returncode == 125 and "is running" in refused.stderr
        pn("rm", "-f", "busy")
        assert proc.wait(timeout=30) != 0
    finally:
        proc.kill()
    assert pn("ps", "-a", "-q").stdout.strip() == ""
    assert host_leftovers(pn.root) == []


def test_sigterm_is_forwarded_to_the_container(pn: Pinnace, busybox: str) -> None:
    script = "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done"
    proc = pn.popen("run", "--rm", busybox, "sh", "-c", script, stdout=-1, stderr=-1)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert "got-term" in out and proc.returncode == 42, err


def test_images_tag_inspect_rmi(pn: Pinnace, busybox: str) -> None:
    pn("tag", busybox, "box:v1")
    listing = pn("images").stdout
    assert "busybox" in listing and "box" in listing and "v1" in listing
    info = json.loads(pn("image", "inspect", "box:v1").stdout)[0]
    assert info["Config"]["Cmd"] == ["sh"] and "box:v1" in info["RepoTags"]
    assert pn("rmi", "box:v1").stdout.strip() == "Untagged: box:v1"
    pn("run", "--name", "user", busybox, "true")
    refused = pn("rmi", busybox, check=False)
    assert refused.returncode == 125 and "user" in refused.stderr
    pn("rm", "user")
    out = pn("rmi", busybox).stdout
    assert "Untagged: busybox:latest" in out and "Deleted: sha256:" in out
    assert pn("images", "-q").stdout.strip() == ""
    assert not [p for p in (pn.root / "storage").rglob("*") if p.is_dir()
                and p.name.startswith("sha256")]


def test_import_rejects_a_path_escape(pn: Pinnace, tmp_path: Path) -> None:
    import io
    import tarfile

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = b"owned\n"
        info = tarfile.TarInfo("../../escaped")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    proc = pn("import", str(evil), "evil", check=False)  # refused before anything is stored
    assert proc.returncode == 125 and "escaped" in proc.stderr
    assert not (pn.root.parent / "escaped").exists() and not Path("/escaped").exists()
    assert pn("images", "-q").stdout.strip() == ""


def test_tty_sets_term_and_every_container_gets_hostname(pn: Pinnace, busybox: str) -> None:
    import shlex
    import subprocess

    def env_on_pty(*args: str) -> list[str]:
        proc = subprocess.run(["script", "-qec", shlex.join(pn.argv(*args)), "/dev/null"],
                              capture_output=True, text=True, env=pn.env, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return [line.strip() for line in proc.stdout.splitlines()]

    out = env_on_pty("run", "--rm", "-t", "--hostname", "box", busybox, "env")
    assert "TERM=xterm" in out and "HOSTNAME=box" in out, out
    out = env_on_pty("run", "--rm", "-t", "-e", "TERM=vt100", "-e", "HOSTNAME=other",
                     busybox, "env")
    assert "TERM=vt100" in out and "HOSTNAME=other" in out and "TERM=xterm" not in out, out
    out = pn("run", "--rm", busybox, "env").stdout.splitlines()
    assert not any(line.startswith("TERM=") for line in out), out
    [hostname] = [line.removeprefix("HOSTNAME=") for line in out if line.startswith("HOSTNAME=")]
    assert len(hostname) == 12
    pn("run", "-dt", "--name", "term", busybox, "sleep", "60")
    out = pn("exec", "term", "env").stdout.splitlines()
    assert "TERM=xterm" in out and any(line.startswith("HOSTNAME=") for line in out), out


def one_line_error(proc: object) -> str:
    """The stderr of a command that must have failed with exit 125 and one line."""
    assert proc.returncode == 125, proc  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


@pytest.mark.parametrize("bad", ["file", "empty"])
def test_root_that_is_a_file_or_empty_is_refused(pn: Pinnace, tmp_path: Path, bad: str) -> None:
    import subprocess
    import sys

    work = tmp_path / "work"
    work.mkdir()
    root = work / "root-file"
    root.write_text("")
    value = str(root) if bad == "file" else ""
    proc = subprocess.run([sys.executable, "-m", "pinnace", "--root", value, "ps", "-a"],
                          capture_output=True, text=True, env=pn.env, cwd=work, timeout=60)
    line = one_line_error(proc)
    assert ("is not a directory" if bad == "file" else "may not be empty") in line
    assert root.is_file() and root.read_text() == "" and sorted(work.iterdir()) == [root]


def test_relative_workdir_and_too_large_uid_create_nothing(pn: Pinnace, busybox: str) -> None:
    line = one_line_error(pn("run", "--rm", "-w", "x", busybox, "true", check=False))
    assert line == ("Error: the working directory 'x' is invalid, it needs to be an absolute "
                    "path")
    line = one_line_error(pn("run", "--rm", "-u", "4294967296", busybox, "true", check=False))
    assert "4294967296" in line and "range 0-2147483647" in line
    one_line_error(pn("run", "--rm", "-u", "0:4294967296", busybox, "true", check=False))
    assert pn("ps", "-a", "-q").stdout.strip() == ""
    assert host_leftovers(pn.root) == []
    pn("run", "-d", "--name", "box", busybox, "sleep", "60")
    line = one_line_error(pn("exec", "-w", "tmp", "box", "pwd", check=False))
    assert "'tmp' is invalid" in line
    assert pn("exec", "-u", "2147483647", "box", "id", "-u").stdout.strip() == "2147483647"


def test_import_rejects_a_name_longer_than_255_bytes(pn: Pinnace, tmp_path: Path) -> None:
    import io
    import tarfile

    def tar_with(name: str) -> Path:
        path = tmp_path / f"{len(name)}.tar"
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        return path

    line = one_line_error(pn("import", str(tar_with("dir/" + "é" * 128)), "long", check=False))
    assert "longer than 255 bytes" in line
    assert pn("images", "-q").stdout.strip() == ""
    assert list((pn.root / "images").rglob("sha256/*")) == []
    pn("import", str(tar_with("dir/" + "x" * 255)), "ok")  # 255 bytes is still a name
    assert list((pn.root / "images").rglob("sha256/*")) != []  # where the blobs would be
