"""Plugin discovery (entry points, cached), selection by name, and calls through pluggy.

Discovery reads the entry-point groups of every installed distribution once
and caches the result, keyed on ``sys.path`` and the mtimes of its entries,
so ``pinnace run`` imports exactly the plugin modules it uses and nothing
scans site-packages on the hot path. ``pinnace plugins`` loads everything
through stevedore (:func:`load_all`), which also turns two plugins with one
name into an error.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pinnace.errors import FailedPrecondition, PinnaceError, PluginError

if TYPE_CHECKING:
    import pluggy

    from pinnace.config import Config

GROUP_PREFIX = "pinnace."
CACHE_FORMAT = 1


@dataclass
class EntryPointInfo:
    """One installed plugin as its distribution declares it."""

    group: str
    name: str
    value: str
    dist: str
    version: str

    @property
    def role(self) -> str:
        """``storage``, ``network`` ... or ``plugins`` for extension plugins."""
        return self.group[len(GROUP_PREFIX):]


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = f"{zlib.crc32(sys.prefix.encode()):08x}"
    return Path(base) / "pinnace" / f"entry-points-{tag}.json"


def _search_path() -> list[str]:
    """Where plugins are installed: ``sys.path`` without the entry Python puts first, the
    script's directory (the current one for ``python -m``), unless ``-P`` left it out.
    It holds no installed plugin, and keying the cache on it would rebuild the cache
    whenever a file there changes."""
    return sys.path if sys.flags.safe_path else sys.path[1:]


def _path_key() -> str:
    """The interpreter and every searched entry with its mtime: installs change it."""
    parts = [sys.executable]
    for entry in _search_path():
        try:
            mtime = os.stat(entry or ".").st_mtime_ns
        except OSError:
            mtime = 0
        parts.append(f"{entry}={mtime}")
    return "\n".join(parts)


def _scan() -> list[EntryPointInfo]:
    from importlib import metadata

    found, seen = [], set()
    for dist in metadata.distributions(path=_search_path()):
        name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            item = (ep.group, ep.name, ep.value)
            if ep.group.startswith(GROUP_PREFIX) and item not in seen:
                seen.add(item)
                found.append(EntryPointInfo(ep.group, ep.name, ep.value, name, dist.version))
    return sorted(found, key=lambda e: (e.group, e.name, e.dist))


_discovered: dict[str, list[EntryPointInfo]] = {}
"""What :func:`discover` found in this process, by :func:`_path_key`."""


def discover() -> list[EntryPointInfo]:
    """Every entry point in a ``pinnace.*`` group, from the cache when it is current."""
    key = _path_key()
    if key not in _discovered:
        _discovered.clear()
        _discovered[key] = _read_cache(key)
    return _discovered[key]


def _read_cache(key: str) -> list[EntryPointInfo]:
    path = _cache_file()
    try:
        data = json.loads(path.read_text())
        if data.get("format") == CACHE_FORMAT and data.get("key") == key:
            return [EntryPointInfo(**e) for e in data["entry_points"]]
    except (OSError, ValueError, TypeError, KeyError):
        pass
    found = _scan()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(
            {"format": CACHE_FORMAT, "key": key, "entry_points": [asdict(e) for e in found]}
        ))
        os.replace(tmp, path)
    except OSError:
        pass
    return found


def available(role: str) -> list[str]:
    """Names of the installed plugins of ``role``."""
    return sorted({e.name for e in discover() if e.role == role})


def find(role: str, name: str) -> EntryPointInfo:
    """The entry point of plugin ``name`` in ``role``; one-line errors list the alternatives."""
    matches = [e for e in discover() if e.role == role and e.name == name]
    if not matches:
        names = ", ".join(available(role)) or "none installed"
        raise PluginError(f"unknown {role} plugin {name!r} (available: {names})")
    if len({m.value for m in matches}) > 1:
        who = ", ".join(f"{m.value} from {m.dist}" for m in matches)
        raise PluginError(f"two {role} plugins are named {name!r}: {who}; uninstall one")
    return matches[0]


def import_target(info: EntryPointInfo) -> Any:
    """Import the object an entry point names (``module:attr``), directly, without stevedore."""
    module, _, attr = info.value.partition(":")
    try:
        obj = importlib.import_module(module.strip())
        for part in attr.strip().split(".") if attr else ():
            obj = getattr(obj, part)
    except PinnaceError:
        raise
    except Exception as err:  # any import-time failure of third-party code
        raise PluginError(
            f"{info.role} plugin {info.name!r} ({info.dist} {info.version}) failed to load: "
            f"{type(err).__name__}: {err}"
        ) from err
    return obj


def load_all() -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], str]]:
    """Load every installed plugin through stevedore.

    Returns ``(loaded, failed)``: plugin objects and load errors, both keyed
    by ``(role, name)``; two plugins with one name land in ``failed``.
    """
    from stevedore import ExtensionManager

    loaded: dict[tuple[str, str], Any] = {}
    failed: dict[tuple[str, str], str] = {}
    for group in sorted({e.group for e in discover()}):
        role = group[len(GROUP_PREFIX):]

        def on_failure(_mgr: Any, ep: Any, err: Exception, role: str = role) -> None:
            failed[(role, ep.name)] = f"{type(err).__name__}: {err}"

        def on_conflict(_ns: str, name: str, exts: list, role: str = role) -> Any:
            failed[(role, name)] = "several plugins share this name: " + ", ".join(
                e.entry_point.value for e in exts
            )
            return exts[0]

        mgr = ExtensionManager(group, on_load_failure_callback=on_failure,
                               conflict_resolver=on_conflict)
        for ext in mgr:
            mgr[ext.name]  # resolves duplicate names through on_conflict
            if (role, ext.name) not in failed:
                loaded[(role, ext.name)] = ext.plugin
    return loaded, failed


class Plugins:
    """The plugin manager of one pinnace process: loads plugins on demand and calls them.

    Extension plugins (group ``pinnace.plugins``) are always loaded; a role
    plugin is loaded the first time something selects it or something it
    owns is touched. Role calls reach exactly one plugin.
    """

    def __init__(self, config: Config, trace: TextIO | None = None) -> None:
        from pinnace import hookspecs

        self.config = config
        self.pm: pluggy.PluginManager = hookspecs.PluginManager()
        self.pm.add_hookspecs(hookspecs)
        self._loaded: dict[tuple[str, str], Any] = {}
        self._callers: dict[tuple[str, str, str], Callable[..., Any]] = {}
        self.timings: list[tuple[str, str, float]] = []
        if trace is not None:
            self._trace(trace)
        for info in discover():
            if info.role == "plugins":
                self.load("plugins", info.name)

    @property
    def hook(self) -> Any:
        """Event and extension hooks: reach every loaded plugin."""
        return self.pm.hook

    def load(self, role: str, name: str) -> Any:
        """The instance of plugin ``name`` of ``role``, imported, built and validated once."""
        key = (role, name)
        if key in self._loaded:
            return self._loaded[key]
        from pinnace.hookspecs import REQUIRED
        from pinnace.plugin import PluginContext

        info = find(role, name)
        cls = import_target(info)
        declared = tuple(getattr(cls, "options", ()))
        values = self.config.plugin_options(role, name, declared)
        ctx = PluginContext(
            name=name,
            role=role,
            options={k: v.value for k, v in values.items()},
            data_dir=self.config.root / role / name,
            run_dir=self.config.run_root,
        )
        try:
            instance = cls(ctx) if isinstance(cls, type) else cls
            self.pm.register(instance, name=f"{role}:{name}")
            self.pm.check_pending()
        except PinnaceError:
            raise
        except Exception as err:
            self._forget(f"{role}:{name}")
            detail = " ".join(str(err).split())  # pluggy's messages span lines
            raise PluginError(f"{role} plugin {name!r} ({info.dist}) is invalid: {detail}") from err
        implemented = {h.name for h in self.pm.get_hookcallers(instance) or ()}
        missing = [h for h in REQUIRED.get(role, ()) if h not in implemented]
        if missing:
            self._forget(f"{role}:{name}")
            raise PluginError(
                f"{role} plugin {name!r} ({info.dist}) does not implement {', '.join(missing)}"
            )
        self._loaded[key] = instance
        return instance

    def _forget(self, plugin_name: str) -> None:
        if self.pm.get_plugin(plugin_name) is not None:
            self.pm.unregister(name=plugin_name)

    def call(self, role: str, plugin: str, verb: str, /, **kwargs: Any) -> Any:
        """Call hook ``pinnace_<role>_<verb>`` on plugin ``plugin`` only and return its result.

        Errors that are not :class:`PinnaceError` are reported as the plugin's fault.
        """
        instance = self.load(role, plugin)
        hook = f"pinnace_{role}_{verb}"
        caller = self._callers.get((role, plugin, hook))
        if caller is None:
            if not hasattr(instance, hook):
                raise FailedPrecondition(f"{role} plugin {plugin!r} does not support {verb}")
            others = [p for p in self.pm.get_plugins() if p is not instance]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[(role, plugin, hook)] = caller
        try:
            return caller(**kwargs)
        except PinnaceError:
            raise
        except Exception as err:
            raise PluginError(
                f"{role} plugin {plugin!r} failed in {verb}: {type(err).__name__}: {err}"
            ) from err

    def _trace(self, out: TextIO) -> None:
        starts: list[float] = []

        def before(hook_name: str, impls: list, kwargs: dict) -> None:
            starts.append(time.perf_counter())

        def after(outcome: Any, hook_name: str, impls: list, kwargs: dict) -> None:
            ms = (time.perf_counter() - starts.pop()) * 1000
            who = ",".join(self.pm.get_name(i.plugin) or "?" for i in impls) or "-"
            self.timings.append((hook_name, who, ms))
            failed = " FAILED" if outcome.exception is not None else ""
            print(f"trace: {hook_name} [{who}] {ms:.2f} ms{failed}", file=out, flush=True)

        self.pm.add_hookcall_monitoring(before, after)
