"""build: `pinnace build` against `podman build` (and `docker build` when a daemon answers)
on one multi-stage Dockerfile (a base, a RUN that builds from files in the context, a
`COPY --from`), side by side: cold (no cache) and warm (the cache, after changing one
source file, so that the steps from its COPY on run again).

Run as root: ``python bench/build.py [--rounds N] [--files N]``. pinnace's root is on a
loop btrfs; podman gets a private overlay store in the same work directory. Every
build runs its steps without a network. Prints medians and the ratio of each pinnace
build to podman's. Targets: cold at most podman's time, warm at most half. Not a test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import podman_store, report, runner, time_runs

from pinnace.testing.btrfs import loop_btrfs
from pinnace.testing.busybox import build_busybox_tar

DOCKERFILE = """\
FROM busybox AS base
RUN mkdir -p /opt/app && echo base > /opt/app/base

FROM base AS build
COPY src /src
RUN cd /src && for f in *.txt; do cat "$f" >> /opt/app/all; done && \\
    md5sum /opt/app/all > /opt/app/sum && wc -c /opt/app/all >> /opt/app/sum

FROM busybox
COPY --from=build /opt/app /opt/app
CMD ["cat", "/opt/app/sum"]
"""


def make_context(path: Path, files: int) -> Path:
    """A context: the Dockerfile and ``files`` source files of about 8 KB each."""
    (path / "src").mkdir(parents=True)
    (path / "Dockerfile").write_text(DOCKERFILE)
    for n in range(files):
        (path / "src" / f"part{n:04}.txt").write_text(f"part {n}: " + "x" * 8000 + "\n")
    return path


def docker_answers() -> bool:
    """Whether a docker daemon answers (its build is then timed too)."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "pinnace"
    pinnace = [str(script)] if script.exists() else [sys.executable, "-m", "pinnace"]
    work = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    podman, podman_cleanup = podman_store(work)
    try:
        with loop_btrfs(work / "btrfs", "4G") as mnt:
            pn = pinnace + ["--root", str(Path(mnt) / "root")]
            busybox = work / "busybox.tar"
            build_busybox_tar(busybox)
            runner(pn + ["import", "-c", 'CMD ["sh"]', str(busybox), "busybox:latest"])()
            saved = work / "busybox-image.tar"
            runner(pn + ["save", "-o", str(saved), "busybox:latest"])()
            runner(podman + ["load", "-i", str(saved)])()
            ctx = make_context(work / "ctx", args.files)
            builders: dict[str, list[str]] = {
                "pinnace build": pn + ["build", "--net", "none", "-t", "bench:1"],
                "podman build": podman + ["build", "--network", "none", "-t", "bench:1"],
            }
            if docker_answers():
                runner(["docker", "load", "-i", str(saved)])()
                builders["docker build"] = ["docker", "build", "--network", "none",
                                            "-t", "bench:1"]
            for argv in builders.values():  # unpack the base, warm the page cache: untimed
                runner(argv + ["--no-cache", str(ctx)])()
            cold: dict[str, Callable[[], None]] = {
                f"{name} (cold)": runner(argv + ["--no-cache", str(ctx)])
                for name, argv in builders.items()}
            changed = ctx / "src" / "part0000.txt"
            times: dict[str, list[float]] = {name: [] for name in cold}
            times.update({f"{name} (warm, one file changed)": [] for name in builders})
            for round_ in range(args.rounds):
                for name, t in time_runs(cold, 1).items():
                    times[name] += t
                for name, argv in builders.items():
                    with open(changed, "a", encoding="utf-8") as f:  # untimed
                        f.write(f"change {round_} for {name}\n")
                    times[f"{name} (warm, one file changed)"] += \
                        time_runs({name: runner(argv + [str(ctx)])}, 1)[name]
            report(f"cold builds (--no-cache), {args.files} source files, "
                   f"{args.rounds} rounds", {k: v for k, v in times.items() if "cold" in k},
                   baseline="podman build (cold)")
            report("warm builds (cache; one source file changed before each)",
                   {k: v for k, v in times.items() if "warm" in k},
                   baseline="podman build (warm, one file changed)")
    finally:
        podman_cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
