"""A small client for the OCI distribution API v2 over ``http.client``.

One :class:`Registry` per registry host and command: it decides the scheme
once (HTTPS; plain HTTP only where insecure access is allowed, after HTTPS
failed, as docker does), answers auth challenges (anonymous, Basic, Bearer
tokens from the realm in ``WWW-Authenticate``, one token per scope), follows
redirects (without credentials to another host), and retries transient
failures (connection errors, 429 and 5xx) with backoff. Each thread keeps
its own connections, so layers transfer in parallel.

Every reply but a blob is read up to a limit and within a time (a hostile or
broken registry cannot fill the memory or hold a command forever); blobs are
streamed by the caller, bounded by the size their descriptor gives.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from pinnace.plugin import FailedPrecondition, InvalidConfig, NotFound, PinnaceError, Unavailable

RETRIES = 4            # attempts for a request that fails transiently
BACKOFF = 0.5          # seconds before the second attempt, doubled each time
CONNECT_TIMEOUT = 15   # seconds to open a connection (TLS handshake included)
TIMEOUT = 60           # seconds without progress on a socket; also the most a whole
                       # reply other than a blob may take
MANIFEST_LIMIT = 4 << 20  # bytes in a manifest, an index or an image config (containerd's)
SMALL_LIMIT = 64 << 10    # bytes in a token reply or the /v2/ answer; of an error body or
                          # an ignored body, the prefix read (the rest is not)
_REDIRECTS = 5
_PIECE = 64 << 10
_DETAIL = 300          # characters of a registry's error message quoted
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class Transient(Exception):
    """A failure worth retrying (not an OSError, so decompressors never mistake it
    for bad data): connection lost, 429, 5xx."""


@dataclass
class Challenge:
    """What ``WWW-Authenticate`` asked for."""

    scheme: str                    # "basic", "bearer" or "" (none needed)
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str | None) -> Challenge:
    """``Bearer realm="...",service="..."`` -> Challenge("bearer", {...})."""
    if not header:
        return Challenge("")
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_CHALLENGE.findall(rest)))


class Registry:
    """One registry host as seen by one pinnace command."""

    def __init__(self, host: str, insecure: bool, verify: bool,
                 credentials: tuple[str, str] | None) -> None:
        self.host = host
        self.insecure = insecure          # plain HTTP allowed after HTTPS failed
        self.verify = verify              # verify certificates (False: any certificate)
        self.credentials = credentials
        self.scheme: str | None = None
        self.challenge = Challenge("")
        self.tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    # ------------------------------------------------------------ connections
    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool = self._local.__dict__.setdefault("pool", {})
        conn = pool.get((scheme, netloc))
        if conn is None:
            if scheme == "https":
                import ssl

                ctx = ssl.create_default_context()
                if not self.verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                conn = http.client.HTTPSConnection(netloc, timeout=CONNECT_TIMEOUT,
                                                   context=ctx)
            else:
                conn = http.client.HTTPConnection(netloc, timeout=CONNECT_TIMEOUT)
            pool[(scheme, netloc)] = conn
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._local.__dict__.get("pool", {}).pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connections."""
        for conn in self._local.__dict__.pop("pool", {}).values():
            conn.close()

    # ------------------------------------------------------------ bounded reads
    def _read_upto(self, resp: http.client.HTTPResponse, limit: int) -> bytes:
        """At most ``limit`` bytes of the body of ``resp``, read within TIMEOUT seconds;
        the connection is closed when the body was not read to its end. A body cut
        short of its Content-Length raises IncompleteRead."""
        deadline = time.monotonic() + TIMEOUT
        parts, got, ended = [], 0, False
        try:
            while got < limit:
                data = resp.read1(min(limit - got, _PIECE))  # what has come, not more
                if not data:
                    if resp.length:  # http.client returns b"" at an early end
                        raise http.client.IncompleteRead(b"".join(parts), resp.length)
                    ended = True
                    break
                parts.append(data)
                got += len(data)
                if time.monotonic() > deadline and resp.length != 0:
                    raise Unavailable(f"{resp.url}: the registry took more than {TIMEOUT} "
                                      f"seconds to send {got} bytes")
        finally:
            if not (ended or resp.length == 0):  # the rest would be read as the next reply
                where = urlsplit(resp.url)
                self._drop(where.scheme, where.netloc)
            resp.close()
        return b"".join(parts)

    def read_limited(self, resp: http.client.HTTPResponse, limit: int, what: str) -> bytes:
        """The whole body of ``resp`` (``what`` it holds, for the error), which must be at
        most ``limit`` bytes."""
        if resp.length is not None and resp.length > limit:
            self._read_upto(resp, 0)
            raise InvalidConfig(too_large(resp.url, limit, what))
        body = self._read_upto(resp, limit + 1)
        if len(body) > limit:
            raise InvalidConfig(too_large(resp.url, limit, what))
        return body

    def read_prefix(self, resp: http.client.HTTPResponse) -> bytes:
        """The first SMALL_LIMIT bytes of a body that matters little (an error's, a
        redirect's, an acknowledgement's); the rest is never read."""
        return self._read_upto(resp, SMALL_LIMIT)

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: bytes | Any = None) -> http.client.HTTPResponse:
        """One request on a kept-alive connection (reconnecting once if it went stale).
        The response's ``url`` is ``url``."""
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        for fresh in (False, True):
            conn = self._connection(parts.scheme, parts.netloc)
            if conn.sock is None:  # connect within CONNECT_TIMEOUT, then read with TIMEOUT
                conn.connect()
                conn.sock.settimeout(TIMEOUT)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.url = url
                return resp
            except (http.client.RemoteDisconnected, http.client.ImproperConnectionState,
                    BrokenPipeError, ConnectionResetError):
                self._drop(parts.scheme, parts.netloc)
                if fresh or (body is not None and not isinstance(body, bytes)):
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ scheme and auth
    def ping(self) -> None:
        """Find the scheme and the auth challenge (``GET /v2/``), once."""
        with self._lock:
            if self.scheme is not None:
                return
            errors = []
            for scheme in ("https", "http") if self.insecure else ("https",):
                quick = scheme == "https" and self.insecure  # plain HTTP is next: no retries
                try:
                    resp = self._retrying(lambda scheme=scheme: self._send(
                        "GET", f"{scheme}://{self.host}/v2/", {}), 1 if quick else RETRIES)
                except Unavailable as err:
                    errors.append(str(err))
                    continue
                if resp.status not in (200, 401):
                    self.read_prefix(resp)
                    raise Unavailable(f"{self.host} is not a registry: GET /v2/ answered "
                                      f"{resp.status} {resp.reason}")
                self.read_limited(resp, SMALL_LIMIT, "the /v2/ answer")
                self.scheme = scheme
                self.challenge = parse_challenge(resp.getheader("WWW-Authenticate"))
                return
            hint = "" if self.insecure else (
                " (plain HTTP is used only for loopback registries, the insecure_registries "
                "option and --tls-verify=false)")
            raise Unavailable(f"cannot reach registry {self.host}: {errors[-1]}{hint}")

    def _basic(self) -> str:
        assert self.credentials is not None
        raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self.challenge.scheme == "basic" and self.credentials:
            return {"Authorization": self._basic()}
        if self.challenge.scheme == "bearer":
            token = self.tokens.get(scope) or self.token(scope)
            return {"Authorization": f"Bearer {token}"} if token else {}
        return {}

    def token(self, scope: str) -> str:
        """A Bearer token for ``scope`` (several scopes separated by spaces) from the
        challenge's realm (with the stored credentials when there are some, anonymous
        otherwise)."""
        realm = self.challenge.params.get("realm")
        if not realm:
            raise Unavailable(f"registry {self.host} asked for a Bearer token without a realm")
        query = {"service": self.challenge.params.get("service", ""), "scope": scope.split()}
        headers = {"Authorization": self._basic()} if self.credentials else {}
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query, doseq=True)}"
        resp = self._retrying(lambda: self._send("GET", url, headers))
        if resp.status != 200:
            self.read_prefix(resp)
            if resp.status in (401, 403):
                raise FailedPrecondition(f"unauthorized: the token server of {self.host} "
                                         f"refused the credentials{self._login_hint()}")
            raise Unavailable(f"token server of {self.host} answered {resp.status} {resp.reason}")
        body = self.read_limited(resp, SMALL_LIMIT, "a token reply")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Unavailable(f"token server of {self.host} sent no token")
        self.tokens[scope] = token
        return token

    def _login_hint(self) -> str:
        return "" if self.credentials else f" (log in first: pinnace login {self.host})"

    # ------------------------------------------------------------ requests
    def _retrying(self, attempt: Callable[[], http.client.HTTPResponse],
                  tries: int = RETRIES) -> http.client.HTTPResponse:
        """Run ``attempt`` up to ``tries`` times while it fails transiently."""
        delay = BACKOFF
        for n in range(1, tries + 1):
            try:
                resp = attempt()
                if resp.status != 429 and resp.status < 500:
                    return resp
                self.read_prefix(resp)
                failure = f"answered {resp.status} {resp.reason}"
            except (OSError, http.client.HTTPException, Transient) as err:
                failure = describe(err)
            if n == tries:
                raise Unavailable(f"registry {self.host} {failure} ({tries} attempts)")
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None,
                body: bytes | Callable[[], Any] | None = None,
                expect: Iterable[int] = (200,)) -> http.client.HTTPResponse:
        """``method`` on ``path`` (``/v2/...`` or an absolute URL a registry gave), with
        auth for ``scope``; redirects followed, transient failures retried. ``body`` is
        bytes or a function that opens a fresh body for each attempt. Returns the response
        (its body unread) when its status is in ``expect``; raises a one-line error else."""
        self.ping()
        url = urljoin(f"{self.scheme}://{self.host}", path)
        headers = dict(headers or {})
        for _ in range(_REDIRECTS):
            same_host = urlsplit(url).netloc == self.host

            def attempt(url: str = url, same_host: bool = same_host, method: str = method,
                        body: bytes | Callable[[], Any] | None = body,
                        ) -> http.client.HTTPResponse:
                hdrs = dict(headers, **(self._auth_header(scope) if same_host else {}))
                payload = body() if callable(body) else body
                try:
                    return self._send(method, url, hdrs, payload)
                finally:
                    if hasattr(payload, "close"):
                        payload.close()

            resp = self._retrying(attempt)
            if resp.status == 401 and same_host:  # (re)authenticate once, as challenged
                self.read_prefix(resp)
                self.challenge = parse_challenge(resp.getheader("WWW-Authenticate"))
                self.tokens.pop(scope, None)
                resp = self._retrying(attempt)
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                self.read_prefix(resp)
                url = urljoin(url, resp.getheader("Location"))
                if resp.status == 303:
                    method, body = "GET", None
                continue
            if resp.status in expect:
                return resp
            raise self._error(resp, method, path)
        raise Unavailable(f"registry {self.host}: too many redirects for {path}")

    def fetch_small(self, path: str, scope: str, headers: dict[str, str] | None = None,
                    ) -> tuple[http.client.HTTPResponse, bytes]:
        """GET a manifest, index or config: the whole body (at most MANIFEST_LIMIT
        bytes), fetched again when the transfer breaks."""
        for n in range(1, RETRIES + 1):
            resp = self.request("GET", path, scope, headers)
            try:
                body = self.read_limited(resp, MANIFEST_LIMIT, "a manifest or config")
            except (OSError, http.client.HTTPException) as err:
                self.close()
                if n == RETRIES:
                    raise Unavailable(f"registry {self.host} {describe(err)} "
                                      f"({RETRIES} attempts)") from None
                continue
            return resp, body
        raise AssertionError("unreachable")

    def _error(self, resp: http.client.HTTPResponse, method: str, path: str) -> PinnaceError:
        body = self.read_prefix(resp)
        detail = f"{resp.status} {resp.reason}"
        try:
            errors = json.loads(body)["errors"]
            detail = "; ".join(f"{e.get('code', '').lower()}: {e.get('message', '')}"
                               for e in errors) or detail
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        detail = " ".join(detail.split())
        if len(detail) > _DETAIL:
            detail = detail[:_DETAIL] + "..."
        what = f"{self.host}{path}" if path.startswith("/") else path
        if resp.status in (401, 403):
            return FailedPrecondition(f"unauthorized: {method} {what}: {detail}"
                                      f"{self._login_hint()}")
        if resp.status == 404:
            return NotFound(f"{method} {what}: {detail}")
        return FailedPrecondition(f"{method} {what}: {detail}")


def too_large(url: str, limit: int, what: str) -> str:
    """The error for a reply over its limit."""
    size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
    return f"{url}: the registry's reply is larger than the {size} allowed for {what}"


def describe(err: BaseException) -> str:
    """A transfer failure in a few words."""
    if isinstance(err, http.client.IncompleteRead):
        return "closed the connection in the middle of a reply"
    if isinstance(err, http.client.RemoteDisconnected):
        return "closed the connection without a reply"
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return f"failed: {text}"
