"""pinnace-runtime against runc on the same bundle (a busybox rootfs, ``true``):
``run``; ``create`` + ``start`` + ``delete``; 100 containers one after another (crun's
README measures this: crun 1.69 s, runc 3.34 s); and ``ctr run`` through a private
containerd 1.6 with each runtime. Prints medians and the ratio to runc (target: within 2x).

Run as root: ``python bench/runtime.py [--rounds N] [--sequential N]``. Not a test: these
machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, runner, time_runs

PINNACE_RUNTIME = str(Path(sys.executable).parent / "pinnace-runtime")


def make_bundle(work: Path) -> Path:
    """A bundle: busybox rootfs and runc's default config running ``true`` (no terminal)."""
    from pinnace.testing.busybox import build_busybox_rootfs

    bundle = work / "bundle"
    bundle.mkdir()
    build_busybox_rootfs(bundle / "rootfs")
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["true"])
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def lifecycle(runtime: list[str], bundle: Path, name: str) -> None:
    """create, start, wait for the exit, delete."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([*runtime, "create", "--bundle", str(bundle), name], check=True, **quiet)
    subprocess.run([*runtime, "start", name], check=True, **quiet)
    while '"stopped"' not in subprocess.run([*runtime, "state", name], capture_output=True,
                                            text=True, check=True).stdout:
        time.sleep(0.001)
    subprocess.run([*runtime, "delete", name], check=True, **quiet)


def containerd(work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A containerd of its own (config, root, state, sockets under ``work``)."""
    config = work / "containerd.toml"
    config.write_text(f"""version = 2
root = "{work}/ctd-root"
state = "{work}/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{work}/ctd.sock"
[ttrpc]
  address = "{work}/ctd.ttrpc.sock"
[debug]
  address = "{work}/ctd-debug.sock"
""")
    daemon = subprocess.Popen(["containerd", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = work / "ctd.sock"
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return daemon, sock


def main() -> None:
    """Time each comparison and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sequential", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rtb-"))  # short: containerd's socket paths
    runtimes = {"runc": ["runc", "--root", str(work / "runc-state")],
                "pinnace-runtime": [PINNACE_RUNTIME, "--root", str(work / "pinnace-state")]}
    try:
        bundle = make_bundle(work)
        counter = iter(range(10**9))
        report("run (the same bundle, `true`)", time_runs({
            name: runner([*rt, "run", "--bundle", str(bundle), f"b{next(counter)}"])
            for name, rt in runtimes.items()}, args.rounds), baseline="runc")
        report("create + start + delete", time_runs({
            name: (lambda rt=rt: lifecycle(rt, bundle, f"l{next(counter)}"))
            for name, rt in runtimes.items()}, args.rounds), baseline="runc")
        report(f"{args.sequential} containers one after another (run)", time_runs({
            name: (lambda rt=rt: [runner([*rt, "run", "--bundle", str(bundle),
                                          f"s{next(counter)}"])()
                                  for _ in range(args.sequential)])
            for name, rt in runtimes.items()}, 1), baseline="runc")
        daemon, sock = containerd(work)
        try:
            ctr = ["ctr", "--address", str(sock), "--namespace", "bench"]
            paths = {"runc": shutil.which("runc") or "runc", "pinnace-runtime": PINNACE_RUNTIME}
            report("ctr run --rm through containerd", time_runs({
                name: runner([*ctr, "run", "--rm", "--runc-binary", path, "--runc-root",
                              str(work / f"ctr-{name}"), "--rootfs", str(bundle / "rootfs"),
                              f"c{next(counter)}", "/bin/sh", "-c", ":"])
                for name, path in paths.items()}, args.rounds), baseline="runc")
        finally:
            daemon.terminate()
            daemon.wait(30)
    finally:
        subprocess.run(["umount", "-R", "-l", str(work / "ctd-state")], check=False,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
