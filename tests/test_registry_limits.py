"""A hostile registry cannot exhaust pinnace's memory or hold a pull forever: every reply
but a blob is read up to a limit, an error body only in part. A loopback server in this
process answers with endless or huge bodies; each pull fails with one line, in bounded
time and memory, and leaves nothing in the store."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Pinnace

PIECE = b"x" * (64 << 10)
PEAK_RSS_KB = 200 << 10          # the pull's peak resident memory must stay under 200 MB
SENT_BOUND = 32 << 20            # no reply may have been read much past its limit
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class HostileRegistry:
    """Answers ``GET /v2/``, ``/v2/x/manifests/1`` and ``/token`` as ``mode`` says;
    ``sent`` is the most body bytes one reply got out before the client hung up."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sent = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.answer(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, req: http.server.BaseHTTPRequestHandler) -> None:
        mode, path = self.mode, req.path.split("?")[0]
        if path == "/v2/":
            if mode == "ping":
                return self.endless(req, 200)
            if mode == "token" and "Authorization" not in req.headers:
                realm = f"http://{self.host}/token"
                return self.small(req, 401, b"{}", {
                    "WWW-Authenticate": f'Bearer realm="{realm}",service="hostile"'})
            return self.small(req, 200, b"{}")
        if path == "/token":
            return self.endless(req, 200)
        if mode == "manifest":
            return self.endless(req, 200, {"Content-Type": MANIFEST})
        if mode == "manifest-length":
            return self.endless(req, 200, {"Content-Type": MANIFEST}, length=64 << 20)
        if mode == "error500":
            return self.endless(req, 500)
        if mode == "error404":
            return self.endless(req, 404, prefix=b'{"errors":[{"code":"MANIFEST_UNKNOWN",'
                                                  b'"message":"')
        if mode == "message":
            text = "no such manifest\n" + "y" * 20000
            body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": text}]})
            return self.small(req, 404, body.encode())
        return self.small(req, 404, b"{}")

    @staticmethod
    def small(req: http.server.BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        req.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def endless(self, req: http.server.BaseHTTPRequestHandler, status: int,
                headers: dict[str, str] | None = None, length: int | None = None,
                prefix: bytes = b"") -> None:
        """A body that never ends (chunked), or that claims ``length`` bytes and sends
        them; written until the client hangs up."""
        req.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            req.send_header(key, value)
        if length is None:
            req.send_header("Transfer-Encoding", "chunked")
        else:
            req.send_header("Content-Length", str(length))
        req.end_headers()
        req.close_connection = True
        sent = 0
        try:
            piece = prefix + PIECE
            while length is None or sent < length:
                if length is None:
                    req.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    req.wfile.write(piece[:length - sent])
                sent += len(piece)
                self.sent = max(self.sent, sent)
                piece = PIECE
        except OSError:  # the client hung up, as it should
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[HostileRegistry]:
    server = HostileRegistry(request.param)
    yield server
    server.close()


def pull(pn: Pinnace, host: str, tmp_path: Path) -> tuple[str, int]:
    """Pull ``host/x:1`` under ``/usr/bin/time``: (its stderr, its peak RSS in KiB)."""
    usage = tmp_path / "maxrss"
    timed = Pinnace(pn.root, prefix=("/usr/bin/time", "-f", "%M", "-o", str(usage)))
    proc = timed("pull", f"{host}/x:1", check=False, timeout=90)
    assert proc.returncode == 125, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr, int(usage.read_text().split()[-1])


def store_empty(pn: Pinnace) -> None:
    """No image, no blob and no temporary file are left in the store."""
    assert pn("images", "-q").stdout == ""
    left = [p for p in (pn.root / "images").rglob("*")
            if p.is_file() and ("blobs" in p.parts or "tmp" in p.name)]
    assert left == []


@pytest.mark.parametrize(("hostile", "expected"), [
    ("ping", "/v2/: the registry's reply is larger than the 64 KiB allowed for the /v2/ "
             "answer"),
    ("manifest", "/v2/x/manifests/1: the registry's reply is larger than the 4 MiB allowed "
                 "for a manifest or config"),
    ("manifest-length", "/v2/x/manifests/1: the registry's reply is larger than the 4 MiB "
                        "allowed for a manifest or config"),
    ("error500", "answered 500 Internal Server Error (4 attempts)"),
    ("error404", "/v2/x/manifests/1: 404 Not Found"),
    ("token", "/token?service=hostile&scope=repository%3Ax%3Apull: the registry's reply is "
              "larger than the 64 KiB allowed for a token reply"),
], indirect=["hostile"])
def test_endless_replies_fail_in_bounded_memory(pn: Pinnace, tmp_path: Path,
                                               hostile: HostileRegistry, expected: str) -> None:
    line, peak = pull(pn, hostile.host, tmp_path)
    assert expected in line, line
    assert peak < PEAK_RSS_KB, f"peak RSS {peak} KiB"
    assert 0 < hostile.sent < SENT_BOUND, hostile.sent
    store_empty(pn)


@pytest.mark.parametrize("hostile", ["message"], indirect=True)
def test_a_registry_error_message_is_quoted_on_one_line_and_cut(
        pn: Pinnace, tmp_path: Path, hostile: HostileRegistry) -> None:
    line, _ = pull(pn, hostile.host, tmp_path)
    assert "manifest_unknown: no such manifest yyy" in line, line
    assert line.rstrip().endswith("...") and len(line) < 600, line
    store_empty(pn)
