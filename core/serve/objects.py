"""Network and volume endpoints: list, inspect, create, remove, connect, disconnect, prune."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pinnace.errors import InvalidConfig

if TYPE_CHECKING:
    from pinnace.serve.http import Request


def network_shape(req: Request, name: str) -> dict[str, Any]:
    """A network as docker's API shows it: its containers by ID, with their addresses."""
    from pinnace.errors import NotFound

    client = req.client
    details = client.network_inspect(name)
    members: dict[str, Any] = {}
    for user in details["Containers"]:
        try:
            record = client.container(user)
        except NotFound:
            continue
        settings = client.engine.networks.settings(record)["Networks"].get(details["Name"], {})
        address = settings.get("IPAddress", "")
        members[record.id] = {
            "Name": record.name, "EndpointID": "", "MacAddress": settings.get("MacAddress", ""),
            "IPv4Address": f"{address}/{settings.get('IPPrefixLen', 0)}" if address else "",
            "IPv6Address": ""}
    details["Containers"] = members
    return details


def networks(req: Request) -> None:
    """``GET /networks?filters=``."""
    from pinnace.serve.shapes import matches

    filters = req.filters()
    out = []
    for net in req.client.networks():
        values = {"name": [net.name], "id": [net.id], "driver": [net.driver],
                  "type": ["custom"], "scope": ["local"], "dangling": [],
                  "label": [*net.labels, *(f"{k}={v}" for k, v in net.labels.items())]}
        if matches(values, filters):
            out.append(network_shape(req, net.name))
    req.reply(200, out)


def network_inspect(req: Request) -> None:
    """``GET /networks/{id}``."""
    req.reply(200, network_shape(req, req.params["id"]))


def network_create(req: Request) -> None:
    """``POST /networks/create``."""
    body = req.json()
    name = body.get("Name")
    if not name:
        raise InvalidConfig("network name is required")
    config = ((body.get("IPAM") or {}).get("Config") or [{}])
    subnet = config[0].get("Subnet", "") if config else ""
    gateway = config[0].get("Gateway", "") if config else ""
    driver = body.get("Driver") or "bridge"
    net = req.client.network_create(name, driver, subnet, gateway, bool(body.get("Internal")),
                                    {k: str(v) for k, v in (body.get("Options") or {}).items()},
                                    {k: str(v) for k, v in (body.get("Labels") or {}).items()})
    req.reply(201, {"Id": net.id, "Warning": ""})


def network_remove(req: Request) -> None:
    """``DELETE /networks/{id}``."""
    req.client.network_remove(req.params["id"])


def network_connect(req: Request) -> None:
    """``POST /networks/{id}/connect``."""
    body = req.json()
    endpoint = body.get("EndpointConfig") or {}
    ipam = endpoint.get("IPAMConfig") or {}
    client = req.client
    network = client.network(req.params["id"])
    record = client.container(body.get("Container", ""))
    if network.name not in record.config.net.networks:  # made on it: compose connects again
        client.network_connect(network.name, record.id, ipam.get("IPv4Address") or None,
                               endpoint.get("Aliases") or ())
    req.reply(200)


def network_disconnect(req: Request) -> None:
    """``POST /networks/{id}/disconnect``."""
    body = req.json()
    req.client.network_disconnect(req.params["id"], body.get("Container", ""))
    req.reply(200)


def network_prune(req: Request) -> None:
    """``POST /networks/prune``."""
    req.reply(200, {"NetworksDeleted": req.client.network_prune()})


def volumes(req: Request) -> None:
    """``GET /volumes?filters=``."""
    from pinnace.serve.shapes import matches

    filters = req.filters()
    out = []
    for vol in req.client.volumes():
        labels = vol.labels
        values = {"name": [vol.name], "driver": [vol.driver],
                  "dangling": ["false" if vol.users else "true"],
                  "label": [*labels, *(f"{k}={v}" for k, v in labels.items())]}
        if matches(values, filters):
            out.append(req.client.volume_inspect(vol.name))
    req.reply(200, {"Volumes": out, "Warnings": []})


def volume_inspect(req: Request) -> None:
    """``GET /volumes/{name}``."""
    req.reply(200, req.client.volume_inspect(req.params["name"]))


def volume_create(req: Request) -> None:
    """``POST /volumes/create``."""
    body = req.json()
    vol = req.client.volume_create(body.get("Name") or None, body.get("Driver") or None,
                                   {k: str(v) for k, v in (body.get("DriverOpts") or {}).items()},
                                   {k: str(v) for k, v in (body.get("Labels") or {}).items()})
    req.reply(201, req.client.volume_inspect(vol.name))


def volume_remove(req: Request) -> None:
    """``DELETE /volumes/{name}?force=``."""
    req.client.volume_remove(req.params["name"], force=req.flag("force"))


def volume_prune(req: Request) -> None:
    """``POST /volumes/prune``: anonymous unused volumes (named ones too with ``all=true``
    in the filters, or for a client of API 1.41 and older, as docker's)."""
    every = req.filters().get("all", ["false"])[-1] in ("true", "1") or req.version < (1, 42)
    req.reply(200, {"VolumesDeleted": req.client.volume_prune(all_=every),
                    "SpaceReclaimed": 0})
