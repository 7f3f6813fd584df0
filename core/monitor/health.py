"""One health check of a running container, run by its monitor at each interval as
``python -m pinnace.monitor.health SETTINGS CID``: the check's command through the
exec path, its exit code and output recorded, the status (and a ``health_status``
event when it changes) updated.

A process of its own: the monitor stays slim (it imports only the standard library),
and a check that hangs is killed after its timeout without holding the monitor up.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from typing import TYPE_CHECKING

from pinnace.errors import PinnaceError

if TYPE_CHECKING:
    from pinnace.engine import Engine
    from pinnace.runtime.healthcheck import HealthConfig, HealthResult


def check(engine: Engine, cid: str) -> None:
    """Run the container's check once and record the result (nothing when it has no
    check or is not running)."""
    from pinnace.runtime import healthcheck

    record = engine.containers.get(cid)
    health = record.config.run.health
    if health is None or record.status != "running":
        return
    result = _probe(engine, cid, health)
    path = str(engine.paths.health(cid))
    before = healthcheck.read(path) or healthcheck.HealthStatus()
    after = before.after(result, health, record.started or result.start)
    healthcheck.write(path, after)
    if after.status != before.status:
        engine.state.event("container", f"health_status: {after.status}", cid,
                           name=record.name)


def _probe(engine: Engine, cid: str, health: HealthConfig) -> HealthResult:
    """Exec the check with its output on a pipe; kill it after the timeout."""
    from pinnace.runtime.healthcheck import MAX_OUTPUT, HealthResult
    from pinnace.runtime.watch import exit_code

    start = time.time()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        process = engine.exec_process(cid, health.args, [], None, None, False)
        pid = engine.exec(cid, process, (null, write_end, write_end))
    except PinnaceError as err:
        os.close(read_end)
        return HealthResult(start, time.time(), -1, str(err)[:MAX_OUTPUT])
    finally:
        os.close(write_end)
        os.close(null)
    output, deadline, timed_out = b"", time.monotonic() + health.timeout, False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([read_end], [], [], left)
        if ready:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            output = (output + chunk)[:MAX_OUTPUT]
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return HealthResult(start, time.time(), -1,
                            f"Health check exceeded timeout ({health.timeout:g}s)")
    return HealthResult(start, time.time(), exit_code(status), output.decode(errors="replace"))


def main(argv: list[str]) -> None:
    """``SETTINGS CID``: the monitor's settings (config file, root, run root) and the container."""
    from pinnace import config
    from pinnace.engine import Engine

    settings, cid = json.loads(argv[0]), argv[1]
    engine = Engine(config.load(settings["config"], {"root": settings["root"],
                                                     "run_root": settings["run_root"]}))
    try:
        check(engine, cid)
    except PinnaceError as err:  # removed or stopped meanwhile: nothing to record
        print(f"health check of {cid[:12]}: {err}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
