"""docker-py's own integration suites against `pinnace serve` and `podman system service`,
side by side.

Given a checkout of docker-py's public repository (its ``tests/integration``), start each
API server on a private socket with a store of its own (busybox imported there and
tagged as the images the suites ask for: ``alpine:3.10``, ``alpine:latest``,
``busybox:latest``), run the suites with pytest against it (``DOCKER_HOST=unix://...``,
API version 1.41, a per-test timeout) and print pass, fail, error and skip counts per
file for both. The servers and pytest run inside a private network namespace with only
``lo`` up, so bridges, rules and any attempt to reach a registry stay there; pinnace's
containers get its ``bridge`` network there, as docker's do. As root:

    python bench/dockerpy_suites.py /tmp/docker-py [--timeout 120] [-k EXPR]
        [--file api_exec_test ...] [--only pinnace|podman] [--failures] [--keep DIR]

Not a test: a count of what a reference client expects, to triage by.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from api import wait_for_socket
from common import busybox_root, podman_store

TAGS = ("alpine:3.10", "alpine:latest", "busybox:latest")
"""What the suites run (their TEST_IMG and the names some tests use), all busybox here."""
API_VERSION = "1.41"
"""The API version both servers speak (podman 4's and pinnace's newest)."""


@dataclass
class Counts:
    """One file's results against one server."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.errors += other.errors
        self.skipped += other.skipped


def read_junit(path: Path) -> dict[str, Counts]:
    """pytest's junit XML as counts per test file (``api_container_test.py``)."""
    results: dict[str, Counts] = {}
    if not path.exists():
        return results
    for case in ET.parse(path).getroot().iter("testcase"):
        module = (case.get("classname") or "").split(".")
        name = next((f"{part}.py" for part in module if part.endswith("_test")), module[0])
        counts = results.setdefault(name, Counts())
        outcome = {child.tag for child in case}
        test = f"{case.get('classname')}::{case.get('name')}"
        if "error" in outcome:
            counts.errors += 1
            counts.failing.append(f"{test} (error)")
        elif "failure" in outcome:
            counts.failed += 1
            counts.failing.append(test)
        elif "skipped" in outcome:
            counts.skipped += 1
        else:
            counts.passed += 1
    return results


def suite_files(checkout: Path) -> list[str]:
    """The suite's test files, relative to the checkout."""
    base = checkout / "tests" / "integration"
    return sorted(str(p.relative_to(checkout)) for p in base.rglob("*_test.py"))


def run_suites(checkout: Path, socket_path: Path, netns: Path, out: Path,
               args: argparse.Namespace) -> dict[str, Counts]:
    """pytest over each file of ``tests/integration`` in turn (a test that changes the
    process's environment cannot reach the next file) against the server on
    ``socket_path``; junit XML and pytest's output in ``out``."""
    config = socket_path.parent / f"docker-config-{socket_path.stem}"  # one per server
    config.mkdir(exist_ok=True)
    (config / "config.json").write_text("{}\n")  # contexts go there too, not to the checkout
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}",
           "DOCKER_TEST_API_VERSION": API_VERSION, "DOCKER_CONFIG": str(config),
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DOCKER_TLS_VERIFY", None)
    env.pop("DOCKER_CERT_PATH", None)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Counts] = {}
    for test_file in suite_files(checkout):
        if args.file and Path(test_file).stem not in args.file:
            continue
        junit = out / (Path(test_file).stem + ".xml")
        argv = ["nsenter", f"--net={netns}", "--", sys.executable, "-m", "pytest", test_file,
                "-p", "no:cacheprovider", "-q", "--tb=short", f"--timeout={args.timeout}",
                f"--junitxml={junit}", "-o", "junit_family=xunit2"]
        if args.k:
            argv += ["-k", args.k]
        with open(junit.with_suffix(".log"), "w") as log:
            try:
                subprocess.run(argv, cwd=checkout, env=env, stdout=log,
                               stderr=subprocess.STDOUT, timeout=args.file_timeout,
                               check=False)
            except subprocess.TimeoutExpired:
                print(f"{test_file} against {socket_path} ran past {args.file_timeout} s: "
                      "stopped", file=sys.stderr)
        results.update(read_junit(junit))
    return results


@contextmanager
def server(argv: list[str], path: Path, log: Path) -> Iterator[None]:
    """Run an API server (``argv``) listening on ``path`` for the block; its output goes
    to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_socket(path, proc)
            yield
        finally:
            proc.terminate()
            proc.wait(60)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """These environment variables for the block (for the servers it starts)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def in_netns(path: Path) -> Iterator[Path]:
    """A private network namespace with ``lo`` up."""
    from pinnace.testing.netns import private_netns

    with private_netns(path) as netns:
        yield netns


