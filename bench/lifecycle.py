"""Living containers: `exec` latency against runc and podman, `ps` with 50 and 500
containers, `logs --tail 10` of a 100 MB log, and the memory of a container's monitor
(PSS, from /proc/PID/smaps_rollup) against podman's conmon.

Run as root: ``python bench/lifecycle.py [--rounds N] [--compare PYTHON]``. Prints
tables, ratios and the targets (exec below podman and at most 3x runc; ps and logs under
0.2 s with ps flat from 50 to 500; monitor under 10 MB). ``--compare`` times a second
pinnace's exec (another checkout's venv) in the same rounds. Not a test: these machines
are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    COMPARED,
    FLOOR,
    add_compare_option,
    cgroup_move_ms,
    floor_runner,
    import_busybox,
    pinnace_command,
    print_floor,
    report,
    runner,
    time_runs,
)
from run_latency import runc_bundle

from pinnace.testing.btrfs import loop_btrfs
from pinnace.testing.busybox import build_busybox_tar

PODMAN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def pss_kb(pid: int) -> int:
    """Proportional set size of a process, in kB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def exec_latency(pinnaces: dict[str, list[str]], work: Path, rounds: int) -> dict[str, float]:
    """pinnace exec / runc exec / podman exec of `true` into a running container;
    ``pinnaces``: command lines (with ``--root``) by what their rows end with."""
    commands, cleanups = {}, []
    for mark, pinnace in pinnaces.items():
        cleanups.append(lambda pinnace=pinnace: subprocess.run(
            pinnace + ["rm", "-f", "bench-exec"], capture_output=True))
        subprocess.run(pinnace + ["run", "-d", "--name", "bench-exec", "busybox", "sleep",
                                  "3600"], check=True, capture_output=True)
        commands[f"pinnace exec{mark}"] = runner(pinnace + ["exec", "bench-exec", "true"])
    if shutil.which("runc"):
        bundle = runc_bundle(work / "exec-bundle")
        import json

        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["args"] = ["sleep", "3600"]
        (bundle / "config.json").write_text(json.dumps(spec))
        subprocess.run(["runc", "run", "-d", "--bundle", str(bundle), "bench-exec"], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        commands["runc exec"] = runner(["runc", "exec", "bench-exec", "true"])
        cleanups.append(lambda: subprocess.run(["runc", "delete", "-f", "bench-exec"],
                                               capture_output=True))
    if shutil.which("podman"):
        probe = subprocess.run(["podman", "run", "-d", "--name", "bench-exec", "--network=none",
                                "--runtime=runc", *PODMAN_LIMITS, "localhost/pinnace-bench-busybox",
                                "sleep", "3600"], capture_output=True, text=True)
        if probe.returncode == 0:
            commands["podman exec"] = runner(["podman", "exec", "bench-exec", "true"])
        else:
            print(f"podman: cannot run here: {probe.stderr.strip().splitlines()[-1:]}")
        cleanups.append(lambda: subprocess.run(["podman", "rm", "-f", "bench-exec"],
                                               capture_output=True))
    commands[FLOOR] = floor_runner()
    try:
        for fn in commands.values():
            fn()
        times = time_runs(commands, rounds)
        report(f"exec latency, {rounds} rounds", times,
               baseline="runc exec" if "runc exec" in times else None)
        print(f"moving a process into a cgroup takes {cgroup_move_ms():.1f} ms on this host "
              "(runc and pinnace pay it once per exec)")
        med = {k: statistics.median(v) for k, v in times.items()}
        if "runc exec" in med:
            for mark in pinnaces:
                print_floor(med, f"pinnace exec{mark}", "runc exec")
        return med
    finally:
        for clean in cleanups:
            clean()


def ps_and_logs(pinnace: list[str], root: Path, rounds: int) -> dict[str, float]:
    """`ps -a` with 50 and 500 containers in the state; `logs --tail 10` of 100 MB."""
    from pinnace import config
    from pinnace.containers.options import RunOptions
    from pinnace.engine import Engine
    from pinnace.runtime.watch import JsonLog

    engine = Engine(config.load(None, {"root": str(root)}))
    med = {}
    made = 0
    for total in (50, 500):
        while made < total:
            engine.create(RunOptions(image="busybox", command=["true"], network="none"))
            made += 1
        times = time_runs({f"ps -a ({total})": runner(pinnace + ["ps", "-a"])}, rounds)
        med.update({k: statistics.median(v) for k, v in times.items()})
        report(f"ps with {total} containers, {rounds} rounds", times)
    cid = engine.create(RunOptions(image="busybox", command=["true"], name="bench-log"))
    path = engine.paths.log(cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = JsonLog(str(path))
    line = b"x" * 120 + b"\n"
    while log.size < 100 * 1024 * 1024:
        log.write("stdout", line * 100)
    log.flush()
    times = time_runs({"logs --tail 10 (100 MB)": runner(pinnace + ["logs", "--tail", "10",
                                                                    "bench-log"])}, rounds)
    report(f"logs of a {log.size / 1e6:.0f} MB json-file log, {rounds} rounds", times)
    med.update({k: statistics.median(v) for k, v in times.items()})
    for c in engine.list(all_=True):
        engine.remove(c.id)
    return med


def monitor_memory(pinnace: list[str], count: int = 5) -> dict[str, float]:
    """Mean PSS of pinnace's monitors and of podman's conmon, `count` containers each."""
    out: dict[str, float] = {}
    ids = [subprocess.run(pinnace + ["run", "-d", "busybox", "sleep", "3600"], check=True,
                          capture_output=True, text=True).stdout.strip() for _ in range(count)]
    try:
        time.sleep(0.5)
        import json

        pids = [json.loads(subprocess.run(pinnace + ["inspect", c], capture_output=True,
                                          text=True).stdout)[0]["State"]["Pid"] for c in ids]
        out["pinnace monitor"] = statistics.mean(pss_kb(parent(p)) for p in pids)
    finally:
        subprocess.run(pinnace + ["rm", "-f", *ids], capture_output=True)
    if shutil.which("podman"):
        names = [f"bench-mem-{i}" for i in range(count)]
        for n in names:
            subprocess.run(["podman", "run", "-d", "--name", n, "--network=none", "--runtime=runc",
                            *PODMAN_LIMITS, "localhost/pinnace-bench-busybox", "sleep", "3600"],
                           capture_output=True)
        try:
            pids = [int(subprocess.run(["podman", "inspect", "-f", "{{.State.ConmonPid}}", n],
                                       capture_output=True, text=True).stdout.strip() or 0)
                    for n in names]
            pids = [p for p in pids if p]
            if pids:
                out["podman conmon"] = statistics.mean(pss_kb(p) for p in pids)
        finally:
            subprocess.run(["podman", "rm", "-f", *names], capture_output=True)
    print(f"\nmonitor memory (PSS, mean of {count})")
    for name, kb in out.items():
        print(f"{name:<34}{kb / 1024:>8.2f} MB")
    return out


def main() -> None:
    """Set up a loop btrfs root and the busybox image, run the three parts, print targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    add_compare_option(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    try:
        with loop_btrfs(work / "btrfs", "4G") as mnt:
            tar = work / "busybox.tar"
            build_busybox_tar(tar)
            roots = {"": (pinnace_command(), Path(mnt) / "root")}
            if args.compare:
                roots[COMPARED] = (pinnace_command(args.compare), Path(mnt) / "root-compared")
            for command, root in roots.values():
                import_busybox(command, root, tar)
            pinnaces = {mark: command + ["--root", str(root)]
                        for mark, (command, root) in roots.items()}
            pinnace, root = pinnaces[""], roots[""][1]
            if shutil.which("podman"):
                subprocess.run(["podman", "import", str(tar), "localhost/pinnace-bench-busybox"],
                               check=True, capture_output=True)
            ex = exec_latency(pinnaces, work, args.rounds)
            pl = ps_and_logs(pinnace, root, args.rounds)
            mem = monitor_memory(pinnace)
            print("\ntargets")
            if "runc exec" in ex:
                ratio = ex["pinnace exec"] / ex["runc exec"]
                print(f"exec <= 3x runc: {ratio:.2f}x {'OK' if ratio <= 3 else 'MISSED'}")
            if "podman exec" in ex:
                ratio = ex["pinnace exec"] / ex["podman exec"]
                print(f"exec < podman: {ratio:.2f}x {'OK' if ratio < 1 else 'MISSED'}")
            for key in ("ps -a (50)", "ps -a (500)", "logs --tail 10 (100 MB)"):
                print(f"{key} < 0.2 s: {pl[key]:.3f} s {'OK' if pl[key] < 0.2 else 'MISSED'}")
            flat = pl["ps -a (500)"] / pl["ps -a (50)"]
            print(f"ps 500/50: {flat:.2f}x {'OK (flat)' if flat < 1.5 else 'MISSED (grows)'}")
            mb = mem["pinnace monitor"] / 1024
            print(f"monitor PSS < 10 MB: {mb:.2f} MB {'OK' if mb < 10 else 'MISSED'}"
                  + (f" (conmon: {mem['podman conmon'] / 1024:.2f} MB)" if "podman conmon" in mem
                     else ""))
            if shutil.which("podman"):
                subprocess.run(["podman", "rmi", "-f", "localhost/pinnace-bench-busybox"],
                               capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
