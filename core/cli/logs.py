"""``pinnace logs``: a container's output, from its json-file log."""

from __future__ import annotations

import sys

import click

from pinnace.cli import complete
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until it stops.")
@click.option("-n", "--tail", default="all", show_default=True, help="Lines from the end, or all.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.option("--since", metavar="TIME", help="Only after TIME (RFC 3339, Unix time, or 10m).")
@click.option("--until", metavar="TIME", help="Only before TIME (same forms).")
@click.argument("container", shell_complete=complete.containers)
@click.pass_context
def logs(ctx: click.Context, follow: bool, tail: str, timestamps: bool, since: str | None,
         until: str | None, container: str) -> None:
    """Print a container's output: its stdout to stdout, its stderr to stderr."""
    from pinnace.client import Client

    if tail != "all" and not (tail.isdigit()):
        raise InvalidConfig(f"invalid --tail {tail!r}: a number of lines or all")
    client = Client(engine=get_engine(ctx))
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    try:
        for entry in client.logs(container, follow, None if tail == "all" else int(tail),
                                 since, until):
            out = outs.get(entry.stream, sys.stdout.buffer)
            prefix = f"{entry.time} " if timestamps else ""
            out.write((prefix + entry.log).encode())
            out.flush()
    except BrokenPipeError:
        pass
