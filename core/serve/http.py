"""The server's HTTP/1.1 side: listeners (a unix socket, loopback TCP), one thread per
connection, requests routed to the endpoints, replies, chunked streams and hijacked
connections, errors in docker's shape (``{"message": ...}``)."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from pinnace.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidConfig,
    NotFound,
    PinnaceError,
    Unavailable,
)
from pinnace.serve import API_VERSION, MIN_API_VERSION
from pinnace.serve.streams import headers_read

if TYPE_CHECKING:
    from pinnace.client import Client
    from pinnace.config import Config
    from pinnace.serve.execs import ExecTable

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
API_TUPLE = (int(API_VERSION.split(".")[0]), int(API_VERSION.split(".")[1]))
STATUS_OF = ((NotFound, 404), (AlreadyExists, 409), (FailedPrecondition, 409),
             (InvalidConfig, 400), (Unavailable, 503))


class NotImplementedEndpoint(PinnaceError):
    """An endpoint of the Docker API that ``pinnace serve`` does not implement (501)."""


class NotModified(PinnaceError):
    """Nothing to do (starting a running container, stopping a stopped one): 304."""


def status_of(err: PinnaceError) -> int:
    """The HTTP status docker answers for an error of this kind."""
    if isinstance(err, NotImplementedEndpoint):
        return 501
    for kind, status in STATUS_OF:
        if isinstance(err, kind):
            return status
    return 500


Handler = Callable[["Request"], None]


@dataclass
class Route:
    """One endpoint: a method and a path pattern (named groups become ``params``)."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass
class Request:
    """One request as an endpoint sees it, and the means to answer it."""

    conn: Connection
    method: str
    path: str
    query: dict[str, list[str]]
    params: dict[str, str] = field(default_factory=dict)
    answered: bool = False
    version: tuple[int, int] = API_TUPLE
    """The API version the client asked for in the path (the newest without one)."""

    @property
    def client(self) -> Client:
        """This connection's :class:`~pinnace.client.Client`."""
        return self.conn.client

    @property
    def server(self) -> Server:
        """The server (config, exec table)."""
        return self.conn.server  # type: ignore[return-value]

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of query parameter ``name``."""
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter (``1``, ``true``, ``True``)."""
        value = self.arg(name)
        return default if value is None else value.lower() in ("1", "true", "yes")

    def number(self, name: str, default: int) -> int:
        """An integer query parameter."""
        value = self.arg(name)
        try:
            return default if value in (None, "") else int(float(value))  # type: ignore[arg-type]
        except ValueError:
            raise InvalidConfig(f"invalid value for {name}: {value!r}") from None

    def filters(self) -> dict[str, list[str]]:
        """The ``filters`` parameter: ``{"name": ["a"]}`` or the older ``{"name": {"a": true}}``."""
        text = self.arg("filters")
        if not text:
            return {}
        try:
            raw = json.loads(text)
        except ValueError:
            raise InvalidConfig(f"invalid filters: {text!r}") from None
        return {k: list(v) for k, v in raw.items()}

    def header(self, name: str) -> str | None:
        """A request header."""
        return self.conn.headers.get(name)

    def body(self) -> bytes:
        """The whole request body (plain or chunked)."""
        return self.conn.read_body()

    def json(self) -> dict[str, Any]:
        """The request body as a JSON object (``{}`` when empty)."""
        data = self.body()
        if not data.strip():
            return {}
        try:
            value = json.loads(data)
        except ValueError as err:
            raise InvalidConfig(f"invalid JSON body: {err}") from None
        if not isinstance(value, dict):
            raise InvalidConfig("invalid JSON body: expected an object")
        return value

    def body_file(self) -> BinaryIO:
        """The request body in a temporary file (tars: archives, loads), at its start."""
        import tempfile

        spool = tempfile.SpooledTemporaryFile(8 << 20)
        for chunk in self.conn.body_chunks():
            spool.write(chunk)
        spool.seek(0)
        return spool  # type: ignore[return-value]

    def reply(self, status: int, value: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, content_type: str = "application/json") -> None:
        """Answer with ``value`` as JSON (or ``raw`` bytes), or an empty body."""
        data = raw if raw is not None else \
            (b"" if value is None else json.dumps(value).encode() + b"\n")
        self.conn.send_response(status)
        if data or raw is not None:
            self.conn.send_header("Content-Type", content_type)
        for name, text in (headers or {}).items():
            self.conn.send_header(name, text)
        self.conn.send_header("Content-Length", str(len(data)))
        self.conn.end_headers()
        if self.method != "HEAD":
            self.conn.wfile.write(data)
        self.answered = True

    def stream(self, content_type: str = "application/json", status: int = 200) -> Stream:
        """Start a chunked reply whose headers are sent at once."""
        self.conn.send_response(status)
        self.conn.send_header("Content-Type", content_type)
        self.conn.send_header("Transfer-Encoding", "chunked")
        self.conn.end_headers()
        self.conn.wfile.flush()
        self.answered = True
        return Stream(self.conn)

    def stream_from(self, produce: Callable[[Client, int], None],
                    content_type: str = "application/x-tar") -> None:
        """Answer with what ``produce(client, fd)`` writes to ``fd``; it runs in a thread
        of its own, with a client of its own. A failure ends the stream early."""
        from pinnace.client import Client
        from pinnace.engine import Engine

        config = self.client.engine.config
        read_end, write_end = os.pipe()
        failure: list[BaseException] = []

        def run() -> None:
            client = Client(engine=Engine(config))
            try:
                produce(client, write_end)
            except BaseException as err:
                failure.append(err)
            finally:
                os.close(write_end)
                client.close()

        threading.Thread(target=run, daemon=True).start()
        stream = self.stream(content_type)
        with os.fdopen(read_end, "rb") as pipe:
            while data := pipe.read(1 << 16):
                stream.write(data)
        if failure:
            raise failure[0]
        stream.end()

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> socket.socket:
        """Take over the connection for a raw stream both ways (``101 UPGRADED`` when the
        client asked for an upgrade, else ``200``); its headers are sent, and read by the
        client, before anything else. The connection closes when the endpoint returns."""
        upgrade = (self.header("Upgrade") or "").lower() == "tcp"
        if upgrade:
            self.conn.send_response(101, "UPGRADED")
            self.conn.send_header("Connection", "Upgrade")
            self.conn.send_header("Upgrade", "tcp")
        else:
            self.conn.send_response(200)
        self.conn.send_header("Content-Type", content_type)
        self.conn.end_headers()
        self.conn.wfile.flush()
        self.conn.close_connection = True
        self.answered = True
        headers_read(self.conn.connection)
        return self.conn.connection

    def read_hijacked(self) -> bytes:
        """What the client sends on a hijacked connection (b"" when it closed its side)."""
        try:
            return self.conn.rfile.read1(65536)
        except OSError:
            return b""


