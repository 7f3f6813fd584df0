"""Start-up latency: `pinnace run --rm busybox true` against `runc run` on the same rootfs,
`podman run --rm` and `docker run --rm` (when a daemon answers), side by side.

Run as root: ``python bench/run_latency.py [--rounds N] [--compare PYTHON]``. Prints a
table with ratios to runc and checks the targets (pinnace <= 3x runc, below podman,
`pinnace --version` < 60 ms). ``--compare`` times a second pinnace (another checkout's
venv) in the same rounds. Not a test: these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    COMPARED,
    FLOOR,
    PODMAN_RUN,
    add_compare_option,
    busybox_root,
    cgroup_move_ms,
    floor_runner,
    import_busybox,
    pinnace_command,
    print_floor,
    report,
    runner,
    time_runs,
)

from pinnace.testing.busybox import build_busybox_rootfs


def runc_bundle(path: Path) -> Path:
    """An OCI bundle for runc whose rootfs is the busybox rootfs, running `true`."""
    build_busybox_rootfs(path / "rootfs")
    subprocess.run(["runc", "spec", "--bundle", str(path)], check=True)
    spec = json.loads((path / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    (path / "config.json").write_text(json.dumps(spec))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    add_compare_option(parser)
    args = parser.parse_args()
    with busybox_root() as (pinnace, root, work):
        tar = work / "busybox.tar"
        pinnaces = {"": (pinnace, root)}
        if args.compare:
            other = pinnace_command(args.compare)
            pinnaces[COMPARED] = (other, root.with_name("root-compared"))
            import_busybox(other, pinnaces[COMPARED][1], tar)
        commands = {}
        if shutil.which("runc"):
            bundle = runc_bundle(work / "bundle")
            commands["runc run"] = runner(["runc", "run", "--bundle", str(bundle), "bench"])
        for storage in ("btrfs", "dir"):
            for mark, (command, its_root) in pinnaces.items():
                commands[f"pinnace run --rm ({storage}){mark}"] = runner(
                    command + ["--root", str(its_root), "run", "--rm", f"--storage={storage}",
                               "--net=none", "busybox", "true"])
        if shutil.which("podman"):
            subprocess.run(["podman", "import", str(tar), "localhost/pinnace-bench-busybox"],
                           check=True, capture_output=True)
            argv = PODMAN_RUN + ["--network=none", "localhost/pinnace-bench-busybox", "true"]
            probe = subprocess.run(argv, capture_output=True, text=True)
            if probe.returncode == 0:
                commands["podman run --rm"] = runner(argv)
            else:
                print(f"podman: cannot run here: {probe.stderr.strip().splitlines()[-1]}")
        if shutil.which("docker") and subprocess.run(
                ["docker", "info"], capture_output=True).returncode == 0:
            subprocess.run(["docker", "import", str(tar), "pinnace-bench-busybox"],
                           check=True, capture_output=True)
            commands["docker run --rm"] = runner(
                ["docker", "run", "--rm", "--network=none", "pinnace-bench-busybox", "true"])
        else:
            print("docker: no daemon answers here, skipped")
        for mark, (command, _) in pinnaces.items():
            commands[f"pinnace --version{mark}"] = runner(command + ["--version"])
        commands["python -c pass"] = runner([sys.executable, "-c", "pass"])
        commands[FLOOR] = floor_runner()
        for fn in commands.values():  # warm up: caches, unpacked layers
            fn()
        times = time_runs(commands, args.rounds)
        report(f"run latency, {args.rounds} rounds", times,
               baseline="runc run" if "runc run" in times else None)
        med = {k: statistics.median(v) for k, v in times.items()}
        pin = med["pinnace run --rm (btrfs)"]
        print(f"moving a process into a cgroup takes {cgroup_move_ms():.1f} ms on this host "
              "(runc and pinnace pay it once per start)")
        if "runc run" in med:
            for mark in pinnaces:
                print_floor(med, f"pinnace run --rm (btrfs){mark}", "runc run")
        print()
        if "runc run" in med:
            print(f"target pinnace <= 3x runc: {pin / med['runc run']:.2f}x "
                  f"{'OK' if pin <= 3 * med['runc run'] else 'MISSED'}")
        if "podman run --rm" in med:
            print(f"target pinnace < podman: {pin / med['podman run --rm']:.2f}x "
                  f"{'OK' if pin < med['podman run --rm'] else 'MISSED'}")
        print(f"target pinnace --version < 60 ms: {med['pinnace --version'] * 1000:.1f} ms "
              f"{'OK' if med['pinnace --version'] < 0.060 else 'MISSED'}")
        if shutil.which("podman"):
            subprocess.run(["podman", "rmi", "-f", "localhost/pinnace-bench-busybox"],
                           capture_output=True)
        for command, its_root in pinnaces.values():
            subprocess.run(command + ["--root", str(its_root), "rmi", "busybox"],
                           capture_output=True)


if __name__ == "__main__":
    main()
