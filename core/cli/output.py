"""Output helpers shared by commands: tables, JSON, human times and sizes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import click


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned table (docker style: columns separated by at least three spaces)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())


def as_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, default=str))


def ago(ts: float | None) -> str:
    """``3 minutes ago``-style age of a timestamp."""
    return f"{duration(time.time() - ts)} ago" if ts else ""


def duration(seconds: float) -> str:
    """A short human duration, like docker's (``Less than a second``, ``2 hours``)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if s >= size:
            n = s // size
            if n == 1:
                return {"hour": "About an hour", "minute": "About a minute"}.get(unit, f"1 {unit}")
            return f"{n} {unit}s"
    return f"{s} seconds"


def size(n: int) -> str:
    """Bytes as docker prints them (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000
    return f"{n}"


FORMAT_OPTION = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table",
    show_default=True, help="Output format.")


def for_each(ctx: click.Context, refs: Sequence[str], action: Callable[[str], None]) -> None:
    """Apply ``action`` to every ref, printing each error as one line and going on;
    exit with the last error's code when any failed (like ``docker rm a b``)."""
    from pinnace.errors import PinnaceError

    failed: PinnaceError | None = None
    for ref in refs:
        try:
            action(ref)
        except PinnaceError as err:
            click.echo(f"Error: {err}", err=True)
            failed = err
    if failed is not None:
        ctx.exit(failed.exit_code)
