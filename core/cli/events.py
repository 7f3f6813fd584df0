"""``pinnace events``: what happened to containers, images and networks, then (without
``--until``) what happens, as it happens."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from pinnace.cli import complete
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
    from pinnace.cli.filters import Filter
    from pinnace.events import Event

POLL = 0.2
"""Seconds between two looks at the state while following."""
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


def event_filter(items: Sequence[str]) -> Filter[EventRow]:
    """``--filter`` of ``events`` (:mod:`pinnace.cli.filters`' rules): ``type``,
    ``event``, ``container``/``network`` (name, ID or an ID prefix of 3 or more),
    ``image`` (a reference, ``NAME`` meaning ``NAME:latest`` too, or an ID prefix), ``label``
    (``KEY`` or ``KEY=VALUE`` against the attributes)."""
    from pinnace.cli.filters import label, parse

    def named(kind: str) -> Callable[[str], Callable[[EventRow], bool]]:
        def compile_(value: str) -> Callable[[EventRow], bool]:
            return lambda r: r.Type == kind and (
                value in (r.ID, r.ID[:12], str(r.Actor.Attributes.get("name", "")))
                or (len(value) >= 3 and r.ID.startswith(value)))
        return compile_

    def image(value: str) -> Callable[[EventRow], bool]:
        def test(r: EventRow) -> bool:
            attrs = r.Actor.Attributes
            refs = {x for x in (*str(attrs.get("name", "")).split(","),
                                str(attrs.get("image", ""))) if x} if r.Type == "image" \
                else {str(attrs.get("image", ""))} - {""}
            return (value in refs or f"{value}:latest" in refs or r.Type == "image" and
                    len(value) >= 3 and r.ID.removeprefix("sha256:").startswith(
                        value.removeprefix("sha256:")))
        return test

    return parse(items, {
        "type": lambda v: lambda r: r.Type == v, "event": lambda v: lambda r: r.Action == v,
        "container": named("container"), "network": named("network"), "image": image,
        "label": label(lambda r: {k: str(x) for k, x in r.Actor.Attributes.items()}),
    }, "events")


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
              shell_complete=complete.filter_keys("events"),
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
    wanted = event_filter(filters)
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
                if not wanted(row):
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
