"""Volumes: what `run --rm -v` costs over a plain `run --rm`, for a bind mount and a
named volume, against podman doing the same side by side; and file write/read
throughput in a volume against the container's own rootfs, on btrfs and dir storage.

Run as root: ``python bench/volumes.py [--rounds N] [--mb M]``. pinnace's root is on a
loop btrfs; podman gets a private store (its own --root/--runroot in the work dir).
Prints medians, the ratio of each volume run to its plain run, pinnace's to podman's,
and MB/s for each place a container writes (fsynced) and reads back. Not a test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PODMAN_RUN, busybox_root, podman_store, report, runner, time_runs


def run_costs(pinnace: list[str], root: Path, work: Path, rounds: int) -> None:
    """`run --rm` plain, with a bind (-v DIR:/m) and with a named volume, pinnace and podman."""
    pn = [*pinnace, "--root", str(root)]
    bind = work / "bind"
    bind.mkdir()
    subprocess.run(pn + ["volume", "create", "benchvol"], check=True, capture_output=True)
    commands = {
        "pinnace run --rm": runner(pn + ["run", "--rm", "busybox", "true"]),
        "pinnace run --rm -v DIR:/m": runner(pn + ["run", "--rm", "-v", f"{bind}:/m",
                                                   "busybox", "true"]),
        "pinnace run --rm -v NAME:/m": runner(pn + ["run", "--rm", "-v", "benchvol:/m",
                                                    "busybox", "true"]),
    }
    cleanup = None
    if shutil.which("podman"):
        podman, cleanup = podman_store(work)
        subprocess.run(podman + ["import", str(work / "busybox.tar"), "localhost/bb"],
                       check=True, capture_output=True)
        subprocess.run(podman + ["volume", "create", "benchvol"], check=True,
                       capture_output=True)
        pd = [*podman, *PODMAN_RUN[1:], "--network=none"]
        probe = subprocess.run(pd + ["localhost/bb", "true"], capture_output=True, text=True)
        if probe.returncode == 0:
            commands |= {
                "podman run --rm": runner(pd + ["localhost/bb", "true"]),
                "podman run --rm -v DIR:/m": runner(pd + ["-v", f"{bind}:/m", "localhost/bb",
                                                          "true"]),
                "podman run --rm -v NAME:/m": runner(pd + ["-v", "benchvol:/m",
                                                           "localhost/bb", "true"]),
            }
        else:
            print(f"podman: cannot run here: {probe.stderr.strip().splitlines()[-1]}")
    try:
        for fn in commands.values():  # warm up: layers unpacked, caches built
            fn()
        times = time_runs(commands, rounds)
    finally:
        if cleanup is not None:
            cleanup()
    report(f"run --rm with and without volumes, {rounds} rounds", times,
           baseline="pinnace run --rm")
    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    for tool in ("pinnace", "podman"):
        plain = med.get(f"{tool} run --rm")
        for kind in ("DIR", "NAME"):
            with_v = med.get(f"{tool} run --rm -v {kind}:/m")
            if plain and with_v:
                print(f"{tool}: -v {kind}:/m costs {(with_v - plain) * 1000:+.1f} ms, "
                      f"{with_v / plain:.2f}x its plain run")
    for kind in ("", " -v DIR:/m", " -v NAME:/m"):
        mine, peer = med.get(f"pinnace run --rm{kind}"), med.get(f"podman run --rm{kind}")
        if mine and peer:
            print(f"pinnace/podman run --rm{kind}: {mine / peer:.2f}x")


def throughput(pinnace: list[str], root: Path, megabytes: int) -> None:
    """MB/s of a `dd` write (fsynced) and a read back of one file (from the page cache:
    busybox's dd has no O_DIRECT, and a container cannot drop caches), in a named volume
    and in the rootfs, per storage plugin, timed inside the container by busybox
    ``time -p`` (10 ms resolution); the median of 3 runs."""
    pn = [*pinnace, "--root", str(root)]
    script = (f"mkdir -p /io && time -p dd if=/dev/zero of=/io/f bs=1M count={megabytes} "
              f"conv=fsync 2>&1 && time -p dd if=/io/f of=/dev/null bs=1M")
    print(f"\nfile throughput, {megabytes} MB (write fsynced, read from the page cache), "
          f"median of 3")
    print(f"{'storage':<9}{'where':<10}{'write MB/s':>12}{'cached read MB/s':>18}")
    for storage in ("btrfs", "dir"):
        for where, flags in (("rootfs", []), ("volume", ["-v", "tp:/io"])):
            writes, reads = [], []
            for _ in range(3):
                proc = subprocess.run([*pn, "run", "--rm", "--storage", storage, *flags,
                                       "busybox", "sh", "-c", script],
                                      check=True, capture_output=True, text=True)
                real = [float(line.split()[1]) for line in
                        (proc.stdout + proc.stderr).splitlines() if line.startswith("real ")]
                writes.append(megabytes / max(real[0], 0.01))
                reads.append(megabytes / max(real[1], 0.01))
            print(f"{storage:<9}{where:<10}{statistics.median(writes):>12.0f}"
                  f"{statistics.median(reads):>18.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--mb", type=int, default=256, help="file size for throughput")
    args = parser.parse_args()
    with busybox_root() as (pinnace, root, work):
        run_costs(pinnace, root, work, args.rounds)
        throughput(pinnace, root, args.mb)


if __name__ == "__main__":
    main()
