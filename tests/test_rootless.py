"""Rootless pinnace: an ordinary user (``pinnace-test``, made by ``make deps`` with a
subordinate range) runs the tour with its own HOME and XDG directories; what such a user
cannot have (limits without a delegated cgroup, a user namespace of the container's own)
is refused in one line; without subordinate ranges one id is mapped, with a note."""

from __future__ import annotations

import json
import os
import pty
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pinnace

from pinnace.testing.registry import RegistryServer, docker_registry


class User:
    """``pinnace`` run as an ordinary user through runuser, with HOME and the XDG
    directories in a directory of its own."""

    def __init__(self, name: str, home: Path) -> None:
        self.name = name
        self.uid = pwd.getpwnam(name).pw_uid
        self.home = home
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
                    "XDG_DATA_HOME": str(home / "data"), "XDG_RUNTIME_DIR": str(home / "run")}

    def argv(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.name, "--", "env", "-i",
                *(f"{k}={v}" for k, v in self.env.items()),
                sys.executable, "-m", "pinnace", *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=120,
                              cwd=self.home)
        if check and proc.returncode != 0:
            raise AssertionError(f"pinnace {' '.join(args)} as {self.name} exited "
                                 f"{proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}")
        return proc

    def pause_pid(self) -> int:
        """The pause process holding this user's namespaces."""
        return int((self.home / "run" / "pinnace" / "pause.pid").read_text())


def user_home(name: str, parent: Path | None = None) -> Iterator[User]:
    """A fresh home for ``name`` (in ``parent``, else /tmp); at the end its containers,
    pause process and files go."""
    home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    shutil.chown(home, name, name)
    home.chmod(0o700)
    user = User(name, home)
    try:
        yield user
    finally:
        if (home / "run" / "pinnace" / "pause.pid").exists():
            left = user("ps", "-aq", "--no-trunc", check=False).stdout.split()
            if left:
                user("rm", "-f", *left, check=False)
            pid = user.pause_pid()
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home)


@pytest.fixture
def rootless(busybox_tar: Path) -> Iterator[User]:
    """``pinnace-test`` with busybox:latest imported."""
    for user in user_home("pinnace-test"):
        shutil.copy(busybox_tar, user.home / "busybox.tar")
        os.chmod(user.home / "busybox.tar", 0o644)
        user("import", "-c", 'CMD ["sh"]', str(user.home / "busybox.tar"), "busybox:latest")
        yield user


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with docker_registry(tmp_path / "registry") as reg:
        yield reg


def host_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return int(next(x for x in f if x.startswith("Uid:")).split()[1])


def run_in_pty(argv: list[str], keys: bytes, cwd: Path) -> bytes:
    """Run ``argv`` on a new pty, type ``keys``, return what it printed."""
    pid, master = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execvp(argv[0], argv)
    os.write(master, keys)
    out = b""
    while select.select([master], [], [], 30)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(master)
    return out


def test_the_tour_as_an_ordinary_user(rootless: User, pn: Pinnace, busybox: str,
                                      registry: RegistryServer) -> None:
    pn("push", busybox, f"{registry.host}/tour/busybox:1")
    user = rootless
    user("pull", f"{registry.host}/tour/busybox:1")
    mapped = user("run", "--rm", f"{registry.host}/tour/busybox:1", "sh", "-c",
                  "id -u; cat /proc/self/uid_map").stdout.split()
    assert mapped[:4] == ["0", "0", str(user.uid), "1"]  # root in there is the user
    assert mapped[4:6] == ["1", "3000000"]  # then the subordinate range
    cid = user("run", "-d", "busybox", "sh", "-c", "echo started; sleep 60").stdout.strip()
    pid = json.loads(user("inspect", cid).stdout)[0]["State"]["Pid"]
    assert host_uid(pid) == user.uid  # the host sees the user, not root
    assert user("exec", cid, "sh", "-c", "echo made > /made; id -u").stdout == "0\n"
    assert "started" in user("logs", cid).stdout
    user("commit", "--no-pause", cid, "made:1")
    assert user("run", "--rm", "made:1", "cat", "/made").stdout == "made\n"
    context = user.home / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM made:1\nRUN id -u > /uid && cat /made > /copy\n"
                                        'CMD ["cat", "/uid", "/copy"]\n')
    shutil.chown(context, user.name)
    user("build", "-t", "built:1", str(context))
    assert user("run", "--rm", "built:1").stdout == "0\nmade\n"  # RUN as container root
    typed = run_in_pty(user.argv("run", "-it", "--rm", "busybox", "sh"),
                       b"tty; echo in-$((6*7))\nexit 3\n", user.home)
    assert b"/dev/pts/0" in typed and b"in-42" in typed, typed
    user("push", "made:1", f"{registry.host}/tour/made:1")
    pn("pull", f"{registry.host}/tour/made:1")
    assert pn("run", "--rm", f"{registry.host}/tour/made:1", "cat", "/made").stdout == "made\n"
    user("rm", "-f", cid)
    assert user("ps", "-aq").stdout == ""
    state = user.home / "data" / "pinnace"
    assert (state / "state.db").exists()  # under XDG_DATA_HOME, not /var/lib
    assert (user.home / "run" / "pinnace" / "pause.pid").exists()  # under XDG_RUNTIME_DIR


