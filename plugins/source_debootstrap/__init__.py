"""The ``debootstrap`` image source: ``pinnace pull debootstrap:bookworm`` builds a
Debian image with Debian's ``debootstrap``, from the mirror this host's apt uses.

The reference is ``SUITE`` with optional overrides of the plugin's options:
``debootstrap:bookworm?variant=buildd&include=curl,ca-certificates``. The
image is tagged ``debootstrap:SUITE`` (plus ``-VARIANT`` when not the
default, and a hash of the extra packages when there are any). Its config
records the recipe in a label and the debootstrap command in its history.

Each recipe is built once: the image is kept under the plugin's data directory
(``built/HASH``: its config and its layer, hard-linked to the stored blob when
both are on one filesystem), so pulling the same recipe again, after ``rmi``
or into another store, gives the same image without a build; remove that
directory to build afresh. Builds take a lock on the data directory, so
concurrent pulls of one recipe build it once. A suite debootstrap has no
script for, or that the mirror does not have, is ``NotFound``.

debootstrap runs in a private mount namespace (``unshare --mount``), so the
``/proc`` and ``/sys`` it mounts in the target vanish with it, whatever
happens; the tree is built under the plugin's data directory and removed
once it is stored as a layer.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinnace.plugin import (
    FailedPrecondition,
    InvalidConfig,
    NotFound,
    Option,
    Plugin,
    Unavailable,
    hookimpl,
)

if TYPE_CHECKING:
    from pinnace.plugin import ImageStore

RECIPE_LABEL = "org.pinnace.debootstrap.recipe"
DEFAULT_VARIANT = "minbase"
_VARIANTS = ("minbase", "buildd", "fakechroot", "-")
_TAG_RE = r"[a-z0-9][a-z0-9.]*"


class DebootstrapSource(Plugin):
    """Builds Debian images with debootstrap; one cached image per recipe."""

    options = (
        Option("variant", DEFAULT_VARIANT, "debootstrap --variant: minbase, buildd, fakechroot "
               "or - (the default set of Priority: required and important packages)"),
        Option("include", "", "extra packages, comma-separated (debootstrap --include)"),
        Option("mirror", "", "mirror URI; empty: the Debian mirror in /etc/apt/sources.list{,.d}"),
    )

    @hookimpl
    def pinnace_image_source_fetch(self, reference: str, store: ImageStore) -> str:
        """Return the cached image for the recipe ``reference`` names, building it first
        when there is none."""
        recipe = self.recipe(reference)
        tag = tag_for(recipe)
        with contextlib.suppress(NotFound):
            image = store.resolve(tag)
            labels = (image.config.get("config") or {}).get("Labels") or {}
            if labels.get(RECIPE_LABEL) == _canonical(recipe):
                return image.id
        kept = self.ctx.data_dir / "built" / hashlib.sha256(
            _canonical(recipe).encode()).hexdigest()[:16]
        if not kept.is_dir():
            with self._build_lock():
                if not kept.is_dir():
                    return self.build(recipe, tag, store, kept)
        return _restore(kept, tag, store)

    def recipe(self, reference: str) -> dict[str, Any]:
        """Suite, variant, extra packages, mirror and keyring for ``reference``."""
        import re
        from urllib.parse import parse_qsl

        from pinnace_plugins.source_debootstrap.sources import debian_mirror

        suite, _, query = reference.partition("?")
        if not re.fullmatch(_TAG_RE, suite):
            raise InvalidConfig(f"debootstrap: invalid suite {suite!r} (e.g. bookworm)")
        params = {"variant": self.opt("variant"), "include": self.opt("include"),
                  "mirror": self.opt("mirror")}
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
            if key not in params:
                raise InvalidConfig(f"debootstrap: unknown option {key!r} "
                                    f"(known: {', '.join(params)})")
            params[key] = value
        if params["variant"] not in _VARIANTS:
            raise InvalidConfig(f"debootstrap: unknown variant {params['variant']!r} "
                                f"(known: {', '.join(_VARIANTS)})")
        packages = sorted({p.strip() for p in params["include"].split(",") if p.strip()})
        for package in packages:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package):
                raise InvalidConfig(f"debootstrap: invalid package name {package!r}")
        keyring = ""
        mirror = params["mirror"]
        if not mirror:
            source = debian_mirror(suite)
            mirror, keyring = source.uri, source.keyring
        if keyring and not keyring.startswith("/"):
            keyring = ""  # an inline key block: debootstrap's default keyring applies
        return {"suite": suite, "variant": params["variant"], "include": packages,
                "mirror": mirror, "keyring": keyring}

    @contextlib.contextmanager
    def _build_lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the data directory (made if missing)."""
        import fcntl

        self.ctx.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.ctx.data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def build(self, recipe: dict[str, Any], tag: str, store: ImageStore, kept: Path) -> str:
        """Run debootstrap, store the tree as a one-layer image tagged ``tag`` and keep
        the image in ``kept``; return its ID."""
        from pinnace.plugin import new_config

        argv = debootstrap_argv(recipe)
        self._sweep()
        work = self.ctx.data_dir / f"build-{os.getpid()}-{os.urandom(4).hex()}"
        work.mkdir(mode=0o700)
        try:
            target = work / "rootfs"
            _run_debootstrap(argv, recipe["suite"], target, recipe["mirror"],
                             work / "debootstrap.log")
            _trim(target)
            container_config = {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["bash"], "Labels": {RECIPE_LABEL: _canonical(recipe)}}
            with store.staging() as written:
                layer = store.add_tree(target)
                written.append(layer.digest)
                config = new_config([layer.digest], container_config,
                                    " ".join(argv + [recipe["suite"], recipe["mirror"]]),
                                    f"pinnace pull debootstrap:{recipe['suite']}")
                image_id = store.add_image(config, [layer], [tag], "debootstrap", written)
            keep = work / "kept"
            keep.mkdir()
            _link_or_copy(store.blob_path(layer.digest), keep / "layer.tar")
            (keep / "config.json").write_bytes(config)
            kept.parent.mkdir(exist_ok=True)
            os.rename(keep, kept)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return image_id

    def _sweep(self) -> None:
        """Remove build trees left by a pinnace killed mid-build (an hour old)."""
        for entry in self.ctx.data_dir.glob("build-*"):
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > 3600:
                    shutil.rmtree(entry, ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``; copy it when they are on different filesystems."""
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        shutil.copyfile(src, dst)


def _restore(kept: Path, tag: str, store: ImageStore) -> str:
    """Store the image kept in ``kept`` (``config.json`` and ``layer.tar``), tagged ``tag``;
    return its ID."""
    config = (kept / "config.json").read_bytes()
    diff_id = json.loads(config)["rootfs"]["diff_ids"][0]
    with store.staging() as written, open(kept / "layer.tar", "rb") as layer:
        blob = store.add_blob(layer, expected=diff_id)
        written.append(blob[0])
        return store.add_image(config, [blob], [tag], "debootstrap", written)


def _canonical(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"))


def tag_for(recipe: dict[str, Any]) -> str:
    """``debootstrap:SUITE[-VARIANT][-HASH]``: the variant when not the default, a hash of
    the extra packages when there are any."""
    tag = recipe["suite"]
    if recipe["variant"] != DEFAULT_VARIANT:
        tag += "-" + recipe["variant"].replace("-", "default")
    if recipe["include"]:
        tag += "-" + hashlib.sha256(",".join(recipe["include"]).encode()).hexdigest()[:8]
    return f"debootstrap:{tag}"


def debootstrap_argv(recipe: dict[str, Any]) -> list[str]:
    """The debootstrap command line (without target and mirror)."""
    argv = ["debootstrap"]
    if recipe["variant"] != "-":
        argv.append(f"--variant={recipe['variant']}")
    if recipe["include"]:
        argv.append("--include=" + ",".join(recipe["include"]))
    if recipe["keyring"]:
        argv.append(f"--keyring={recipe['keyring']}")
    return argv


def _proxy_env() -> dict[str, str]:
    """The environment for debootstrap, with apt's configured HTTP proxy if it has one."""
    env = dict(os.environ)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["apt-config", "shell", "PROXY", "Acquire::http::Proxy"],
                             capture_output=True, text=True, timeout=10).stdout
        if out.startswith("PROXY="):
            env.setdefault("http_proxy", out.split("=", 1)[1].strip().strip("'"))
    return env


