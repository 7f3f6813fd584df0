"""Shell completion of container, image, network, volume and plugin names, and of
``--filter`` keys.

A completion runs on every Tab, so it builds no engine: it reads the config for the
root, then the state file read-only (nothing when there is none yet), or the plugin
discovery cache.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import click

QUERIES = {
    "container": "SELECT name FROM containers ORDER BY name",
    "image": "SELECT name FROM tags ORDER BY name",
    "network": "SELECT name FROM networks ORDER BY name",
    "volume": "SELECT name FROM volumes ORDER BY name",
}


def _names(ctx: click.Context, kind: str) -> list[str]:
    """Names of ``kind`` in the state of the root this command line names."""
    import sqlite3

    from pinnace import config
    from pinnace.errors import PinnaceError

    params = ctx.find_root().params
    try:
        root = config.load(params.get("config_file"), {"root": params.get("root")}).root
    except PinnaceError:
        return []
    path = root / "state.db"
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return [r[0] for r in db.execute(QUERIES[kind])]
    except sqlite3.Error:
        return []


def _starting(names: list[str], incomplete: str) -> list[str]:
    return [n for n in names if n.startswith(incomplete)]


def containers(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Container names."""
    return _starting(_names(ctx, "container"), incomplete)


def images(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Image tags (``busybox:latest``)."""
    return _starting(_names(ctx, "image"), incomplete)


def networks(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Network names."""
    return _starting(_names(ctx, "network"), incomplete)


def volumes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Volume names."""
    return _starting(_names(ctx, "volume"), incomplete)


def filter_keys(listing: str) -> Any:
    """A completion of the ``--filter`` keys of ``listing`` (``label=``, ``status=``)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        from pinnace.cli.filters import KEYS

        return _starting([f"{key}=" for key in KEYS[listing]], incomplete)

    return complete


def any_object(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Container, image and network names (``inspect``)."""
    return _starting(sorted({*_names(ctx, "container"), *_names(ctx, "image"),
                             *_names(ctx, "network")}), incomplete)


def plugins_of(role: str) -> Any:
    """A completion of the installed plugins of ``role`` (from the discovery cache)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        from pinnace import plugins

        return _starting(plugins.available(role), incomplete)

    return complete
