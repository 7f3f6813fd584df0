"""``pinnace events``: what happened to containers, images and networks, then (without
``--until``) what happens, as it happens."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from pinnace.cli.output import (
    TEMPLATE_FORMAT_OPTION,
    is_template,
    json_line,
    parse_time,
    rfc3339,
)
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig

if TYPE_CHECKING:
    from pinnace.events import Event

POLL = 0.2
"""Seconds between two looks at the state while following."""
FILTER_KEYS = ("type", "event", "container", "image", "network", "label")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class Actor(NamedTuple):
    """What an event happened to: its ID and attributes (``name``, ``image`` ...)."""

    ID: str
    Attributes: dict[str, Any]

    kind = "event actor"


class EventRow(NamedTuple):
    """One event, in docker's field names (``Time`` is RFC 3339)."""

    Type: str
    Action: str
    Actor: Actor
    ID: str
    Scope: str
    Time: str

    kind = "event"


def point_in_time(text: str, flag: str, now: float) -> float:
    """``--since``/``--until``: RFC 3339, Unix seconds, or a duration before now (``10m``,
    ``1h30m``)."""
    when = parse_time(text)
    if when is not None:
        return when
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if text and _DURATION.sub("", text) == "":
        return now - sum(float(n) * _UNIT[u] for n, u in _DURATION.findall(text))
    raise InvalidConfig(f"invalid {flag} {text!r}: expected an RFC 3339 time "
                        f"(2024-05-01T10:00:00Z), Unix seconds, or a duration (10m, 1h30m)")


def parse_filters(items: Sequence[str]) -> dict[str, set[str]]:
    """``--filter KEY=VALUE`` options by key (one key given twice: either value matches)."""
    out: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise InvalidConfig(f"invalid --filter {item!r}: expected KEY=VALUE with KEY one "
                                f"of {', '.join(FILTER_KEYS)}")
        out.setdefault(key, set()).add(value)
    return out


def matches(row: EventRow, filters: dict[str, set[str]]) -> bool:
    """Whether an event passes every filter key (any of one key's values)."""
    attrs = row.Actor.Attributes
    ids = {row.ID, row.ID[:12], str(attrs.get("name", ""))}
    for key, values in filters.items():
        if key == "type":
            ok = row.Type in values
        elif key == "event":
            ok = row.Action in values
        elif key in ("container", "network"):
            ok = row.Type == key and bool(ids & values or any(row.ID.startswith(v)
                                                              for v in values if len(v) >= 3))
        elif key == "image":
            refs = {r for r in (*str(attrs.get("name", "")).split(","), str(attrs.get("image", "")))
                    if r} if row.Type == "image" else {str(attrs.get("image", ""))} - {""}
            ok = any(v in refs or f"{v}:latest" in refs or row.Type == "image" and len(v) >= 3
                     and row.ID.removeprefix("sha256:").startswith(v.removeprefix("sha256:"))
                     for v in values)
        else:  # label=KEY or label=KEY=VALUE against the attributes
            ok = any((k in attrs) if not sep else str(attrs.get(k)) == v
                     for k, sep, v in (value.partition("=") for value in values))
        if not ok:
            return False
    return True


def row_of(event: Event, names: dict[str, str]) -> EventRow:
    """An event as a row; a container's name added from the state when it still exists."""
    attrs = dict(event.attributes)
    if event.type == "container" and "name" not in attrs and event.actor in names:
        attrs["name"] = names[event.actor]
    return EventRow(Type=event.type, Action=event.action, Actor=Actor(event.actor, attrs),
                    ID=event.actor, Scope="local", Time=rfc3339(event.time))


def line_of(row: EventRow) -> str:
    """docker's default line: ``TIME TYPE ACTION ID (key=value, ...)``."""
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(row.Actor.Attributes.items()))
    return f"{row.Time} {row.Type} {row.Action} {row.ID}" + (f" ({attrs})" if attrs else "")


@click.command()
@click.option("--since", metavar="TIME",
              help="Show events from this time (RFC 3339, Unix seconds, or a duration ago).")
@click.option("--until", metavar="TIME",
              help="Stop at this time (same forms); without it, follow new events.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="type=container|image|network, event=ACTION, container=NAME|ID, "
                   "image=NAME|ID, network=NAME|ID, label=KEY[=VALUE]; repeatable.")
@TEMPLATE_FORMAT_OPTION
@click.pass_context
def events(ctx: click.Context, since: str | None, until: str | None, filters: tuple[str, ...],
           fmt: str) -> None:
    """Show events of containers, images and networks. Without --since only new ones;
    without --until it keeps following (Ctrl-C or SIGTERM leaves).

    Template fields: Type, Action, Actor (ID, Attributes), ID, Scope, Time.
    """
    import signal
    import sys

    from pinnace import events as recorded

    now = time.time()
    start = point_in_time(since, "--since", now) if since else None
    end = point_in_time(until, "--until", now) if until else None
    wanted = parse_filters(filters)
    if is_template(fmt):
        from pinnace.cli.template import compile_template, unescape

        template = compile_template(unescape(fmt))
    state = get_engine(ctx).state
    after = 0 if start is not None else recorded.last_id(state)
    names = recorded.container_names(state)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            for event in recorded.read(state, after, start, end):
                after = event.id
                if event.type == "container" and event.attributes.get("name"):
                    names[event.actor] = event.attributes["name"]
                elif event.type == "container" and event.actor not in names:
                    names = recorded.container_names(state)  # one created since we looked
                row = row_of(event, names)
                if not matches(row, wanted):
                    continue
                if fmt == "json":
                    json_line(row)
                elif is_template(fmt):
                    click.echo(template.render(row))
                else:
                    click.echo(line_of(row))
            sys.stdout.flush()
            if end is not None and time.time() >= end:
                return
            time.sleep(POLL if end is None else min(POLL, max(0.0, end - time.time())))
    except KeyboardInterrupt:
        return
