"""The ``--filter`` keys of each listing, as docker defines them (see
:mod:`pinnace.cli.filters` for the rules they share)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, TypeVar

from pinnace.cli.filters import Filter, boolean, label, one_of, parse, reference_matches
from pinnace.errors import InvalidConfig, NotFound

if TYPE_CHECKING:
    from pinnace.containers.record import ContainerRecord
    from pinnace.engine import Engine
    from pinnace.images.sources import SearchResult
    from pinnace.images.store import Image
    from pinnace.network import Network
    from pinnace.volumes import Volume

T = TypeVar("T")

STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH = ("starting", "healthy", "unhealthy", "none")


def _regex(key: str, value: str) -> re.Pattern[str]:
    """A ``name=`` value: docker matches it as a regular expression."""
    try:
        return re.compile(value)
    except re.error as err:
        raise InvalidConfig(f"invalid filter '{key}={value}': {err}") from None


def _ports(key: str, value: str) -> Callable[[int, str], bool]:
    """A ``publish=``/``expose=`` value (``80``, ``80/tcp``, ``8000-8080/udp``) as a test
    on a container port and protocol."""
    numbers, _, proto = value.partition("/")
    low, _, high = numbers.partition("-")
    if not low.isdigit() or (high and not high.isdigit()) or proto not in ("", "tcp", "udp"):
        raise InvalidConfig(f"invalid filter '{key}={value}': expected PORT[-PORT][/tcp|udp]")
    first, last = int(low), int(high or low)
    return lambda port, protocol: first <= port <= last and proto in ("", protocol)


def containers(engine: Engine, items: Sequence[str]) -> Filter[ContainerRecord]:
    """``ps --filter``."""
    @cache
    def users() -> dict[str, set[str]]:  # volume name -> IDs of its containers
        return {v.name: set(v.users) for v in engine.volumes.list()}

    @cache
    def exposed(image_id: str) -> list[tuple[int, str]]:
        try:
            config = engine.images.resolve(image_id).config.get("config") or {}
        except NotFound:
            return []
        found = []
        for port in config.get("ExposedPorts") or {}:
            number, _, proto = port.partition("/")
            found.append((int(number), proto or "tcp"))
        return found

    def ancestor(value: str) -> Callable[[ContainerRecord], bool]:
        try:
            image_id = engine.images.resolve(value).id
        except (NotFound, InvalidConfig):
            image_id = ""
        return lambda c: c.image == value or c.image_id == image_id

    def created(value: str, after: bool) -> Callable[[ContainerRecord], bool]:
        when = engine.container(value).created
        return lambda c: c.created > when if after else c.created < when

    def exited(value: str) -> Callable[[ContainerRecord], bool]:
        if not value.lstrip("-").isdigit():
            raise InvalidConfig(f"invalid filter 'exited={value}': expected an exit code")
        return lambda c: c.status == "exited" and c.exit_code == int(value)

    def network(value: str) -> Callable[[ContainerRecord], bool]:
        ids = {n.name for n in engine.networks.list() if n.id.startswith(value)}
        return lambda c: bool({value, *ids} & {*c.config.net.networks, c.network})

    def volume(value: str) -> Callable[[ContainerRecord], bool]:
        return lambda c: (c.id in users().get(value, ()) or
                          any(m.destination == value for m in c.config.spec.mounts))

    def publish(value: str) -> Callable[[ContainerRecord], bool]:
        test = _ports("publish", value)
        return lambda c: any(test(p.container_port, p.protocol) for p in c.config.net.ports)

    def expose(value: str) -> Callable[[ContainerRecord], bool]:
        test = _ports("expose", value)
        return lambda c: any(test(p, proto) for p, proto in [
            *exposed(c.image_id), *((p.container_port, p.protocol) for p in c.config.net.ports)])

    def status(value: str) -> Callable[[ContainerRecord], bool]:
        one_of("status", value, STATUSES)
        return lambda c: c.status == value or (value == "created" and c.status == "starting")

    def health(value: str) -> Callable[[ContainerRecord], bool]:
        one_of("health", value, HEALTH)
        return lambda c: value == "none"  # no container has a health check

    def name(value: str) -> Callable[[ContainerRecord], bool]:
        regex = _regex("name", value)
        return lambda c: bool(regex.search(c.name))

    def labels_of(c: ContainerRecord) -> dict[str, str]:
        return c.config.labels

    return parse(items, {
        "ancestor": ancestor, "before": lambda v: created(v, after=False),
        "since": lambda v: created(v, after=True), "exited": exited, "health": health,
        "id": lambda v: lambda c: c.id.startswith(v), "label": label(labels_of),
        "label!": label(labels_of, negate=True), "name": name, "network": network,
        "publish": publish, "expose": expose, "status": status, "volume": volume,
    }, "ps")


def images(engine: Engine, items: Sequence[str]) -> Filter[Image]:
    """``images --filter``."""
    from pinnace.cli.rows import image_created

    def created(value: str, after: bool) -> Callable[[Image], bool]:
        when = image_created(engine.images.resolve(value))
        return lambda i: image_created(i) > when if after else image_created(i) < when

    def dangling(value: str) -> Callable[[Image], bool]:
        wanted = boolean("dangling", value)
        return lambda i: (not i.tags) == wanted

    def reference(value: str) -> Callable[[Image], bool]:
        return lambda i: any(reference_matches(value, tag) for tag in i.tags)

    def labels_of(i: Image) -> dict[str, str]:
        return (i.config.get("config") or {}).get("Labels") or {}

    return parse(items, {
        "before": lambda v: created(v, after=False), "since": lambda v: created(v, after=True),
        "dangling": dangling, "label": label(labels_of), "label!": label(labels_of, True),
        "reference": reference,
    }, "images")


def networks(engine: Engine, items: Sequence[str]) -> Filter[Network]:
    """``network ls --filter``. A driver's default network (``pinnace0``) is ``builtin``,
    as docker's ``bridge`` is; every other one ``custom``."""
    def dangling(value: str) -> Callable[[Network], bool]:
        wanted = boolean("dangling", value)
        return lambda n: (not engine.networks.users(n.name)) == wanted

    def kind(value: str) -> Callable[[Network], bool]:
        builtin = one_of("type", value, ("custom", "builtin")) == "builtin"
        return lambda n: engine.networks.is_default(n) == builtin

    def name(value: str) -> Callable[[Network], bool]:
        regex = _regex("name", value)
        return lambda n: bool(regex.search(n.name))

    def labels_of(n: Network) -> dict[str, str]:
        return n.labels

    return parse(items, {
        "dangling": dangling, "driver": lambda v: lambda n: n.driver == v,
        "id": lambda v: lambda n: n.id.startswith(v), "label": label(labels_of),
        "label!": label(labels_of, True), "name": name, "type": kind,
    }, "network ls")


