"""``features`` and ``spec``: what the runtime supports, and a default bundle config."""

from __future__ import annotations

import json
import os
from typing import Any

from pinnace.errors import AlreadyExists
from pinnace.runtime.oci import HOOK_KINDS, NAMESPACES, OCI_VERSION


def features() -> dict[str, Any]:
    """The OCI runtime features document (as ``runc features`` prints it)."""
    from pinnace.runtime import capabilities, cgroups
    from pinnace.runtime.seccomp import ACTIONS, OPERATORS

    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec",
                         "private", "rprivate", "shared", "rshared", "slave", "rslave"],
        "linux": {
            "namespaces": [*NAMESPACES, "network"],
            "capabilities": capabilities.supported(),
            "cgroup": {"v1": cgroups.version() != "v2", "v2": cgroups.version() == "v2",
                       "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(ACTIONS),
                        "operators": sorted(OPERATORS)},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runtime-spec.features": "pinnace"},
    }


def write_spec(bundle: str) -> None:
    """Write a default ``config.json`` into ``bundle`` (``sh`` on a terminal, as runc's)."""
    from pinnace.runtime.oci import config_from_spec
    from pinnace.runtime.spec import ContainerSpec, Process

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise AlreadyExists(f"{path} exists: remove it first")
    spec = ContainerSpec(id="", process=Process(args=["sh"], terminal=True,
                                                env=["PATH=/usr/local/sbin:/usr/local/bin:"
                                                     "/usr/sbin:/usr/bin:/sbin:/bin",
                                                     "TERM=xterm"]),
                         rootfs=[], hostname="pinnace", netns=None)
    with open(path, "w") as f:
        json.dump(config_from_spec(spec), f, indent=2)
