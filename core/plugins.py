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

from pinnace.errors import FailedPrecondition, PinnaceError, PluginError, is_no_space, no_space
from pinnace.roles import EXTENSION, GROUP_PREFIX, ROLES

if TYPE_CHECKING:
    import pluggy

    from pinnace.config import Config

CACHE_FORMAT = 1
DISABLE_ENV = "PINNACE_DISABLED_PLUGINS"


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

    Extension plugins (group ``pinnace.plugins``) are loaded when the manager
    is built; one that fails to load is a warning, not a failed command. A
    role plugin is loaded the first time something selects it or something it
    owns is touched. A role call reaches exactly the plugin asked for, with
    the wrappers extension plugins put around that hook; a broadcast (event
    and testbed hooks) reaches every plugin that implements it, each on its
    own, so one plugin's exception is a warning that names it.
    """

    def __init__(self, config: Config, trace: TextIO | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        from pinnace import hookspecs

        self.config = config
        self.warn = warn or _warn
        self.pm: pluggy.PluginManager = hookspecs.PluginManager()
        self.pm.add_hookspecs(hookspecs)
        self._loaded: dict[tuple[str, str], Any] = {}
        self._callers: dict[tuple[str, str], Callable[..., Any]] = {}
        self.timings: list[tuple[str, str, float]] = []
        if trace is not None:
            self._trace(trace)
        for info in discover():
            if info.role == EXTENSION and not config.disabled(info.role, info.name):
                try:
                    self.load(EXTENSION, info.name)
                except PinnaceError as err:
                    self.warn(f"{err}; it is left out (disable it: {DISABLE_ENV}={info.name})")

    def load(self, role: str, name: str) -> Any:
        """The instance of plugin ``name`` of ``role``, imported, built and validated once."""
        key = (role, name)
        if key in self._loaded:
            return self._loaded[key]
        from pinnace.plugin import PluginContext

        if self.config.disabled(role, name):
            raise PluginError(f"{role} plugin {name!r} is disabled by the configuration")
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
        except PinnaceError:
            raise
        except Exception as err:
            raise PluginError(f"{role} plugin {name!r} ({info.dist}) failed to start: "
                              f"{type(err).__name__}: {err}") from err
        problems = _register(self.pm, instance, f"{role}:{name}", role)
        if problems:
            raise PluginError(f"{role} plugin {name!r} ({info.dist}) {problems[0]}")
        self._callers.clear()  # a cached caller excludes only the plugins it knew of
        self._loaded[key] = instance
        return instance

    def implements(self, role: str, plugin: str, verb: str) -> bool:
        """Whether plugin ``plugin`` of ``role`` implements the (optional) hook for ``verb``."""
        return hasattr(self.load(role, plugin), f"pinnace_{role}_{verb}")

    def call(self, role: str, plugin: str, verb: str, /, **kwargs: Any) -> Any:
        """Call hook ``pinnace_<role>_<verb>`` on plugin ``plugin`` only (and the wrappers
        around it) and return its result.

        Errors that are not :class:`PinnaceError` are reported as the plugin's fault.
        """
        if not self.implements(role, plugin, verb):
            raise FailedPrecondition(f"{role} plugin {plugin!r} does not support {verb}")
        try:
            return self._caller(f"{role}:{plugin}", f"pinnace_{role}_{verb}")(**kwargs)
        except PinnaceError:
            raise
        except Exception as err:
            if is_no_space(err):
                assert isinstance(err, OSError)
                raise no_space(err, f"{err.filename or 'a file'} for {role} plugin "
                                    f"{plugin!r} ({verb})") from None
            raise PluginError(
                f"{role} plugin {plugin!r} failed in {verb}: {type(err).__name__}: {err}"
            ) from err

    def implemented(self, hook: str) -> bool:
        """Whether a loaded plugin implements event or testbed hook ``hook`` (wrappers
        aside): whether :meth:`broadcast` would call anything."""
        return any(not (impl.hookwrapper or impl.wrapper)
                   for impl in getattr(self.pm.hook, hook).get_hookimpls())

    def broadcast(self, hook: str, /, **kwargs: Any) -> list[Any]:
        """Call event or testbed hook ``hook`` on every plugin that implements it, one at
        a time; return their results (None left out by pluggy). A plugin's exception is a one-line
        warning naming it, and the others still run."""
        results = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue
            try:  # a hook without firstresult answers with a list
                results += self._caller(impl.plugin_name, hook)(**kwargs)
            except Exception as err:  # an extension must not abort the command
                self.warn(f"plugin {impl.plugin_name} failed in {hook}: "
                          f"{type(err).__name__}: {err}")
        return results

    def _caller(self, plugin_name: str, hook: str) -> Callable[..., Any]:
        """A caller of ``hook`` on ``plugin_name`` alone, inside extension plugins' wrappers."""
        caller = self._callers.get((plugin_name, hook))
        if caller is None:
            target = self.pm.get_plugin(plugin_name)
            others = [p for name, p in self.pm.list_name_plugin()
                      if p is not target and not name.startswith(EXTENSION + ":")]
            if not _is_role_hook(hook):  # events: every other plugin is left out
                others = [p for p in self.pm.get_plugins() if p is not target]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[(plugin_name, hook)] = caller
        return caller

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


def _warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def _is_role_hook(hook: str) -> bool:
    return any(hook.startswith(f"pinnace_{role}_") for role in ROLES)


def validate(role: str, plugin: Any) -> list[str]:
    """What is wrong with a plugin class (or object) of ``role``, as phrases that follow
    its name (empty when nothing is): see :func:`_register`."""
    from pinnace import hookspecs

    pm = hookspecs.PluginManager()
    pm.add_hookspecs(hookspecs)
    return _register(pm, plugin, "checked", role)


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, role: str) -> list[str]:
    """Register ``plugin`` with ``pm`` as ``name`` and check it: unknown hooks, bad
    arguments, missing required hooks, hooks of another role, and role hooks that an
    extension plugin implements without wrapping them. A plugin with problems is
    unregistered again; the problems are returned as phrases that follow its name."""
    from pinnace import hookspecs
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except Exception as err:  # pluggy's validation errors
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
        return ["is invalid: " + " ".join(str(err).split())]  # its messages span lines
    problems = []
    callers = {caller.name: caller for caller in pm.get_hookcallers(plugin) or ()}
    missing = [h for h in hookspecs.REQUIRED.get(role, ()) if h not in callers]
    if missing:
        problems.append(f"does not implement {', '.join(missing)}")
    for hook, caller in sorted(callers.items()):
        owner = next((r for r in ROLES if hook.startswith(f"pinnace_{r}_")), None)
        if owner is None or owner == role:
            continue
        if role != EXTENSION:
            problems.append(f"implements {hook}, a hook of the {owner} role")
        elif any(i.plugin is plugin and not (i.wrapper or i.hookwrapper)
                 for i in caller.get_hookimpls()):
            problems.append(f"implements role hook {hook} without wrapper=True "
                            f"(extension plugins may only wrap role calls)")
    if problems:
        pm.unregister(name=name)
    return problems