def volumes(items: Sequence[str]) -> Filter[Volume]:
    """``volume ls --filter``."""
    def dangling(value: str) -> Callable[[Volume], bool]:
        wanted = boolean("dangling", value)
        return lambda v: (not v.users) == wanted

    def name(value: str) -> Callable[[Volume], bool]:
        regex = _regex("name", value)
        return lambda v: bool(regex.search(v.name))

    def labels_of(v: Volume) -> dict[str, str]:
        return v.labels

    return parse(items, {
        "dangling": dangling, "driver": lambda d: lambda v: v.driver == d,
        "label": label(labels_of), "label!": label(labels_of, True), "name": name,
    }, "volume ls")


def search_results(items: Sequence[str]) -> Filter[SearchResult]:
    """``search --filter``."""
    def stars(value: str) -> Callable[[SearchResult], bool]:
        if not value.isdigit():
            raise InvalidConfig(f"invalid filter 'stars={value}': expected a number")
        return lambda r: r.stars >= int(value)

    def official(value: str) -> Callable[[SearchResult], bool]:
        wanted = boolean("is-official", value)
        return lambda r: r.official == wanted

    def automated(value: str) -> Callable[[SearchResult], bool]:
        wanted = boolean("is-automated", value)
        return lambda r: r.automated == wanted

    return parse(items, {"stars": stars, "is-official": official, "is-automated": automated},
                 "search")


def pruned(items: Sequence[str], created_of: Callable[[T], float],
           labels_of: Callable[[T], Mapping[str, str]]) -> Filter[T]:
    """``system prune --filter``: ``until=TIME`` (made before it) and ``label``/``label!``,
    for one kind of object."""
    import time

    from pinnace.cli.events import point_in_time

    def until(value: str) -> Callable[[T], bool]:
        when = point_in_time(value, "filter until", time.time())
        return lambda item: created_of(item) < when

    return parse(items, {"until": until, "label": label(labels_of),
                         "label!": label(labels_of, True)}, "system prune")