def test_host_files_and_processes_stay_out_of_reach(rootless: User) -> None:
    shared = Path(tempfile.mkdtemp(prefix="rootless-bind-"))
    try:
        shared.chmod(0o755)
        (shared / "secret").write_text("root only\n")
        (shared / "secret").chmod(0o600)
        victim = subprocess.Popen(["sleep", "60"])
        try:
            out = rootless("run", "--rm", "-v", f"{shared}:/host", "busybox", "sh", "-c",
                           f"exec 2>&1; cat /host/secret; echo cat=$?; kill -9 {victim.pid};"
                           " echo kill=$?; stat -c %u /host/secret").stdout
            assert victim.poll() is None
        finally:
            victim.kill()
            victim.wait()
    finally:
        shutil.rmtree(shared)
    assert "Permission denied" in out and "cat=1" in out and "kill=1" in out, out
    assert out.split()[-1] == "65534"  # host root is nobody to the user's namespace


@pytest.mark.parametrize(("flags", "message"), [
    (("-m", "64m"), "--memory needs a cgroup this user may write, and this host (v"),
    (("--pids-limit", "10"), "--pids-limit needs a cgroup"),
    (("--userns=auto",), "a rootless container already runs in your user namespace"),
])
def test_what_a_rootless_run_cannot_have(rootless: User, flags: tuple[str, ...],
                                         message: str) -> None:
    proc = rootless("run", "--rm", *flags, "busybox", "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert rootless("ps", "-aq").stdout == ""
    containers = rootless.home / "data" / "pinnace" / "containers"
    assert not containers.exists() or not any(containers.iterdir())
    assert rootless("run", "--rm", "busybox", "true").returncode == 0  # without: it runs


def test_without_subordinate_ranges_one_id_is_mapped(busybox_tar: Path) -> None:
    for user in user_home("pinnace-nosub"):
        shutil.copy(busybox_tar, user.home / "busybox.tar")
        os.chmod(user.home / "busybox.tar", 0o644)
        first = user("import", str(user.home / "busybox.tar"), "busybox:latest")
        assert "note: user pinnace-nosub has no ranges in /etc/subuid" in first.stderr
        assert first.stderr.count("note:") == 1
        out = user("run", "--rm", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map")
        assert out.stdout.split() == ["0", "0", str(user.uid), "1"]
        assert "note:" not in out.stderr  # said once, when the namespace was made


def test_doctor_explains_the_rootless_mode(rootless: User) -> None:
    runtime = rootless.env.pop("XDG_RUNTIME_DIR")
    fallback = Path(f"/tmp/pinnace-{rootless.uid}")
    try:
        checks = {c["check"]: c for c in json.loads(rootless("doctor", "--format", "json",
                                                             check=False).stdout)}
        assert checks["rootless mode"]["ok"] == "yes"
        assert checks["subordinate ids mapped"]["detail"] == "65537 ids"
        assert f"using {fallback}, which outlives a logout" in \
            checks["runtime directory"]["detail"]
        assert "runs with limits are refused" in checks["cgroups delegated"]["detail"]
        assert "ip_unprivileged_port_start" in checks["publishable ports"]["detail"]
        assert (fallback / "pause.pid").exists()
    finally:
        if (fallback / "pause.pid").exists():
            os.kill(int((fallback / "pause.pid").read_text()), signal.SIGKILL)
        shutil.rmtree(fallback, ignore_errors=True)
        rootless.env["XDG_RUNTIME_DIR"] = runtime



def test_keep_id_runs_as_the_user_with_its_own_ids(rootless: User) -> None:
    """``--userns=keep-id``: the user's uid and gid are the same inside, the subordinate
    ids fill the rest, the process runs as the user (a passwd line and HOME for it), the
    image's files are still root's, and the user's files in a bind are its own."""
    user, gid = rootless, pwd.getpwnam(rootless.name).pw_gid
    home = pwd.getpwnam(user.name).pw_dir
    out = user("run", "--rm", "--userns=keep-id", "busybox", "sh", "-c",
               "id -u; id -g; id -un; echo $HOME; stat -c %u:%g / /bin/busybox;"
               " cat /proc/self/uid_map").stdout.split()
    assert out[:8] == [str(user.uid), str(gid), user.name, home, "0:0", "0:0",
                       "0", "1"], out
    assert out[8:] == [str(user.uid), str(user.uid), "0", "1",
                       str(user.uid + 1), str(user.uid + 1), str(65536 - user.uid)], out
    share = user.home / "share"
    subprocess.run(["runuser", "-u", user.name, "--", "mkdir", str(share)], check=True)
    subprocess.run(["runuser", "-u", user.name, "--", "touch", str(share / "mine")],
                   check=True)
    cid = user("run", "-d", "--userns=keep-id", "-v", f"{share}:/share", "busybox", "sh",
               "-c", "touch /share/made; sleep 60").stdout.strip()
    pid = json.loads(user("inspect", cid).stdout)[0]["State"]["Pid"]
    assert host_uid(pid) == user.uid  # the host sees the user itself
    inside = user("exec", cid, "sh", "-c", "id -u; stat -c %u /share/mine").stdout.split()
    assert inside == [str(user.uid)] * 2
    assert (share / "made").stat().st_uid == user.uid
    as_root = user("run", "--rm", "--userns=keep-id", "--user", "0", "busybox", "sh", "-c",
                   "id -u; touch /root/x; echo wrote=$?").stdout.split()
    assert as_root == ["0", "wrote=0"]  # container root: the first subordinate id
    user("rm", "-f", cid)
    user("rmi", "busybox")
    snapshots = user.home / "data" / "pinnace" / "storage"
    assert not list(snapshots.glob("*/snapshots/*")), list(snapshots.glob("*/snapshots/*"))


def test_keep_id_without_subordinate_ranges_is_refused(busybox_tar: Path) -> None:
    for user in user_home("pinnace-nosub"):
        shutil.copy(busybox_tar, user.home / "busybox.tar")
        os.chmod(user.home / "busybox.tar", 0o644)
        user("import", str(user.home / "busybox.tar"), "busybox:latest")
        proc = user("run", "--rm", "--userns=keep-id", "busybox", "true", check=False)
        assert proc.returncode == 125 and proc.stderr.count("\n") == 1, proc.stderr
        assert "--userns=keep-id needs subordinate ids" in proc.stderr
        assert user("ps", "-aq").stdout == ""
        left = list((user.home / "data" / "pinnace" / "storage").glob("*/snapshots/*"))
        assert all(p.name.startswith("sha256") for p in left), left  # the image's layer


@pytest.mark.parametrize("options", ["", "user_subvol_rm_allowed"])
def test_rootless_on_btrfs_removes_every_subvolume(busybox_tar: Path, options: str) -> None:
    """A user whose data directory is on btrfs gets subvolumes; removing them works with
    ``user_subvol_rm_allowed`` (deleted whole) and without it (emptied, then rmdir'd), and
    leaves no subvolume, staging directory or row behind; doctor says which it is."""
    from pinnace.testing.btrfs import loop_btrfs

    base = Path(tempfile.mkdtemp(prefix="rootless-btrfs-"))
    base.chmod(0o755)
    try:
        with loop_btrfs(base / "fs", "1G") as mnt:
            if options:
                subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], check=True)
            mnt.chmod(0o755)
            for user in user_home("pinnace-test", parent=mnt):
                shutil.copy(busybox_tar, user.home / "busybox.tar")
                os.chmod(user.home / "busybox.tar", 0o644)
                user("import", "-c", 'CMD ["sh"]', str(user.home / "busybox.tar"), "busybox")
                storage = user.home / "data" / "pinnace" / "storage" / "btrfs"
                user("run", "--rm", "busybox", "sh", "-c", "mkdir -p /a/b && echo x > /a/b/f")
                user("run", "--rm", "--userns=keep-id", "busybox", "true")  # a shifted layer
                cid = user("create", "busybox", "true").stdout.strip()
                assert len(list(storage.glob("snapshots/*"))) == 3  # layer, shifted, rootfs
                checks = {c["check"]: c for c in json.loads(
                    user("doctor", "--format", "json", check=False).stdout)}
                check = checks["btrfs: users may delete subvolumes"]
                assert check["ok"] == ("yes" if options else "warn"), check
                if not options:
                    assert "empties it file by file" in check["detail"]
                    assert "user_subvol_rm_allowed" in check["fix"]
                user("rm", cid)
                user("rmi", "busybox")
                assert user("ps", "-aq").stdout == "" and user("images", "-q").stdout == ""
                assert not list(storage.glob("snapshots/*")) and not list(storage.glob("tmp/*"))
                listed = subprocess.run(["btrfs", "subvolume", "list", str(mnt)],
                                        capture_output=True, text=True, check=True).stdout
                assert listed == "", listed
    finally:
        shutil.rmtree(base, ignore_errors=True)
