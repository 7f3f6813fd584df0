"""``search`` against a registry's catalog: ``/v2/_catalog`` (followed through its
``Link`` pages), then ``/v2/NAME/tags/list`` of each repository that matches."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from pinnace.plugin import FailedPrecondition, SearchResult

if TYPE_CHECKING:
    from pinnace_plugins.source_registry.client import Registry

PAGE = 1000            # repositories asked for per catalog page
MOST_PAGES = 100       # catalog pages read at most (a registry that never ends its list)
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def catalog(reg: Registry) -> list[str]:
    """Every repository the registry lists."""
    names: list[str] = []
    path: str | None = f"/v2/_catalog?n={PAGE}"
    for _ in range(MOST_PAGES):
        if path is None:
            return names
        resp, body = reg.fetch_small(path, "registry:catalog:*")
        try:
            names.extend(str(n) for n in json.loads(body).get("repositories") or [])
        except (ValueError, AttributeError):
            raise FailedPrecondition(f"registry {reg.host} sent a catalog that is not a "
                                     f"JSON object") from None
        link = _NEXT.search(resp.getheader("Link") or "")
        path = link.group(1) if link else None
    return names


def tags(reg: Registry, name: str) -> list[str]:
    """The tags of repository ``name``."""
    _, body = reg.fetch_small(f"/v2/{quote(name)}/tags/list", f"repository:{name}:pull")
    try:
        return sorted(str(t) for t in json.loads(body).get("tags") or [])
    except (ValueError, AttributeError):
        raise FailedPrecondition(f"registry {reg.host} sent a tag list of {name} that is not "
                                 f"a JSON object") from None


def search(reg: Registry, term: str, limit: int) -> list[SearchResult]:
    """The first ``limit`` repositories (by name) whose name contains ``term`` (any case)."""
    wanted = term.lower()
    found = sorted(n for n in catalog(reg) if wanted in n.lower())[:limit]
    return [SearchResult(name=f"{reg.host}/{n}", tags=tags(reg, n)) for n in found]
