"""save/load throughput: `pinnace save`/`load` against `podman save`/`load` on the same
multi-layer image (busybox plus three layers of mixed data, about 200 MB), side by side.

Run as root: ``python bench/save_load.py [--rounds N] [--layer-mb M]``. pinnace's root
is on a loop btrfs; podman gets a private overlay store in the same work directory.
Each load starts from a store without the image (removed, untimed, before each round).
podman load also unpacks the layers, which pinnace does on first use, so "pinnace load +
first run" (load, then `run --rm IMAGE true`) is timed too. Prints medians and the
ratio of each pinnace command to its podman peer. Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import podman_store, report

from pinnace.testing.btrfs import loop_btrfs
from pinnace.testing.busybox import build_busybox_tar


def data_layer(n: int, megabytes: int) -> bytes:
    """A layer tar of ``megabytes`` MB: half random bytes, half repetitive text, in 4 MB files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(megabytes // 4):
            data = os.urandom(4 << 20) if i % 2 else (f"layer {n} line {i}\n" * 300_000)[
                :4 << 20].encode()
            info = tarfile.TarInfo(f"data/layer{n}/file{i:03}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_archive(path: Path, busybox: Path, layer_mb: int) -> None:
    """A docker-archive of busybox + three data layers, tagged bench/saveload:1."""
    layers = [busybox.read_bytes()] + [data_layer(n, layer_mb) for n in range(3)]
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("config.json", config)
        for n, layer in enumerate(layers):
            add(f"l{n}/layer.tar", layer)
        add("manifest.json", json.dumps([{"Config": "config.json",
                                          "RepoTags": ["bench/saveload:1"],
                                          "Layers": [f"l{n}/layer.tar"
                                                     for n in range(len(layers))]}]).encode())


def run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-400:]}")


def timed(rounds: int, setup: Callable[[], None], action: Callable[[], None]) -> list[float]:
    """Seconds of ``action`` over ``rounds`` rounds, ``setup`` (untimed) before each."""
    times = []
    for _ in range(rounds):
        setup()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layer-mb", type=int, default=64)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "pinnace"
    pinnace = [str(script)] if script.exists() else [sys.executable, "-m", "pinnace"]
    work = Path(tempfile.mkdtemp(prefix="pinnace-bench-"))
    podman, podman_cleanup = podman_store(work)
    ref = "bench/saveload:1"
    try:
        with loop_btrfs(work / "btrfs", "4G") as mnt:
            pn = pinnace + ["--root", str(Path(mnt) / "root")]
            build_busybox_tar(work / "busybox.tar")
            source = work / "source.tar"
            image_archive(source, work / "busybox.tar", args.layer_mb)
            size_mb = source.stat().st_size / 1e6
            run(pn + ["load", "-i", str(source)])
            run(podman + ["load", "-i", str(source)])
            pd_ref = f"localhost/{ref}"
            times: dict[str, list[float]] = {}
            out = {name: work / f"{name}.tar" for name in ("pinnace", "podman")}
            for _ in range(2):  # interleave the peers, twice, so drift hits both alike
                for name, argv in (("pinnace save", pn + ["save", "-o", str(out["pinnace"]),
                                                          ref]),
                                   ("podman save", podman + ["save", "-o", str(out["podman"]),
                                                             pd_ref])):
                    peer_out = out[name.split()[0]]
                    def clear(path: Path = peer_out) -> None:
                        path.unlink(missing_ok=True)
                    times.setdefault(name, []).extend(
                        timed(args.rounds, clear, lambda argv=argv: run(argv)))
                times.setdefault("pinnace load", []).extend(timed(
                    args.rounds, lambda: run(pn + ["image", "prune", "-a", "-f"]),
                    lambda: run(pn + ["load", "-i", str(source)])))
                # podman load also unpacks the layers; pinnace unpacks on first use
                times.setdefault("pinnace load + first run", []).extend(timed(
                    args.rounds, lambda: run(pn + ["image", "prune", "-a", "-f"]),
                    lambda: (run(pn + ["load", "-i", str(source)]),
                             run(pn + ["run", "--rm", ref, "true"]))))
                times.setdefault("podman load", []).extend(timed(
                    args.rounds, lambda: run(podman + ["rmi", "-a", "-f"]),
                    lambda: run(podman + ["load", "-i", str(source)])))
            report(f"save/load of a {size_mb:.0f} MB, 4-layer image, {2 * args.rounds} rounds",
                   times)
            med = {k: statistics.median(v) for k, v in times.items()}
            print()
            for mine, peer in (("pinnace save", "podman save"), ("pinnace load", "podman load"),
                               ("pinnace load + first run", "podman load")):
                print(f"{mine} / {peer}: {med[mine] / med[peer]:.2f}x "
                      f"({size_mb / med[mine]:.0f} MB/s vs {size_mb / med[peer]:.0f} MB/s)")
    finally:
        podman_cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
