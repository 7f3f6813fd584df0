"""Everything a plugin author imports, in one module.

A plugin is a class named by an entry point in one of the role groups
(``pinnace.storage``, ``pinnace.isolation``, ``pinnace.network``,
``pinnace.image_source``, ``pinnace.volume``) or in ``pinnace.plugins`` for plugins that
only listen to events or add commands. pinnace constructs it once per process with
a :class:`PluginContext` and registers the instance with pluggy.

Defined here: the ``hookimpl`` marker, :class:`Plugin`, :class:`Option` and
:class:`PluginContext`. Re-exported, and imported only when first used (every
plugin imports this module on the hot path of ``pinnace run``): the records
hooks take and return (mounts, snapshots, network attachments and results,
the runtime spec and container state, transfer options, volumes), the error classes,
and helpers (``netns``, ``mounted``, ``remove_tree``, ``TreeStorage`` and its
tree functions; ``mount_all``, ``unmount_all``, ``linux``, ``cgroups``, ``limits``,
``Lockdown``, ``restrict_paths``, ``capabilities``, ``seccomp``, ``rootfs``,
``spec_from_dict`` and ``config_from_spec``/``process_config`` (a spec as OCI
``config.json``) for isolation; ``new_config`` and ``parse_changes`` for image sources;
``volume_users`` for volume drivers).
See ``__all__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pluggy

hookimpl = pluggy.HookimplMarker("pinnace")

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("PinnaceError", "NotFound", "AlreadyExists", "FailedPrecondition",
                     "InvalidConfig", "Unavailable", "TryAgain", "NoSpace", "PluginError",
                     "CommandNotFound", "CommandNotExecutable"),
                    "pinnace.errors"),
    **dict.fromkeys(("Mount", "mounted", "mount_all", "unmount_all"), "pinnace.mounts"),
    **dict.fromkeys(("Kind", "SnapshotInfo", "Usage", "StorageCapabilities"),
                    "pinnace.snapshots"),
    "IdMap": "pinnace.runtime.userns",
    **dict.fromkeys(("Attachment", "Network", "NetworkResult", "IPConfig", "Interface",
                     "Route", "PortMapping", "routable_ipv4"), "pinnace.network"),
    **dict.fromkeys(("ContainerSpec", "Process", "User", "MountPoint", "Security",
                     "Resources", "Rlimit", "Device", "spec_from_dict"), "pinnace.runtime.spec"),
    **dict.fromkeys(("ContainerState", "Status"), "pinnace.runtime.status"),
    "ContainerRecord": "pinnace.containers.record",
    **dict.fromkeys(("Lockdown", "restrict_paths"), "pinnace.runtime.security"),
    **dict.fromkeys(("config_from_spec", "process_config"), "pinnace.runtime.oci"),
    **dict.fromkeys(("TransferOptions", "SearchResult"), "pinnace.images.sources"),
    **dict.fromkeys(("ImageStore", "new_config", "parse_changes"), "pinnace.images.store"),
    **dict.fromkeys(("Volume", "VolumeInfo", "VolumeCapabilities"), "pinnace.volumes"),
    "volume_users": "pinnace.volumes.users",
    "VolumeDirectories": "pinnace.volumes.directories",
    "remove_tree": "pinnace.files",
    **dict.fromkeys(("TreeStorage", "key_to_name", "name_to_key", "tree_usage", "mount_of",
                     "free_bytes", "human", "run", "shift_owners", "idmap_works"),
                    "pinnace.storage_tree"),
}
"""Re-exported name -> the module that defines it (imported on first use)."""

_MODULES = {"netns": "pinnace.netns", "linux": "pinnace.linux",
            "cgroups": "pinnace.runtime.cgroups",
            "limits": "pinnace.runtime.limits", "capabilities": "pinnace.runtime.capabilities",
            "seccomp": "pinnace.runtime.seccomp", "rootfs": "pinnace.rootfs",
            "ulimits": "pinnace.runtime.ulimits", "sysctls": "pinnace.runtime.sysctls",
            "devices": "pinnace.runtime.devices", "rootless": "pinnace.rootless",
            "userns": "pinnace.runtime.userns"}
"""Re-exported helper modules: ``netns.entered(path)``, ``linux`` (the system calls
Python lacks: ``unshare``, ``setns``, ``mount``, ``umount``, ``pivot_root``,
``sethostname``, ``set_child_subreaper``), ``cgroups.create(path)`` (a
:class:`~pinnace.runtime.cgroups.Cgroup`), ``limits.apply(cgroup, resources)``,
``capabilities.mask(names)``, ``seccomp.default_profile()``, ``rootfs.mkdir_in(root,
path)`` (paths inside a container's root filesystem, never leaving it),
``ulimits.apply(rlimits)``, ``sysctls.apply(values)`` and ``devices.make(devices)`` (in
the container's process, after pivot_root), ``rootless.active()`` (an ordinary user's
pinnace), ``userns.open_namespace(mapping)``."""

__all__ = sorted(["hookimpl", "Plugin", "Option", "PluginContext", *_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    """Import a re-exported name's module on first use and cache the name here."""
    import importlib

    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes and every re-exported name."""
    return sorted(set(globals()) | set(__all__))

@dataclass
class Option:
    """A plugin option: set in ``[<role>.<plugin>]`` of the config file or
    ``PINNACE_<ROLE>_<PLUGIN>_<OPTION>`` in the environment."""

    name: str
    default: Any
    help: str

    def parse(self, raw: Any) -> Any:
        """Convert a raw config or environment value to the default's type."""
        from pinnace.errors import InvalidConfig

        kind = type(self.default)
        if kind is tuple:  # a TOML list, or comma-separated text from the environment
            items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
        if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
            return raw
        text = str(raw).strip()
        try:
            if kind is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(text)
            return kind(text)
        except ValueError:
            raise InvalidConfig(
                f"option {self.name}: {raw!r} is not a valid {kind.__name__}"
            ) from None


@dataclass
class PluginContext:
    """What a plugin instance is given: its name and role, its option values,
    a private data directory under the root, and the engine's runtime directory."""

    name: str
    role: str
    options: dict[str, Any] = field(default_factory=dict)
    data_dir: Path = Path("/nonexistent")
    run_dir: Path = Path("/nonexistent")

    @classmethod
    def for_plugin(cls, plugin: type, name: str, role: str,
                   options: dict[str, Any] | None = None, data_dir: Path = Path("/nonexistent"),
                   run_dir: Path = Path("/nonexistent")) -> PluginContext:
        """A context for plugin class ``plugin`` outside the engine (tests, contract
        suites): every option it declares set to its default unless ``options`` gives a
        value (parsed like a config value); an undeclared option is InvalidConfig."""
        from pinnace.errors import InvalidConfig

        declared = {o.name: o for o in getattr(plugin, "options", ())}
        given = dict(options or {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise InvalidConfig(f"{role} plugin {name}: unknown option {unknown[0]!r} "
                                f"(known: {', '.join(sorted(declared)) or 'none'})")
        values = {key: opt.parse(given[key]) if key in given else opt.default
                  for key, opt in declared.items()}
        return cls(name, role, values, Path(data_dir), Path(run_dir))


class Plugin:
    """Convenience base class: keeps the context and declares no options."""

    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    def opt(self, name: str) -> Any:
        """The value of one of this plugin's options."""
        return self.ctx.options[name]
