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
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report, runner, time_runs  # noqa: E402

from pinnace.testing.btrfs import loop_btrfs  # noqa: E402
from pinnace.testing.busybox import build_busybox_tar  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "pinnace"
    pinnace = [str(script)] if script.exists() else [sys.executable, "-m", "pinnace"]
    work = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    try:
        with loop_btrfs(work / "btrfs", "2G") as mnt:
            root = Path(mnt) / "root"
            tar = work / "busybox.tar"
            build_busybox_tar(tar)
            base = pinnace + ["--root", str(root)]
            subprocess.run(base + ["import", "-c", 'CMD ["sh"]', str(tar), "busybox"],
                           check=True, capture_output=True)
            run = base + ["run", "--rm", "--storage=btrfs", "--net=none"]
            cold_cache = work / "cache"
            cold_env = dict(os.environ, XDG_CACHE_HOME=str(cold_cache))
            cold = runner(run + ["busybox", "true"], env=cold_env)

            def cold_run() -> None:
                shutil.rmtree(cold_cache / "pinnace", ignore_errors=True)
                (cold_cache / "pinnace").mkdir(parents=True)
                # keep the plugin discovery cache warm: only the seccomp filter is cold
                for f in Path(os.path.expanduser("~/.cache/pinnace")).glob("entry-points-*"):
                    shutil.copy(f, cold_cache / "pinnace")
                cold()

            commands = {
                "--privileged, unconfined": runner(
                    run + ["--privileged", "--security-opt", "seccomp=unconfined", "busybox",
                           "true"]),
                "default hardening": runner(run + ["busybox", "true"]),
                "default, seccomp cache cold": cold_run,
            }
            commands["default hardening"]()  # fill the seccomp cache
            times = time_runs(commands, args.rounds)
            report(f"hardening cost: pinnace run --rm busybox true, {args.rounds} rounds",
                   times, baseline="--privileged, unconfined")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
