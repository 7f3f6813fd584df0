"""Shared by the plugin routing and mixing tests: what storage plugins hold, a wrapper
plugin that times every role hook and injects one fault, and what a command left behind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import Pinnace, host_leftovers
from test_plugins import install_fake

from pinnace import config
from pinnace.engine import Engine

STORAGES = ("dir", "btrfs")


def snapshots(root: Path, storage: str) -> list[str]:
    """Keys of every snapshot ``storage`` holds under ``root``, asked of the plugin itself."""
    engine = Engine(config.load(flags={"root": str(root)}))
    return sorted(s.key for s in engine.plugins.call("storage", storage, "walk"))


def recorded_layers(root: Path, storage: str) -> set[str]:
    """Chain IDs of the layer snapshots the state says ``storage`` holds."""
    engine = Engine(config.load(flags={"root": str(root)}))
    return {r["chain_id"] for r in engine.state.query(
        "SELECT chain_id FROM snapshots WHERE storage = ?", storage)}


def layer_keys(pn: Pinnace, image: str) -> set[str]:
    """The snapshot keys of ``image``'s layers (their chain IDs)."""
    from pinnace.images.store import chain_ids

    [info] = json.loads(pn("image", "inspect", image).stdout)
    return set(chain_ids(info["RootFS"]["Layers"]))


def stray_blobs(root: Path) -> list[str]:
    """Blobs (and blob temp files) of the image store that no image references."""
    blobs = root / "images" / "blobs" / "sha256"
    if not blobs.exists():
        return []
    engine = Engine(config.load(flags={"root": str(root)}))
    used = {r["digest"] for r in engine.state.query(
        "SELECT id AS digest FROM images UNION SELECT manifest_digest FROM images"
        " UNION SELECT blob_digest FROM image_layers")}
    return sorted(p.name for p in blobs.iterdir() if f"sha256:{p.name}" not in used)


FAULTS = '''
import json, os, time
from pinnace.plugin import Plugin, hookimpl

HOOKS = {hooks!r}
LOG = os.environ["FAULT_LOG"]
FAULTED = set()  # one fault per process: the first call of the hook named


def _after(hook, start, key=""):
    faulting = "FAULT_AFTER" in os.environ  # a process (or a child) of a faulted command
    with open(LOG, "a") as f:
        f.write(json.dumps([hook, (time.perf_counter() - start) * 1000, key, faulting]) + "\\n")
    if os.environ.get("FAULT_AFTER") == hook and hook not in FAULTED:
        FAULTED.add(hook)
        raise RuntimeError(f"fault injected after {{hook}}")


def _before(hook):
    if os.environ.get("FAULT_BEFORE") == hook and hook not in FAULTED:
        FAULTED.add(hook)
        raise RuntimeError(f"fault injected before {{hook}}")


def _wrapper(hook):
    if hook == "pinnace_storage_prepare":  # notes the key: a container's is its ID
        def wrap(self, key):
            _before(hook)
            start = time.perf_counter()
            result = yield
            _after(hook, start, key)
            return result
    else:
        def wrap(self):
            _before(hook)
            start = time.perf_counter()
            result = yield
            _after(hook, start)
            return result
    return hookimpl(wrapper=True, specname=hook)(wrap)


class Faults(Plugin):
    """Times every role hook; raises after the first call of the one FAULT_AFTER names,
    or instead of the first call of the one FAULT_BEFORE names (which then does nothing)."""

    for _hook in HOOKS:
        locals()["pinnace_wrap_" + _hook] = _wrapper(_hook)
    del _hook
'''


def role_hooks() -> list[str]:
    """Every role hook of the hook specifications."""
    from pinnace import hookspecs

    return sorted(name for name in dir(hookspecs)
                  if name.startswith(("pinnace_storage_", "pinnace_isolation_",
                                      "pinnace_network_", "pinnace_image_source_")))


def install_faults(pn: Pinnace, tmp_path: Path) -> Path:
    """Install the fault-injecting wrapper plugin for ``pn``; return its log: one JSON
    line ``[hook, milliseconds, key, faulting]`` per role hook call."""
    site = tmp_path / "faults-site"
    install_fake(site, "pinnace-faults", "pinnace_faults", FAULTS.format(hooks=role_hooks()),
                 {"pinnace.plugins": {"faults": "pinnace_faults:Faults"}})
    pn.add_site(site)
    log = tmp_path / "faults.log"
    pn.env["FAULT_LOG"] = str(log)
    return log