def pinnace_results(pinnace: list[str], root: Path, sockets: Path, netns: Path,
                    args: argparse.Namespace) -> dict[str, Counts]:
    """The suites against ``pinnace serve`` on ``root`` (bridge networking in ``netns``)."""
    cli = pinnace + ["--root", str(root)]
    for tag in TAGS:
        subprocess.run(cli + ["tag", "busybox", tag], check=True, capture_output=True)
    path = sockets / "pinnace.sock"
    argv = ["nsenter", f"--net={netns}", "--", *cli, "serve", "--debug", "--socket", str(path)]
    try:
        with environment(PINNACE_NETWORK="bridge"), \
                server(argv, path, args.keep / "pinnace" / "server.log"):
            return run_suites(args.checkout, path, netns, args.keep / "pinnace", args)
    finally:
        left = subprocess.run(cli + ["ps", "-aq", "--no-trunc"], capture_output=True,
                              text=True).stdout.split()
        if left:
            subprocess.run(["nsenter", f"--net={netns}", "--", *cli, "rm", "-f", *left],
                           capture_output=True)


def podman_results(work: Path, sockets: Path, netns: Path,
                   args: argparse.Namespace) -> dict[str, Counts]:
    """The suites against ``podman system service`` with a store of its own."""
    podman, cleanup = podman_store(work)
    try:
        subprocess.run(podman + ["import", str(work / "busybox.tar"), "busybox"],
                       check=True, capture_output=True)
        for tag in TAGS:
            subprocess.run(podman + ["tag", "busybox", tag], check=True, capture_output=True)
        path = sockets / "podman.sock"
        argv = ["nsenter", f"--net={netns}", "--", *podman, "system", "service", "--time=0",
                f"unix://{path}"]
        conf = work / "containers.conf"  # rlimits a process without CAP_SYS_RESOURCE may set
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", '
                        '"nproc=1024:1024"]\n')
        with environment(CONTAINERS_CONF=str(conf)), \
                server(argv, path, args.keep / "podman" / "server.log"):
            return run_suites(args.checkout, path, netns, args.keep / "podman", args)
    finally:
        cleanup()


def print_table(results: dict[str, dict[str, Counts]], failures: bool) -> None:
    """Per file, each server's pass/fail/error/skip counts, then the totals."""
    names = list(results)
    files = sorted({f for counts in results.values() for f in counts})
    width = max([30, *(len(f) + 2 for f in files)])
    head = "".join(f"{name:>26}" for name in names)
    print(f"{'':<{width}}{head}")
    cols = "".join(f"{'pass':>8}{'fail':>6}{'err':>6}{'skip':>6}" for _ in names)
    print(f"{'file':<{width}}{cols}")
    totals = {name: Counts() for name in names}
    for f in files:
        row = ""
        for name in names:
            c = results[name].get(f, Counts())
            totals[name].add(c)
            row += f"{c.passed:>8}{c.failed:>6}{c.errors:>6}{c.skipped:>6}"
        print(f"{f:<{width}}{row}")
    row = "".join(f"{c.passed:>8}{c.failed:>6}{c.errors:>6}{c.skipped:>6}"
                  for c in totals.values())
    print(f"{'total':<{width}}{row}")
    if failures:
        for name in names:
            for f in files:
                for test in results[name].get(f, Counts()).failing:
                    print(f"{name}: {test}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a docker-py checkout (tests/integration)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test")
    parser.add_argument("--file-timeout", type=int, default=1800,
                        help="seconds for one file's tests against one server")
    parser.add_argument("--file", action="append",
                        help="only this file (such as api_exec_test); repeatable")
    parser.add_argument("-k", help="pytest's -k: only the tests it selects")
    parser.add_argument("--only", choices=("pinnace", "podman"), help="one server only")
    parser.add_argument("--failures", action="store_true", help="list the failing tests")
    parser.add_argument("--keep", type=Path,
                        help="write the junit XML and pytest's output there (kept)")
    args = parser.parse_args()
    args.checkout = args.checkout.resolve()
    if not suite_files(args.checkout):
        raise SystemExit(f"{args.checkout}: no tests/integration/*_test.py")
    keep = args.keep
    args.keep = (keep or Path(tempfile.mkdtemp(prefix="dockerpy-"))).resolve()
    args.keep.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Counts]] = {}
    sockets = Path(tempfile.mkdtemp(prefix="pn-dpy-", dir="/tmp"))
    try:
        with busybox_root() as (pinnace, root, work), in_netns(work / "netns") as netns:
            if args.only in (None, "pinnace"):
                results["pinnace serve"] = pinnace_results(pinnace, root, sockets, netns, args)
            if args.only in (None, "podman") and shutil.which("podman"):
                results["podman system service"] = podman_results(work, sockets, netns, args)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
        if keep is None:
            shutil.rmtree(args.keep, ignore_errors=True)
    print_table(results, args.failures)


if __name__ == "__main__":
    main()
