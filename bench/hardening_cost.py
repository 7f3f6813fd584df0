"""What the default hardening adds to start-up: `pinnace run --rm busybox true` as it is
(capabilities, seccomp, masked paths, device allowlist) against the same with
`--privileged --security-opt seccomp=unconfined`, and with the compiled seccomp
filter's cache emptied before every run (the first run on a machine).

Run as root: ``python bench/hardening_cost.py [--rounds N]``. Prints a table with
ratios to the unhardened run. Not a test: these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
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


if __name__ == "__main__":
    main()
