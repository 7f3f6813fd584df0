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
    joining a mount namespace is refused by name and leaves nothing."""
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
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "mount":
                ns["path"] = f"/proc/{pid}/ns/mnt"
        (second / "config.json").write_text(json.dumps(config))
        refused = rt("run", "--bundle", str(second), "joiner", check=False)
        assert refused.returncode == 1
        assert "path (joining a mount namespace) is not supported" in refused.stderr
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
    from pinnace.mounts import Mount
    from pinnace.runtime.oci import bundle_spec, config_from_spec
    from pinnace.runtime.spec import ContainerSpec, MountPoint, Process, Rlimit, User

    (tmp_path / "rootfs").mkdir()
    spec = ContainerSpec(
        id="x", process=Process(args=["sh", "-c", "true"], env=["A=1"], cwd="/srv",
                                user=User(1000, 1000, [10]),
                                rlimits=[Rlimit(type="RLIMIT_NOFILE", soft=100, hard=200)]),
        rootfs=[], hostname="h", netns="/run/netns/n", cgroup="group/x",
        readonly_rootfs=True, annotations={"a": "b"}, sysctl={"net.ipv4.ip_forward": "1"},
        mounts=[MountPoint("/data", str(tmp_path), "bind", ["ro"]),
                MountPoint("/tmp", "tmpfs", "tmpfs", ["size=1m"])])
    spec.security.inheritable = ["CAP_KILL"]
    spec.namespace_paths = {"ipc": "/proc/1/ns/ipc"}
    spec.resources.memory = 64 << 20
    spec.resources.pids_limit = 50
    back = bundle_spec("x", str(tmp_path), config_from_spec(spec)).spec
    assert back.process == spec.process
    assert back.rootfs == [Mount("bind", str(tmp_path / "rootfs"), ("rbind",))]
    for name in ("hostname", "netns", "cgroup", "readonly_rootfs", "annotations", "sysctl",
                 "namespaces", "namespace_paths"):
        assert getattr(back, name) == getattr(spec, name), name
    assert [m.destination for m in back.mounts] == ["/data", "/tmp"]
    assert back.resources.memory == 64 << 20 and back.resources.pids_limit == 50
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
