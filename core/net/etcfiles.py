"""The /etc/hosts, /etc/hostname and /etc/resolv.conf a container sees.

They are written into the container's bundle and bind-mounted over the
image's files. Rewrites truncate in place (same inode), so a container that
is already running sees a peer join or leave its network.
"""

from __future__ import annotations

from pathlib import Path

from pinnace.errors import writing

FILES = ("hosts", "hostname", "resolv.conf")
LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
HOST_RESOLV = Path("/etc/resolv.conf")


def hosts(own: list[str], names: list[str], peers: list[tuple[str, list[str]]],
          extra: list[tuple[str, str]]) -> str:
    """localhost, the container's own addresses with its names, its peers' addresses with
    theirs (name and aliases), ``--add-host``."""
    lines = [LOCALHOST]
    lines += [f"{address}\t{' '.join(names)}\n" for address in own]
    lines += [f"{address}\t{' '.join(peer_names)}\n" for address, peer_names in peers]
    lines += [f"{address}\t{name}\n" for name, address in extra]
    return "".join(lines)


def host_hosts(extra: list[tuple[str, str]]) -> str:
    """For ``--net=host``: this host's /etc/hosts plus ``--add-host`` entries."""
    try:
        base = Path("/etc/hosts").read_text()
    except OSError:
        base = LOCALHOST
    return base.rstrip("\n") + "\n" + hosts([], [], [], extra)[len(LOCALHOST):]


def resolv_conf(nameservers: list[str], drop_loopback: bool = False) -> str:
    """The host's resolv.conf, with ``nameservers`` instead of its own when given.

    A container in a network namespace of its own cannot reach the host's
    loopback resolvers (``drop_loopback``), so those lines are left out.
    """
    try:
        lines = HOST_RESOLV.read_text().splitlines()
    except OSError:
        lines = []
    kept = []
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if nameservers or (drop_loopback and _loopback(words[1])):
                continue
        kept.append(line)
    kept += [f"nameserver {ns}" for ns in nameservers]
    return "\n".join(kept) + "\n"


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def write(bundle: Path, hosts_text: str, resolv_text: str, hostname: str) -> None:
    """Write (or rewrite in place) the three files in ``bundle``."""
    for name, text in (("hosts", hosts_text), ("hostname", hostname + "\n"),
                       ("resolv.conf", resolv_text)):
        with writing(f"the container's /etc/{name}", bundle / name), \
                open(bundle / name, "w", encoding="utf-8") as f:
            f.write(text)
