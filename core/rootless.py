"""Rootless pinnace: an ordinary user's pinnace runs inside a user namespace of its own.

Started by a user other than root, every ``pinnace`` command first joins (or makes) that
user's *pause* process: it holds a user namespace, where the user is root (uid 0 is the
user's uid, 1..N the user's subordinate ids of /etc/subuid, mapped by ``newuidmap``), and
a mount namespace, where the containers' mounts live between commands. The command then
runs as root there, with what such a root may do: namespaces, bind mounts, btrfs
subvolumes, chown to mapped ids; not: loop devices, idmapped mounts of host filesystems,
cgroups the host did not delegate, ports below ``net.ipv4.ip_unprivileged_port_start``.

State lives under ``$XDG_DATA_HOME/pinnace`` (``~/.local/share/pinnace``), runtime files
under ``$XDG_RUNTIME_DIR/pinnace`` (``/tmp/pinnace-$UID`` when it is not set).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinnace.containers.options import RunOptions
    from pinnace.runtime.userns import Mapping

FULL_MAP = "0 0 4294967295"
"""/proc/self/uid_map of the host's user namespace."""


@functools.cache
def active() -> bool:
    """True inside a rootless pinnace's user namespace (any other than the host's; a
    process enters it first thing, so the answer is kept)."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            return " ".join(f.read().split()) != FULL_MAP
    except OSError:
        return False


def data_dir() -> Path:
    """Where a rootless pinnace keeps its state."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                           ".local", "share")
    return Path(base) / "pinnace"


def run_dir() -> Path:
    """Where a rootless pinnace keeps runtime files: ``$XDG_RUNTIME_DIR/pinnace``, or
    ``/tmp/pinnace-UID`` (a note in ``doctor``: it does not go away at logout)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "pinnace"
    return Path(f"/tmp/pinnace-{host_uid()}")


def host_uid() -> int:
    """The calling user's uid on the host (root in a rootless pinnace's namespace is it)."""
    return _host_id("uid_map", os.getuid())


def _host_id(name: str, default: int) -> int:
    """The host id that id 0 of this user namespace is (``/proc/self/<name>``), or
    ``default`` in the host's namespace."""
    with open(f"/proc/self/{name}", encoding="ascii") as f:
        for line in f:
            inside, outside, count = (int(x) for x in line.split())
            if inside == 0 and count < 2**32 - 1:  # not the host's identity map
                return outside
    return default


@dataclass(frozen=True)
class Ranges:
    """How the pause process's namespace maps ids: ``subuid``/``subgid`` are (start,
    count) of the user's subordinate ids, or None (a single-id mapping)."""

    uid: int
    gid: int
    subuid: tuple[int, int] | None
    subgid: tuple[int, int] | None

    @property
    def note(self) -> str:
        """Why only one id is mapped, or ""."""
        import shutil

        if self.subuid and self.subgid:
            return ""
        if not (shutil.which("newuidmap") and shutil.which("newgidmap")):
            return ("newuidmap/newgidmap are missing (Debian package uidmap): only your own "
                    "uid is mapped, as root in the containers; images with other owners fail")
        return (f"user {_user_name(self.uid)} has no ranges in /etc/subuid and /etc/subgid: "
                "only your own uid is mapped (root: usermod --add-subuids/--add-subgids)")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def ranges(subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> Ranges:
    """This user's ids and subordinate ranges (the first of each file, by name or uid)."""
    import shutil

    from pinnace.runtime.userns import subordinate

    uid, gid = os.getuid(), os.getgid()
    name = _user_name(uid)
    helpers = bool(shutil.which("newuidmap") and shutil.which("newgidmap"))
    found = [(subordinate(name, path) or subordinate(str(uid), path)) if helpers else []
             for path in (subuid, subgid)]
    return Ranges(uid, gid, found[0][0] if found[0] else None,
                  found[1][0] if found[1] else None)


def enter() -> None:
    """Join this user's pause process's namespaces, making it first when there is none
    (or it died); afterwards this process is root in the user namespace."""
    from pinnace import linux

    run = run_dir()
    run.mkdir(parents=True, exist_ok=True, mode=0o700)
    pidfile = run / "pause.pid"
    pid = _alive(pidfile)
    if pid == 0:
        pid = _start_pause(pidfile)
        note = ranges().note
        if note:
            import sys

            print(f"note: {note}", file=sys.stderr)
    cwd = os.getcwd()
    user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(user, linux.CLONE_NEWUSER)
        linux.setns(mnt, linux.CLONE_NEWNS)
    finally:
        os.close(user)
        os.close(mnt)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    os.chdir(cwd)


def _alive(pidfile: Path) -> int:
    """The pause process's PID when it still runs (and is this user's), else 0."""
    try:
        pid = int(pidfile.read_text())
        if os.lstat(f"/proc/{pid}/ns/user").st_uid == os.getuid() and \
                os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user"):
            return pid
    except (OSError, ValueError):
        pass
    return 0


def _start_pause(pidfile: Path) -> int:
    """Fork the pause process: a user and a mount namespace, mapped by newuidmap (or to
    the user's own id alone), held until it is killed; its PID is written to ``pidfile``."""
    from pinnace import linux

    mapping = ranges()
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            os.close(ready_r)
            os.close(go_w)
            linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
            os.write(ready_w, b"U")
            if os.read(go_r, 1) == b"G":
                linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
                os.write(ready_w, b"P")
                os.close(ready_w)
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 1 << 16)  # nothing of the caller's (pipes) held open
                import signal

                while True:
                    signal.pause()
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"U":
            raise OSError("could not create a user namespace (unprivileged user namespaces "
                          "are off? sysctl kernel.unprivileged_userns_clone)")
        _write_maps(pid, mapping)
        os.write(go_w, b"G")
        if os.read(ready_r, 1) != b"P":
            raise OSError("the pause process did not start")
    except BaseException:
        import signal

        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(str(pid))
    tmp.replace(pidfile)
    return pid


