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


def json_line(data: Any) -> None:
    """Print ``data`` (records too) as one compact JSON line, as docker's ``--format json``
    streams do."""
    from pinnace.cli.template import plain

    click.echo(json.dumps(plain(data), separators=(",", ":"), default=str))


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

TEMPLATE_FORMAT_OPTION = click.option(
    "--format", "fmt", default="table", show_default=True, metavar="table|json|TEMPLATE",
    help="Output format: the table, JSON, or a Go template (`{{.ID}}`, `table {{.Names}}`, "
         "`{{json .}}`).")


def rfc3339(ts: float | None) -> str:
    """An epoch time as docker writes times in JSON: RFC 3339, UTC, nanoseconds
    (``0001-01-01T00:00:00Z``, Go's zero time, for none)."""
    if not ts:
        return "0001-01-01T00:00:00Z"
    from pinnace.runtime.watch import timestamp

    return timestamp(ts)


def local_time(ts: float | None) -> str:
    """An epoch time as docker's ``CreatedAt`` columns print it (``2024-05-01 10:00:00 +0000
    UTC``)."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(ts)) if ts else ""


def parse_time(text: str) -> float | None:
    """An RFC 3339 time (any number of fractional digits, ``Z`` or an offset) as epoch
    seconds, or None when it is not one."""
    import re
    from datetime import datetime

    m = re.fullmatch(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?",
                     text.strip())
    if m is None:
        return None
    zone = m.group(3) or "Z"
    try:
        whole = datetime.fromisoformat(m.group(1) + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    return whole.timestamp() + float("0" + (m.group(2) or ".0"))


def is_template(fmt: str) -> bool:
    """Whether ``--format`` holds a template rather than ``table`` or ``json``."""
    return fmt not in ("", "table", "json")


def templated(fmt: str, rows: Sequence[Any], row_type: Any = None) -> None:
    """Print ``rows`` through the Go template ``fmt``: one line each, or, after ``table``,
    a header line (``row_type.headers``: each field's column title) and columns aligned at
    tabs, as docker's tabwriter does."""
    from pinnace.cli.template import compile_template, unescape

    is_table = fmt.startswith("table")
    template = compile_template(unescape(fmt[5:].strip(" ") if is_table else fmt))
    lines = [template.render(row) for row in rows]
    if not is_table:
        for line in lines:
            click.echo(line)
        return
    if row_type is not None:
        lines.insert(0, template.render(Headers(row_type)))
    aligned(lines)


class Headers(dict):  # type: ignore[type-arg]
    """A table's header row: each field of ``row_type`` gives its column title."""

    def __init__(self, row_type: Any) -> None:
        super().__init__(row_type.headers)
        self.kind = row_type.kind


def aligned(lines: Sequence[str]) -> None:
    """Print lines whose cells are separated by tabs as columns: each at least 10 wide and
    3 spaces past its widest cell (docker's tabwriter settings)."""
    split = [line.split("\t") for line in "\n".join(lines).split("\n")]
    widths: dict[int, int] = {}
    for cells in split:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 10), len(cell) + 3)
    for cells in split:
        click.echo("".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1])


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
