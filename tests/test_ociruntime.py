"""pinnace-runtime, the OCI runtime command line, run as its callers run it: a bundle
(busybox rootfs + config.json from ``pinnace-runtime spec``), a private --root,
and the lifecycle and bad input of runc's commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

RUNTIME = str(Path(sys.executable).parent / "pinnace-runtime")


class Runtime:
    """pinnace-runtime with a state root of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = True,
                 **kw: object) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            # files, not pipes: a created container keeps the runtime's stdout and stderr
            proc = subprocess.run([RUNTIME, "--root", str(self.root), *args], stdout=out,
                                  stderr=err, text=True, timeout=60,
                                  **kw)  # type: ignore[call-overload]
            out.seek(0)
            err.seek(0)
            proc.stdout, proc.stderr = out.read().decode(), err.read().decode()
        if check and proc.returncode != 0:
            raise AssertionError(f"pinnace-runtime {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return Runtime(tmp_path / "state")


@pytest.fixture
def bundle(rootfs: Path, tmp_path: Path) -> Path:
    """A bundle: the busybox rootfs and the default config running ``sleep 60``."""
    path = rootfs.parent
    subprocess.run([RUNTIME, "spec", "--bundle", str(path)], check=True)
    edit(path, lambda c: c["process"].update(args=["sleep", "60"], terminal=False))
    return path


def edit(bundle: Path, change) -> None:  # type: ignore[no-untyped-def]
    config = json.loads((bundle / "config.json").read_text())
    change(config)
    (bundle / "config.json").write_text(json.dumps(config))


def cgroup_exists(cgroup: str) -> bool:
    from pinnace.runtime.cgroups import Cgroup

    return Cgroup(cgroup).exists()


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_lifecycle_create_start_state_kill_delete(rt: Runtime, bundle: Path) -> None:
    cid = new_id()
    pid_file = bundle / "pid"
    rt("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
    state = rt.state(cid)
    assert state["status"] == "created" and state["bundle"] == str(bundle)
    assert state["pid"] == int(pid_file.read_text()) and os.path.exists(f"/proc/{state['pid']}")
    rt("start", cid)
    assert rt.state(cid)["status"] == "running"
    assert os.readlink(f"/proc/{state['pid']}/exe").endswith("busybox")
    assert json.loads(rt("ps", "--format", "json", cid).stdout) == [state["pid"]]
    listed = json.loads(rt("list", "--format", "json").stdout)
    assert [s["id"] for s in listed] == [cid]
    rt("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    rt("resume", cid)
    out = rt("exec", cid, "sh", "-c", "echo $(hostname) in; cat /proc/1/cmdline").stdout
    assert out.startswith("pinnace in") and "sleep" in out
    rt("kill", cid, "KILL")
    deadline = time.monotonic() + 5
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rt.state(cid)["status"] == "stopped"
    rt("delete", cid)
    assert not (rt.root / cid).exists()
    assert rt("state", cid, check=False).returncode == 1


def test_run_reports_exit_status_and_config(rt: Runtime, bundle: Path) -> None:
    edit(bundle, lambda c: (c["process"].update(
        args=["sh", "-c", "ulimit -n; cat /proc/sys/net/ipv4/ip_forward; exit 7"],
        rlimits=[{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]),
        c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}),
        c.update(hostname="oci-box")))
    proc = rt("run", "--bundle", str(bundle), new_id(), check=False)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout.split() == ["256", "1"]
    assert list(rt.root.iterdir()) == []


def test_hooks_run_with_state_on_stdin(rt: Runtime, bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nread state\necho \"$1 $state\" >> {log}\n")
    hook.chmod(0o755)
    kinds = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
             "poststop")
    edit(bundle, lambda c: c.update(hooks={k: [{"path": str(hook), "args": ["hook", k]}]
                                           for k in kinds}))
    cid = new_id()
    rt("create", "--bundle", str(bundle), cid)
    rt("start", cid)
    rt("delete", "--force", cid)
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == list(kinds)
    assert json.loads(lines[0].split(" ", 1)[1])["id"] == cid


def test_kill_all_and_update(rt: Runtime, bundle: Path) -> None:
    cid = new_id()
    rt("run", "--detach", "--bundle", str(bundle), cid)
    rt("update", "--resources", "-", cid, input=json.dumps({"pids": {"limit": 33}}))
    cgroup = f"pinnace-runtime/{cid}"
    from pinnace.runtime.cgroups import Cgroup

    limits = [Path(d, "pids.max") for d in Cgroup(cgroup).dirs if Path(d, "pids.max").exists()]
    assert limits and all(p.read_text().strip() == "33" for p in limits)
    rt("kill", "--all", cid, "9")
    deadline = time.monotonic() + 5
    while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    rt("delete", cid)
    assert not cgroup_exists(cgroup)


def test_console_socket_gets_the_pty(rt: Runtime, bundle: Path, tmp_path: Path) -> None:
    from pinnace.runtime.console import ConsoleSocket

    edit(bundle, lambda c: c["process"].update(terminal=True,
                                               args=["sh", "-c", "tty; sleep 60"]))
    sock = ConsoleSocket(str(tmp_path / "console.sock"))
    cid = new_id()
    try:
        rt("create", "--bundle", str(bundle), "--console-socket", str(tmp_path / "console.sock"),
           cid)
        master = sock.receive()
        rt("start", cid)
        data = b""
        deadline = time.monotonic() + 5
        while b"/dev/pts/0" not in data and time.monotonic() < deadline:
            data += os.read(master, 1024)
        assert b"/dev/pts/0" in data
        os.close(master)
    finally:
        sock.close()
        rt("delete", "--force", cid)


# ---------------------------------------------------------------- bad input


def test_unsupported_field_refused_by_name(rt: Runtime, bundle: Path) -> None:
    edit(bundle, lambda c: c["linux"].update(intelRdt={"closID": "x"}))
    proc = rt("create", "--bundle", str(bundle), new_id(), check=False)
    assert proc.returncode == 1
    assert "linux.intelRdt" in proc.stderr and "not supported" in proc.stderr
    edit(bundle, lambda c: (c["linux"].pop("intelRdt"),
                            c.update(vm={"kernel": {"path": "/boot/vmlinuz"}})))
    assert "config.json: vm" in rt("create", "--bundle", str(bundle), new_id(),
                                   check=False).stderr
    assert not rt.root.exists() or list(rt.root.iterdir()) == []
    edit(bundle, lambda c: (c.pop("vm"), c.update(madeUp="x"),
                            c["process"]["user"].update(nickname="y")))
    cid = new_id()
    proc = rt("create", "--bundle", str(bundle), cid)  # not the spec's: ignored, with a warning
    assert "warning: config.json: madeUp is not a property of the OCI runtime spec" in proc.stderr
    assert "process.user.nickname is not a property" in proc.stderr
    rt("delete", "--force", cid)


def test_missing_rootfs_and_relative_bundle(rt: Runtime, bundle: Path) -> None:
    edit(bundle, lambda c: c["root"].update(path="nowhere"))
    proc = rt("create", "--bundle", str(bundle), new_id(), check=False)
    assert proc.returncode == 1 and "rootfs" in proc.stderr and "does not exist" in proc.stderr
    proc = rt("create", "--bundle", "relative/bundle", new_id(), check=False)
    assert proc.returncode == 1 and "absolute" in proc.stderr
    assert not rt.root.exists() or list(rt.root.iterdir()) == []


def test_duplicate_id_start_running_delete_running(rt: Runtime, bundle: Path) -> None:
    cid = new_id()
    rt("create", "--bundle", str(bundle), cid)
    try:
        proc = rt("create", "--bundle", str(bundle), cid, check=False)
        assert proc.returncode == 1 and f"container with id {cid} exists" in proc.stderr
        rt("start", cid)
        proc = rt("start", cid, check=False)
        assert proc.returncode == 1 and "running" in proc.stderr
        proc = rt("delete", cid, check=False)
        assert proc.returncode == 1 and "not stopped" in proc.stderr
        assert rt.state(cid)["status"] == "running"
    finally:
        rt("delete", "--force", cid)
    assert not cgroup_exists(f"pinnace-runtime/{cid}")


def test_failing_hook_leaves_nothing(rt: Runtime, bundle: Path) -> None:
    edit(bundle, lambda c: c.update(hooks={"createRuntime": [{"path": "/bin/false"}]}))
    cid = new_id()
    log = bundle / "runtime.log"
    proc = rt("--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle), cid,
              check=False)
    assert proc.returncode == 1 and "createRuntime hook /bin/false failed" in proc.stderr
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "createRuntime hook" in entry["msg"]
    assert list(rt.root.iterdir()) == []
    assert not cgroup_exists(f"pinnace-runtime/{cid}")


def test_missing_command_fails_at_create(rt: Runtime, bundle: Path) -> None:
    edit(bundle, lambda c: c["process"].update(args=["no-such-program"]))
    cid = new_id()
    proc = rt("create", "--bundle", str(bundle), cid, check=False)
    assert proc.returncode == 1 and "executable file not found" in proc.stderr
    assert list(rt.root.iterdir()) == [] and not cgroup_exists(f"pinnace-runtime/{cid}")


def test_runtime_killed_between_create_and_start(rt: Runtime, bundle: Path) -> None:
    """SIGKILL of pinnace-runtime once create has built the container: the held process
    outlives it, and delete --force removes it with its cgroup and state."""
    cid = new_id()
    proc = subprocess.Popen([RUNTIME, "--root", str(rt.root), "create", "--bundle",
                             str(bundle), "--pid-file", str(bundle / "pid"), cid])
    deadline = time.monotonic() + 30
    while not (bundle / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pid = int((bundle / "pid").read_text())
    assert os.path.exists(f"/proc/{pid}")
    assert rt.state(cid)["status"] == "created"
    rt("delete", "--force", cid)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)  # reparented to init, which reaps it
    assert not os.path.exists(f"/proc/{pid}")
    assert not (rt.root / cid).exists() and not cgroup_exists(f"pinnace-runtime/{cid}")


def test_joins_pid_ipc_uts_namespaces_by_path(rt: Runtime, bundle: Path,
                                              tmp_path: Path) -> None:
    """linux.namespaces[].path joins another container's pid, ipc and uts namespaces;
    joining a cgroup namespace is refused by name and leaves nothing."""
    first = new_id()
    edit(bundle, lambda c: c.update(hostname="box-a"))
    rt("run", "--detach", "--bundle", str(bundle), first)
    pid = rt.state(first)["pid"]
    second = tmp_path / "second"
    second.mkdir()
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = str(bundle / "rootfs")
    config["hostname"] = ""
    config["process"]["args"] = ["sh", "-c", "tr \"\\\\0\" \" \" < /proc/1/cmdline; echo; hostname"]
    for ns in config["linux"]["namespaces"]:
        if ns["type"] in ("pid", "ipc", "uts"):
            ns["path"] = f"/proc/{pid}/ns/{ns['type']}"
    (second / "config.json").write_text(json.dumps(config))
    try:
        proc = rt("run", "--bundle", str(second), new_id(), check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["sleep", "60", "box-a"]
        config["linux"]["namespaces"].append({"type": "cgroup",
                                              "path": f"/proc/{pid}/ns/cgroup"})
        (second / "config.json").write_text(json.dumps(config))
        refused = rt("run", "--bundle", str(second), "joiner", check=False)
        assert refused.returncode == 1
        assert "path (joining a cgroup namespace) is not supported" in refused.stderr
        assert not (rt.root / "joiner").exists() and not cgroup_exists("pinnace-runtime/joiner")
    finally:
        rt("delete", "--force", first)


def test_systemd_cgroup_refused_and_version(rt: Runtime, bundle: Path) -> None:
    proc = rt("--systemd-cgroup", "create", "--bundle", str(bundle), new_id(), check=False)
    assert proc.returncode == 1 and "--systemd-cgroup is not supported" in proc.stderr
    assert "spec: 1.0.2" in rt("--version").stdout
    features = json.loads(rt("features").stdout)
    assert "createRuntime" in features["hooks"] and features["linux"]["cgroup"]["systemd"] is False


def test_command_line_as_callers_write_it() -> None:
    """runc's grammar: ``--flag value`` and ``--flag=value``, short aliases, repeated
    flags, flags after the ID, exec's command taken as it stands after the ID."""
    from pinnace.ociruntime.grammar import parse

    args = parse(["--root=/r", "--log-format", "json", "create", "-b", "/b", "--pid-file=p",
                  "--no-new-keyring", "c1"])
    assert (args.root, args.log_format, args.command, args.bundle, args.pid_file, args.id) \
        == ("/r", "json", "create", "/b", "p", "c1") and args.no_new_keyring
    args = parse(["kill", "c1", "--all", "KILL"])
    assert (args.id, args.signal, args.all) == ("c1", "KILL", True)
    args = parse(["exec", "-e", "A=1", "--env=B=2", "-t", "c1", "sh", "-c", "echo -n x"])
    assert (args.env, args.tty, args.args) == (["A=1", "B=2"], True, ["sh", "-c", "echo -n x"])
    assert parse(["--isolation", "oci", "state", "c1"]).isolation == "oci"


@pytest.mark.parametrize(("argv", "error"), [
    (["create", "--bundle"], "flag --bundle needs a value"),
    (["state"], "state needs a container ID"),
    (["state", "a", "b"], "state: unexpected argument 'b'"),
    (["start", "--bundle", "/b", "a"], "unknown flag --bundle for start"),
    (["frobnicate", "a"], "unknown command 'frobnicate'"),
    (["exec", "--preserve-fds", "two", "a"], "--preserve-fds takes a number, not 'two'"),
    (["--log-format", "xml", "list"], "--log-format is one of text, json, not 'xml'"),
    (["update", "a"], "update needs --resources"),
])
def test_bad_command_line_is_one_line(rt: Runtime, argv: list[str], error: str) -> None:
    proc = rt(*argv, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"pinnace-runtime: {error} (see pinnace-runtime --help)\n"


def test_help_lists_commands_and_flags(rt: Runtime) -> None:
    assert "  features  print what this runtime supports" in rt("--help").stdout
    usage = rt("create", "--help").stdout
    assert usage.startswith("usage: pinnace-runtime create [--bundle|-b VALUE (.)]")
    assert usage.splitlines()[0].endswith(" ID")


def test_spec_maps_to_config_and_back(tmp_path: Path) -> None:
    """config_from_spec and bundle_spec are each other's reverse on what both carry."""
    from pinnace.errors import InvalidConfig
    from pinnace.mounts import Mount
    from pinnace.runtime.oci import bundle_spec, config_from_spec
    from pinnace.runtime.spec import ContainerSpec, Device, MountPoint, Process, Rlimit, User
    from pinnace.runtime.userns import IdMap

    (tmp_path / "rootfs").mkdir()
    spec = ContainerSpec(
        id="x", process=Process(args=["sh", "-c", "true"], env=["A=1"], cwd="/srv",
                                user=User(1000, 1000, [10]),
                                rlimits=[Rlimit(type="RLIMIT_NOFILE", soft=100, hard=200)],
                                umask=0o27),
        rootfs=[], hostname="h", netns="/run/netns/n", cgroup="group/x",
        readonly_rootfs=True, annotations={"a": "b"}, sysctl={"net.ipv4.ip_forward": "1"},
        mounts=[MountPoint("/data", str(tmp_path), "bind", ["ro"]),
                MountPoint("/tmp", "tmpfs", "tmpfs", ["size=1m"])])
    spec.security.inheritable = ["CAP_KILL"]
    spec.namespace_paths = {"ipc": "/proc/1/ns/ipc"}
    spec.resources.memory = 64 << 20
    spec.resources.pids_limit = 50
    spec.resources.blkio_devices = [("blkio.throttle.read_bps_device", "8:0 1000")]
    spec.resources.hugepage_limits = {"2MB": 4 << 20}
    spec.resources.net_priorities = {"lo": 3}
    spec.uid_map = spec.gid_map = [IdMap(0, 100000, 65536)]
    with pytest.raises(InvalidConfig, match="an idmapped rootfs"):  # ids on disk, in OCI
        config_from_spec(spec)
    spec.idmapped_rootfs = False
    spec.devices = [Device("/dev/fuse", "c", 10, 229, 0o600, 0, 0), Device("/dev/f", "p", 0, 0)]
    back = bundle_spec("x", str(tmp_path), config_from_spec(spec)).spec
    assert back.process == spec.process
    assert back.rootfs == [Mount("bind", str(tmp_path / "rootfs"), ("rbind",))]
    for name in ("hostname", "netns", "cgroup", "readonly_rootfs", "annotations", "sysctl",
                 "namespaces", "namespace_paths", "uid_map", "gid_map", "devices"):
        assert getattr(back, name) == getattr(spec, name), name
    assert [m.destination for m in back.mounts] == ["/data", "/tmp"]
    assert back.resources.memory == 64 << 20 and back.resources.pids_limit == 50
    for name in ("blkio_devices", "hugepage_limits", "net_priorities"):
        assert getattr(back.resources, name) == getattr(spec.resources, name), name
    assert back.security.capabilities == spec.security.capabilities
    assert back.security.inheritable == ["CAP_KILL"]
    assert back.security.masked_paths == spec.security.masked_paths
    assert isinstance(back.security.seccomp, dict)  # the default profile, in OCI form
    assert back.security.seccomp["defaultAction"] == "SCMP_ACT_ERRNO"


def test_oci_seccomp_form_is_enforced(rt: Runtime, bundle: Path) -> None:
    """An OCI seccomp section (errno for mkdir) is compiled and installed."""
    edit(bundle, lambda c: (c["process"].update(args=["sh", "-c", "mkdir /x || echo refused"]),
                            c["linux"].update(seccomp={
                                "defaultAction": "SCMP_ACT_ALLOW",
                                "architectures": ["SCMP_ARCH_X86_64"],
                                "syscalls": [{"names": ["mkdir", "mkdirat"],
                                              "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})))
    proc = rt("run", "--bundle", str(bundle), new_id())
    assert "refused" in proc.stdout and "Operation not permitted" in proc.stderr + proc.stdout


def test_devices_umask_and_mount_propagation(rt: Runtime, bundle: Path) -> None:
    """linux.devices makes character nodes and fifos with their mode and owner;
    process.user.umask is the process's; a tmpfs mount's propagation option is set on it."""
    script = ("stat -c '%F %t:%T %a %u:%g' /dev/test-c /dev/test-p; umask; "
              "grep ' /mnt/shared ' /proc/self/mountinfo; "
              "grep ' /mnt/slave ' /proc/self/mountinfo")
    edit(bundle, lambda c: (
        c["process"].update(args=["sh", "-c", script]),
        c["process"]["user"].update(umask=0o27),
        c["linux"].update(devices=[
            {"path": "/dev/test-c", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
             "uid": 5, "gid": 6},
            {"path": "/dev/test-p", "type": "p", "fileMode": 0o600}]),
        c["mounts"].extend([
            {"destination": "/mnt/shared", "type": "tmpfs", "source": "tmpfs",
             "options": ["size=1k", "shared"]},
            {"destination": "/mnt/slave", "type": "tmpfs", "source": "tmpfs",
             "options": ["size=1k", "slave"]}])))
    proc = rt("run", "--bundle", str(bundle), new_id())
    lines = proc.stdout.splitlines()
    assert lines[0] == "character special file 1:3 640 5:6"
    assert lines[1] == "fifo 0:0 600 0:0"
    assert lines[2] == "0027"
    assert " shared:" in lines[3] and "tmpfs" in lines[3]
    assert " shared:" not in lines[4] and "tmpfs" in lines[4]


def test_unknown_capability_and_bad_device_refused(rt: Runtime, bundle: Path) -> None:
    edit(bundle, lambda c: c["process"]["capabilities"]["bounding"].append("CAP_TEST"))
    proc = rt("create", "--bundle", str(bundle), new_id(), check=False)
    assert proc.returncode == 1
    assert "process.capabilities.bounding: unknown capability 'CAP_TEST'" in proc.stderr
    edit(bundle, lambda c: (c["process"]["capabilities"]["bounding"].remove("CAP_TEST"),
                            c["process"]["capabilities"]["bounding"].append("CAP_SYS_NICE")))
    proc = subprocess.run(["setpriv", "--bounding-set=-sys_nice", RUNTIME, "--root",
                           str(rt.root), "create", "--bundle", str(bundle), new_id()],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1  # a capability the runtime lacks cannot be granted
    assert "CAP_SYS_NICE is not held by the runtime" in proc.stderr
    edit(bundle, lambda c: (c["process"]["capabilities"]["bounding"].remove("CAP_SYS_NICE"),
                            c["linux"].update(devices=[{"path": "/dev/x", "type": "c"}])))
    proc = rt("create", "--bundle", str(bundle), new_id(), check=False)
    assert proc.returncode == 1 and "linux.devices[0].major and minor are needed" in proc.stderr
    edit(bundle, lambda c: (c["linux"].pop("devices"), c["linux"]["resources"].update(
        hugepageLimits=[{"pageSize": "huge", "limit": 1}])))
    proc = rt("create", "--bundle", str(bundle), new_id(), check=False)
    assert proc.returncode == 1 and "hugepageLimits[0] needs a pageSize" in proc.stderr
    assert not rt.root.exists() or list(rt.root.iterdir()) == []


def test_user_namespace_from_id_mappings(rt: Runtime, bundle: Path) -> None:
    """A user namespace with linux.uidMappings/gidMappings: the process is container root
    as host id 100000, and the rootfs keeps its ids on disk (root's files are seen as the
    overflow id, as runc shows them)."""
    script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox"
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    edit(bundle, lambda c: (c["process"].update(args=["sh", "-c", script]),
                            c["linux"]["namespaces"].append({"type": "user"}),
                            c["linux"].update(uidMappings=maps, gidMappings=maps)))
    cid = new_id()
    rt("create", "--bundle", str(bundle), cid)
    pid = rt.state(cid)["pid"]
    assert os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino
    rt("delete", "--force", cid)
    proc = rt("run", "--bundle", str(bundle), new_id())
    assert proc.stdout.split() == ["0", "100000", "65536"] * 2 + ["0", "65534"]
    edit(bundle, lambda c: c["linux"]["namespaces"].remove({"type": "user"}))
    refused = rt("create", "--bundle", str(bundle), new_id(), check=False)
    assert refused.returncode == 1
    assert "linux.uidMappings without a user namespace" in refused.stderr
    assert list(rt.root.iterdir()) == []


def cgroup_file(cgroup: str, name: str) -> str:
    """The content of cgroup file ``name`` in whichever hierarchy has it."""
    from pinnace.runtime.cgroups import Cgroup

    found = [Path(d, name) for d in Cgroup(cgroup).dirs if Path(d, name).exists()]
    assert found, name
    return found[0].read_text().strip()


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/memory/memory.oom_control"),
                    reason="needs the cgroup v1 memory controller")
def test_v1_memory_and_cpu_resources(rt: Runtime, bundle: Path) -> None:
    """OCI memory (limit, reservation, swap, kernelTCP, swappiness, disableOOMKiller) and
    cpu (shares, quota, period, cpus, mems, realtime) limits land in the cgroup at an
    absolute cgroupsPath, which delete removes."""
    cid = new_id()
    mib = 1 << 20
    edit(bundle, lambda c: c["linux"].update(cgroupsPath=f"/oci-abs/{cid}", resources={
        "memory": {"limit": 64 * mib, "reservation": 32 * mib, "swap": 96 * mib,
                   "kernelTCP": 8 * mib, "swappiness": 0, "disableOOMKiller": True},
        "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "0", "mems": "0",
                "realtimePeriod": 1000000, "realtimeRuntime": 0}}))
    rt("create", "--bundle", str(bundle), cid)
    cgroup = f"oci-abs/{cid}"
    try:
        expect = {"memory.limit_in_bytes": 64 * mib, "memory.soft_limit_in_bytes": 32 * mib,
                  "memory.kmem.tcp.limit_in_bytes": 8 * mib, "memory.swappiness": 0,
                  "cpu.shares": 512, "cpu.cfs_quota_us": 20000, "cpu.cfs_period_us": 50000,
                  "cpuset.cpus": 0, "cpuset.mems": 0, "cpu.rt_period_us": 1000000}
        for name, value in expect.items():
            assert cgroup_file(cgroup, name) == str(value), name
        assert "oom_kill_disable 1" in cgroup_file(cgroup, "memory.oom_control")
        assert rt.state(cid)["pid"] in [int(p) for p in
                                        cgroup_file(cgroup, "cgroup.procs").split()]
    finally:
        rt("delete", "--force", cid)
    assert not cgroup_exists(cgroup) and not cgroup_exists("oci-abs")


@pytest.mark.parametrize(("propagation", "shown"), [("shared", " shared:"),
                                                    ("unbindable", " unbindable"),
                                                    ("private", "")])
def test_rootfs_propagation(rt: Runtime, bundle: Path, propagation: str, shown: str) -> None:
    """linux.rootfsPropagation is the propagation of the container's root mount."""
    root_line = ["awk", "$5 == \"/\"", "/proc/self/mountinfo"]
    edit(bundle, lambda c: (c["process"].update(args=root_line),
                            c["linux"].update(rootfsPropagation=propagation)))
    line = rt("run", "--bundle", str(bundle), new_id()).stdout.strip()
    optional = line.split(" - ")[0].split()[6:]  # the optional fields: shared:N, master:N ...
    assert (" " + " ".join(optional)).startswith(shown) if shown else optional == [], line
    edit(bundle, lambda c: c["linux"].update(rootfsPropagation="everywhere"))
    refused = rt("create", "--bundle", str(bundle), new_id(), check=False)
    assert "linux.rootfsPropagation 'everywhere' is not one of" in refused.stderr


def test_v1_block_io_hugetlb_and_network_limits(rt: Runtime, bundle: Path,
                                                tmp_path: Path) -> None:
    """blockIO throttles, hugepageLimits and network classID/priorities are written to
    their v1 controllers: the runtime runs in a mount namespace of its own where a
    net_cls,net_prio,hugetlb hierarchy is mounted (the host mounts none)."""
    if not Path("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device").exists() or \
            not Path("/sys/kernel/mm/hugepages/hugepages-2048kB").exists():
        pytest.skip("needs the v1 blkio hierarchy and 2MB huge pages")
    cid = new_id()
    major, minor = os.major(os.stat("/").st_dev), os.minor(os.stat("/").st_dev)
    disk = f"/sys/dev/block/{major}:{minor}/partition"
    if os.path.exists(disk):  # throttles take the whole disk, not a partition
        parent = Path(f"/sys/dev/block/{major}:{minor}").resolve().parent / "dev"
        major, minor = (int(n) for n in parent.read_text().split(":"))
    edit(bundle, lambda c: c["linux"].update(cgroupsPath=f"/oci-v1/{cid}", resources={
        "blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor,
                                               "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "network": {"classID": 255, "priorities": [{"name": "lo", "priority": 7}]}}))
    hierarchy = tmp_path / "netcls"
    hierarchy.mkdir()
    script = f"""
        set -e
        mount -t cgroup -o net_cls,net_prio,hugetlb cgroup {hierarchy}
        {RUNTIME} --root {rt.root} create --bundle {bundle} {cid}
        cat {hierarchy}/oci-v1/{cid}/net_cls.classid
        grep '^lo ' {hierarchy}/oci-v1/{cid}/net_prio.ifpriomap
        cat {hierarchy}/oci-v1/{cid}/hugetlb.2MB.limit_in_bytes
        cat /sys/fs/cgroup/blkio/oci-v1/{cid}/blkio.throttle.read_bps_device
        {RUNTIME} --root {rt.root} delete --force {cid}
        test ! -e {hierarchy}/oci-v1
        umount {hierarchy}
    """
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == ["255", "lo 7", str(4 << 20),
                                           f"{major}:{minor} 1048576"]
    assert not cgroup_exists(f"oci-v1/{cid}")


def test_poststart_hook_sees_the_started_process(rt: Runtime, bundle: Path,
                                                 tmp_path: Path) -> None:
    """poststart gets the state start made (running, the process's PID) even when the
    process has exited before the hook runs."""
    out = tmp_path / "poststart.json"
    edit(bundle, lambda c: (c["process"].update(args=["true"]), c.update(hooks={
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}"]}]})))
    cid = new_id()
    rt("create", "--bundle", str(bundle), cid)
    pid = rt.state(cid)["pid"]
    rt("start", cid)
    state = json.loads(out.read_text())
    assert (state["status"], state["pid"], state["id"]) == ("running", pid, cid)
    rt("delete", "--force", cid)


def test_joins_a_mount_namespace_by_path(rt: Runtime, bundle: Path) -> None:
    """A mount namespace named by path is joined: the container is built inside it."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--fork",
                               "--kill-child", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        own = os.stat("/proc/self/ns/mnt").st_ino
        sleeper = 0
        while time.monotonic() < deadline and not sleeper:
            children = Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text().split()
            if children and os.stat(f"/proc/{children[0]}/ns/mnt").st_ino != own:
                sleeper = int(children[0])
            time.sleep(0.01)
        edit(bundle, lambda c: [ns.update(path=f"/proc/{sleeper}/ns/mnt")
                                for ns in c["linux"]["namespaces"] if ns["type"] == "mount"])
        cid = new_id()
        rt("create", "--bundle", str(bundle), cid)
        pid = rt.state(cid)["pid"]
        assert os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat(f"/proc/{sleeper}/ns/mnt").st_ino
        rt("delete", "--force", cid)
    finally:
        holder.kill()
        holder.wait()


def test_no_namespaces_shares_the_runtimes(rt: Runtime, bundle: Path) -> None:
    """Without linux.namespaces the container shares every namespace of the runtime: its
    rootfs is mounted in the runtime's mount namespace, entered with chroot (exec too),
    and unmounted by delete."""
    edit(bundle, lambda c: (c["linux"].update(namespaces=[]), c.pop("hostname")))
    cid = new_id()
    rt("create", "--bundle", str(bundle), cid)
    try:
        pid = rt.state(cid)["pid"]
        for ns in ("mnt", "pid", "net", "uts", "ipc", "cgroup"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}")
        rt("start", cid)
        assert rt("exec", cid, "cat", "/greeting").stdout == "hello from a host directory\n"
        from pinnace.linux import mounts_under

        assert mounts_under(str(rt.root / cid))  # the rootfs, /proc, /dev ... in this one
    finally:
        rt("delete", "--force", cid)
    assert not mounts_under(str(rt.root))
    assert not (rt.root / cid).exists() and (bundle / "rootfs" / "greeting").exists()


def test_delete_spares_another_container_in_the_same_cgroup(rt: Runtime, bundle: Path) -> None:
    """Two containers with one cgroupsPath: deleting the first kills its processes only
    and leaves the cgroup to the second, whose delete removes it."""
    first, second = new_id(), new_id()
    edit(bundle, lambda c: c["linux"].update(cgroupsPath=f"/oci-shared-{first}"))
    for cid in (first, second):
        rt("run", "--detach", "--bundle", str(bundle), cid)
    survivor = rt.state(second)["pid"]
    rt("delete", "--force", first)
    assert rt.state(second)["status"] == "running" and os.path.exists(f"/proc/{survivor}")
    assert cgroup_exists(f"oci-shared-{first}")
    rt("delete", "--force", second)
    assert not cgroup_exists(f"oci-shared-{first}")


def test_device_rules_in_their_order_before_the_defaults(rt: Runtime, bundle: Path) -> None:
    """linux.resources.devices allow rules reach devices.list in the config's order,
    ahead of the always-allowed defaults."""
    if not Path("/sys/fs/cgroup/devices/devices.list").exists():
        pytest.skip("needs the cgroup v1 devices controller")
    cid = new_id()
    edit(bundle, lambda c: c["linux"]["resources"].update(devices=[
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "rw"}]))
    rt("create", "--bundle", str(bundle), cid)
    try:
        listed = cgroup_file(f"pinnace-runtime/{cid}", "devices.list").splitlines()
        assert listed[:3] == ["c 10:229 rwm", "b 8:20 rw", "c *:* m"]
        assert "c 1:3 rwm" in listed
    finally:
        rt("delete", "--force", cid)
