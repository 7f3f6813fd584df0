"""Configuration: defaults < TOML file < environment < flags, with the source of every value.

The file is ``--config``, else ``$PINNACE_CONFIG``, else
``/etc/pinnace/pinnace.toml`` when it exists. Layout::

    [engine]
    root = "/var/lib/pinnace"
    storage = "btrfs"        # selected plugins, by name
    network = "none"
    isolation = "unshare"
    userns = "auto"          # host (default), private, auto
    disabled_plugins = ["noisy-events"]   # or "role.name"; env: comma-separated

    [storage.btrfs]          # one table per plugin for its declared options
    loop_size = "20G"

Environment: ``PINNACE_ROOT``, ``PINNACE_STORAGE`` ... for engine keys and
``PINNACE_<ROLE>_<PLUGIN>_<OPTION>`` for plugin options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinnace.errors import InvalidConfig
from pinnace.roles import EXTENSION, ROLES

SYSTEM_CONFIG = Path("/etc/pinnace/pinnace.toml")

ENGINE_DEFAULTS: dict[str, str] = {
    "root": "/var/lib/pinnace",
    "run_root": "",  # empty: /run/pinnace for the default root, <root>/run otherwise
    "storage": "btrfs",
    "network": "none",
    "isolation": "unshare",
    "image_source": "docker",  # the transport of references without one
    "volume": "local",  # the driver of volumes made without -d
    "disabled_plugins": "",  # names (or ROLE.NAME) of installed plugins never to load
    "init_path": "",  # the init of run --init; empty: Debian's catatonit or tini-static
    "default_ulimits": "",  # name=soft[:hard] limits of every container, comma-separated
    "userns": "host",  # the user namespace of containers run without --userns
    "userns_user": "pinnace",  # whose /etc/subuid and /etc/subgid ranges they map
    "api_group": "",  # the group that may use `pinnace serve`'s socket; empty: root only
}


@dataclass
class Value:
    """A configuration value and where it came from (default, file path, env var, flag)."""

    value: Any
    source: str


@dataclass
class Config:
    """The effective configuration of one ``pinnace`` invocation."""

    file: Path | None
    engine: dict[str, Value]
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """The root directory for state, images and storage."""
        return Path(self.engine["root"].value)

    @property
    def run_root(self) -> Path:
        """The directory for runtime files (pid files, netns mounts, fifos)."""
        explicit = self.engine["run_root"].value
        if explicit:
            return Path(explicit)
        if self.engine["root"].source == "default":
            if self.rootless:
                from pinnace import rootless

                return rootless.run_dir()
            return Path("/run/pinnace")
        return self.root / "run"

    @property
    def rootless(self) -> bool:
        """True for an ordinary user's pinnace (root of its own user namespace)."""
        from pinnace import rootless

        return rootless.active()

    def selected(self, role: str) -> Value:
        """The plugin name selected for ``role`` and why."""
        return self.engine[role]

    def disabled(self, role: str, name: str) -> bool:
        """Whether plugin ``name`` of ``role`` is disabled (``disabled_plugins`` lists its
        name, or ``role.name``)."""
        listed = {item.strip() for item in self.engine["disabled_plugins"].value.split(",")}
        return name in listed or f"{role}.{name}" in listed

    def plugin_options(self, role: str, name: str, declared: tuple) -> dict[str, Value]:
        """Values for a plugin's declared options; unknown keys in its table are an error."""
        table = dict(self.tables.get(role, {}).get(name, {}))
        known = {o.name for o in declared}
        unknown = sorted(set(table) - known)
        if unknown:
            raise InvalidConfig(
                f"{self.file}: [{role}.{name}] has unknown option {unknown[0]!r} "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
        values = {}
        for opt in declared:
            env = f"PINNACE_{role}_{name}_{opt.name}".upper().replace("-", "_")
            if env in os.environ:
                values[opt.name] = Value(opt.parse(os.environ[env]), f"env {env}")
            elif opt.name in table:
                values[opt.name] = Value(opt.parse(table[opt.name]), str(self.file))
            else:
                values[opt.name] = Value(opt.default, "default")
        return values


def load(config_file: str | None = None, flags: dict[str, str | None] | None = None) -> Config:
    """Build the effective config from defaults, the file, the environment and ``flags``."""
    path, data = _read_file(config_file)
    engine_table = data.pop("engine", {})
    if not isinstance(engine_table, dict):
        raise InvalidConfig(f"{path}: [engine] must be a table")
    unknown = sorted(set(engine_table) - set(ENGINE_DEFAULTS))
    if unknown:
        raise InvalidConfig(
            f"{path}: unknown key {unknown[0]!r} in [engine] (known: {', '.join(ENGINE_DEFAULTS)})"
        )
    engine: dict[str, Value] = {}
    for key, default in _defaults().items():
        env = f"PINNACE_{key.upper()}"
        flag = (flags or {}).get(key)
        if flag is not None:
            engine[key] = Value(flag, "flag")
        elif os.environ.get(env):
            engine[key] = Value(os.environ[env], f"env {env}")
        elif key in engine_table:
            raw = engine_table[key]
            text = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
            engine[key] = Value(text, str(path))
        else:
            engine[key] = Value(default, "default")
    check_root(engine["root"])
    for role, table in data.items():
        if role not in (*ROLES, EXTENSION):
            raise InvalidConfig(f"{path}: unknown table [{role}]")
        if not isinstance(table, dict) or not all(isinstance(t, dict) for t in table.values()):
            raise InvalidConfig(f"{path}: [{role}] must hold one table per plugin, "
                                f"e.g. [{role}.NAME]")
    return Config(file=path, engine=engine, tables=data)


def _defaults() -> dict[str, str]:
    """:data:`ENGINE_DEFAULTS`; for an ordinary user's pinnace, the root under
    ``$XDG_DATA_HOME`` and the ``dir`` storage unless that root is on btrfs."""
    from pinnace import rootless

    if not rootless.active():
        return ENGINE_DEFAULTS
    root = rootless.data_dir()
    return dict(ENGINE_DEFAULTS, root=str(root), storage="btrfs" if _on_btrfs(root) else "dir")


def _on_btrfs(path: Path) -> bool:
    """True when ``path`` is (or would be made) on btrfs."""
    from pinnace.storage_tree import mount_of

    return mount_of(path)[1] == "btrfs"


def check_root(root: Value) -> None:
    """The root must name a directory, or nothing yet (it is made on first use)."""
    if not root.value:
        raise InvalidConfig(f"the root directory may not be empty (from {root.source})")
    if os.path.lexists(root.value) and not os.path.isdir(root.value):
        raise InvalidConfig(f"root {root.value} is not a directory (from {root.source})")


def _read_file(config_file: str | None) -> tuple[Path | None, dict[str, Any]]:
    explicit = config_file or os.environ.get("PINNACE_CONFIG")
    path = Path(explicit) if explicit else SYSTEM_CONFIG
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise InvalidConfig(f"config file {path} does not exist") from None
        return None, {}
    except OSError as err:
        raise InvalidConfig(f"cannot read config file {path}: {err.strerror}") from None
    import tomllib

    try:
        return path, tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InvalidConfig(f"{path}: not valid TOML: {err}") from None
