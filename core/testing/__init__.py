"""Test suites that plugin authors run against their own plugins (``pinnace.testing``)."""

from __future__ import annotations

from typing import Any


def assert_implements_role(plugin: Any, role: str) -> None:
    """pluggy accepts ``plugin`` (no misspelt hook) and finds every hook ``role`` requires."""
    from pinnace import hookspecs

    pm = hookspecs.PluginManager()
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    pm.check_pending()
    implemented = {caller.name for caller in pm.get_hookcallers(plugin) or ()}
    missing = set(hookspecs.REQUIRED[role]) - implemented
    assert not missing, f"{role} hooks not implemented: {sorted(missing)}"
