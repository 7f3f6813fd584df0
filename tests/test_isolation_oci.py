"""The built-in ``oci`` isolation: the isolation contract suite run against it (runc),
real containers under ``--isolation=oci`` beside ``unshare`` ones in one root, and the
clear refusals (a runtime that is not there, crun on a hybrid cgroup host)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers
from test_limits import cgroup_file

from pinnace.errors import InvalidConfig, Unavailable
from pinnace.plugin import ContainerSpec, Mount, PluginContext, Process, Security
from pinnace.runtime import cgroups
from pinnace.testing.isolation import IsolationContract
from pinnace_plugins.isolation_oci import OciIsolation

MIB = 1 << 20


def oci_plugin(tmp_path: Path, runtime: str = "runc") -> OciIsolation:
    """An oci plugin running ``runtime``, its state (``--root``) under the test's temp dir."""
    return OciIsolation(PluginContext.for_plugin(
        OciIsolation, "oci", "isolation", {"runtime": runtime}, data_dir=tmp_path / "data",
        run_dir=tmp_path / "run"))


class TestOciContract(IsolationContract):
    """Everything pinnace expects of an isolation plugin, exec and pause included."""

    can_exec = True
    can_pause = True

    def make_plugin(self, tmp_path: Path) -> OciIsolation:
        return oci_plugin(tmp_path)


def runc_containers(pn: Pinnace) -> list[str]:
    """The containers runc still knows under this root's state directory."""
    state = pn.root / "run" / "runc"
    if not state.exists():
        return []
    return subprocess.run(["runc", "--root", str(state), "list", "-q"], capture_output=True,
                          text=True, check=True).stdout.split()


def test_oci_and_unshare_side_by_side(pn: Pinnace, busybox: str) -> None:
    ids = {}
    for iso in ("oci", "unshare"):
        ids[iso] = pn("run", "-d", "--name", iso, f"--isolation={iso}", "--memory", "64m",
                      "--pids-limit", "50", busybox, "sh", "-c",
                      f"echo hello from {iso}; exec sleep 300").stdout.strip()
    try:
        assert runc_containers(pn) == [ids["oci"]]  # only the oci one is runc's
        for iso, cid in ids.items():
            row = json.loads(pn("inspect", iso).stdout)[0]
            assert row["State"]["Status"] == "running"
            out = pn("exec", iso, "sh", "-c", "hostname; echo $$; cat /proc/1/cmdline").stdout
            hostname, _, cmdline = out.splitlines()
            assert hostname == cid[:12] and cmdline.replace("\0", " ").strip() == "sleep 300"
            assert "hello from " + iso in pn("logs", iso).stdout
            limit = "memory.max" if cgroups.version() == "v2" else "memory.limit_in_bytes"
            assert int(cgroup_file(cid, limit).read_text()) == 64 * MIB
            assert int(cgroup_file(cid, "pids.max").read_text()) == 50
        # the two containers see different process trees
        a = pn("exec", "oci", "ps", "-o", "pid,args").stdout
        b = pn("exec", "unshare", "ps", "-o", "pid,args").stdout
        assert "sleep 300" in a and "sleep 300" in b and a.count("sleep") == 1
        pn("pause", "oci")
        assert json.loads(pn("inspect", "oci").stdout)[0]["State"]["Status"] == "paused"
        pn("unpause", "oci")
        pn("stop", "-t", "1", "oci", "unshare")
        for iso in ids:
            assert json.loads(pn("inspect", iso).stdout)[0]["State"]["Status"] == "exited"
    finally:
        pn("rm", "-f", "oci", "unshare", check=False)
    assert runc_containers(pn) == []
    assert host_leftovers(pn.root) == []
    for cid in ids.values():
        assert not glob.glob(f"/sys/fs/cgroup/*/pinnace/{cid}/")


def test_oci_runtime_option_from_environment(pn: Pinnace, busybox: str) -> None:
    pn.env["PINNACE_ISOLATION_OCI_RUNTIME"] = "/usr/sbin/runc"
    out = pn("run", "--rm", "--isolation=oci", busybox, "sh", "-c", "echo $$; exit 4",
             check=False)
    assert (out.returncode, out.stdout.strip()) == (4, "1"), out.stderr
    assert runc_containers(pn) == [] and host_leftovers(pn.root) == []


def test_missing_runtime_is_one_clear_line(pn: Pinnace, busybox: str) -> None:
    pn.env["PINNACE_ISOLATION_OCI_RUNTIME"] = "/nonexistent/ocirt"
    out = pn("run", "--name", "nort", "--isolation=oci", busybox, "true", check=False)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: OCI runtime /nonexistent/ocirt not found: install it (apt-get "
                      "install runc) or name another with [isolation.oci] runtime"], out.stderr
    assert runc_containers(pn) == []
    pn("rm", "nort")
    assert host_leftovers(pn.root) == []


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/unified"),
                    reason="the refusal is for hybrid cgroup hosts")
def test_crun_refused_on_hybrid_cgroups(tmp_path: Path, rootfs: Path) -> None:
    plugin = oci_plugin(tmp_path, runtime="/usr/bin/crun")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = ContainerSpec(id="c" * 64, process=Process(args=["true"]),
                         rootfs=[Mount("bind", str(rootfs), ("rbind", "rw"))])
    with pytest.raises(Unavailable, match=r"^crun refuses this host's hybrid cgroups"):
        plugin.pinnace_isolation_create(spec=spec, bundle=bundle)
    assert list(bundle.iterdir()) == []
    [check] = plugin.pinnace_doctor()
    assert check["ok"] == "no" and "hybrid cgroups" in check["detail"]


def test_seccomp_is_the_resolved_profile_in_oci_form(rootfs: Path) -> None:
    from pinnace.plugin import config_from_spec
    from pinnace.runtime import seccomp

    caps = ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    spec = ContainerSpec(id="c" * 64, process=Process(args=["true"]),
                         rootfs=[Mount("bind", str(rootfs), ("rbind", "rw"))],
                         security=Security(capabilities=caps))
    oci = config_from_spec(spec)["linux"]["seccomp"]
    resolved = seccomp.resolve(seccomp.default_profile(), caps, seccomp.native_arch())
    assert set(oci) <= {"defaultAction", "defaultErrnoRet", "architectures", "flags",
                        "syscalls"}
    assert oci["defaultAction"] == resolved["defaultAction"]
    assert oci["architectures"] == resolved["architectures"] and oci["architectures"]
    assert [r["names"] for r in oci["syscalls"]] == [r["names"] for r in resolved["syscalls"]]
    assert all(set(r) <= {"names", "action", "errnoRet", "args"} for r in oci["syscalls"])
    # CAP_SYS_ADMIN's rules are in (mount is allowed), a capability not held keeps its out
    allowed = {n for r in oci["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert "mount" in allowed and "reboot" not in allowed


def test_a_field_no_config_carries_is_refused_before_anything_is_made(tmp_path: Path,
                                                                       rootfs: Path) -> None:
    plugin = oci_plugin(tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = ContainerSpec(id="c" * 64, process=Process(args=["true"]),
                         rootfs=[Mount("bind", str(rootfs), ("rbind", "rw"))], shm_size=MIB)
    with pytest.raises(InvalidConfig, match=r"^an OCI config cannot carry shm_size$"):
        plugin.pinnace_isolation_create(spec=spec, bundle=bundle)
    assert list(bundle.iterdir()) == []
