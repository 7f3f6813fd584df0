"""The OCI runtime-tools validation suite against pinnace-runtime and runc, side by side.

Given a built checkout of opencontainers/runtime-tools (``make runtimetest
validation-executables``; commit 260e151 builds with Debian's go 1.19 offline, with
``GOFLAGS=-mod=vendor``), run every ``validation/*/*.t`` with ``RUNTIME`` set to each
runtime and count its TAP results: ok, not ok, skipped (``ok N # SKIP``). A program that
exits 0 printing no TAP at all passed by its own contract (the ``*_fail`` programs: the
runtime refused what it must refuse) and counts as one ``ok``; one that ends otherwise
without its plan counts as one more ``not ok``. As root:

    python bench/runtime_tools.py /tmp/runtime-tools [--runtime NAME=PATH ...] [--verbose]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

TAP_LINE = re.compile(r"^(not ok|ok)\b[^#]*(#\s*(skip|todo)\b.*)?", re.IGNORECASE)
PLAN = re.compile(r"^1\.\.(\d+)")


@dataclass
class Counts:
    """One runtime's results over the suite."""

    ok: int = 0
    not_ok: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)


def run_one(checkout: str, program: str, runtime: str, timeout: float) -> tuple[int, int, int]:
    """Run one validation program with ``runtime``; return (ok, not ok, skipped)."""
    env = dict(os.environ, RUNTIME=runtime)
    status = None
    try:
        proc = subprocess.run([program], cwd=checkout, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        out, status = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) \
            else (err.stdout or "")
    if status == 0 and not out.strip():
        return 1, 0, 0
    ok = not_ok = skipped = 0
    planned = False
    for line in out.splitlines():
        if PLAN.match(line):
            planned = True
        m = TAP_LINE.match(line)
        if not m:
            continue
        if m.group(1).lower() == "not ok":
            not_ok += 1
        elif m.group(3):
            skipped += 1
        else:
            ok += 1
    if not planned:
        not_ok += 1
    return ok, not_ok, skipped


def leftover_mounts() -> list[str]:
    """Mount points under the suite's bundles (``$TMPDIR/ocitest*``) still mounted,
    deepest first."""
    import tempfile

    prefix = os.path.join(tempfile.gettempdir(), "ocitest")
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def unmount_leftovers(name: str) -> None:
    """Unmount what a runtime left mounted in the suite's bundles, and say so."""
    left = leftover_mounts()
    for point in left:
        subprocess.run(["umount", "-l", point], check=False)
    if left:
        print(f"{name} left {len(left)} mounts under the suite's bundles (unmounted)")


def main() -> None:
    """Run the suite for each runtime and print the counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="a built runtime-tools checkout")
    ap.add_argument("--runtime", action="append", default=[],
                    help="NAME=PATH (default: pinnace-runtime beside this Python, and runc)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="per program counts")
    args = ap.parse_args()
    checkout = os.path.abspath(args.checkout)
    programs = sorted(glob.glob(os.path.join(checkout, "validation", "*", "*.t")))
    if not programs or not os.access(os.path.join(checkout, "runtimetest"), os.X_OK):
        raise SystemExit(f"{checkout}: no runtimetest or validation/*/*.t; build them with "
                         "`make runtimetest validation-executables`")
    runtimes = dict(r.split("=", 1) for r in args.runtime) or {
        "pinnace-runtime": os.path.join(os.path.dirname(sys.executable), "pinnace-runtime"),
        "runc": shutil.which("runc") or "runc"}
    results: dict[str, Counts] = {}
    for name, path in runtimes.items():
        counts = Counts()
        with ThreadPoolExecutor(args.jobs) as pool:
            done = list(pool.map(lambda p, path=path: run_one(checkout, p, path, args.timeout),
                                 programs))
        for program, (ok, not_ok, skipped) in zip(programs, done, strict=True):
            counts.ok += ok
            counts.not_ok += not_ok
            counts.skipped += skipped
            if not_ok:
                counts.failing.append(f"{os.path.basename(program)}:{not_ok}")
            if args.verbose:
                print(f"{name:16} {os.path.basename(program):40} ok {ok:5} "
                      f"not ok {not_ok:4} skipped {skipped:4}")
        results[name] = counts
        unmount_leftovers(name)
    print(f"{'runtime':16} {'ok':>6} {'not ok':>7} {'skipped':>8}")
    for name, c in results.items():
        print(f"{name:16} {c.ok:6} {c.not_ok:7} {c.skipped:8}")
    for name, c in results.items():
        if c.failing:
            print(f"{name} not ok in: {' '.join(c.failing)}")


if __name__ == "__main__":
    main()
