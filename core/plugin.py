"""What a plugin author imports: the ``Plugin`` base class, ``Option`` and ``hookimpl``.

A plugin is a class named by an entry point in one of the role groups
(``pinnace.storage``, ``pinnace.isolation``, ``pinnace.network``,
``pinnace.image_source``) or in ``pinnace.plugins`` for plugins that only
listen to events or add commands. pinnace constructs it once per process with
a :class:`PluginContext` and registers the instance with pluggy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pluggy

hookimpl = pluggy.HookimplMarker("pinnace")

ROLES = ("storage", "isolation", "network", "image_source")
EXTENSION_GROUP = "pinnace.plugins"


def group_of(role: str) -> str:
    """The entry-point group for a role (``storage`` -> ``pinnace.storage``)."""
    return f"pinnace.{role}"


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


class Plugin:
    """Convenience base class: keeps the context and declares no options."""

    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    def opt(self, name: str) -> Any:
        """The value of one of this plugin's options."""
        return self.ctx.options[name]