class Stream:
    """A chunked reply's body."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes) -> None:
        """Send one chunk (a client gone raises ``BrokenPipeError``/``ConnectionError``)."""
        if not data:
            return
        with self.lock:
            self.conn.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.conn.wfile.flush()

    def json(self, value: Any) -> None:
        """Send one JSON object, on a line of its own."""
        self.write(json.dumps(value).encode() + b"\n")

    def error(self, err: BaseException) -> None:
        """A failure inside a stream already under way, as docker sends it."""
        message = str(err) or type(err).__name__
        self.json({"errorDetail": {"message": message}, "error": message})

    def end(self) -> None:
        """The last chunk."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.conn.wfile.write(b"0\r\n\r\n")
                self.conn.wfile.flush()


class Connection(http.server.BaseHTTPRequestHandler):
    """One client connection (its own thread); requests on it in turn."""

    protocol_version = "HTTP/1.1"
    server_version = f"pinnace/{API_VERSION}"
    _client: Client | None = None

    @property
    def client(self) -> Client:
        """A client for this connection's thread, made on first use."""
        if self._client is None:
            from pinnace.client import Client
            from pinnace.engine import Engine

            self._client = Client(engine=Engine(self.server.config))  # type: ignore[attr-defined]
        return self._client

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):  # the client left: nothing to answer
            pass
        finally:
            if self._client is not None:  # its state connection goes with the thread
                self._client.close()

    def address_string(self) -> str:
        return self.client_address[0] if self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.debug:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")

    def read_body(self) -> bytes:
        """The request body, whole."""
        return b"".join(self.body_chunks())

    def body_chunks(self) -> Iterator[bytes]:
        """The request body piece by piece, plain (``Content-Length``) or chunked."""
        if self.__dict__.get("_body_read"):
            return
        self._body_read = True
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 20))
                    if not data:
                        return
                    left -= len(data)
                    yield data
                self.rfile.readline()
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, 1 << 20))
            if not data:
                return
            left -= len(data)
            yield data

    def _handle(self, method: str) -> None:
        self._body_read = False
        url = urlsplit(self.path)
        path = url.path
        versioned = _VERSIONED.match(path)
        req = Request(self, method, path, parse_qs(url.query, keep_blank_values=True))
        try:
            if versioned:
                asked = (int(versioned.group(1)), int(versioned.group(2)))
                if asked < tuple(int(x) for x in MIN_API_VERSION.split(".")):
                    raise InvalidConfig(
                        f"client version {asked[0]}.{asked[1]} is too old. Minimum supported "
                        f"API version is {MIN_API_VERSION}, please upgrade your client to a "
                        f"newer version")
                path = versioned.group(3)
                req.path, req.version = path, asked
            route, params = self.server.find(method, path)  # type: ignore[attr-defined]
            req.params = params
            route.handler(req)
            if not req.answered:
                req.reply(204)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except NotModified:
            if not req.answered:
                req.reply(304)
        except PinnaceError as err:
            self._fail(req, status_of(err), str(err))
        except Exception as err:  # an endpoint's bug: the client gets it, the server goes on
            if self.server.debug:  # type: ignore[attr-defined]
                import traceback

                traceback.print_exc()
            self._fail(req, 500, f"{type(err).__name__}: {err}")
        if not self.close_connection:
            for _ in self.body_chunks():  # what the endpoint left unread
                pass

    def _fail(self, req: Request, status: int, message: str) -> None:
        if req.answered:  # a stream already under way: it just ends
            self.close_connection = True
            return
        req.reply(status, {"message": message})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class Server:
    """What the listeners share: the config, the routes, the exec table."""

    def __init__(self, config: Config, routes: list[Route], debug: bool = False) -> None:
        from pinnace.serve.execs import ExecTable

        self.config = config
        self.routes = routes
        self.debug = debug
        self.execs: ExecTable = ExecTable()

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``method path`` and its parameters; 404 for an unknown path, 501
        for an endpoint of the Docker API left out."""
        lookup = "GET" if method == "HEAD" else method
        known_path = False
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match:
                known_path = True
                if route.method == lookup:
                    return route, match.groupdict()
        if known_path:
            raise InvalidConfig(f"method {method} is not allowed on {path}")
        raise NotImplementedEndpoint(f"pinnace serve does not implement {method} {path}")


class _UnixListener(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many clients connect at once (compose, CI)


class _TCPListener(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128


def _share(listener: socketserver.BaseServer, server: Server) -> None:
    listener.config = server.config  # type: ignore[attr-defined]
    listener.debug = server.debug  # type: ignore[attr-defined]
    listener.find = server.find  # type: ignore[attr-defined]
    listener.execs = server.execs  # type: ignore[attr-defined]


def unix_listener(server: Server, path: str, group: str | None) -> socketserver.BaseServer:
    """Listen on a unix socket at ``path``, mode 0660, owned by root and ``group`` (root's
    own group when None)."""
    import grp

    gid = 0
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise InvalidConfig(f"no such group {group!r} for the API socket") from None
    if os.path.lexists(path):
        if not _is_socket(path):
            raise InvalidConfig(f"{path} exists and is not a socket")
        if _answers(path):
            raise AlreadyExists(f"something already listens on {path}")
        os.unlink(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    old = os.umask(0o177)  # never, not even for an instant, open to others
    try:
        listener = _UnixListener(path, Connection)
    finally:
        os.umask(old)
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
    _share(listener, server)
    return listener


def tcp_listener(server: Server, address: str) -> socketserver.BaseServer:
    """Listen on ``HOST:PORT``; only loopback addresses are accepted."""
    import ipaddress

    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = sep and ipaddress.ip_address(host).is_loopback and port.isdigit()
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidConfig(f"--tcp {address}: only a loopback HOST:PORT is accepted "
                            "(such as 127.0.0.1:2375); the API gives root on this host")
    listener = _TCPListener((host, int(port)), Connection)
    _share(listener, server)
    return listener


def _is_socket(path: str) -> bool:
    import stat

    return stat.S_ISSOCK(os.lstat(path).st_mode)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True
