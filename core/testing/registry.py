"""Registry test parts: Debian's ``docker-registry`` on loopback (plain, htpasswd Basic
auth, or behind a token server), a token server, a fault-injecting proxy, and OCI
layouts built from the busybox rootfs that skopeo pushes (images pinnace did not write).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER, PASSWORD = "tester", "s3cret-pass"
SERVICE = "pinnace-test-registry"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited {proc.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not listen on {port}: {log.read_text()}")


@dataclass
class RegistryServer:
    """A running ``docker-registry``; ``host`` is ``127.0.0.1:PORT``."""

    host: str
    storage: Path
    proc: subprocess.Popen[bytes]

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps blob ``digest`` on disk."""
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


@contextlib.contextmanager
def docker_registry(workdir: Path, auth: dict[str, Any] | None = None,
                    access_log: bool = False) -> Iterator[RegistryServer]:
    """Start ``docker-registry serve`` on a free loopback port with temp storage
    (logging every request to ``registry.log`` with ``access_log``)."""
    if shutil.which("docker-registry") is None:
        raise RuntimeError("docker-registry is missing: apt-get install docker-registry "
                           "(make deps installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": not access_log}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        config["auth"] = auth
    (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = workdir / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(workdir / "config.yml")],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc, log)
        yield RegistryServer(f"127.0.0.1:{port}", workdir / "data", proc)
    finally:
        proc.terminate()
        proc.wait(10)


def htpasswd(path: Path) -> Path:
    """An htpasswd file (bcrypt, as the registry requires) for USER/PASSWORD."""
    out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                         capture_output=True, text=True).stdout
    path.write_text(out)
    return path


# ---------------------------------------------------------------- token server
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues RS256 JWTs the registry trusts (x5c: its self-signed certificate).
    Valid credentials get what they ask for; anonymous callers get ``pull``;
    wrong credentials get 401."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = workdir / "token.key", workdir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=pinnace-test-token", "-keyout", str(self.key),
                        "-out", str(self.cert)], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, body = server.answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def registry_auth(self) -> dict[str, Any]:
        """The ``auth`` section of a registry config that trusts this server."""
        return {"token": {"realm": self.realm, "service": SERVICE, "issuer": "pinnace-test",
                          "rootcertbundle": str(self.cert)}}

    def answer(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(path).query)
        user = ""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            user, _, password = base64.b64decode(value).decode().partition(":")
            if scheme != "Basic" or (user, password) != (USER, PASSWORD):
                return 401, b'{"details":"wrong credentials"}'
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            granted = actions.split(",") if user else ["pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        return 200, json.dumps({"token": self.sign(user, access)}).encode()

    def sign(self, user: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        claims = {"iss": "pinnace-test", "sub": user, "aud": SERVICE, "exp": now + 600,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing.encode(), check=True, capture_output=True).stdout
        return f"{signing}.{_b64(sig)}"

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- fault proxy
@dataclass
class Faults:
    """What the proxy does to blob GETs (``/v2/.../blobs/...``), counted down per request."""

    status: int = 0               # answer this status ...
    status_times: int = 0         # ... this many times
    cut_times: int = 0            # send half a blob, then close the connection
    rate: int = 0                 # bytes per second for blob bodies (0: full speed)
    seen: list[str] = field(default_factory=list)


class FaultProxy:
    """A loopback HTTP proxy in front of a registry that injects ``faults``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults = Faults()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.forward(self)

            do_HEAD = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def forward(self, req: http.server.BaseHTTPRequestHandler) -> None:
        f = self.faults
        blob = "/blobs/" in req.path and req.command == "GET"
        if blob:
            f.seen.append(req.path)
        if blob and f.status_times > 0:
            f.status_times -= 1
            req.send_response(f.status)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
        conn.request(req.command, req.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        req.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection"):
                req.send_header(key, value)
        req.end_headers()
        if req.command == "HEAD":
            return
        if blob and f.cut_times > 0:
            f.cut_times -= 1
            req.wfile.write(body[:len(body) // 2])
            req.wfile.flush()
            req.close_connection = True
            req.connection.shutdown(socket.SHUT_RDWR)
            return
        step = max(1, f.rate // 10) if blob and f.rate else len(body) or 1
        for start in range(0, len(body), step):
            req.wfile.write(body[start:start + step])
            if blob and f.rate:
                req.wfile.flush()
                time.sleep(0.1)

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- OCI layouts
def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A tar of files (bytes) and directories (None), root-owned."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.index: list[dict[str, Any]] = []

    def blob(self, data: bytes, media: str) -> dict[str, Any]:
        """Store ``data``; return its descriptor."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (self.path / "blobs/sha256" / digest[7:]).write_bytes(data)
        return {"mediaType": media, "digest": digest, "size": len(data)}

    def image(self, layers: list[bytes], arch: str = "amd64",
              compress: bool = True) -> dict[str, Any]:
        """An image of uncompressed ``layers`` (gzipped when ``compress``); its
        manifest descriptor."""
        diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
        config = {"architecture": arch, "os": "linux",
                  "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin:/usr/sbin:/sbin"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "history": [{"created_by": f"layer {n}"} for n in range(len(layers))]}
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        descs = [self.blob(gzip.compress(t, mtime=0) if compress else t, media) for t in layers]
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": self.blob(json.dumps(config).encode(),
                                        "application/vnd.oci.image.config.v1+json"),
                    "layers": descs}
        desc = self.blob(json.dumps(manifest).encode(), manifest["mediaType"])
        desc["platform"] = {"os": "linux", "architecture": arch}
        return desc

    def multi(self, images: list[dict[str, Any]]) -> dict[str, Any]:
        """An index of ``images``; its descriptor."""
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": images}
        return self.blob(json.dumps(index).encode(), index["mediaType"])

    def tag(self, desc: dict[str, Any], name: str) -> None:
        """Name ``desc`` in ``index.json``."""
        entry = {k: v for k, v in desc.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.index.append(entry)
        (self.path / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "manifests": self.index}))


def busybox_layers(busybox_tar: Path) -> list[bytes]:
    """Three layers: busybox; a layer adding ``/etc/motd`` and ``/data/keep``,
    ``/data/gone``; a layer whiting out ``/data/gone`` and adding ``/etc/motd2``."""
    return [
        busybox_tar.read_bytes(),
        _tar([("etc/motd", b"hello from layer 2\n"), ("data", None),
              ("data/keep", b"keep\n"), ("data/gone", b"gone\n")]),
        _tar([("data/.wh.gone", b""), ("etc/motd2", b"layer 3\n")]),
    ]


def skopeo_copy(src: str, dest: str, *extra: str) -> None:
    """``skopeo copy`` with TLS verification off for loopback registries."""
    args = ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
            *extra, src, dest]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr}")