def _write_maps(pid: int, mapping: Ranges) -> None:
    """0 is the user, 1.. the subordinate ids (newuidmap/newgidmap); without ranges, the
    user's own ids alone (written directly: setgroups denied first, as the kernel asks)."""
    import subprocess

    if mapping.subuid and mapping.subgid:
        for tool, own, (start, count) in (("newuidmap", mapping.uid, mapping.subuid),
                                          ("newgidmap", mapping.gid, mapping.subgid)):
            done = subprocess.run([tool, str(pid), "0", str(own), "1", "1", str(start),
                                   str(count)], capture_output=True, text=True)
            if done.returncode != 0:
                raise OSError(f"{tool}: {done.stderr.strip()}")
        return
    with open(f"/proc/{pid}/setgroups", "w", encoding="ascii") as f:
        f.write("deny")
    for name, own in (("uid_map", mapping.uid), ("gid_map", mapping.gid)):
        with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as f:
            f.write(f"0 {own} 1\n")


LIMIT_FLAGS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "pids_limit")


def check_run(opts: RunOptions) -> None:
    """What a rootless run cannot have, refused before anything is made: resource limits
    without a delegated cgroup, a user namespace of the container's own."""
    from pinnace.errors import FailedPrecondition, InvalidConfig
    from pinnace.runtime import cgroups

    asked = [f.replace("_", "-") for f in LIMIT_FLAGS if getattr(opts, f) not in (None, "", 0)]
    if asked and not cgroups.hierarchies():
        raise FailedPrecondition(
            f"--{asked[0]} needs a cgroup this user may write, and this host "
            f"({cgroups.version()}) delegates none to {_user_name(host_uid())}: run without "
            "limits, or as root")
    if opts.ports:
        from pinnace.net.networks import parse_publish

        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as f:
            lowest = int(f.read())
        for text in opts.ports:
            port = parse_publish(text).host_port
            if 0 < port < lowest:
                raise FailedPrecondition(
                    f"-p {text}: host port {port} is privileged for an ordinary user (ports "
                    f"below {lowest}); root may lower it: sysctl "
                    f"net.ipv4.ip_unprivileged_port_start={port}")
    if opts.userns not in (None, "", "host", "keep-id") or opts.uidmap or opts.gidmap:
        raise InvalidConfig("a rootless container already runs in your user namespace (root "
                            "in it is you): --uidmap, --gidmap and --userns other than "
                            "keep-id are for root's containers")


