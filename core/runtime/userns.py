"""User namespaces: id mappings (podman's ``--userns`` and ``--uidmap`` syntax), the
subordinate ranges of /etc/subuid and /etc/subgid, and the namespace itself.

A container with a user namespace sees container ids ``container .. container+size-1``
as host ids ``host ..``; its root filesystem is mounted idmapped with the same mapping,
so the image's files (owned by 0 on disk) appear owned by container root while the
processes run under unprivileged host ids. Files owned by ids outside the mapping
appear owned by the overflow id (65534, ``nobody``), as podman shows them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from pinnace.errors import InvalidConfig

MODES = ("host", "private", "auto", "keep-id")
AUTO_SIZE = 65536
"""The ids each ``--userns=auto`` container gets: a block of its own."""
OVERFLOW_ID = 65534


@dataclass(frozen=True)
class IdMap:
    """One line of /proc/PID/uid_map: ``size`` ids from ``container`` are ``host`` on."""

    container: int
    host: int
    size: int

    def line(self) -> str:
        """The line the kernel's map file takes."""
        return f"{self.container} {self.host} {self.size}\n"


def parse_map(text: str, flag: str) -> IdMap:
    """``CONTAINER:HOST:SIZE`` (podman's ``--uidmap``) as an :class:`IdMap`."""
    parts = text.split(":")
    try:
        container, host, size = (int(p) for p in parts)
    except ValueError:
        raise InvalidConfig(f"{flag} {text!r}: expected CONTAINER:HOST:SIZE with numbers"
                            ) from None
    if container < 0 or host < 0 or size < 1 or max(container, host) + size > 2**32 - 1:
        raise InvalidConfig(f"{flag} {text!r}: ids must be non-negative, the size at least 1, "
                            "and the range within 32 bits")
    return IdMap(container, host, size)


def check_disjoint(maps: Sequence[IdMap], flag: str) -> None:
    """Neither the container sides nor the host sides of ``maps`` may overlap."""
    for side in ("container", "host"):
        spans = sorted(maps, key=lambda m, side=side: getattr(m, side))
        for first, second in zip(spans, spans[1:], strict=False):
            if getattr(second, side) < getattr(first, side) + first.size:
                raise InvalidConfig(
                    f"{flag}: {_text(first)} and {_text(second)} overlap on the {side} side")


def _text(m: IdMap) -> str:
    return f"{m.container}:{m.host}:{m.size}"


def entries(path: str) -> list[tuple[str, int, int]]:
    """Every (user, start, count) line of /etc/subuid-style file ``path``."""
    found = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                name, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                if start.isdigit() and count.isdigit():
                    found.append((name, int(start), int(count)))
    except FileNotFoundError:
        pass
    return found


def subordinate(user: str, path: str) -> list[tuple[int, int]]:
    """``user``'s ranges (start, count) in /etc/subuid-style file ``path``."""
    return [(start, count) for name, start, count in entries(path) if name == user]


def shared_with_others(user: str, path: str) -> str:
    """How ``user``'s ranges in ``path`` overlap another user's ("" when they do not):
    containers of both would share host ids, and so each other's files."""
    mine = subordinate(user, path)
    for name, start, count in entries(path):
        for own, size in mine:
            if name != user and start < own + size and own < start + count:
                return (f"{user}'s ids {own}-{own + size - 1} in {path} overlap {name}'s "
                        f"{start}-{start + count - 1}")
    return ""


@dataclass(frozen=True)
class KeepId:
    """``--userns=keep-id``: the calling user, who keeps its ids in the container (in a
    rootless pinnace's namespace it is id 0 there), and its passwd fields."""

    uid: int
    gid: int
    name: str
    home: str


@dataclass(frozen=True)
class Mapping:
    """The uid and gid maps of a container; empty: no user namespace (the host's).
    ``keep``: the user ``--userns=keep-id`` keeps."""

    uids: tuple[IdMap, ...] = ()
    gids: tuple[IdMap, ...] = ()
    keep: KeepId | None = None


