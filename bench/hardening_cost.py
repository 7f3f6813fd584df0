"""What the default hardening adds to start-up: `pinnace run --rm busybox true` as it is
(capabilities, seccomp, masked paths, device allowlist) against the same with
`--privileged --security-opt seccomp=unconfined`, and with the compiled seccomp
filter's cache emptied before every run (the first run on a machine); then the size
of the default profile's compiled filter and the time compiling it takes.

Run as root: ``python bench/hardening_cost.py [--rounds N]``. Prints a table with
ratios to the unhardened run. Not a test: these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import busybox_root, report, runner, time_runs

UNHARDENED = "--privileged, unconfined"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with busybox_root() as (pinnace, root, work):
        run = pinnace + ["--root", str(root), "run", "--rm", "--storage=btrfs", "--net=none"]
        cold_cache = work / "cache"
        cold = runner(run + ["busybox", "true"],
                      env=dict(os.environ, XDG_CACHE_HOME=str(cold_cache)))

        def cold_run() -> None:
            shutil.rmtree(cold_cache / "pinnace", ignore_errors=True)
            (cold_cache / "pinnace").mkdir(parents=True)
            # keep the plugin discovery cache warm: only the seccomp filter is cold
            for f in Path(os.path.expanduser("~/.cache/pinnace")).glob("entry-points-*"):
                shutil.copy(f, cold_cache / "pinnace")
            cold()

        commands = {
            UNHARDENED: runner(run + ["--privileged", "--security-opt", "seccomp=unconfined",
                                      "busybox", "true"]),
            "default hardening": runner(run + ["busybox", "true"]),
            "default, seccomp cache cold": cold_run,
        }
        for fn in commands.values():  # warm up: caches, unpacked layers
            fn()
        times = time_runs(commands, args.rounds)
        report(f"hardening cost: pinnace run --rm busybox true, {args.rounds} rounds",
               times, baseline=UNHARDENED)
    filter_cost(args.rounds)


def filter_cost(rounds: int) -> None:
    """Print the default profile's compiled size and compile time (in this process, with
    libseccomp already loaded), for a container with the default capabilities."""
    from pinnace.runtime import seccomp, security

    caps = security.policy().capabilities
    profile = seccomp.default_profile()
    program = seccomp.program(profile, caps)  # loads libseccomp
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        seccomp.program(profile, caps)
        times.append(time.perf_counter() - start)
    print(f"default seccomp filter: {len(program) // 8} BPF instructions, compiled in "
          f"{statistics.median(times) * 1000:.1f} ms (median of {rounds})")


if __name__ == "__main__":
    main()
