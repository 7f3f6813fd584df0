"""Container rootfs creation against image size: btrfs snapshots versus dir copies.

Builds a ~2 MB and a ~500 MB committed layer with each built-in storage
plugin (btrfs on a loop btrfs this script makes, dir under a temp dir on the
host's filesystem), times ``prepare`` of a container rootfs from each,
and prints the medians and the 500MB/2MB ratio per plugin.
btrfs should be flat (one snapshot ioctl whatever the size); dir copies.
Everything it made is removed at the end. Run as root::

    python bench/rootfs_create.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from pinnace.plugin import PluginContext, mount_of
from pinnace.testing.btrfs import loop_btrfs
from pinnace_plugins.storage_btrfs import BtrfsStorage
from pinnace_plugins.storage_dir import DirStorage

MiB = 1 << 20
IMAGES = {"2 MB": (64, 32 * 1024), "500 MB": (4000, 128 * 1024)}  # files, bytes per file
FLAT = 1.5


def build_layer(plugin: Any, name: str, files: int, size: int) -> None:
    """Commit a layer of ``files`` random files of ``size`` bytes in 100-file directories."""
    key = f"build-{name}"
    [mount] = plugin.pinnace_storage_prepare(key=key, parent=None, labels={})
    for n in range(files):
        path = Path(mount.source, "usr", f"d{n // 100}", f"f{n}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    plugin.pinnace_storage_commit(name=name, key=key, labels={})


@contextmanager
def cleaned(plugin: Any) -> Iterator[Any]:
    """Yield ``plugin``; afterwards remove its snapshots, children first."""
    try:
        yield plugin
    finally:
        while infos := plugin.pinnace_storage_walk():
            parents = {i.parent for i in infos}
            for info in infos:
                if info.key not in parents:
                    plugin.pinnace_storage_remove(key=info.key)


def time_prepares(plugins: dict[str, Any], rounds: int) -> dict[tuple[str, str], list[float]]:
    """Seconds per ``prepare`` of each (plugin, image): one plugin at a time (so dir's
    writeback does not land in btrfs's timings), images interleaved; each rootfs is
    removed and the disk synced, untimed, before the next is made."""
    times: dict[tuple[str, str], list[float]] = {}
    for name, plugin in plugins.items():
        for r in range(rounds):
            for image in IMAGES:
                key = f"rootfs-{r}"
                start = time.perf_counter()
                plugin.pinnace_storage_prepare(key=key, parent=image, labels={})
                times.setdefault((name, image), []).append(time.perf_counter() - start)
                plugin.pinnace_storage_remove(key=key)
                os.sync()  # start each prepare from a quiet disk
    return times


def report(plugins: dict[str, Any], times: dict[tuple[str, str], list[float]]) -> None:
    """The table, then the 500MB/2MB ratio per plugin and whether btrfs is flat."""
    print(f"\n{'plugin':<8}{'filesystem':<12}{'image':<9}{'median ms':>10}{'min ms':>9}"
          f"{'max ms':>9}")
    for (name, image), ts in times.items():
        fstype = mount_of(plugins[name].ctx.data_dir)[1]
        print(f"{name:<8}{fstype:<12}{image:<9}{statistics.median(ts) * 1000:>10.1f}"
              f"{min(ts) * 1000:>9.1f}{max(ts) * 1000:>9.1f}")
    print()
    for name in plugins:
        ratio = statistics.median(times[name, "500 MB"]) / statistics.median(times[name, "2 MB"])
        verdict = ""
        if name == "btrfs":
            verdict = f"  flat (within {FLAT}x)" if ratio <= FLAT else f"  NOT flat (> {FLAT}x)"
        print(f"ratio 500MB/2MB {name:<6}{ratio:>8.2f}x{verdict}")


def main() -> None:
    """Parse arguments, build the layers, time, report and clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rootfs made per plugin and image")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the btrfs half needs a loop device and a mount")
    work = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    try:
        with ExitStack() as stack:
            mnt = stack.enter_context(loop_btrfs(work / "btrfs", "2G"))
            plugins = {
                "btrfs": stack.enter_context(cleaned(BtrfsStorage(PluginContext(
                    "btrfs", "storage", {"loop_size": ""}, data_dir=mnt / "data")))),
                "dir": stack.enter_context(cleaned(DirStorage(PluginContext(
                    "dir", "storage", {}, data_dir=work / "dir")))),
            }
            for name, plugin in plugins.items():
                for image, (files, size) in IMAGES.items():
                    print(f"building {image} layer ({files} files) with {name} ...", flush=True)
                    build_layer(plugin, image, files, size)
            report(plugins, time_prepares(plugins, args.rounds))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
