"""Registry pull and push: `pinnace pull` against `skopeo copy` to a directory and
`podman pull`, then `pinnace push` against `skopeo copy` from pinnace's OCI store, for
one multi-layer image (busybox plus layers of this host's /usr, about 300 MB
uncompressed, gzip) served by Debian's docker-registry on loopback.

pinnace keeps the blobs as served and unpacks (decompresses) a layer at its first
run, where podman decompresses at the pull: a second table times the pull plus
the first run (`run --rm IMAGE true`, pinnace's root on a loop btrfs, its default
storage) against `podman pull` plus `podman run --rm`, so the cost moved shows.

Run as root: ``python bench/pull.py [--rounds N] [--mb M]``. Every pull starts from an
empty store (a fresh pinnace root, directory or podman root); every push goes to a
fresh repository of a fresh registry. Prints medians, ratios to the peers, throughput
and peak RSS of each command. Not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PODMAN_RUN, podman_store, report

from pinnace.testing.btrfs import loop_btrfs
from pinnace.testing.busybox import build_busybox_tar
from pinnace.testing.registry import Layout, docker_registry, skopeo_copy

SOURCES = ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib")


def host_layer(top: str, budget: int) -> bytes:
    """A layer tar of regular files under ``top``, about ``budget`` bytes of content."""
    buf, used = io.BytesIO(), 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                size = os.path.getsize(path)
                if used + size <= budget:
                    tar.add(path, arcname=path.lstrip("/"), recursive=False)
                    used += size
    return buf.getvalue()


def measure(argv: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in MB of the process and its children) of running ``argv``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {err[-400:]!r}")
    return seconds, usage.ru_maxrss // 1024


def pull_and_first_run(pinnace: list[str], podman: list[str], ref: str, work: Path,
                       rounds: int) -> dict[str, list[float]]:
    """Seconds of a pull plus the first ``run --rm IMAGE true``, each round from an empty
    store: pinnace with its root on a loop btrfs, podman with its own store."""
    times: dict[str, list[float]] = {}
    podman_run = podman + PODMAN_RUN[1:] + ["--network=none", "--pull=never", ref, "true"]
    with loop_btrfs(work / "btrfs", "4G") as mnt:
        for n in range(rounds):
            root = ["--root", str(mnt / f"root{n}")]
            subprocess.run(podman + ["rmi", "-a", "-f"], capture_output=True)
            for name, steps in (
                    ("pinnace pull + first run", [
                        pinnace + root + ["pull", "-q", ref],
                        pinnace + root + ["run", "--rm", "--net=none", ref, "true"]]),
                    ("podman pull + first run", [
                        podman + ["pull", "-q", "--tls-verify=false", ref], podman_run])):
                times.setdefault(name, []).append(sum(measure(argv)[0] for argv in steps))
            subprocess.run(pinnace + root + ["rmi", ref], capture_output=True)
            shutil.rmtree(mnt / f"root{n}", ignore_errors=True)
    return times


def build(work: Path, mb: int) -> None:
    """The OCI layout ``work/layout`` with image ``bench``; its uncompressed size in
    ``work/size``."""
    build_busybox_tar(work / "busybox.tar")
    layers = [(work / "busybox.tar").read_bytes()]
    layers += [host_layer(top, (mb << 20) // len(SOURCES)) for top in SOURCES]
    lay = Layout(work / "layout")
    lay.tag(lay.image(layers), "bench")
    (work / "size").write_text(str(sum(len(t) for t in layers)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=300, help="uncompressed image size")
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        return build(Path(args.build), args.mb)
    script = Path(sys.executable).parent / "pinnace"
    pinnace = [str(script)] if script.exists() else [sys.executable, "-m", "pinnace"]
    work = Path(tempfile.mkdtemp(prefix="pinnace-bench-pull-"))
    podman, podman_cleanup = podman_store(work)
    times: dict[str, list[float]] = {}
    rss: dict[str, list[int]] = {}
    try:
        # built by a child, so this process stays small: forked peers inherit its RSS
        subprocess.run([sys.executable, __file__, "--build", str(work), "--mb", str(args.mb)],
                       check=True)
        lay = Layout(work / "layout")
        total = int((work / "size").read_text()) / 1e6
        with docker_registry(work / "registry") as reg:
            ref = f"{reg.host}/bench/image:1"
            skopeo_copy(f"oci:{lay.path}:bench", f"docker://{ref}")
            blob_mb = sum(p.stat().st_size for p in (reg.storage / "docker/registry/v2/blobs")
                          .rglob("data")) / 1e6
            commands = {
                "pinnace pull": lambda n: pinnace + ["--root", str(work / f"pn{n}"), "pull",
                                                     "-q", ref],
                "skopeo copy to dir": lambda n: ["skopeo", "copy", "-q",
                                                 "--src-tls-verify=false", f"docker://{ref}",
                                                 f"dir:{work / f'sk{n}'}"],
                "podman pull": lambda n: podman + ["pull", "-q", "--tls-verify=false", ref],
            }
            for n in range(args.rounds):
                for name, argv in commands.items():
                    if name == "podman pull":
                        subprocess.run(podman + ["rmi", "-a", "-f"], capture_output=True)
                    seconds, peak = measure(argv(n))
                    times.setdefault(name, []).append(seconds)
                    rss.setdefault(name, []).append(peak)
                shutil.rmtree(work / f"sk{n}", ignore_errors=True)
                if n:
                    shutil.rmtree(work / f"pn{n}", ignore_errors=True)
            # push: pinnace's store (uncompressed layers) to a fresh registry each round,
            # against skopeo copying the same OCI layout (it gzips the layers too)
            store = work / "pn0"
            for n in range(args.rounds):
                with docker_registry(work / f"push{n}") as target:
                    for name, argv in (
                            ("pinnace push", pinnace + ["--root", str(store), "push", "-q",
                                                        ref, f"{target.host}/p/pn:1"]),
                            ("skopeo copy from the store", [
                                "skopeo", "copy", "-q", "--dest-tls-verify=false",
                                f"oci:{store / 'images'}:{ref}",
                                f"docker://{target.host}/p/sk:1"])):
                        seconds, peak = measure(argv)
                        times.setdefault(name, []).append(seconds)
                        rss.setdefault(name, []).append(peak)
                    (store / "image_source/docker/blobs.json").unlink(missing_ok=True)
            first_run = pull_and_first_run(pinnace, podman, ref, work, args.rounds)
        report(f"pull of a {total:.0f} MB image ({len(SOURCES) + 1} layers, {blob_mb:.0f} MB "
               f"gzip) from a loopback registry, {args.rounds} rounds", times, "pinnace pull")
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{'command':<34}{'peak RSS MB':>12}{'MB/s (uncompressed)':>22}")
        for name in times:
            print(f"{name:<34}{max(rss[name]):>12}{total / med[name]:>22.0f}")
        report(f"pull + first run (run --rm IMAGE true; pinnace on btrfs, podman on overlay),"
               f" {args.rounds} rounds", first_run, "pinnace pull + first run")
        print()
        checks = (("pinnace pull", "podman pull", 1.0, "faster than podman"),
                  ("pinnace pull", "skopeo copy to dir", 1.2, "within 1.2x of skopeo"),
                  ("pinnace push", "skopeo copy from the store", 1.2, "within 1.2x of skopeo"))
        for mine, peer, limit, goal in checks:
            ratio = med[mine] / med[peer]
            print(f"{mine} / {peer}: {ratio:.2f}x ({goal}: {'OK' if ratio < limit else 'MISSED'})")
        peak = max(rss["pinnace pull"])
        print(f"pinnace pull peak RSS: {peak} MB "
              f"(under 150 MB: {'OK' if peak < 150 else 'MISSED'})")
        ratio = statistics.median(first_run["pinnace pull + first run"]) / \
            statistics.median(first_run["podman pull + first run"])
        print(f"pinnace pull + first run / podman pull + first run: {ratio:.2f}x")
    finally:
        podman_cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
