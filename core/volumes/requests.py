"""What ``run``'s mount flags ask for, parsed and checked before anything is made:
``-v``/``--volume``, ``--mount``, ``--tmpfs``, ``--volumes-from`` and the image's
``VOLUME`` entries, with docker's syntax and docker's errors, each in one line."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pinnace.errors import InvalidConfig

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
TYPES = ("bind", "volume", "tmpfs")
MODES = {"ro", "rw", "nocopy", "z", "Z", "consistent", "cached", "delegated", *PROPAGATIONS}
"""What may follow a ``-v`` destination (SELinux labels and macOS hints are accepted
and ignored, as on hosts without them)."""
_MOUNT_KEYS = {
    "type": "", "source": "", "src": "", "target": "", "destination": "", "dst": "",
    "readonly": "", "ro": "", "volume-opt": "volume", "volume-driver": "volume",
    "volume-label": "volume", "volume-nocopy": "volume",
    "tmpfs-size": "tmpfs", "tmpfs-mode": "tmpfs", "bind-propagation": "bind",
}
"""``--mount`` keys, and the mount type each is for ('' for any)."""


@dataclass
class MountRequest:
    """One mount a container asked for."""

    type: str
    """``bind`` (a host path), ``volume`` (named or anonymous) or ``tmpfs``."""
    destination: str
    source: str = ""
    """The host path of a bind, the name of a volume ('' for a new anonymous one)."""
    readonly: bool = False
    propagation: str = ""
    """A bind's propagation (``rprivate`` unless asked)."""
    create_source: bool = False
    """Make a missing bind source directory (``-v``); ``--mount`` refuses one."""
    driver: str = ""
    """The driver of a volume that does not exist yet ('' the selected one)."""
    driver_options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    nocopy: bool = False
    """Do not copy the image's files at the destination into a new volume."""
    tmpfs_options: list[str] = field(default_factory=list)


def _destination(path: str, spec: str) -> str:
    if not path.startswith("/"):
        raise InvalidConfig(f"invalid mount path in {spec!r}: {path!r} mount path must be "
                            f"absolute")
    clean = os.path.normpath(path)
    if clean == "/":
        raise InvalidConfig(f"invalid volume specification: {spec!r}: destination can't be '/'")
    return clean


def parse_volume(spec: str) -> MountRequest:
    """``-v HOST:CTR[:MODE]``, ``-v NAME:CTR[:MODE]`` or ``-v CTR`` (anonymous)."""
    parts = spec.split(":")
    modes: list[str] = []
    if len(parts) == 3 or (len(parts) == 2 and set(parts[1].split(",")) <= MODES):
        modes = parts.pop().split(",")
    if len(parts) not in (1, 2) or not all(parts):
        raise InvalidConfig(f"invalid volume specification: {spec!r}")
    source, destination = ("", parts[0]) if len(parts) == 1 else parts
    request = MountRequest("volume", _destination(destination, spec))
    for mode in modes:
        if mode in ("ro", "rw"):
            request.readonly = mode == "ro"
        elif mode in PROPAGATIONS:
            request.propagation = mode
        elif mode == "nocopy":
            request.nocopy = True
        elif mode not in MODES:
            raise InvalidConfig(f"invalid mode: {mode} in volume specification {spec!r}")
    if source.startswith("/"):
        request.type, request.source, request.create_source = "bind", source, True
    elif source:
        request.source = volume_name(source)
    if request.propagation and request.type != "bind":
        raise InvalidConfig(f"invalid volume specification: {spec!r}: propagation applies "
                            f"to bind mounts only")
    return request


def volume_name(name: str) -> str:
    """``name`` if docker would take it as a volume's name."""
    if not NAME_RE.match(name):
        raise InvalidConfig(f'"{name}" includes invalid characters for a local volume name, '
                            f'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended '
                            f'to pass a host directory, use absolute path')
    return name


def _flag(key: str, value: str | None) -> bool:
    if value is None or value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidConfig(f"invalid value for {key}: {value}")