def keep_id(user: KeepId, uids: int, gids: int) -> Mapping:
    """The maps of ``--userns=keep-id`` in a rootless pinnace's namespace, which has ids
    0 (the user) to ``uids``-1 (``gids``-1): the user's uid is itself in the container,
    container ids below it are the namespace's subordinate ids 1.., and those above it
    are the same ids there."""
    if uids < 2 or gids < 2:
        raise InvalidConfig("--userns=keep-id needs subordinate ids for the container's other "
                            "users (root among them): this user has none in /etc/subuid and "
                            "/etc/subgid")

    def maps(own: int, count: int) -> tuple[IdMap, ...]:
        below = min(own, count - 1)
        return ((IdMap(0, 1, below),) if below else ()) + (IdMap(own, 0, 1),) + (
            (IdMap(own + 1, own + 1, count - own - 1),) if own + 1 < count else ())

    return Mapping(maps(user.uid, uids), maps(user.gid, gids), user)


def resolve(mode: str, uidmap: Sequence[str], gidmap: Sequence[str], user: str,
            taken: Sequence[tuple[int, int]], subuid: str = "/etc/subuid",
            subgid: str = "/etc/subgid") -> Mapping:
    """The mapping for ``--userns=mode`` (or the explicit ``--uidmap``/``--gidmap``):
    ``private`` is the first :data:`AUTO_SIZE` ids of ``user``'s subordinate ranges,
    ``auto`` a block of them that none of the host id spans ``taken`` (first, count)
    touches."""
    if uidmap or gidmap:
        if mode not in ("", "host", "private"):
            raise InvalidConfig(f"--userns={mode} and --uidmap/--gidmap exclude each other")
        uids = tuple(parse_map(t, "--uidmap") for t in uidmap or gidmap)
        gids = tuple(parse_map(t, "--gidmap") for t in gidmap or uidmap)
        check_disjoint(uids, "--uidmap")
        check_disjoint(gids, "--gidmap")
        return Mapping(uids, gids)
    if mode in ("", "host"):
        return Mapping()
    if mode not in MODES:
        raise InvalidConfig(f"unknown --userns mode {mode!r} (known: {', '.join(MODES)})")
    if mode == "keep-id":
        raise InvalidConfig("--userns=keep-id keeps the calling user's id: it is for a run by "
                            "an ordinary user, not by root")
    blocks = []
    for what, path in (("subuid", subuid), ("subgid", subgid)):
        ranges = subordinate(user, path)
        if not ranges:
            raise InvalidConfig(f"user {user} has no subordinate ids in {path} (needed by "
                                f"--userns={mode}; `make` adds them for user pinnace)")
        shared = shared_with_others(user, path)
        if shared:
            raise InvalidConfig(f"--userns={mode}: {shared}: their containers would share "
                                "host ids; give each user a range of its own")
        blocks.append(_free_block(ranges, taken, mode == "private", what))
    return Mapping((IdMap(0, blocks[0], AUTO_SIZE),), (IdMap(0, blocks[1], AUTO_SIZE),))


def _free_block(ranges: list[tuple[int, int]], used: Sequence[tuple[int, int]], first: bool,
                what: str) -> int:
    """The start of the first :data:`AUTO_SIZE` block of ``ranges`` that no ``used`` span
    (first, count) overlaps (``first``: the first block, shared)."""
    for start, count in ranges:
        for block in range(start, start + count - AUTO_SIZE + 1, AUTO_SIZE):
            if first or not any(u < block + AUTO_SIZE and block < u + n for u, n in used):
                return block
    raise InvalidConfig(f"no free block of {AUTO_SIZE} {what} ids left for --userns=auto "
                        "(every block is used by a container)")


def host_id(maps: Sequence[IdMap], cid: int) -> int:
    """The host id that container id ``cid`` is, or the overflow id."""
    for m in maps:
        if m.container <= cid < m.container + m.size:
            return m.host + cid - m.container
    return OVERFLOW_ID


def container_id(maps: Sequence[IdMap], hid: int) -> int:
    """The container id that host id ``hid`` is (:func:`host_id` undone), or the overflow
    id."""
    for m in maps:
        if m.host <= hid < m.host + m.size:
            return m.container + hid - m.host
    return OVERFLOW_ID


def open_namespace(mapping: Mapping) -> int:
    """A descriptor of a new user namespace with ``mapping`` (written by the caller, root):
    a forked process unshares it, holds it while the maps are written and the descriptor
    opened, then exits."""
    from pinnace import linux

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(hold_w)
            linux.unshare(linux.CLONE_NEWUSER)
            os.write(ready_w, b"U")
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"U":
            raise OSError("could not create a user namespace")
        for name, maps in (("uid_map", mapping.uids), ("gid_map", mapping.gids)):
            with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as f:
                f.write("".join(m.line() for m in maps))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)