def logged(log: Path) -> list[tuple[str, str]]:
    """``(hook, key)`` of each call the fault plugin logged in the processes of a command
    run :func:`with_fault` (and in their children, such as a monitor forked by
    ``run -d``), in order; calls of monitors started before are left out."""
    if not log.exists():
        return []
    return [(entry[0], entry[2]) for entry in map(json.loads, log.read_text().splitlines())
            if entry[3]]


def with_fault(pn: Pinnace, hook: str) -> Pinnace:
    """``pn`` with a fault injected after the first call of ``hook`` in each process
    (with ``hook`` "", none: it only marks the command's hook calls for :func:`logged`)."""
    return Pinnace(pn.root, env={**pn.env, "FAULT_AFTER": hook}, prefix=tuple(pn.prefix))


def runc_containers(root: Path) -> list[str]:
    """Containers the runc plugin's runc (its --root under the run dir) still knows."""
    runc_root = root / "run" / "runc"
    if not runc_root.exists():
        return []
    return subprocess.run(["runc", "--root", str(runc_root), "list", "-q"],
                          capture_output=True, text=True, check=True).stdout.split()


def processes_naming(marker: str) -> list[str]:
    """Command lines of live processes (not this one) that contain ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        if marker in argv:
            found.append(f"{entry.name}: {argv[:120]}")
    return found


def gone_soon(marker: str, timeout: float = 10.0) -> list[str]:
    """Processes naming ``marker`` still there after ``timeout`` seconds (a monitor
    finishes its teardown after ``rm -f`` has seen its container exit)."""
    import time

    deadline = time.monotonic() + timeout
    while (found := processes_naming(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def nothing_left(pn: Pinnace, netns: Path | None, chain_ids: set[str],
                 container_ids: set[str], settle: float = 10.0) -> list[str]:
    """What commands on ``pn``'s root left that they should not have: rows, snapshots
    beyond the image layers ``chain_ids``, layer snapshots the state does not record
    (or records but the plugin lacks), netns files, bundles, veths, port rules, leases
    and bridges of no network, cgroups of ``container_ids``, runc containers, blobs no
    image uses, monitors (given ``settle`` seconds to finish) and mounts."""
    from pinnace.runtime import cgroups

    found = [f"row {r['Id'][:12]}" for r in json.loads(pn("ps", "-a", "--format", "json").stdout)]
    for storage in STORAGES:
        held, recorded = set(snapshots(pn.root, storage)), recorded_layers(pn.root, storage)
        found += [f"{storage} snapshot {k}" for k in sorted(held - chain_ids)]
        found += [f"{storage} layer {k[:19]} not recorded" for k in sorted(held - recorded)
                  if k in chain_ids]
        found += [f"{storage} layer {k[:19]} recorded, missing" for k in sorted(recorded - held)]
    run = pn.root / "run"
    for sub in ("netns", "containers"):
        found += [f"{sub} {p.name}" for p in (run / sub).glob("*")] if (run / sub).exists() else []
    if netns is not None:
        from pinnace.testing.netns import leftovers, run_in

        found += leftovers(netns)
        owned = {n["Options"].get("bridge") for n in
                 json.loads(pn("network", "ls", "--format", "json").stdout)}
        found += [f"bridge {line.split()[1].rstrip(':')} of no network" for line in
                  run_in(netns, "ip", "-o", "link", "show", "type", "bridge").stdout.splitlines()
                  if line.split()[1].rstrip(":") not in owned]
        found += [f"routed link {line.split()[1]}" for line in
                  run_in(netns, "ip", "-o", "link").stdout.splitlines()
                  if line.split()[1].startswith("rt")]
    leases = pn.root / "network" / "routed" / "leases"
    found += [f"routed lease {p.name}" for p in leases.glob("*")] if leases.exists() else []
    found += [f"cgroup of {cid}" for cid in sorted(container_ids)
              if cgroups.container_cgroup(cid).exists()]
    found += [f"runc container {name}" for name in runc_containers(pn.root)]
    found += [f"blob {name}" for name in stray_blobs(pn.root)]
    found += [f"process {p}" for p in gone_soon(str(pn.root), settle)]
    return found + host_leftovers(pn.root)
