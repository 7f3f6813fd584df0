"""The isolation contract: tests every isolation plugin must pass (``pinnace.testing.isolation``),
the way the OCI runtime spec is held to its validation suite.

Subclass :class:`IsolationContract` in a test module, build your plugin in
``make_plugin``, say whether it implements the optional hooks, and run pytest
as root::

    from pinnace.plugin import PluginContext
    from pinnace.testing.isolation import IsolationContract
    from my_plugin import MyIsolation

    class TestMyIsolation(IsolationContract):
        can_exec = True      # implements pinnace_isolation_exec
        can_pause = True     # implements pinnace_isolation_pause and _resume

        def make_plugin(self, tmp_path):
            return MyIsolation(PluginContext.for_plugin(
                MyIsolation, "mine", "isolation", data_dir=tmp_path / "data",
                run_dir=tmp_path / "run"))

The suite calls the hook methods on the instance directly, by keyword, as
pinnace does, from a test process that is a child subreaper (as pinnace's
monitor is). ``make_plugin`` is called again for the calls pinnace makes from
other processes (``state``, ``kill``, ``exec``, ``pause``, ``delete`` run from
``pinnace ps``, ``kill``, ``exec``, ``rm``): such an instance knows a container
only through its bundle directory. Every container's root filesystem is a
busybox tree (:mod:`pinnace.testing.busybox`) described as one bind mount, as
the ``dir`` storage plugin describes its snapshots; its cgroup is the one
pinnace gives it. After each test every container is deleted and nothing may
be left: no live process, no cgroup, no mount under the test's directory.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from pinnace.plugin import (
    CommandNotExecutable,
    CommandNotFound,
    ContainerSpec,
    ContainerState,
    Device,
    InvalidConfig,
    Mount,
    MountPoint,
    PinnaceError,
    Process,
    Resources,
    Rlimit,
    Security,
    Status,
    User,
    capabilities,
    cgroups,
)
from pinnace.testing import assert_implements_role

NAMESPACES = ("mnt", "pid", "net", "uts", "ipc", "cgroup")
QUIET = 0.5
SUN_PATH_MAX = 108
"""Bytes of a unix socket address (``sun_path``), its terminating NUL included."""
"""Seconds a held container is watched for output that must not come."""


def status_fields(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict (empty when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return {}


def ancestors(pid: int) -> list[int]:
    """The parent, grandparent ... of ``pid`` up to PID 1."""
    found = []
    while pid > 1 and (parent := int(status_fields(pid).get("PPid", "0"))):
        found.append(parent)
        pid = parent
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return status_fields(pid).get("State", "Z")[0] not in "ZX"


def namespace(pid: int, name: str) -> str:
    """``mnt:[4026531840]``: the identity of a namespace of ``pid``."""
    return os.readlink(f"/proc/{pid}/ns/{name}")


def cgroup_dir(pid: int, controller: str) -> str:
    """The directory of ``pid``'s cgroup holding ``controller``'s files (v1 or v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if controller in controllers.split(","):
            return f"{cgroups.CGROUP_ROOT}/{controller}{path}"
    unified = next(path for _, controllers, path in lines if controllers == "")
    base = cgroups.CGROUP_ROOT if cgroups.version() == "v2" else f"{cgroups.CGROUP_ROOT}/unified"
    return f"{base}{unified}"


def read_cgroup(pid: int, controller: str, name: str) -> str:
    """The content of file ``name`` in ``pid``'s cgroup of ``controller``."""
    with open(os.path.join(cgroup_dir(pid, controller), name)) as f:
        return f.read().strip()


def frozen(pid: int) -> bool:
    """True when ``pid``'s cgroup is frozen (v1 freezer.state, else v2 cgroup.events)."""
    if cgroups.version() == "v1":
        return read_cgroup(pid, "freezer", "freezer.state") == "FROZEN"
    return "frozen 1" in read_cgroup(pid, "", "cgroup.events").splitlines()


def set_subreaper(on: bool) -> None:
    """Make this process a child subreaper, or stop it being one (prctl)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, int(on), 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap(pid: int) -> None:
    """Collect ``pid`` when it is a zombie child of this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def exit_status(pid: int) -> int:
    """waitpid on a child of this process: its exit code, 128 + N when killed by signal N."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
        else 128 + os.WTERMSIG(status)


class Stdio:
    """Three pipes: the container's ends go to ``create`` or ``exec``; the test keeps the others."""

    def __init__(self) -> None:
        self.stdin, self._in_w = os.pipe()
        self._out_r, self._out_w = os.pipe()
        self._err_r, self._err_w = os.pipe()

    @property
    def fds(self) -> tuple[int, int, int]:
        """The container's stdin, stdout and stderr."""
        return self.stdin, self._out_w, self._err_w

    def handed_over(self) -> None:
        """Close the container's ends here: end of file then means the container closed them."""
        for fd in self.fds:
            os.close(fd)

    def send(self, data: bytes) -> None:
        """Write ``data`` to the container's stdin, then close it."""
        os.write(self._in_w, data)
        self.close_stdin()

    def close_stdin(self) -> None:
        """End the container's stdin."""
        if self._in_w >= 0:
            os.close(self._in_w)
            self._in_w = -1

    def quiet(self, seconds: float = QUIET) -> bool:
        """True when nothing is written to stdout or stderr within ``seconds``."""
        ready, _, _ = select.select([self._out_r, self._err_r], [], [], seconds)
        return not ready

    def line(self) -> str:
        """The next line of stdout (read a byte at a time, so nothing is lost)."""
        data = b""
        while not data.endswith(b"\n") and (byte := os.read(self._out_r, 1)):
            data += byte
        return data.decode()

    def output(self) -> tuple[str, str]:
        """Everything left on stdout and stderr, once the container has closed them."""
        self.close_stdin()
        out, err = b"", b""
        while chunk := os.read(self._out_r, 65536):
            out += chunk
        while chunk := os.read(self._err_r, 65536):
            err += chunk
        return out.decode(), err.decode()

    def close(self) -> None:
        """Close the test's ends."""
        self.close_stdin()
        for fd in (self._out_r, self._err_r):
            os.close(fd)


@dataclass
class Box:
    """A container the suite created: its spec, bundle and first process."""

    spec: ContainerSpec
    bundle: Path
    pid: int = 0
    stdio: Stdio | None = None

    @property
    def id(self) -> str:
        """The container ID."""
        return self.spec.id


@dataclass
class Boxes:
    """An isolation plugin's hooks for containers on a busybox root filesystem."""

    plugin: Any
    contract: IsolationContract
    tmp_path: Path
    rootfs: Path
    made: list[Box] = field(default_factory=list)

    def spec(self, *args: str, **changes: Any) -> ContainerSpec:
        """A container running ``args`` in the busybox tree, with pinnace's cgroup."""
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        spec = ContainerSpec(id=cid, process=Process(args=list(args)),
                             rootfs=[Mount("bind", str(self.rootfs), ("rbind", "rw"))],
                             hostname="box", cgroup=cgroups.container_cgroup(cid).path)
        return replace(spec, **changes)

    def other(self) -> Any:
        """The plugin as another pinnace process has it: a fresh instance on the same dirs."""
        return self.contract.make_plugin(self.tmp_path)

    def create(self, spec: ContainerSpec, piped: bool = True) -> Box:
        """``pinnace_isolation_create``; with ``piped`` the container's stdio are pipes."""
        bundle = self.tmp_path / "bundles" / spec.id
        bundle.mkdir(parents=True)
        stdio = Stdio() if piped else None
        box = Box(spec, bundle, stdio=stdio)
        self.made.append(box)  # deleted and checked afterwards, even when create fails
        try:
            box.pid = self.plugin.pinnace_isolation_create(
                spec=spec, bundle=bundle, stdio=stdio.fds if stdio else None)
        finally:
            if stdio is not None:
                stdio.handed_over()
        return box

    def launch(self, spec: ContainerSpec, piped: bool = True) -> Box:
        """create, then start."""
        box = self.create(spec, piped)
        self.start(box)
        return box

    def run(self, spec: ContainerSpec, stdin: bytes = b"") -> tuple[int, str, str]:
        """Create, start and wait for a container: exit code, stdout, stderr."""
        box = self.launch(spec)
        assert box.stdio is not None
        box.stdio.send(stdin)
        out, err = box.stdio.output()
        return self.wait(box), out, err

    def start(self, box: Box) -> None:
        """``pinnace_isolation_start``."""
        self.plugin.pinnace_isolation_start(container_id=box.id, bundle=box.bundle)

    def wait(self, box: Box) -> int:
        """``pinnace_isolation_wait``."""
        return self.plugin.pinnace_isolation_wait(container_id=box.id, bundle=box.bundle)

    def kill(self, box: Box, sig: int, plugin: Any = None) -> None:
        """``pinnace_isolation_kill``."""
        (plugin or self.plugin).pinnace_isolation_kill(container_id=box.id, bundle=box.bundle,
                                                       signal=sig)

    def state(self, box: Box, plugin: Any = None) -> ContainerState:
        """``pinnace_isolation_state``."""
        return (plugin or self.plugin).pinnace_isolation_state(container_id=box.id,
                                                               bundle=box.bundle)

    def exec(self, box: Box, process: Process, stdio: Stdio | None = None,
             plugin: Any = None) -> int:
        """``pinnace_isolation_exec``."""
        try:
            return (plugin or self.plugin).pinnace_isolation_exec(
                container_id=box.id, bundle=box.bundle, process=process,
                stdio=stdio.fds if stdio else None)
        finally:
            if stdio is not None:
                stdio.handed_over()

    def freeze(self, box: Box, frozen: bool, plugin: Any = None) -> None:
        """``pinnace_isolation_pause`` or ``pinnace_isolation_resume``."""
        verb = "pause" if frozen else "resume"
        getattr(plugin or self.plugin, f"pinnace_isolation_{verb}")(container_id=box.id,
                                                                    bundle=box.bundle)

    def delete(self, box: Box, plugin: Any = None) -> None:
        """``pinnace_isolation_delete``."""
        (plugin or self.plugin).pinnace_isolation_delete(container_id=box.id, bundle=box.bundle)

    def leftovers(self, box: Box) -> list[str]:
        """What a deleted container still holds: a live process, a cgroup, a mount."""
        found = [f"process {box.pid}"] if box.pid and alive(box.pid) else []
        found += [f"cgroup {d}" for d in cgroups.Cgroup(box.spec.cgroup).dirs if os.path.isdir(d)]
        return found

    def mounts(self) -> list[str]:
        """Mount points under the test's directory in this mount namespace."""
        from pinnace.plugin import linux

        return linux.mounts_under(str(self.tmp_path))


class IsolationContract:
    """The tests an isolation plugin must pass. Subclass it as ``Test...``, implement
    :meth:`make_plugin` and set ``can_exec`` and ``can_pause``."""

    can_exec = True
    """The plugin implements ``pinnace_isolation_exec`` (``pinnace exec``)."""
    can_pause = True
    """The plugin implements ``pinnace_isolation_pause`` and ``pinnace_isolation_resume``."""

    def make_plugin(self, tmp_path: Path) -> Any:
        """A fresh instance of the plugin under test, its data and run dirs under ``tmp_path``."""
        raise NotImplementedError("subclasses of IsolationContract return their plugin here")

    @pytest.fixture
    def isolation(self, tmp_path: Path) -> Any:
        """The plugin under test."""
        return self.make_plugin(tmp_path)

    @pytest.fixture
    def rootfs(self, tmp_path: Path) -> Path:
        """A busybox root filesystem of this test's own."""
        from pinnace.testing.busybox import build_busybox_rootfs

        path = tmp_path / "rootfs"
        build_busybox_rootfs(path)
        return path

    @pytest.fixture
    def boxes(self, isolation: Any, tmp_path: Path, rootfs: Path) -> Iterator[Boxes]:
        """The plugin's hooks, called from a child subreaper (as pinnace's monitor is);
        afterwards every container is deleted and nothing it made may be left."""
        from pinnace.plugin import linux

        if os.geteuid() != 0:
            pytest.skip("the isolation contract needs root (namespaces, cgroups, mounts)")
        linux.set_child_subreaper()
        try:
            calls = Boxes(isolation, self, tmp_path, rootfs)
            yield calls
            for box in calls.made:
                calls.delete(box)
                if box.stdio is not None:
                    box.stdio.close()
            left = [item for box in calls.made for item in calls.leftovers(box)] + calls.mounts()
            for box in calls.made:
                reap(box.pid)
        finally:  # tests run after this one in the process must not adopt orphans they never reap
            set_subreaper(False)
        assert not left, f"left behind after delete: {left}"

    # ----------------------------------------------------------------- hooks
    def test_implements_every_isolation_hook(self, isolation: Any) -> None:
        """pluggy accepts the plugin and finds every required isolation hook on it."""
        assert_implements_role(isolation, "isolation")

    def test_optional_hooks_are_as_declared(self, isolation: Any) -> None:
        """``can_exec`` and ``can_pause`` say what the plugin has; pause comes with resume."""
        assert hasattr(isolation, "pinnace_isolation_exec") == self.can_exec
        assert hasattr(isolation, "pinnace_isolation_pause") == self.can_pause
        assert hasattr(isolation, "pinnace_isolation_resume") == self.can_pause

    # ------------------------------------------------------------- lifecycle
    def test_create_holds_the_process_before_exec(self, boxes: Boxes) -> None:
        box = boxes.create(boxes.spec("sh", "-c", "touch /ran; echo ran"))
        assert box.stdio is not None
        assert isinstance(box.pid, int) and box.pid > 1
        assert os.getpid() in ancestors(box.pid), "the first process is not a descendant"
        assert boxes.state(box) == ContainerState(Status.CREATED, box.pid)
        assert boxes.state(box, boxes.other()) == ContainerState(Status.CREATED, box.pid)
        assert box.stdio.quiet(), "the command wrote output before start"
        assert not (boxes.rootfs / "ran").exists(), "the command ran before start"
        assert "busybox" not in os.readlink(f"/proc/{box.pid}/exe")
        boxes.start(box)
        assert box.stdio.output() == ("ran\n", "")
        assert boxes.wait(box) == 0
        assert (boxes.rootfs / "ran").exists()
        assert boxes.state(box).status is Status.STOPPED
        assert not os.path.exists(f"/proc/{box.pid}"), "wait did not reap the first process"

    def test_first_process_is_the_callers_to_reap(self, boxes: Boxes) -> None:
        """pinnace's monitor reaps the first process itself with waitpid, then a fresh
        process (``pinnace`` after the monitor) deletes the container."""
        box = boxes.launch(boxes.spec("sh", "-c", "exit 9"))
        assert os.getpid() in ancestors(box.pid) or not alive(box.pid)
        assert exit_status(box.pid) == 9
        assert boxes.state(box, boxes.other()).status is Status.STOPPED
        boxes.delete(box, boxes.other())
        assert boxes.leftovers(box) == []

    def test_stdio_are_the_given_descriptors(self, boxes: Boxes) -> None:
        code, out, err = boxes.run(boxes.spec("sh", "-c", 'read line; echo "out:$line"; '
                                              "echo err >&2; exit 3"), stdin=b"hello\n")
        assert (code, out, err) == (3, "out:hello\n", "err\n")

    def test_terminal_master_arrives_on_the_console_socket(self, boxes: Boxes) -> None:
        """The pty master arrives on the console socket, whose path (like the core's,
        under the run dir) is longer than a unix socket address can hold: a plugin must
        reach it through its directory (``/proc/self/fd/N/NAME``), not connect by path."""
        from pinnace.runtime.console import ConsoleSocket

        directory = boxes.tmp_path / ("console-" + "d" * 100)
        directory.mkdir()
        path = directory / "console.sock"
        assert len(os.fsencode(str(path))) > SUN_PATH_MAX, path
        listener = ConsoleSocket(str(path))
        try:
            spec = boxes.spec("sh", "-c", "tty && echo term-ok")
            spec.process.terminal, spec.process.console_socket = True, listener.path
            box = boxes.create(spec, piped=False)
            master = listener.receive()
        finally:
            listener.close()
        try:
            boxes.start(box)
            seen = b""
            with contextlib.suppress(OSError):  # EIO once the container's side is closed
                while chunk := os.read(master, 4096):
                    seen += chunk
        finally:
            os.close(master)
        assert boxes.wait(box) == 0
        assert b"/dev/pts/" in seen and b"term-ok" in seen, seen

    def test_missing_command_is_127(self, boxes: Boxes) -> None:
        """CommandNotFound from create or start; the container has then exited."""
        with pytest.raises(CommandNotFound) as info:
            boxes.launch(boxes.spec("no-such-command"))
        assert info.value.exit_code == 127 and "no-such-command" in str(info.value)
        for box in boxes.made:
            assert boxes.state(box).status is Status.STOPPED

    def test_non_executable_command_is_126(self, boxes: Boxes) -> None:
        with pytest.raises(CommandNotExecutable) as info:
            boxes.launch(boxes.spec("/etc/passwd"))
        assert info.value.exit_code == 126
        for box in boxes.made:
            assert boxes.state(box).status is Status.STOPPED

    def test_wait_reports_exit_code_or_128_plus_signal(self, boxes: Boxes) -> None:
        assert boxes.run(boxes.spec("sh", "-c", "exit 7"))[0] == 7
        trapping = boxes.launch(boxes.spec(
            "sh", "-c", 'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done'))
        assert trapping.stdio is not None and trapping.stdio.line() == "ready\n"
        boxes.kill(trapping, signal.SIGTERM)
        assert boxes.wait(trapping) == 42
        sleeper = boxes.launch(boxes.spec("sleep", "60"))
        assert boxes.state(sleeper) == ContainerState(Status.RUNNING, sleeper.pid)
        boxes.kill(sleeper, signal.SIGKILL, boxes.other())
        assert boxes.wait(sleeper) == 128 + signal.SIGKILL

    def test_kill_of_a_gone_process_is_no_error(self, boxes: Boxes) -> None:
        box = boxes.launch(boxes.spec("true"))
        assert boxes.wait(box) == 0
        other = boxes.other()
        for plugin in (None, other):
            boxes.kill(box, signal.SIGTERM, plugin)
            boxes.kill(box, signal.SIGKILL, plugin)
        assert boxes.state(box, other).status is Status.STOPPED
        boxes.delete(box)
        boxes.kill(box, signal.SIGKILL, other)

    # --------------------------------------------------------------- exec
    def test_exec_joins_the_container(self, boxes: Boxes) -> None:
        """In every namespace and the cgroup of the first process, under its security,
        as a child of the caller (``pinnace exec`` runs in a process of its own, which
        is no child subreaper)."""
        if not self.can_exec:
            assert not hasattr(boxes.plugin, "pinnace_isolation_exec")
            return
        box = boxes.launch(boxes.spec("sleep", "60", resources=Resources(pids_limit=50)))
        other = boxes.other()
        set_subreaper(False)
        try:
            pid = boxes.exec(box, Process(args=["sleep", "60"]), plugin=other)
        finally:
            set_subreaper(True)
        try:
            assert int(status_fields(pid)["PPid"]) == os.getpid()
            for name in NAMESPACES:
                assert namespace(pid, name) == namespace(box.pid, name), name
            with open(f"/proc/{pid}/cgroup") as mine, open(f"/proc/{box.pid}/cgroup") as first:
                assert mine.read() == first.read()
            keys = ("CapEff", "CapBnd", "CapPrm", "Seccomp", "NoNewPrivs", "Uid")
            assert {k: status_fields(pid).get(k) for k in keys} == \
                {k: status_fields(box.pid).get(k) for k in keys}
        finally:
            os.kill(pid, signal.SIGKILL)
            exit_status(pid)
        stdio = Stdio()
        pid = boxes.exec(box, Process(args=["sh", "-c", "hostname; tr '\\0' ' ' </proc/1/cmdline;"
                                            " echo; cat; echo err >&2; exit 4"], cwd="/tmp"),
                         stdio, other)
        stdio.send(b"fed\n")
        try:
            assert stdio.output() == ("box\nsleep 60 \nfed\n", "err\n")
        finally:
            stdio.close()
        assert exit_status(pid) == 4
        with pytest.raises(CommandNotFound):
            boxes.exec(box, Process(args=["no-such-command"]), plugin=other)
        assert boxes.state(box) == ContainerState(Status.RUNNING, box.pid)

    # ------------------------------------------------------------- pause
    def test_pause_freezes_and_resume_thaws(self, boxes: Boxes) -> None:
        if not self.can_pause:
            assert not hasattr(boxes.plugin, "pinnace_isolation_pause")
            assert not hasattr(boxes.plugin, "pinnace_isolation_resume")
            return
        box = boxes.launch(boxes.spec("sleep", "60"))
        other = boxes.other()
        assert not frozen(box.pid)
        boxes.freeze(box, True, other)
        assert frozen(box.pid)
        assert boxes.state(box, other) == ContainerState(Status.RUNNING, box.pid)
        boxes.freeze(box, False, other)
        assert not frozen(box.pid)
        boxes.kill(box, signal.SIGKILL)
        assert boxes.wait(box) == 128 + signal.SIGKILL

    # ----------------------------------------------------------- the spec
    def test_resources_limit_the_cgroup_at_spec_cgroup(self, boxes: Boxes) -> None:
        """The limits are in place, in the cgroup pinnace named (where it reads stats
        and OOM kills), in every hierarchy."""
        limits = Resources(memory=64 << 20, memory_swap=128 << 20, pids_limit=20,
                           cpu_shares=512)
        box = boxes.launch(boxes.spec("sleep", "60", resources=limits))
        for d in cgroups.Cgroup(box.spec.cgroup).dirs:
            with open(os.path.join(d, "cgroup.procs")) as f:
                assert str(box.pid) in f.read().split(), f"not in {d}"
        assert read_cgroup(box.pid, "pids", "pids.max") == "20"
        if cgroups.version() == "v1":
            assert read_cgroup(box.pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
            assert read_cgroup(box.pid, "cpu", "cpu.shares") == "512"
        else:
            assert read_cgroup(box.pid, "memory", "memory.max") == str(64 << 20)
        boxes.kill(box, signal.SIGKILL)
        boxes.wait(box)

    def test_security_policy_is_applied(self, boxes: Boxes) -> None:
        """Capabilities, no_new_privs, the seccomp filter, masked and read-only paths."""
        kept = ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"]
        policy = Security(capabilities=kept, no_new_privileges=True,
                          masked_paths=["/proc/cpuinfo", "/etc"], readonly_paths=["/tmp"])
        spec = boxes.spec("sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' "
                          "/proc/self/status; wc -c </proc/cpuinfo; ls -A /etc | wc -l; "
                          "touch /tmp/written || echo refused", security=policy)
        code, out, err = boxes.run(spec)
        assert code == 0, err
        lines = out.split("\n")
        status = dict(line.split(":\t") for line in lines[:4])
        mask = f"{capabilities.mask(kept):016x}"
        assert (status["CapEff"], status["CapBnd"]) == (mask, mask)
        assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")
        assert lines[4:7] == ["0", "0", "refused"], out + err
        assert "Read-only file system" in err
        assert (boxes.rootfs / "etc" / "passwd").exists()

    def test_namespaces_are_the_containers_own(self, boxes: Boxes) -> None:
        """Every namespace of ``spec.namespaces``, and a network namespace of its own when
        ``spec.netns`` is unset; the cgroup namespace's root is the container's cgroup."""
        box = boxes.launch(boxes.spec("sh", "-c", "echo $$; cut -d: -f3 /proc/self/cgroup | "
                                      "sort -u; ls /sys/class/net | xargs; exec sleep 60"))
        assert box.stdio is not None
        assert [box.stdio.line() for _ in range(3)] == ["1\n", "/\n", "lo\n"]
        for name in NAMESPACES:
            assert namespace(box.pid, name) != namespace(os.getpid(), name), name
        boxes.kill(box, signal.SIGKILL)
        assert boxes.wait(box) == 128 + signal.SIGKILL

    def test_process_flags_hold_or_are_refused(self, boxes: Boxes) -> None:
        """``process.rlimits``, ``sysctl``, ``devices`` and ``shm_size`` hold inside the
        container, or ``create`` refuses the spec (InvalidConfig) and makes nothing."""
        spec = boxes.spec("sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/sys/kernel/shmmax; "
                          "ls -l /dev/mynull; echo x > /dev/mynull; df -k /dev/shm | tail -1")
        spec.process.rlimits = [Rlimit(type="RLIMIT_NOFILE", soft=321, hard=654)]
        spec.sysctl = {"kernel.shmmax": "123456"}
        spec.devices = [Device("/dev/mynull", "c", 1, 3)]
        spec.shm_size = 8 * 1024 * 1024
        try:
            code, out, err = boxes.run(spec)
        except InvalidConfig:
            assert not cgroups.Cgroup(spec.cgroup).exists() and boxes.mounts() == []
            return
        assert code == 0, err
        nofile, hard, shmmax, node, shm = out.splitlines()
        assert (nofile, hard, shmmax) == ("321", "654", "123456")
        assert node.startswith("c") and " 1,   3 " in node
        assert shm.split()[1] == "8192"
        with open("/proc/sys/kernel/shmmax") as f:
            assert f.read().strip() != "123456"

    def test_namespaces_left_out_or_joined(self, boxes: Boxes) -> None:
        """A namespace missing from ``spec.namespaces`` is the caller's; one in
        ``spec.namespace_paths`` is joined (or ``create`` refuses it: InvalidConfig)."""
        first = boxes.launch(boxes.spec("sleep", "60"))
        spec = boxes.spec("sleep", "60", namespaces=["pid", "mount", "ipc", "cgroup"],
                          namespace_paths={"pid": f"/proc/{first.pid}/ns/pid",
                                           "ipc": f"/proc/{first.pid}/ns/ipc"})
        try:
            second = boxes.launch(spec)
        except InvalidConfig:
            return
        for name in ("pid", "ipc"):
            assert namespace(second.pid, name) == namespace(first.pid, name), name
        assert namespace(second.pid, "uts") == namespace(os.getpid(), "uts")
        assert namespace(second.pid, "mnt") != namespace(first.pid, "mnt")
        for box in (second, first):
            boxes.kill(box, signal.SIGKILL)
            boxes.wait(box)

    def test_user_and_groups(self, boxes: Boxes) -> None:
        spec = boxes.spec("sh", "-c", "id -u; id -g; id -G")
        spec.process.user = User(uid=65534, gid=65534, additional_gids=[1234])
        code, out, _ = boxes.run(spec)
        assert code == 0
        uid, gid, groups = out.splitlines()
        assert (uid, gid) == ("65534", "65534") and "1234" in groups.split()

    def test_readonly_rootfs(self, boxes: Boxes) -> None:
        code, _, err = boxes.run(boxes.spec("touch", "/written", readonly_rootfs=True))
        assert code != 0 and "Read-only file system" in err
        assert not (boxes.rootfs / "written").exists()

    def test_hostname_cwd_and_env(self, boxes: Boxes) -> None:
        import socket

        spec = boxes.spec("sh", "-c", 'hostname; pwd; echo "$GREETING"', hostname="inner-host")
        spec.process.cwd, spec.process.env = "/tmp", [*spec.process.env, "GREETING=hi"]
        assert boxes.run(spec) == (0, "inner-host\n/tmp\nhi\n", "")
        assert socket.gethostname() != "inner-host"

    def test_spec_mounts_go_on_the_rootfs(self, boxes: Boxes) -> None:
        shared = boxes.tmp_path / "shared"
        shared.mkdir()
        (shared / "data.txt").write_text("from the host\n")
        motd = boxes.tmp_path / "motd"
        motd.write_text("file mount\n")
        spec = boxes.spec("sh", "-c", "cat /data/data.txt /etc/motd; touch /data/new; "
                          "echo kept >/scratch/f && cat /scratch/f; "
                          "grep -c ' /scratch .* tmpfs ' /proc/self/mountinfo",
                          mounts=[MountPoint("/data", str(shared), "bind", ["rbind", "ro"]),
                                  MountPoint("/etc/motd", str(motd), "bind", ["bind"]),
                                  MountPoint("/scratch", "tmpfs", "tmpfs", ["size=1m"])])
        code, out, err = boxes.run(spec)
        assert out == "from the host\nfile mount\nkept\n1\n", err
        assert "Read-only file system" in err and not (shared / "new").exists()
        assert not (boxes.rootfs / "scratch" / "f").exists()

    def test_joins_the_given_network_namespace(self, boxes: Boxes) -> None:
        from pinnace.testing.netns import private_netns, run_in

        with private_netns(boxes.tmp_path / "netns") as path:
            run_in(path, "ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
            box = boxes.launch(boxes.spec("sh", "-c", "ls /sys/class/net | xargs; exec sleep 60",
                                          netns=str(path)))
            assert box.stdio is not None
            assert box.stdio.line() == "lo probe0 probe1\n"
            assert os.stat(f"/proc/{box.pid}/ns/net").st_ino == os.stat(path).st_ino
            boxes.kill(box, signal.SIGKILL)
            boxes.wait(box)
            boxes.delete(box)

    # ------------------------------------------------------------- delete
    def test_delete_is_idempotent_and_leaves_nothing(self, boxes: Boxes) -> None:
        running = boxes.launch(boxes.spec("sleep", "60"))
        held = boxes.create(boxes.spec("sleep", "60"))
        assert cgroups.Cgroup(running.spec.cgroup).exists()
        for box in (running, held):
            boxes.delete(box)
            assert boxes.leftovers(box) == []
            boxes.delete(box)
            boxes.delete(box, boxes.other())
        assert boxes.mounts() == []
        never = Box(boxes.spec("true"), boxes.tmp_path / "never-created")
        never.bundle.mkdir()
        boxes.delete(never)
        boxes.delete(never, boxes.other())

    def test_failed_create_leaves_nothing(self, boxes: Boxes) -> None:
        missing = boxes.tmp_path / "does-not-exist"
        spec = boxes.spec("true", mounts=[MountPoint("/data", str(missing), "bind", ["rbind"])])
        with pytest.raises(PinnaceError):
            boxes.create(spec)
        assert not cgroups.Cgroup(spec.cgroup).exists()
        assert boxes.mounts() == []
        assert not missing.exists()

