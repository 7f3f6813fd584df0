"""Running a parsed Dockerfile, step by step, as docker's classic builder does.

Each step starts from the image the previous one made and makes an image of its
own (untagged: an intermediate image, which ``image prune`` removes). ``RUN`` is a
container made and started through the engine with the selected storage,
isolation and network plugins; its changes become a layer (the same diff walk as
``commit``). ``COPY``/``ADD`` and ``WORKDIR`` write into a container's root
filesystem that is never started, then commit it. The other instructions only
change the config (an image with an empty layer in its history).

Before a step runs, the cache is asked (:mod:`pinnace.build.cache`): the parent
image, the step's text with the build args it sees, and the checksum of the files
it copies. The whole build is one operation of the store; each container it makes
is noted on its lease, so a killed build leaves only what the next command
collects.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from pinnace import faults
from pinnace.build import cache, metadata, words
from pinnace.build.dockerfile import Dockerfile, Instruction, Stage
from pinnace.build.stagestate import (
    DEFAULT_SHELL,
    MAX_ENV_STRING,
    NOP,
    PROXY_ARGS,
    StageState,
    seen_args,
)
from pinnace.errors import InvalidConfig, NotFound, PinnaceError, StepFailed

if TYPE_CHECKING:
    from pinnace.build.tree import Tree
    from pinnace.engine import Engine
    from pinnace.operations import Lease

@dataclass(frozen=True)
class BuildOptions:
    """What ``pinnace build`` asks for."""

    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    storage: str | None = None
    isolation: str | None = None
    network: str | None = None


class Builder:
    """One build: the engine, the options, where the progress lines go."""

    def __init__(self, engine: Engine, options: BuildOptions, out: TextIO,
                 dockerfile: Dockerfile, context: Tree,
                 echo: dict[str, int] | None = None) -> None:
        self.engine = engine
        self.echo = {"stdout": 1, "stderr": 2} if echo is None else echo
        self.dockerfile = dockerfile
        self.context = context
        self.escape = dockerfile.escape
        self.options = options
        self.out = out
        self.cache = cache.BuildCache(engine.state)
        self.consumed: set[str] = set()
        self.stage_images: dict[int, str] = {}
        self.lease: Lease | None = None
        self.step_number = 0
        self.step_count = 0
        self.global_args: dict[str, str] = {}

    def say(self, line: str) -> None:
        """Print a progress line (not with ``--quiet``)."""
        if not self.options.quiet:
            print(line, file=self.out, flush=True)

    # ------------------------------------------------------------ the build
    def build(self) -> str:
        """Build up to the target stage (the last one by default); tag; return the ID."""
        dockerfile = self.dockerfile
        stages = dockerfile.stages
        if self.options.target is not None:
            target = dockerfile.stage(self.options.target)
            if target is None:
                raise NotFound(f"target stage {self.options.target!r} could not be found")
            stages = stages[:target.index + 1]
        self.step_count = sum(1 + len(s.instructions) for s in stages)
        global_args = self._global_args(dockerfile.global_args)
        with self.engine.operation("build") as lease:
            self.lease = lease
            image_id = ""
            for stage in stages:
                image_id = self._stage(stage, global_args)
                self.stage_images[stage.index] = image_id
            if self.options.labels:
                state = self._state_of(image_id)
                label = Instruction("LABEL", " ".join(
                    f"{json.dumps(k)}={json.dumps(v)}" for k, v in self.options.labels.items()),
                    0)
                image_id = self._config_step(state, label, quietly=True)
            unused = sorted(set(self.options.build_args) - self.consumed - PROXY_ARGS)
            if unused:
                self.say(f"[Warning] One or more build-args {unused} were not consumed")
            self.say(f"Successfully built {_short(image_id)}")
            for tag in self.options.tags:  # in the operation: nothing removes the image first
                self.engine.images.tag(image_id, tag)
                self.say(f"Successfully tagged {self.engine.images.tag_reference(tag)}")
        return image_id

    def _global_args(self, lines: list[Instruction]) -> dict[str, str]:
        """The values of the ARGs before the first FROM (usable in FROM lines)."""
        values: dict[str, str] = {}
        for line in lines:
            for name, default in _arg_names(line, values, self.escape):
                if name in self.options.build_args:
                    values[name] = self.options.build_args[name]
                    self.consumed.add(name)
                elif default is not None:
                    values[name] = default
        return values

    def _stage(self, stage: Stage, global_args: dict[str, str]) -> str:
        self._step(f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else ""))
        base = words.expand(stage.base, global_args, self.escape)
        image_id = self._base_image(base)
        self.say(f" ---> {_short(image_id)}")
        state = self._state_of(image_id)
        state.args = {}
        self.global_args = global_args
        triggers = state.config.pop("OnBuild", None) or []
        if triggers:
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
            from pinnace.build.dockerfile import parse_instruction

            for text in triggers:
                keyword, _, rest = text.partition(" ")
                self._instruction(state, parse_instruction(keyword.upper(), rest.strip(),
                                                           stage.line))
        for instruction in stage.instructions:
            self._step(instruction.text)
            self._instruction(state, instruction)
        return state.image_id

    def _instruction(self, state: StageState, instruction: Instruction) -> None:
        """Run one instruction; an error it raises names its line (a failed command's
        does not: its exit code and output tell)."""
        try:
            self._dispatch(state, instruction)
        except StepFailed:
            raise
        except PinnaceError as err:
            if str(err).startswith("Dockerfile line"):
                raise
            raise type(err)(f"Dockerfile line {instruction.line}: {instruction.keyword}: "
                            f"{err}") from None

    def _step(self, text: str) -> None:
        self.step_number += 1
        self.say(f"Step {self.step_number}/{self.step_count} : {text}")

    def _base_image(self, ref: str) -> str:
        """The image a FROM names: scratch, an earlier stage, or an image (pulled when it
        names a transport or registry and is missing, or always with ``--pull``)."""
        if ref == "scratch":
            return self._scratch()
        stage = self.dockerfile.stage(ref)
        if stage is not None and stage.index in self.stage_images:
            return self.stage_images[stage.index]
        return self.image(ref)

    def image(self, ref: str) -> str:
        """The image ``ref`` names (pulled as FROM pulls it)."""
        if self.options.pull and self.engine.sources.has_transport(ref):
            from pinnace.images.sources import TransferOptions

            return self.engine.pull(ref, TransferOptions())
        try:
            return self.engine.image_for_run(ref).id
        except (NotFound, InvalidConfig) as err:
            raise NotFound(f"base image {ref} not found: {err}") from None

    def _scratch(self) -> str:
        """An image with no layers and an empty config (its ID is always the same)."""
        from pinnace.images.store import canonical_json, host_platform

        config = {"architecture": host_platform()[1], "os": "linux", "config": {},
                  "created": "1970-01-01T00:00:00Z", "history": [],
                  "rootfs": {"type": "layers", "diff_ids": []}}
        store = self.engine.images
        with store.staging() as written:
            return store.add_image(canonical_json(config), [], [], "build", written)

    def _state_of(self, image_id: str) -> StageState:
        image = self.engine.images.resolve(image_id)
        return StageState(image_id, copy.deepcopy(image.config.get("config") or {}))

    # ------------------------------------------------------------ instructions
    def _dispatch(self, state: StageState, instruction: Instruction) -> None:
        keyword = instruction.keyword
        if keyword == "ARG":
            self._arg(state, instruction)
        elif keyword == "RUN":
            self._run(state, instruction)
        elif keyword in ("COPY", "ADD"):
            from pinnace.build.copying import copy_step

            copy_step(self, state, instruction)
        elif keyword == "WORKDIR":
            self._workdir(state, instruction)
        elif keyword == "MAINTAINER":
            self._config_step(state, instruction, author=instruction.args)
        elif keyword == "FROM":
            raise instruction.error("FROM is not allowed here")
        else:
            if keyword == "CMD":
                state.cmd_set = True
            elif keyword == "ENTRYPOINT" and not state.cmd_set:
                state.config["Cmd"] = None  # an inherited CMD does not go with a new ENTRYPOINT
            self._config_step(state, instruction)

    def _arg(self, state: StageState, instruction: Instruction) -> None:
        for name, default in _arg_names(instruction, state.env, self.escape):
            if name in self.options.build_args:
                state.args[name] = self.options.build_args[name]
                self.consumed.add(name)
            elif default is not None:
                state.args[name] = default
            elif name in self.global_args:
                state.args[name] = self.global_args[name]
        self.cached(state, NOP + f" ARG {instruction.args}" + seen_args(state),
                     lambda: self._metadata_image(state.image_id, state.config,
                                                  f"{NOP} ARG {instruction.args}"))

    def _config_step(self, state: StageState, instruction: Instruction, author: str = "",
                     quietly: bool = False) -> str:
        """An instruction that only changes the config: an image with an empty layer."""
        if instruction.keyword == "MAINTAINER":
            config = state.config
        else:
            config = metadata.apply(instruction, state.config, state.env, self.escape,
                                    state.shell)
        text = f"{NOP} {instruction.keyword} {_config_text(instruction, config)}"
        state.config = config
        return self.cached(state, text + seen_args(state),
                            lambda: self._metadata_image(state.image_id, config, text, author),
                            quietly)

    def _run(self, state: StageState, instruction: Instruction) -> None:
        args = metadata.command(instruction, state.shell)
        seen = {k: v for k, v in state.args.items() if k not in _env_keys(state.config)}
        proxies = {k: v for k, v in self.options.build_args.items() if k in PROXY_ARGS}
        recorded = {k: v for k, v in seen.items() if k not in PROXY_ARGS}
        created_by = " ".join(args)
        if recorded:
            created_by = f"|{len(recorded)} " + " ".join(
                f"{k}={v}" for k, v in sorted(recorded.items())) + f" {created_by}"
        env = [f"{k}={v}" for k, v in {**seen, **proxies}.items()]
        for item in env + list(state.config.get("Env") or []):
            if len(item.encode()) > MAX_ENV_STRING:
                raise instruction.error(
                    f"the variable {item.partition('=')[0]} is {len(item.encode())} bytes: "
                    f"the kernel takes at most {MAX_ENV_STRING} bytes per variable")
        config = state.config

        def make() -> str:
            with self.container(state.image_id, args, env, run=True) as cid:
                self.say(f" ---> Running in {cid[:12]}")
                code = self._run_container(cid)
                if code != 0:
                    raise StepFailed(f"The command '{' '.join(args)}' returned a non-zero "
                                     f"code: {code}")
                return self.commit(cid, config, created_by)

        self.cached(state, created_by, make)

    def _workdir(self, state: StageState, instruction: Instruction) -> None:
        """WORKDIR: the config's working directory, made in the image if missing."""
        from pinnace import rootfs

        path = metadata.workdir(instruction, state.config.get("WorkingDir") or "/", state.env,
                                self.escape)
        config = {**state.config, "WorkingDir": path}
        text = f"{NOP} WORKDIR {path}"

        def make() -> str:
            with self.container(state.image_id, [*DEFAULT_SHELL, text], []) as cid, \
                    self.rootfs(cid) as root:
                try:
                    os.close(rootfs.mkdir_in(root, path))
                except OSError as err:
                    raise instruction.error(f"cannot make {path}: {err.strerror}") from None
                return self.commit(cid, config, text)

        state.config = config
        self.cached(state, text + seen_args(state), make)

    # ------------------------------------------------------------ steps, images, containers
    def cached(self, state: StageState, text: str, make: Callable[[], str],
                quietly: bool = False, checksum: str = "") -> str:
        """The image of this step: from the cache, or made (and then cached)."""
        key = cache.key(state.image_id, text, checksum)
        found = None if self.options.no_cache else self.cache.get(key)
        if found is not None and self.engine.images.has_image(found):
            if not quietly:
                self.say(" ---> Using cache")
            image_id = found
        else:
            image_id = make()
            faults.point("build.made")
            self.cache.put(key, image_id)
        if not quietly:
            self.say(f" ---> {_short(image_id)}")
        state.image_id = image_id
        state.config = copy.deepcopy(
            self.engine.images.resolve(image_id).config.get("config") or {})
        return image_id

    def _metadata_image(self, parent: str, container_config: dict[str, Any], created_by: str,
                        author: str = "") -> str:
        """A new image: ``parent``'s layers, ``container_config``, one more history line
        with an empty layer."""
        from pinnace.images.store import Blob, canonical_json, rfc3339

        store = self.engine.images
        image = store.resolve(parent)
        config = copy.deepcopy(image.config)
        now = rfc3339(time.time())
        config["config"] = container_config
        config["created"] = now
        entry = {"created": now, "created_by": created_by, "empty_layer": True}
        if author:
            config["author"] = entry["author"] = author
        config["history"] = [*(config.get("history") or []), entry]
        layers = [Blob(layer.blob_digest, layer.size, layer.media_type)
                  for layer in image.layers]
        with store.staging() as written:
            return store.add_image(canonical_json(config), layers, [], "build", written)

    @contextlib.contextmanager
    def container(self, image_id: str, args: list[str], env: list[str],
                  run: bool = False) -> Iterator[str]:
        """A container of ``image_id`` for one step, removed after the block (also when
        it fails or is interrupted); noted on the build's lease meanwhile."""
        import os

        from pinnace.containers.options import RunOptions
        from pinnace.engine import BUILD_CONTAINER

        name = f"build-{os.getpid()}-{os.urandom(6).hex()}"
        opts = RunOptions(image=image_id, command=args, entrypoint="", env=env, name=name,
                          storage=self.options.storage, isolation=self.options.isolation,
                          network=self.options.network if run else "none")
        assert self.lease is not None
        self.lease.note(BUILD_CONTAINER, name=name)  # before it exists: a kill may come
        cid = self.engine.create(opts)
        try:
            faults.point("build.container")
            yield cid
        finally:
            with _signals_held():
                self.engine.remove(cid, force=True, volumes=True)
                if run:
                    self.say(f"Removing intermediate container {cid[:12]}")

    @contextlib.contextmanager
    def rootfs(self, cid: str) -> Iterator[int]:
        """A descriptor of the root of container ``cid``'s filesystem, for the block."""
        from pinnace import rootfs
        from pinnace.images.commit import container_rootfs

        record = self.engine.containers.get(cid)
        with container_rootfs(self.engine.plugins, record, self.engine.paths.run_root) as top, \
                rootfs.opened_root(top) as root:
            yield root

    @contextlib.contextmanager
    def image_root(self, image_id: str) -> Iterator[int]:
        """A descriptor of the root of a read-only view of ``image_id``'s files (in the
        selected storage), for the block."""
        import tempfile

        from pinnace import rootfs
        from pinnace.images.commit import image_tree

        engine = self.engine
        storage = engine.selected("storage", self.options.storage)
        engine.plugins.load("storage", storage)
        top = engine.layers.ensure(engine.images.resolve(image_id), storage)
        with contextlib.ExitStack() as stack:
            view = stack.enter_context(image_tree(engine.plugins, storage, top,
                                                  engine.paths.run_root))
            path = view if view is not None else stack.enter_context(
                tempfile.TemporaryDirectory(prefix="pinnace-scratch-"))
            yield stack.enter_context(rootfs.opened_root(path))

    def commit(self, cid: str, config: dict[str, Any], created_by: str) -> str:
        """The container's changes as a layer on its image, with ``config``."""
        from pinnace.images.commit import Step

        return str(self.engine.commit(cid, None, pause=False, step=Step(config, created_by)))

    def _run_container(self, cid: str) -> int:
        """Start the container with its output streamed to ours; return its exit code.
        SIGINT or SIGTERM kills it (and then raises KeyboardInterrupt)."""
        from pinnace.monitor.detached import open_streams
        from pinnace.runtime.watch import Session

        engine = self.engine
        streams = open_streams(str(engine.paths.bundle(cid)), False, False)
        stopped: list[int] = []

        def stop(signum: int, _frame: object) -> None:
            stopped.append(signum)
            with contextlib.suppress(Exception):
                engine.kill(cid, signal.SIGKILL)

        # only the main thread takes signals (a server builds in a thread of its own)
        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} \
            if main else {}
        try:
            try:
                engine.start(cid, stdio=streams.stdio)
                streams.started()
                faults.point("build.running")
            except BaseException:
                streams.close()
                raise
            if stopped:
                stop(stopped[0], None)
            Session(streams.outputs, echo={} if self.options.quiet else self.echo).run()
            code = engine.wait(cid)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if stopped:
            raise KeyboardInterrupt
        return code


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold off SIGINT and SIGTERM for the block (a step's cleanup), delivered after."""
    import signal as signals

    held = (signals.SIGINT, signals.SIGTERM)
    old = signals.pthread_sigmask(signals.SIG_BLOCK, held)
    try:
        yield
    finally:
        signals.pthread_sigmask(signals.SIG_SETMASK, old)


def _arg_names(instruction: Instruction, env: dict[str, str],
               escape: str) -> list[tuple[str, str | None]]:
    """``ARG NAME[=default] ...``: each name with its default (None without)."""
    out = []
    for word in words.split(instruction.args, env, escape):
        name, sep, default = word.partition("=")
        if not name or not (name[0].isalpha() or name[0] == "_") or \
                not all(c.isalnum() or c == "_" for c in name):
            raise instruction.error(f"invalid ARG name {name!r}")
        out.append((name, default if sep else None))
    return out


def _env_keys(config: dict[str, Any]) -> set[str]:
    return {item.partition("=")[0] for item in config.get("Env") or []}


def _config_text(instruction: Instruction, config: dict[str, Any]) -> str:
    """What a config step's history line says: the instruction, variables substituted
    where the config shows them (docker prints the resulting value)."""
    keyword = instruction.keyword
    if keyword in ("CMD", "ENTRYPOINT"):
        return json.dumps(config.get("Cmd" if keyword == "CMD" else "Entrypoint"))
    if keyword == "SHELL":
        return json.dumps(config.get("Shell"))
    return instruction.args


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
