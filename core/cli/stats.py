"""``pinnace stats``: live CPU, memory, network, block I/O and PIDs of containers."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.output import TEMPLATE_FORMAT_OPTION, is_template, json_line, table, templated
from pinnace.cli.root import get_engine

INTERVAL = 1.0
"""Seconds between the two readings a CPU percentage is computed from (docker's too)."""
HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
           "BLOCK I/O", "PIDS")


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one reading and leave.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs.")
@TEMPLATE_FORMAT_OPTION
@click.argument("containers", nargs=-1, shell_complete=complete.containers)
@click.pass_context
def stats(ctx: click.Context, no_stream: bool, no_trunc: bool, fmt: str,
          containers: tuple[str, ...]) -> None:
    """Show containers' resource usage, refreshed every second (all running ones
    unless CONTAINERs are named; Ctrl-C leaves). ``--format json`` prints one JSON
    object per container and reading.

    Template fields: ID, Container, Name, CPUPerc, MemUsage, MemPerc, NetIO, BlockIO, PIDs.
    """
    from pinnace.cli.rows import StatsRow, stats_row
    from pinnace.runtime import cgroups
    from pinnace.runtime import stats as usage

    engine = get_engine(ctx)
    ids = [engine.resolve(ref) for ref in containers]
    if is_template(fmt):  # a bad template fails now, not after the first reading
        from pinnace.cli.template import compile_template, unescape

        compile_template(unescape(fmt.removeprefix("table")))
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
            rows = [stats_row(c, before.get(c.id), now[c.id], no_trunc) for c in listed]
            if not no_stream and sys.stdout.isatty() and fmt != "json":
                click.echo("\033[2J\033[H", nl=False)
            if fmt == "json":
                for row in rows:
                    json_line(row)
            elif is_template(fmt):
                templated(fmt, rows, StatsRow)
            else:
                table(HEADERS, [row[:1] + row[2:] for row in rows])
            if no_stream:
                return
            sys.stdout.flush()
            before = now
            time.sleep(INTERVAL)
    except KeyboardInterrupt:
        return
