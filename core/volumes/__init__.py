"""Volumes: the records volume plugins take and return, and what the state keeps.

A volume driver (role ``volume``) makes, mounts and removes named volumes, shaped
like docker's volume plugin protocol: ``create`` returns a :class:`VolumeInfo`,
``mount`` returns the host directory that shows the volume (mounted there by the
driver when it needs a mount), and the core bind-mounts that directory into each
container that uses the volume. The volume that a driver made belongs to it: the
state records the driver with each :class:`Volume`, and every later call goes there.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VolumeInfo:
    """A volume as its driver sees it (docker's ``Volume`` of the plugin protocol)."""

    name: str
    mountpoint: str = ""
    """The host directory that shows the volume (may exist only while it is mounted)."""
    created_at: float = 0.0
    """When the driver made it (seconds since the epoch)."""
    status: dict[str, str] = field(default_factory=dict)
    """Driver-specific details for ``volume inspect`` (docker's ``Status``)."""


@dataclass
class VolumeCapabilities:
    """What a driver can do: ``scope`` is ``local`` (one host) or ``global`` (the volume
    is the same wherever it is mounted)."""

    scope: str = "local"


@dataclass
class Volume:
    """A volume as the state records it: its owning driver, how it was made, its users."""

    name: str
    driver: str
    mountpoint: str = ""
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    created: float = 0.0
    users: list[str] = field(default_factory=list)
    """IDs of the containers that mount it (a volume with users cannot be removed)."""
