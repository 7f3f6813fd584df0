"""``-u user[:group]`` resolved against the container's /etc/passwd and /etc/group,
as docker does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pinnace import rootfs
from pinnace.errors import InvalidConfig, NotFound
from pinnace.runtime.spec import User
from pinnace.runtime.userns import KeepId


@dataclass
class Resolved:
    """The numeric user and the home directory from passwd (``/`` when unknown)."""

    user: User
    home_dir: str


MAX_ID = 2**31 - 1
"""The largest uid or gid a container may use, as with docker."""
PASSWD_LIMIT = 4 << 20  # bytes; a bigger passwd or group file is refused


def _read(root: int, name: str) -> list[list[str]]:
    try:
        data = rootfs.read_small(root, f"/etc/{name}", PASSWD_LIMIT)
    except NotFound:  # no such file: no entries, as docker
        return []
    text = data.decode(errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve(root_dir: Path, spec: str, group_add: Sequence[str] = ()) -> Resolved:
    """Resolve ``uid``, ``name``, ``uid:gid`` or ``name:group`` (empty means root) against
    the files of the root filesystem at ``root_dir``, never leaving it (pinnace.rootfs);
    ``group_add`` (``--group-add``: gids or group names) joins the supplementary groups."""
    user_part, _, group_part = (spec or "0").partition(":")
    with rootfs.opened_root(root_dir) as root:
        passwd = [p for p in _read(root, "passwd") if len(p) >= 7]
        groups = [g for g in _read(root, "group") if len(g) >= 4]
    entry = next((p for p in passwd if p[0] == user_part), None)
    if entry is None and user_part.isdigit():
        entry = next((p for p in passwd if p[2] == user_part), None)
    if entry is None and not user_part.isdigit():
        raise InvalidConfig(f"unable to find user {user_part}: no matching entries in passwd file")
    uid = int(entry[2]) if entry else int(user_part)
    gid = int(entry[3]) if entry else 0
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            match = next((g for g in groups if g[0] == group_part), None)
            if match is None:
                raise InvalidConfig(
                    f"unable to find group {group_part}: no matching entries in group file")
            gid = int(match[2])
    if not (0 <= uid <= MAX_ID and 0 <= gid <= MAX_ID):
        raise InvalidConfig(f"invalid user {spec!r}: uids and gids must be in range 0-{MAX_ID}")
    extra = []
    if entry is not None and not group_part:
        extra = sorted({int(g[2]) for g in groups
                        if entry[0] in g[3].split(",") and int(g[2]) != gid})
    for group in group_add:
        extra.append(_group_id(groups, group))
    return Resolved(User(uid=uid, gid=gid, additional_gids=sorted(set(extra))),
                    entry[5] if entry else "/")


def add_user(root_dir: Path, user: KeepId) -> None:
    """Give ``user`` (``--userns=keep-id``) a line in the /etc/passwd of the root
    filesystem at ``root_dir``, and its gid one in /etc/group, where its id (or name) has
    none, so that what looks the user up finds its name, home and shell."""
    with rootfs.opened_root(root_dir) as root:
        passwd = [p for p in _read(root, "passwd") if len(p) >= 7]
        if not any(p[2] == str(user.uid) or p[0] == user.name for p in passwd):
            _append(root, "passwd",
                    f"{user.name}:*:{user.uid}:{user.gid}:{user.name}:{user.home}:/bin/sh\n")
        groups = [g for g in _read(root, "group") if len(g) >= 4]
        if not any(g[2] == str(user.gid) or g[0] == user.name for g in groups):
            _append(root, "group", f"{user.name}:x:{user.gid}:\n")


def _append(root: int, name: str, line: str) -> None:
    """Append ``line`` to /etc/``name`` in ``root`` (made, with the owner of the root
    directory, when missing)."""
    import os

    top = os.fstat(root)
    os.close(rootfs.create_in(root, f"/etc/{name}", owner=(top.st_uid, top.st_gid)))
    fd = rootfs.open_in(root, f"/etc/{name}", os.O_WRONLY | os.O_APPEND)
    try:
        data = line.encode()
        if os.fstat(fd).st_size and not rootfs.read_small(
                root, f"/etc/{name}", PASSWD_LIMIT).endswith(b"\n"):
            data = b"\n" + data
        os.write(fd, data)
    finally:
        os.close(fd)


def _group_id(groups: list[list[str]], group: str) -> int:
    """A ``--group-add`` entry as a gid: a number, or a name in the container's group file."""
    if group.isdigit():
        gid = int(group)
        if gid > MAX_ID:
            raise InvalidConfig(f"invalid --group-add {group}: gids must be in range 0-{MAX_ID}")
        return gid
    match = next((g for g in groups if g[0] == group), None)
    if match is None or not match[2].isdigit():
        raise InvalidConfig(f"unable to find group {group}: no matching entries in group file")
    return int(match[2])