def _pair(item: str, what: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise InvalidConfig(f"invalid {what} {item!r}: expected KEY=VALUE")
    return key, value


def parse_mount(spec: str) -> MountRequest:
    """``--mount type=bind|volume|tmpfs,source=,target=,readonly,...`` (docker's keys)."""
    fields: list[tuple[str, str | None]] = []
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key not in _MOUNT_KEYS:
            raise InvalidConfig(f"invalid field '{item}' in --mount {spec!r}" if not sep else
                                f"unexpected key '{key}' in '{item}'")
        if not sep and key not in ("readonly", "ro", "volume-nocopy"):
            raise InvalidConfig(f"invalid field '{item}' must be a key=value pair")
        fields.append((key, value if sep else None))
    kind = next((v for k, v in fields if k == "type"), None) or "volume"
    if kind not in TYPES:
        raise InvalidConfig(f"invalid mount type: {kind!r} (bind, volume or tmpfs)")
    request = MountRequest(kind, "")
    target = ""
    for key, value in fields:
        family = _MOUNT_KEYS[key]
        if family and family != kind:
            raise InvalidConfig(f"cannot mix '{family}-*' options with mount type '{kind}'")
        text = value or ""
        if key in ("source", "src"):
            request.source = text
        elif key in ("target", "destination", "dst"):
            target = text
        elif key in ("readonly", "ro"):
            request.readonly = _flag(key, value)
        elif key == "volume-opt":
            k, v = _pair(text, "volume-opt")
            request.driver_options[k] = v
        elif key == "volume-label":
            k, v = _pair(text, "volume-label")
            request.labels[k] = v
        elif key == "volume-driver":
            request.driver = text
        elif key == "volume-nocopy":
            request.nocopy = _flag(key, value)
        elif key == "tmpfs-size":
            from pinnace.units import parse_bytes

            request.tmpfs_options.append(f"size={parse_bytes(text, 'tmpfs-size')}")
        elif key == "tmpfs-mode":
            if not re.fullmatch(r"[0-7]{1,4}", text):
                raise InvalidConfig(f"invalid value for tmpfs-mode: {text!r} (octal, e.g. 1777)")
            request.tmpfs_options.append(f"mode={text}")
        elif key == "bind-propagation":
            if text not in PROPAGATIONS:
                raise InvalidConfig(f"invalid value for bind-propagation: {text!r} "
                                    f"({', '.join(PROPAGATIONS)})")
            request.propagation = text
    if not target:
        raise InvalidConfig(f"invalid --mount {spec!r}: target is required")
    request.destination = _destination(target, spec)
    if kind == "bind" and not request.source:
        raise InvalidConfig('invalid mount config for type "bind": field Source must not be '
                            'empty')
    if kind == "bind" and not request.source.startswith("/"):
        raise InvalidConfig(f'invalid mount config for type "bind": invalid mount path: '
                            f"'{request.source}' mount path must be absolute")
    if kind == "tmpfs" and request.source:
        raise InvalidConfig('invalid mount config for type "tmpfs": field Source must not be '
                            'specified')
    if kind == "volume" and request.source:
        volume_name(request.source)
    if kind == "tmpfs":
        request.tmpfs_options[:0] = ["nosuid", "nodev"]
    return request


def parse_tmpfs(spec: str) -> MountRequest:
    """``--tmpfs PATH[:OPTIONS]`` (mount(8) options: ``size=64m,mode=1777,exec``)."""
    path, _, options = spec.partition(":")
    wanted = [o for o in options.split(",") if o]
    defaults = [d for d in ("noexec", "nosuid", "nodev")
                if not any(o in (d, d[2:]) for o in wanted)]  # exec undoes noexec ...
    wanted = [o for o in wanted if o not in ("exec", "suid", "dev")]
    readonly = "ro" in wanted
    return MountRequest("tmpfs", _destination(path, spec), readonly=readonly,
                        tmpfs_options=[*defaults, *(o for o in wanted if o not in ("ro", "rw"))])


def image_volumes(image_config: dict) -> list[MountRequest]:
    """Anonymous volumes for the image's ``VOLUME`` entries."""
    return [MountRequest("volume", _destination(path, path))
            for path in sorted(image_config.get("Volumes") or {})]


def parse_volumes_from(spec: str, mounts_of: Callable[[str], Iterable[MountRequest]]
                       ) -> list[MountRequest]:
    """``--volumes-from CONTAINER[:ro|rw]``: the volumes and binds ``CONTAINER`` mounts,
    at the same places (read-only with ``:ro``, else as it has them)."""
    ref, _, mode = spec.partition(":")
    if mode not in ("", "ro", "rw"):
        raise InvalidConfig(f"invalid mode for volumes-from: {mode!r} (ro or rw)")
    found = []
    for request in mounts_of(ref):
        if mode:
            request.readonly = mode == "ro"
        found.append(request)
    return found


def for_run(volumes: Sequence[str], mounts: Sequence[str], tmpfs: Sequence[str],
            volumes_from: Sequence[str], image_config: dict,
            mounts_of: Callable[[str], Iterable[MountRequest]]) -> list[MountRequest]:
    """Every mount ``run`` asked for, in the order docker applies them, one per
    destination: the image's volumes give way to anything given for the same place;
    two flags for one destination are an error."""
    given: list[MountRequest] = []
    for spec in volumes_from:
        given += parse_volumes_from(spec, mounts_of)
    explicit = ([parse_volume(v) for v in volumes] + [parse_mount(m) for m in mounts]
                + [parse_tmpfs(t) for t in tmpfs])
    seen: dict[str, MountRequest] = {}
    for request in explicit:
        if request.destination in seen:
            raise InvalidConfig(f"duplicate mount point: {request.destination}")
        seen[request.destination] = request
    for request in given:  # --volumes-from gives way to this container's own flags
        seen.setdefault(request.destination, request)
    for request in image_volumes(image_config):
        seen.setdefault(request.destination, request)
    return list(seen.values())
