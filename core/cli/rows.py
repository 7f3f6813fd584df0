"""The row records listings hand to ``--format`` templates, with docker's field names
and column titles (``{{.ID}}``, ``{{.Names}}``; ``table`` headers ``CONTAINER ID``,
``NAMES``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

from pinnace.cli.output import ago, duration, local_time, size
from pinnace.errors import NotFound

if TYPE_CHECKING:
    from pinnace.containers.record import ContainerRecord
    from pinnace.engine import Engine
    from pinnace.images.sources import SearchResult
    from pinnace.images.store import Image
    from pinnace.network import Network


class LabelText(str):
    """The ``Labels`` column (``k=v,k2=v2``), keeping the labels themselves for
    ``{{.Label "k"}}``."""

    labels: dict[str, str]

    def __new__(cls, labels: dict[str, str]) -> LabelText:
        text = super().__new__(cls, ",".join(f"{k}={v}" for k, v in sorted(labels.items())))
        text.labels = dict(labels)
        return text


class ContainerRow(NamedTuple):
    """One container of ``ps``; ``{{.Label "k"}}`` is the value of its label ``k``."""

    ID: str
    Image: str
    Command: str
    CreatedAt: str
    RunningFor: str
    Ports: str
    Status: str
    Size: str
    Names: str
    Labels: LabelText
    Mounts: str
    Networks: str
    State: str

    def Label(self, key: str) -> str:
        """The value of label ``key`` ("" without it)."""
        return self.Labels.labels.get(key, "")

    kind = "container"
    headers = {
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "Status": "STATUS", "Size": "SIZE",
        "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
        "State": "STATE",
    }



class ImageRow(NamedTuple):
    """One tag of an image (or its ``<none>`` row) in ``images``."""

    ID: str
    Repository: str
    Tag: str
    Digest: str
    CreatedSince: str
    CreatedAt: str
    Size: str

    kind = "image"
    headers = {
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
    }



class NetworkRow(NamedTuple):
    """One network of ``network ls``; ``{{.Label "k"}}`` is the value of its label ``k``."""

    ID: str
    Name: str
    Driver: str
    Scope: str
    IPv6: bool
    Internal: bool
    Labels: LabelText
    CreatedAt: str

    def Label(self, key: str) -> str:
        """The value of label ``key`` ("" without it)."""
        return self.Labels.labels.get(key, "")

    kind = "network"
    headers = {
        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
        "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT",
    }



class StatsRow(NamedTuple):
    """One container's reading in ``stats``."""

    ID: str
    Container: str
    Name: str
    CPUPerc: str
    MemUsage: str
    MemPerc: str
    NetIO: str
    BlockIO: str
    PIDs: str

    kind = "container stats"
    headers = {
        "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    }



class HistoryRow(NamedTuple):
    """One step of an image's ``history``."""

    ID: str
    CreatedSince: str
    CreatedAt: str
    CreatedBy: str
    Size: str
    Comment: str

    kind = "history entry"
    headers = {
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
    }



class SearchRow(NamedTuple):
    """One repository ``search`` found."""

    Name: str
    Description: str
    StarCount: int
    IsOfficial: bool
    IsAutomated: bool
    Tags: str

    kind = "search result"
    headers = {
        "Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS",
        "IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED", "Tags": "TAGS",
    }


def _cut(text: str, no_trunc: bool, width: int = 45) -> str:
    return text if no_trunc or len(text) <= width else text[:width - 1] + "…"


def search_rows(results: list[SearchResult], no_trunc: bool) -> list[SearchRow]:
    """``search`` rows: description and tags cut at 45 characters unless ``no_trunc``."""
    return [SearchRow(Name=r.name, Description=_cut(r.description, no_trunc),
                      StarCount=r.stars, IsOfficial=r.official, IsAutomated=r.automated,
                      Tags=_cut(", ".join(r.tags), no_trunc)) for r in results]


def history_rows(entries: list[dict[str, Any]], no_trunc: bool) -> list[HistoryRow]:
    """``history`` rows from the store's entries (``Id``, ``Created`` in RFC 3339 ...)."""
    from pinnace.cli.output import parse_time

    rows = []
    for e in entries:
        when = parse_time(e["Created"]) if e["Created"] else None
        image_id = e["Id"] if no_trunc or e["Id"] == "<missing>" else \
            e["Id"].removeprefix("sha256:")[:12]
        by = e["CreatedBy"] if no_trunc or len(e["CreatedBy"]) <= 45 else \
            e["CreatedBy"][:44] + "…"
        rows.append(HistoryRow(ID=image_id, CreatedSince=ago(when), CreatedAt=local_time(when),
                               CreatedBy=by, Size=size(e["Size"]), Comment=e["Comment"]))
    return rows


def status(c: ContainerRecord) -> str:
    """``Up 2 minutes``, ``Exited (0) 3 seconds ago``: docker's STATUS column."""
    if c.status == "running":
        return f"Up {duration(time.time() - (c.started or c.created))}"
    if c.status == "paused":
        return f"Up {duration(time.time() - (c.started or c.created))} (Paused)"
    if c.status == "exited":
        code = "unknown" if c.exit_code is None else c.exit_code
        return f"Exited ({code}) {ago(c.finished)}".rstrip()
    return c.status.capitalize()


def command(c: ContainerRecord, no_trunc: bool) -> str:
    """The COMMAND column: quoted, cut at 20 characters unless ``no_trunc``."""
    cmd = " ".join(c.command)
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return f'"{cmd}"'


def container_rows(engine: Engine, containers: list[ContainerRecord],
                   no_trunc: bool) -> list[ContainerRow]:
    """``ps`` rows: ports, networks and labels from the state, size from the image
    (``Size`` is the image's, docker's "virtual" size: the container's own writes are
    not measured)."""
    images: dict[str, Image | None] = {}
    rows = []
    for c in containers:
        if c.image_id not in images:
            try:
                images[c.image_id] = engine.images.resolve(c.image_id)
            except NotFound:  # an image removed under its container: no labels, no size
                images[c.image_id] = None
        image = images[c.image_id]
        settings = engine.networks.settings(c) if c.active else {"Ports": {}, "Networks": {}}
        networks = list(settings["Networks"]) or list(c.config.net.networks) or [c.network]
        labels = c.config.labels
        rows.append(ContainerRow(
            ID=c.id if no_trunc else c.short_id, Image=c.image, Command=command(c, no_trunc),
            CreatedAt=local_time(c.created), RunningFor=ago(c.created),
            Ports=port_text(settings["Ports"]), Status=status(c),
            Size=f"(virtual {size(image.size)})" if image else "",
            Names=c.name, Labels=LabelText(labels),
            Mounts="", Networks=",".join(networks), State=c.status))
    return rows


def by_port(published: dict[str, Any]) -> list[tuple[str, Any]]:
    """``NetworkSettings.Ports`` items (``"80/tcp": [...]``) by port number, then protocol."""
    def key(item: tuple[str, Any]) -> tuple[int, str]:
        number, _, proto = item[0].partition("/")
        return int(number), proto

    return sorted(published.items(), key=key)


def port_text(published: dict[str, Any]) -> str:
    """docker's PORTS text of ``NetworkSettings.Ports``: ``53/udp, 0.0.0.0:8080->80/tcp``."""
    return ", ".join(
        ", ".join(f"{p['HostIp']}:{p['HostPort']}->{target}" for p in mapped) if mapped
        else target for target, mapped in by_port(published))


def ports(engine: Engine, c: ContainerRecord) -> str:
    """The PORTS column of a container: its published ports while it runs."""
    return port_text(engine.networks.settings(c)["Ports"]) if c.active else ""


def image_created(image: Image) -> float:
    """When the image was made: its config's ``created``, else when it entered the store."""
    from pinnace.cli.output import parse_time

    text = image.config.get("created")
    when = parse_time(text) if isinstance(text, str) and text else None
    return when if when is not None else image.created


def image_rows(images: list[Image], no_trunc: bool) -> list[ImageRow]:
    """``images`` rows: one per tag (``<none>`` for an untagged image)."""
    rows = []
    for img in images:
        short = img.id if no_trunc else img.id.removeprefix("sha256:")[:12]
        created = image_created(img)
        for tag in img.tags or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            # the registry's digest for this repository when known, else the local manifest's
            digest = next((d.partition("@")[2] for d in img.repo_digests
                           if d.partition("@")[0] == repo), img.manifest_digest)
            rows.append(ImageRow(ID=short, Repository=repo, Tag=t, Digest=digest,
                                 CreatedSince=ago(created), CreatedAt=local_time(created),
                                 Size=size(img.size)))
    return rows


def network_rows(networks: list[Network], no_trunc: bool = False) -> list[NetworkRow]:
    """``network ls`` rows."""
    return [NetworkRow(ID=n.id if no_trunc else n.id[:12], Name=n.name, Driver=n.driver,
                       Scope="local", IPv6=False, Internal=n.internal,
                       Labels=LabelText(n.labels),
                       CreatedAt=local_time(n.created)) for n in networks]


def stats_row(c: Any, before: Any, after: Any, no_trunc: bool) -> StatsRow:
    """One container's reading, in docker's ``stats --format`` fields."""
    from pinnace.runtime.stats import cpu_percent

    cpu = cpu_percent(before, after) if before and after else 0.0
    mem = after.memory if after else 0
    limit = after.memory_limit if after else 0
    return StatsRow(
        ID=c.id if no_trunc else c.short_id, Container=c.name, Name=c.name,
        CPUPerc=f"{cpu:.2f}%",
        MemUsage=f"{binary_size(mem)} / {binary_size(limit)}",
        MemPerc=f"{100 * mem / limit if limit else 0:.2f}%",
        NetIO=f"{size(after.net_rx if after else 0)} / {size(after.net_tx if after else 0)}",
        BlockIO=f"{size(after.block_read if after else 0)} / "
                f"{size(after.block_write if after else 0)}",
        PIDs=str(after.pids if after else 0))


def binary_size(n: float) -> str:
    """Bytes in binary units, as docker prints memory (``1.465MiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n}"