def _run_debootstrap(argv: list[str], suite: str, target: Path, mirror: str, log: Path) -> None:
    """Run debootstrap ``argv`` for ``suite`` into ``target``; a suite it has no script for
    or the mirror does not have is NotFound, any other failure FailedPrecondition."""
    if shutil.which("debootstrap") is None:
        raise Unavailable("debootstrap is not installed: apt-get install debootstrap")
    with open(log, "w") as out:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", *argv,
                               suite, str(target), mirror],
                              stdout=out, stderr=subprocess.STDOUT, env=_proxy_env())
    if proc.returncode == 0:
        return
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "W: Failure"))]
    last = (errors or lines or ["no output"])[-1]
    if last.startswith("E: No such script"):
        raise NotFound(f"debootstrap: no such suite {suite!r} (debootstrap has no script for it)")
    fetched = target / "debootstrap" / "debootstrap.log"  # wget's output
    if last.startswith("E: Failed getting release file") and fetched.is_file() \
            and "ERROR 404" in fetched.read_text(errors="replace"):
        raise NotFound(f"debootstrap: no suite {suite!r} on {mirror} (its Release file "
                       f"is not there)")
    raise FailedPrecondition(f"debootstrap failed (exit {proc.returncode}): {last}")


def _trim(rootfs: Path) -> None:
    """Drop what a container image does not need: downloaded .debs and package lists."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / sub).glob("*"):
            if entry.is_file() and not entry.is_symlink() and entry.name != "lock":
                entry.unlink()
