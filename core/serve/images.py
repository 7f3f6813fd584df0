"""Image endpoints: create (pull), list, inspect, history, tag, push, delete, prune,
get (save) and load."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from pinnace.errors import InvalidConfig, PinnaceError

if TYPE_CHECKING:
    from pinnace.serve.http import Request, Stream


class JsonBar:
    """One layer's line of docker's progress JSON."""

    def __init__(self, owner: JsonProgress, label: str, total: int | None) -> None:
        self.owner, self.label, self.total = owner, label, total
        self.done = 0
        self.sent = 0.0

    def advance(self, n: int) -> None:
        """Count ``n`` more bytes; a message at most ten times a second."""
        self.done += n
        now = time.monotonic()
        if now - self.sent >= 0.1:
            self.sent = now
            self.owner.send({"status": self.owner.verb, "id": self.label,
                             "progressDetail": {"current": self.done,
                                                **({"total": self.total} if self.total else {})}})

    def restart(self) -> None:
        """Start over (a retried download)."""
        self.done = 0

    def finish(self, status: str) -> None:
        """The layer's last line (``Pull complete``, ``Already exists``)."""
        self.owner.send({"status": status, "id": self.label, "progressDetail": {}})


class JsonProgress:
    """A :class:`pinnace.progress.Progress` that writes docker's progress messages to a
    stream (thread-safe: layers move in parallel)."""

    def __init__(self, stream: Stream, verb: str) -> None:
        self.stream, self.verb = stream, verb
        self.lock = threading.Lock()

    def bar(self, label: str, total: int | None = None) -> JsonBar:
        """A new layer line."""
        short = label.split(":")[-1][:12]
        self.send({"status": "Waiting", "id": short, "progressDetail": {}})
        return JsonBar(self, short, total)

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.stream.json(message)


def create(req: Request) -> None:
    """``POST /images/create?fromImage=&tag=``: a pull, its progress and its errors in the
    stream (the status is 200 once it has begun); with ``fromSrc``, an import."""
    image = req.arg("fromImage")
    if not image:
        if req.arg("fromSrc"):
            from pinnace.serve.building import import_image

            import_image(req)
            return
        raise InvalidConfig("fromImage or fromSrc is required")
    tag = req.arg("tag")
    reference = image
    if tag:
        reference = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    elif "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
        reference = f"{image}:latest"
    _login_from_header(req)
    stream = req.stream()
    stream.json({"status": f"Pulling from {image}", "id": tag or "latest"})
    try:
        image_id = req.client.pull(reference, progress=JsonProgress(stream, "Downloading"),
                                   platform=req.arg("platform") or None)
    except PinnaceError as err:
        stream.error(err)
    else:
        digests = req.client.image(image_id).repo_digests
        if digests:
            stream.json({"status": f"Digest: {digests[0].partition('@')[2]}"})
        stream.json({"status": f"Status: Downloaded newer image for {reference}"})
    stream.end()


def _login_from_header(req: Request) -> None:
    """``X-Registry-Auth``: credentials (base64 JSON) for the registry of this request,
    checked and kept as ``login`` keeps them."""
    header = req.header("X-Registry-Auth")
    if not header:
        return
    try:
        auth = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        raise InvalidConfig("invalid X-Registry-Auth header") from None
    if isinstance(auth, dict) and auth.get("username") and auth.get("password"):
        req.client.login(auth.get("serveraddress") or "docker.io", auth["username"],
                         auth["password"])


def listing(req: Request) -> None:
    """``GET /images/json?all=&filters=``."""
    from pinnace.serve.shapes import image_summary, matches

    filters = req.filters()
    out = []
    for image in req.client.images():
        summary = image_summary(image)
        labels = summary["Labels"]
        values = {"reference": [*image.tags, *(t.rsplit(":", 1)[0] for t in image.tags)],
                  "dangling": ["true" if not image.tags else "false"],
                  "label": [*labels, *(f"{k}={v}" for k, v in labels.items())],
                  "before": [], "since": []}
        if matches(values, filters):
            out.append(summary)
    req.reply(200, out)


