"""What the bridge network costs: `run --rm true` with --net=bridge against --net=none,
pinnace against podman side by side, and the import time pyroute2 adds.

Run as root: ``python bench/net_overhead.py [--rounds N]``. Everything runs
inside a private network namespace (the script re-executes itself under
``unshare --net``), so podman's bridge and pinnace's live and die there. The
target: pinnace's extra cost is at most half of podman's. docker is left out:
its daemon would build its bridge in the host's network namespace.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PODMAN_RUN, busybox_root, report, runner, time_runs

INNER = "PINNACE_BENCH_IN_NETNS"
PODMAN_IMAGE = "localhost/pinnace-bench-busybox"


def import_costs(rounds: int) -> None:
    """Start-up with the bridge plugin, with the pyroute2 modules it uses, and with IPRoute."""
    py = sys.executable
    plugin = "import pinnace_plugins.net_bridge as b"
    times = time_runs({
        "python -c pass": runner([py, "-c", "pass"]),
        "bridge plugin module": runner([py, "-c", plugin]),
        "bridge plugin + pyroute2 msgs": runner(
            [py, "-c", f"{plugin}; b.netlink._messages()"]),
        "from pyroute2 import IPRoute": runner([py, "-c", "from pyroute2 import IPRoute"]),
    }, rounds)
    report(f"pyroute2 import cost, {rounds} rounds", times, baseline="python -c pass")
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = med["bridge plugin + pyroute2 msgs"] - med["bridge plugin module"]
    whole = med["from pyroute2 import IPRoute"] - med["python -c pass"]
    print(f"pyroute2 adds {1000 * ours:.1f} ms as pinnace imports it (message modules only),"
          f" {1000 * whole:.1f} ms as `from pyroute2 import IPRoute`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if os.environ.get(INNER) != "1":
        env = dict(os.environ, **{INNER: "1"})
        os.execvpe("unshare", ["unshare", "--net", "--", sys.executable, *sys.argv], env)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    import_costs(args.rounds)
    with busybox_root() as (pinnace, root, work):
        pn = pinnace + ["--root", str(root)]
        commands = {f"pinnace --net={net}": runner(pn + ["run", "--rm", f"--net={net}",
                                                          "busybox", "true"])
                    for net in ("none", "bridge")}
        if shutil.which("podman"):
            subprocess.run(["podman", "import", str(work / "busybox.tar"), PODMAN_IMAGE],
                           check=True, capture_output=True)
            for net in ("none", "bridge"):
                argv = PODMAN_RUN + [f"--network={net}", PODMAN_IMAGE, "true"]
                probe = subprocess.run(argv, capture_output=True, text=True)
                if probe.returncode == 0:
                    commands[f"podman --network={net}"] = runner(argv)
                else:
                    print(f"podman --network={net}: cannot run here: "
                          f"{probe.stderr.strip().splitlines()[-1]}")
        print("docker: left out (its daemon builds its bridge in the host's namespace)")
        for fn in commands.values():  # warm up: caches, unpacked layers, the bridges
            fn()
        times = time_runs(commands, args.rounds)
        report(f"run --rm true, bridge against none, {args.rounds} rounds", times,
               baseline="pinnace --net=none")
        med = {k: statistics.median(v) for k, v in times.items()}
        extra = med["pinnace --net=bridge"] - med["pinnace --net=none"]
        print(f"\npinnace: bridge costs {1000 * extra:.1f} ms more than none")
        if "podman --network=bridge" in med and "podman --network=none" in med:
            podman = med["podman --network=bridge"] - med["podman --network=none"]
            print(f"podman:  bridge costs {1000 * podman:.1f} ms more than none")
            ratio = extra / podman
            print(f"target pinnace's extra <= 1/2 of podman's: {ratio:.2f}x "
                  f"{'OK' if ratio <= 0.5 else 'MISSED'}")
        if shutil.which("podman"):
            subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True)

if __name__ == "__main__":
    main()
