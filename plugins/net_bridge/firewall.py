"""The bridge networks' iptables rules: chains of their own, every rule tagged with its owner.

Changes go in through one ``iptables-restore --noflush`` call each. A rule
carries a comment naming who owns it (``pn:net:<bridge>`` for a network,
``pn:ctr:<id>`` for a container's published ports), so removing an owner's
rules, even after a crash, is: read ``iptables-save``, delete the tagged lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from pinnace.plugin import FailedPrecondition, Unavailable

CHAINS = {"nat": ("PINNACE-DNAT", "PINNACE-POSTROUTING"),
          "filter": ("PINNACE-FORWARD", "PINNACE-ISOLATION")}
JUMPS = {"nat": ("PREROUTING -m addrtype --dst-type LOCAL -j PINNACE-DNAT",
                 "OUTPUT -m addrtype --dst-type LOCAL -j PINNACE-DNAT",
                 "POSTROUTING -j PINNACE-POSTROUTING"),
         "filter": ("FORWARD -j PINNACE-FORWARD",)}
MISSING = "publishing ports needs iptables, which is not installed (apt-get install iptables)"


def available() -> bool:
    """True when iptables-save and iptables-restore are on PATH."""
    return bool(shutil.which("iptables-restore") and shutil.which("iptables-save"))


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise FailedPrecondition(f"{argv[0]}: {detail}")
    return proc.stdout


def _save(table: str) -> list[str]:
    return _run(["iptables-save", "-t", table]).splitlines()


def _restore(tables: dict[str, list[str]]) -> None:
    text = "".join(f"*{t}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
                   for t, lines in tables.items() if lines)
    if text:
        _run(["iptables-restore", "-w", "--noflush"], text)


def tag(owner: str) -> str:
    """The comment match that marks a rule as ``owner``'s."""
    return f"-m comment --comment {owner}"


def ensure_chains() -> None:
    """Create pinnace's chains and the jumps to them where they are missing."""
    changes: dict[str, list[str]] = {}
    for table, chains in CHAINS.items():
        saved = _save(table)
        lines = [f":{c} - [0:0]" for c in chains if not any(s.startswith(f":{c} ") for s in saved)]
        lines += [f"-I {j}" for j in JUMPS[table] if f"-A {j}" not in saved]
        changes[table] = lines
    _restore(changes)


def network_rules(bridge: str, subnet: str, internal: bool) -> dict[str, list[str]]:
    """Forwarding, isolation and NAT rules of one bridge network."""
    t = tag(f"pn:net:{bridge}")
    forward = [f"-I PINNACE-FORWARD -i {bridge} ! -o {bridge} {t} -j PINNACE-ISOLATION",
               f"-A PINNACE-ISOLATION -o {bridge} {t} -j DROP",
               f"-A PINNACE-FORWARD -i {bridge} -o {bridge} {t} -j ACCEPT"]
    if internal:
        forward += [f"-A PINNACE-FORWARD -i {bridge} ! -o {bridge} {t} -j DROP",
                    f"-A PINNACE-FORWARD -o {bridge} ! -i {bridge} {t} -j DROP"]
        return {"filter": forward}
    forward += [f"-A PINNACE-FORWARD -i {bridge} {t} -j ACCEPT",
                f"-A PINNACE-FORWARD -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT"
                f" {t} -j ACCEPT"]
    nat = [f"-A PINNACE-POSTROUTING -s {subnet} ! -o {bridge} {t} -j MASQUERADE",
           f"-A PINNACE-POSTROUTING -o {bridge} -m addrtype --src-type LOCAL {t} -j MASQUERADE",
           f"-A PINNACE-POSTROUTING -s {subnet} -o {bridge} -m conntrack --ctstate DNAT {t}"
           f" -j MASQUERADE"]
    return {"filter": forward, "nat": nat}


def port_rules(owner: str, address: str, ports: list) -> dict[str, list[str]]:
    """DNAT rules sending each published host port to ``address``."""
    t = tag(owner)
    nat = []
    for p in ports:
        dest = f"-d {p.host_ip}/32 " if p.host_ip else ""
        nat.append(f"-A PINNACE-DNAT {dest}-p {p.protocol} -m {p.protocol} --dport {p.host_port}"
                   f" {t} -j DNAT --to-destination {address}:{p.container_port}")
    return {"nat": nat}


def add(rules: dict[str, list[str]]) -> None:
    """Install rules (``-A``/``-I`` lines per table) in one transaction."""
    _restore(rules)


def delete(owner: str) -> None:
    """Delete every rule tagged ``owner``; nothing to do is fine."""
    pattern = re.compile(rf"--comment \"?{re.escape(owner)}\"?( |$)")
    changes = {table: ["-D" + line[2:] for line in _save(table)
                       if line.startswith("-A ") and pattern.search(line)]
               for table in CHAINS}
    _restore(changes)


def require() -> None:
    """Raise a one-line error when iptables is missing."""
    if not available():
        raise Unavailable(MISSING)
