"""The endpoint table of ``pinnace serve``: every path of the Docker Engine API it
answers (others get a 501 in docker's error shape)."""

from __future__ import annotations

import re

from pinnace.serve import building, containers, execs, images, objects, system
from pinnace.serve.http import Handler, Route

_ID = r"(?P<id>[^/]+)"
_NAME = r"(?P<name>.+?)"

_TABLE: list[tuple[str, str, Handler]] = [
    ("GET", "/_ping", system.ping),
    ("GET", "/version", system.version),
    ("GET", "/info", system.info),
    ("GET", "/events", system.events),
    ("POST", "/auth", system.auth),
    ("GET", "/system/df", system.disk_usage),
    ("GET", "/swarm", system.swarm),
    ("POST", "/swarm/leave", system.swarm),
    ("POST", "/containers/create", containers.create),
    ("GET", "/containers/json", containers.listing),
    ("POST", "/containers/prune", containers.prune),
    ("GET", f"/containers/{_ID}/json", containers.inspect),
    ("POST", f"/containers/{_ID}/start", containers.start),
    ("POST", f"/containers/{_ID}/stop", containers.stop),
    ("POST", f"/containers/{_ID}/kill", containers.kill),
    ("POST", f"/containers/{_ID}/restart", containers.restart),
    ("POST", f"/containers/{_ID}/pause", containers.pause),
    ("POST", f"/containers/{_ID}/unpause", containers.unpause),
    ("POST", f"/containers/{_ID}/wait", containers.wait),
    ("POST", f"/containers/{_ID}/attach", containers.attach),
    ("POST", f"/containers/{_ID}/resize", containers.resize),
    ("GET", f"/containers/{_ID}/logs", containers.logs),
    ("GET", f"/containers/{_ID}/top", containers.top),
    ("GET", f"/containers/{_ID}/stats", containers.stats),
    ("GET", f"/containers/{_ID}/changes", containers.changes),
    ("GET", f"/containers/{_ID}/export", containers.export),
    ("GET", f"/containers/{_ID}/archive", containers.archive_get),
    ("PUT", f"/containers/{_ID}/archive", containers.archive_put),
    ("POST", f"/containers/{_ID}/rename", containers.rename),
    ("POST", f"/containers/{_ID}/update", containers.update),
    ("DELETE", f"/containers/{_ID}", containers.delete),
    ("POST", f"/containers/{_ID}/exec", execs.create),
    ("POST", f"/exec/{_ID}/start", execs.start),
    ("POST", f"/exec/{_ID}/resize", execs.resize),
    ("GET", f"/exec/{_ID}/json", execs.inspect),
    ("POST", "/build", building.build),
    ("POST", "/commit", building.commit),
    ("POST", "/images/create", images.create),
    ("GET", "/images/json", images.listing),
    ("POST", "/images/prune", images.prune),
    ("POST", "/images/load", images.load),
    ("GET", "/images/get", images.get),
    ("GET", f"/images/{_NAME}/json", images.inspect),
    ("GET", f"/images/{_NAME}/history", images.history),
    ("GET", f"/images/{_NAME}/get", images.get),
    ("POST", f"/images/{_NAME}/tag", images.tag),
    ("POST", f"/images/{_NAME}/push", images.push),
    ("DELETE", f"/images/{_NAME}", images.delete),
    ("GET", "/networks", objects.networks),
    ("POST", "/networks/create", objects.network_create),
    ("POST", "/networks/prune", objects.network_prune),
    ("GET", f"/networks/{_ID}", objects.network_inspect),
    ("DELETE", f"/networks/{_ID}", objects.network_remove),
    ("POST", f"/networks/{_ID}/connect", objects.network_connect),
    ("POST", f"/networks/{_ID}/disconnect", objects.network_disconnect),
    ("GET", "/volumes", objects.volumes),
    ("POST", "/volumes/create", objects.volume_create),
    ("POST", "/volumes/prune", objects.volume_prune),
    ("GET", f"/volumes/{_NAME}", objects.volume_inspect),
    ("DELETE", f"/volumes/{_NAME}", objects.volume_remove),
]


def routes() -> list[Route]:
    """The table, compiled (the first match wins: fixed paths come before patterns)."""
    return [Route(method, re.compile(path), handler) for method, path, handler in _TABLE]
