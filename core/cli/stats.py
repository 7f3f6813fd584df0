"""``pinnace stats``: live CPU, memory, network, block I/O and PIDs of containers."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from pinnace.cli.output import FORMAT_OPTION, as_json, size, table
from pinnace.cli.root import get_engine

INTERVAL = 1.0
"""Seconds between the two readings a CPU percentage is computed from (docker's too)."""
HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
           "BLOCK I/O", "PIDS")


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one reading and leave.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs.")
@FORMAT_OPTION
@click.argument("containers", nargs=-1)
@click.pass_context
def stats(ctx: click.Context, no_stream: bool, no_trunc: bool, fmt: str,
          containers: tuple[str, ...]) -> None:
    """Show containers' resource usage, refreshed every second (all running ones
    unless CONTAINERs are named; Ctrl-C leaves)."""
    from pinnace.runtime import cgroups
    from pinnace.runtime import stats as usage

    engine = get_engine(ctx)
    ids = [engine.resolve(ref) for ref in containers]
    before: dict[str, Any] = {}
    first = True
    try:
        while True:
            listed = [engine.container(cid) for cid in ids] if ids else engine.list()
            now = {c.id: usage.read(cgroups.container_cgroup(c.id), c.pid) if c.pid else None
                   for c in listed}
            if first:  # a CPU percentage needs a second reading
                before, first = now, False
                time.sleep(INTERVAL)
                continue
            rows = [_row(c, before.get(c.id), now[c.id], no_trunc) for c in listed]
            if fmt == "json":
                as_json(rows)
            else:
                if not no_stream and sys.stdout.isatty():
                    click.echo("\033[2J\033[H", nl=False)
                table(HEADERS, [[r[k] for k in ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc",
                                                "NetIO", "BlockIO", "PIDs")] for r in rows])
            if no_stream:
                return
            before = now
            time.sleep(INTERVAL)
    except KeyboardInterrupt:
        return


def _row(c: Any, before: Any, after: Any, no_trunc: bool) -> dict[str, str]:
    """One container's reading in docker's ``stats --format json`` shape."""
    from pinnace.runtime.stats import cpu_percent

    cpu = cpu_percent(before, after) if before and after else 0.0
    mem = after.memory if after else 0
    limit = after.memory_limit if after else 0
    return {
        "ID": c.id if no_trunc else c.short_id, "Container": c.name, "Name": c.name,
        "CPUPerc": f"{cpu:.2f}%",
        "MemUsage": f"{binary_size(mem)} / {binary_size(limit)}",
        "MemPerc": f"{100 * mem / limit if limit else 0:.2f}%",
        "NetIO": f"{size(after.net_rx if after else 0)} / {size(after.net_tx if after else 0)}",
        "BlockIO": f"{size(after.block_read if after else 0)} / "
                   f"{size(after.block_write if after else 0)}",
        "PIDs": str(after.pids if after else 0),
    }


def binary_size(n: float) -> str:
    """Bytes in binary units, as docker prints memory (``1.465MiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n}"