def inspect(req: Request) -> None:
    """``GET /images/{name}/json``."""
    req.reply(200, req.client.image_inspect(req.params["name"]))


def history(req: Request) -> None:
    """``GET /images/{name}/history``."""
    import datetime

    rows = []
    for row in req.client.history(req.params["name"]):
        created = row["Created"]
        try:
            when = int(datetime.datetime.fromisoformat(created.replace("Z", "+00:00")[:26]
                                                       + "+00:00").timestamp()) if created else 0
        except ValueError:
            when = 0
        rows.append({"Id": row["Id"], "Created": when, "CreatedBy": row["CreatedBy"],
                     "Tags": None, "Size": row["Size"], "Comment": row["Comment"]})
    req.reply(200, rows)


def tag(req: Request) -> None:
    """``POST /images/{name}/tag?repo=&tag=``."""
    repo = req.arg("repo")
    if not repo:
        raise InvalidConfig("repo is required")
    req.client.tag(req.params["name"], f"{repo}:{req.arg('tag') or 'latest'}")
    req.reply(201)


def push(req: Request) -> None:
    """``POST /images/{name}/push?tag=``: progress and errors in the stream."""
    name = req.params["name"]
    reference = f"{name}:{req.arg('tag')}" if req.arg("tag") else name
    req.client.image(reference)  # a missing image is a 404, before the stream
    _login_from_header(req)
    stream = req.stream()
    stream.json({"status": f"The push refers to repository [{name}]"})
    try:
        digest = req.client.push(reference, progress=JsonProgress(stream, "Pushing"))
    except PinnaceError as err:
        stream.error(err)
    else:
        short_tag = reference.rsplit(":", 1)[-1] if ":" in reference.rsplit("/", 1)[-1] \
            else "latest"
        stream.json({"status": f"{short_tag}: digest: {digest}"})
        stream.json({"progressDetail": {}, "aux": {"Tag": short_tag, "Digest": digest}})
    stream.end()


def delete(req: Request) -> None:
    """``DELETE /images/{name}?force=``."""
    result = req.client.remove_image(req.params["name"], force=req.flag("force"))
    req.reply(200, [*({"Untagged": t} for t in result.untagged),
                    *({"Deleted": d} for d in result.deleted)])


def prune(req: Request) -> None:
    """``POST /images/prune``: unused dangling images (every unused one with
    ``dangling=false``)."""
    dangling = req.filters().get("dangling", ["true"])
    results = req.client.prune_images(all_=dangling[-1] in ("false", "0"))
    req.reply(200, {"ImagesDeleted": [
        entry for r in results for entry in
        [*({"Untagged": t} for t in r.untagged), *({"Deleted": d} for d in r.deleted)]],
        "SpaceReclaimed": sum(r.reclaimed for r in results)})


def get(req: Request) -> None:
    """``GET /images/{name}/get`` and ``GET /images/get?names=``: a docker-archive."""
    names = [req.params["name"]] if req.params.get("name") else req.query.get("names", [])
    if not names:
        raise InvalidConfig("names is required")
    client = req.client
    for name in names:
        client.image(name)
    req.stream_from(lambda other, fd: other.save(names, fd))


def load(req: Request) -> None:
    """``POST /images/load?quiet=``: the archive in the body; what it loaded, or why not,
    in the stream (docker's clients read a bad archive's error there)."""
    with req.body_file() as archive:
        stream = req.stream()
        try:
            loaded = req.client.load(archive, label="the request")
        except PinnaceError as err:
            stream.error(err)
            loaded = []
    for image in loaded:
        for name in image.tags or [image.id]:
            what = "Loaded image" if image.tags else "Loaded image ID"
            stream.json({"stream": f"{what}: {name}\n"})
    stream.end()
