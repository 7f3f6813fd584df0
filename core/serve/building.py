"""Endpoints that make images: build (a Dockerfile and the context in the body), commit
(a container's changes) and import (a rootfs tar in the body, or at a loopback URL)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from pinnace.errors import InvalidConfig, PinnaceError

if TYPE_CHECKING:
    from pinnace.serve.http import Request, Stream

NETWORK_DEFAULTS = ("", "default")
"""``networkmode`` values that mean the configured network plugin."""


def build(req: Request) -> None:
    """``POST /build``: the context (a tar, maybe compressed) in the body; the builder's
    lines as ``{"stream": ...}``, the image as ``{"aux": {"ID": ...}}``, a failure as
    ``{"error": ...}`` in the stream. Intermediate containers are always removed (as
    with ``forcerm``)."""
    from pinnace.build.builder import BuildOptions

    if req.arg("remote"):
        raise InvalidConfig("pinnace serve builds from the context in the request body only "
                            "(remote contexts are not fetched)")
    network = req.arg("networkmode") or ""
    options = BuildOptions(
        tags=tuple(req.query.get("t", [])), build_args=_json_map(req, "buildargs"),
        target=req.arg("target") or None, no_cache=req.flag("nocache"),
        pull=req.flag("pull"), labels=_json_map(req, "labels"), quiet=req.flag("q"),
        network=None if network in NETWORK_DEFAULTS else network)
    client = req.client
    with req.body_file() as context:
        stream = req.stream()
        try:
            with _lines_to(stream) as fd, open(fd, "w", encoding="utf-8", closefd=False) as out:
                image_id = client.build(context, options, req.arg("dockerfile") or None,
                                        out, {"stdout": fd, "stderr": fd})
        except PinnaceError as err:
            stream.error(err)
        else:
            if options.quiet:
                stream.json({"stream": f"{image_id}\n"})
            stream.json({"aux": {"ID": image_id}})
    stream.end()


@contextlib.contextmanager
def _lines_to(stream: Stream) -> Iterator[int]:
    """A descriptor for the block whose bytes go to ``stream`` as ``{"stream": text}``
    messages (from a thread of their own; once the client is gone they are dropped)."""
    import codecs

    read_end, write_end = os.pipe()

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        gone, pending = False, ""
        with open(read_end, "rb", buffering=0) as pipe:
            while True:
                data = pipe.read(65536)
                pending += decoder.decode(data, final=not data)
                lines = pending.splitlines(keepends=True)
                pending = lines.pop() if lines and data and not lines[-1].endswith("\n") else ""
                for line in lines if not gone else ():  # a message a line, as docker sends
                    try:
                        stream.json({"stream": line})
                    except OSError:
                        gone = True
                if not data:
                    return

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield write_end
    finally:
        os.close(write_end)
        thread.join()


def _json_map(req: Request, name: str) -> dict[str, str]:
    """A query parameter holding a JSON object of strings (``buildargs``, ``labels``);
    null values are left out."""
    text = req.arg(name)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidConfig(f"invalid {name}: not JSON") from None
    if not isinstance(value, dict):
        raise InvalidConfig(f"invalid {name}: expected a JSON object")
    return {str(k): str(v) for k, v in value.items() if v is not None}


def commit(req: Request) -> None:
    """``POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=``: the body,
    a container config, adds its Cmd, Entrypoint, Env, WorkingDir, User, Labels and
    ExposedPorts as changes."""
    container = req.arg("container")
    if not container:
        raise InvalidConfig("container is required")
    body = req.body().strip()
    try:
        config = json.loads(body) if body and body != b"null" else {}  # docker sends null
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise InvalidConfig("invalid JSON body: expected a container config")
    changes = [*_changes(req), *_config_changes(config)]
    image_id = req.client.commit(container, _reference(req), req.arg("comment") or "",
                                 req.arg("author") or "", changes, req.flag("pause", True))
    req.reply(201, {"Id": image_id})


def _reference(req: Request) -> str | None:
    """``repo`` and ``tag`` as one reference (None without ``repo``)."""
    repo = req.arg("repo")
    if not repo:
        if req.arg("tag"):
            raise InvalidConfig("tag needs repo")
        return None
    return f"{repo}:{req.arg('tag')}" if req.arg("tag") else repo


def _changes(req: Request) -> list[str]:
    """The ``changes`` parameters: Dockerfile instructions, one a value or a line."""
    return [line for value in req.query.get("changes", []) for line in value.splitlines()
            if line.strip()]


def _config_changes(config: dict[str, Any]) -> list[str]:
    """A container config's fields as the instructions that set them."""
    out = []
    for key, keyword in (("Cmd", "CMD"), ("Entrypoint", "ENTRYPOINT")):
        value = config.get(key)
        if value:
            out.append(f"{keyword} {json.dumps([value] if isinstance(value, str) else value)}")
    out += [f"ENV {json.dumps(k)}={json.dumps(v)}" for k, _, v in
            (item.partition("=") for item in config.get("Env") or [])]
    for key, keyword in (("WorkingDir", "WORKDIR"), ("User", "USER")):
        if config.get(key):
            out.append(f"{keyword} {config[key]}")
    out += [f"LABEL {json.dumps(k)}={json.dumps(v)}"
            for k, v in (config.get("Labels") or {}).items()]
    out += [f"EXPOSE {port}" for port in config.get("ExposedPorts") or {}]
    return out


def import_image(req: Request) -> None:
    """``POST /images/create?fromSrc=-|URL&repo=&tag=&changes=&message=``: a rootfs tar
    from the body, or from a URL on a loopback address; the new image's ID in the
    stream."""
    source = req.arg("fromSrc") or ""
    reference = _reference(req)
    with (req.body_file() if source == "-" else _download(source)) as tar:
        stream = req.stream()
        try:
            image_id = req.client.import_image(tar, reference, _changes(req),
                                               req.arg("message") or "")
        except PinnaceError as err:
            stream.error(err)
        else:
            stream.json({"status": image_id})
    stream.end()


def _download(url: str) -> BinaryIO:
    """The file at ``url`` (http or https on a loopback address), in a temporary file."""
    import ipaddress
    import tempfile
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme not in ("http", "https") or not loopback:
        raise InvalidConfig(f"import from {url}: pinnace serve fetches only http(s) URLs on "
                            "a loopback address; send the tar in the request body instead")
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:  # a redirect could leave loopback
            return None

    spool = tempfile.SpooledTemporaryFile(8 << 20)
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=60) as response:
            while data := response.read(1 << 20):
                spool.write(data)
    except (urllib.error.URLError, OSError) as err:
        spool.close()
        raise InvalidConfig(f"import from {url}: {getattr(err, 'reason', err)}") from None
    spool.seek(0)
    return spool  # type: ignore[return-value]
