"""The plugin roles: the one list every part of pinnace reads (no imports: config and
discovery read it on the hot path)."""

from __future__ import annotations

ROLES = ("storage", "isolation", "network", "image_source", "volume")
"""Roles whose plugins are selected per container (or per transport) and called alone."""
EXTENSION = "plugins"
"""The role name of extension plugins (group ``pinnace.plugins``): events, commands."""
GROUP_PREFIX = "pinnace."
"""Entry-point groups are this prefix and a role: ``pinnace.storage``, ``pinnace.plugins``."""