def keep_id() -> Mapping:
    """``--userns=keep-id``'s maps in this user's namespace: the user is its own uid and
    gid in the container (:func:`pinnace.runtime.userns.keep_id`)."""
    import pwd

    from pinnace.runtime.userns import KeepId
    from pinnace.runtime.userns import keep_id as maps

    uid, gid = host_uid(), _host_id("gid_map", os.getgid())
    try:
        entry = pwd.getpwuid(uid)
        name, home = entry.pw_name, entry.pw_dir
    except KeyError:
        name, home = str(uid), "/"
    return maps(KeepId(uid, gid, name, home), _mapped("uid_map"), _mapped("gid_map"))


def doctor(root: Path) -> list[dict[str, str]]:
    """``pinnace doctor``'s checks of the mode it runs in: for root, the subordinate ids
    ``--userns`` maps; for an ordinary user, what a rootless pinnace has and lacks."""
    from pinnace.runtime import cgroups
    from pinnace.runtime.userns import subordinate

    if not active():
        ranges_ok = bool(subordinate("pinnace", "/etc/subuid"))
        return [{"check": "running as root", "ok": "yes", "detail": "rootful pinnace"},
                _check("subordinate ids for --userns (user pinnace)",
                       "yes" if ranges_ok else "warn",
                       "in /etc/subuid" if ranges_ok else "none: --userns=auto and private fail",
                       "make deps (useradd pinnace; usermod --add-subuids/--add-subgids)"),
                _ranges_apart("pinnace")]
    mapping = _mapped()
    checks = [{"check": "rootless mode", "ok": "yes",
               "detail": f"uid {host_uid()}, state in {root}"},
              _check("subordinate ids mapped", "yes" if mapping > 1 else "warn",
                     f"{mapping} ids", "root: usermod --add-subuids 100000-165535 "
                     "--add-subgids 100000-165535 USER; apt install uidmap"),
              _ranges_apart(_user_name(host_uid()))]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    checks.append(_check("runtime directory", "yes" if runtime else "warn",
                         str(run_dir()) if runtime else f"XDG_RUNTIME_DIR is not set: using "
                         f"{run_dir()}, which outlives a logout",
                         "log in through a session that sets XDG_RUNTIME_DIR (pam_systemd)"))
    delegated = cgroups.hierarchies()
    checks.append(_check("cgroups delegated", "yes" if delegated else "warn",
                         f"{len(delegated)} writable" if delegated else
                         f"{cgroups.version()}, none writable: runs with limits are refused",
                         "cgroup v2 with systemd delegation (Delegate=yes for user@.service)"))
    from pinnace.storage_tree import mount_of

    point, fstype, _ = mount_of(root)
    if fstype == "btrfs":
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            options = next((line.split(" - ")[1].split()[2] for line in f
                            if line.split()[4] == point), "")
        allowed = "user_subvol_rm_allowed" in options.split(",")
        checks.append(_check("btrfs: users may delete subvolumes",
                             "yes" if allowed else "warn",
                             f"{point} mounted with user_subvol_rm_allowed" if allowed else
                             f"{point} lacks user_subvol_rm_allowed: a user may not delete a "
                             "subvolume, so removing a container or image empties it file by "
                             "file first (slower)",
                             f"root: mount -o remount,user_subvol_rm_allowed {point}"))
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as f:
        lowest = int(f.read())
    checks.append(_check("publishable ports", "yes" if lowest <= 1024 else "warn",
                         f"from {lowest} (net.ipv4.ip_unprivileged_port_start)",
                         "root: sysctl net.ipv4.ip_unprivileged_port_start=80"))
    return checks


def _ranges_apart(user: str) -> dict[str, str]:
    """Whether ``user``'s subordinate ranges are its own (another user's that overlap
    them would share host ids with its containers)."""
    from pinnace.runtime.userns import shared_with_others

    shared = [found for path in ("/etc/subuid", "/etc/subgid")
              if (found := shared_with_others(user, path))]
    return _check(f"subordinate ids of {user} are its own", "warn" if shared else "yes",
                  shared[0] if shared else "no other user's range overlaps them",
                  "root: give each user a range of its own in /etc/subuid and /etc/subgid")


def _mapped(name: str = "uid_map") -> int:
    """How many uids (``gid_map``: gids) this user namespace maps."""
    with open(f"/proc/self/{name}", encoding="ascii") as f:
        return sum(int(line.split()[2]) for line in f)


def _check(name: str, ok: str, detail: str, fix: str) -> dict[str, str]:
    return {"check": name, "ok": ok, "detail": detail, **({"fix": fix} if ok != "yes" else {})}
