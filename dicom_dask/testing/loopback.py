"""Real servers on 127.0.0.1 for tests and benchmarks: nginx, moto, a GCS emulator, and
a forwarding HTTP proxy that counts requests, adds latency and injects faults.

Nothing here is used by the library itself. Every server is a context manager that
starts the process (or thread), waits until its port answers (bounded in time) and
stops it on exit, killing it if it does not stop.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "LoggedRequest",
    "Proxy",
    "ServerProcess",
    "free_port",
    "gcs_emulator",
    "moto_server",
    "orthanc",
    "orthanc_upload",
    "nginx",
    "round_trips",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class ServerProcess:
    """A server process on 127.0.0.1:``port``, stopped (and killed if need be) on exit.

    Parameters
    ----------
    command : sequence of str
        The command line; it must make the server listen on ``port``.
    port : int
        The port it listens on.
    env : mapping, optional
        Extra environment variables.
    timeout : float
        Seconds to wait for the port to answer.
    workdir : str, optional
        The server's working folder (logs, data). Removed on
        [`stop`][dicom_dask.testing.loopback.ServerProcess.stop].
    """

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
        workdir: str | None = None,
    ) -> None:
        self.command = list(command)
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.timeout = timeout
        self.workdir = workdir or tempfile.mkdtemp(prefix="dicom-dask-server-")
        self.log_path = os.path.join(self.workdir, "server.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start the process and wait until its port answers."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            _wait_for_port(self.port, self.timeout, self.proc)
        except Exception as exc:
            log_text = Path(self.log_path).read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"{self.command[0]} did not start: {exc}\n{log_text}") from exc
        return self

    def stop(self) -> None:
        """Terminate the process (SIGKILL after 10 s) and remove its working folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _require(program: str) -> str:
    # the scripts of the running interpreter's environment first (an unactivated venv)
    path = shutil.which(program, path=os.path.dirname(sys.executable)) or shutil.which(program)
    if path is None:
        raise FileNotFoundError(f"{program} is not installed (.ci/run installs it)")
    return path


_NGINX_CONF = """\
{user}daemon off;
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format ranges '$request_method $uri "$http_range" $status $body_bytes_sent';
    access_log {work}/access.log ranges;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ autoindex on; }}
    }}
}}
"""


def nginx(root: str | os.PathLike[str], *, port: int | None = None) -> ServerProcess:
    """nginx serving the folder ``root`` (with Range support and directory listings).

    The access log, one line per request with its ``Range`` header, status and body
    bytes, is ``<server>.workdir/access.log``.
    """
    binary = _require("nginx")
    port = port or free_port()
    work = tempfile.mkdtemp(prefix="dicom-dask-nginx-")
    user = "user root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    conf = _NGINX_CONF.format(user=user, work=work, port=port, root=os.path.abspath(root))
    Path(work, "nginx.conf").write_text(conf)
    return ServerProcess(
        [binary, "-c", f"{work}/nginx.conf", "-p", work, "-e", f"{work}/error.log"],
        port,
        workdir=work,
    )


def moto_server(*, port: int | None = None) -> ServerProcess:
    """moto's S3-compatible server (``moto_server``); any credentials are accepted."""
    port = port or free_port()
    return ServerProcess([_require("moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)


def gcs_emulator(*, port: int | None = None) -> ServerProcess:
    """``gcp-storage-emulator`` in memory; gcsfs reaches it through
    ``STORAGE_EMULATOR_HOST=<server>.endpoint``."""
    port = port or free_port()
    command = [_require("gcp-storage-emulator"), "start", "--host", "127.0.0.1"]
    return ServerProcess([*command, "--port", str(port), "--in-memory"], port)


_DICOMWEB_PLUGINS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so",
)


def orthanc(*, port: int | None = None, users: dict[str, str] | None = None) -> ServerProcess:
    """Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) with its DICOMweb plugin,
    on 127.0.0.1, storing in a temporary folder; without authentication unless ``users``
    (name -> password, HTTP basic auth). DICOMweb's root is ``<server>.endpoint +
    "/dicom-web"``; files are uploaded with
    [`orthanc_upload`][dicom_dask.testing.loopback.orthanc_upload]."""
    import json

    binary = _require("Orthanc")
    plugin = next((p for p in _DICOMWEB_PLUGINS if os.path.exists(p)), None)
    if plugin is None:
        raise FileNotFoundError(
            "the Orthanc DICOMweb plugin is not installed (.ci/run installs it)"
        )
    port = port or free_port()
    work = tempfile.mkdtemp(prefix="dicom-dask-orthanc-")
    config = {
        "Name": "dicom-dask-tests",
        "StorageDirectory": f"{work}/db",
        "IndexDirectory": f"{work}/db",
        "HttpPort": port,
        "HttpBindAddress": "127.0.0.1",
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": dict(users or {}),
        "StorageCompression": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }
    Path(work, "orthanc.json").write_text(json.dumps(config))
    return ServerProcess([binary, f"{work}/orthanc.json"], port, workdir=work, timeout=60)


def orthanc_upload(
    endpoint: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    auth: tuple[str, str] | None = None,
) -> list[str]:
    """POST each file to Orthanc's REST API; return the paths it accepted."""
    import base64

    accepted = []
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    for path in paths:
        data = Path(path).read_bytes()
        request = urllib.request.Request(
            f"{endpoint}/instances", data=data, method="POST", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                if reply.status == 200:
                    accepted.append(os.fspath(path))
        except urllib.error.HTTPError:
            continue  # Orthanc refuses it (no preamble, no UIDs...)
    return accepted


# -- the proxy -------------------------------------------------------------------------
@dataclass(frozen=True)
class LoggedRequest:
    """One request the proxy saw."""

    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int
    #: ``time.monotonic()`` when the request arrived and when its reply was sent.
    start: float = 0.0
    stop: float = 0.0


def round_trips(log: Sequence[LoggedRequest]) -> int:
    """How many waves of requests ``log`` holds: requests that overlap in time form one
    wave, and a wave that starts after the previous one ended is one more round trip."""
    waves, end = 0, float("-inf")
    for entry in sorted(log, key=lambda e: e.start):
        if entry.start >= end:
            waves += 1
            end = entry.stop
        else:
            end = max(end, entry.stop)
    return waves


_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        length = str(len(body))
        for key, value in headers:
            if key.lower() not in _HOP:
                self.send_header(key, value)
            elif key.lower() == "content-length" and self.command == "HEAD":
                length = value  # a HEAD reply has no body but tells the size
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except ConnectionError:  # the client hung up (it had what it wanted)
                self.close_connection = True

    def _forward(self) -> None:
        proxy = self.server.proxy
        began = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        # "in flight": from arrival until the reply is ready (its sending is not counted,
        # so a client that sends the next request on receipt is never seen overlapping)
        proxy._enter()
        try:
            status, headers, data = self._answer(proxy, body)
        finally:
            proxy._leave()
        # logged before the reply goes out: a client that has its answer finds it logged
        proxy._record(
            LoggedRequest(
                self.command,
                self.path,
                self.headers.get("Range"),
                status,
                len(data),
                began,
                time.monotonic(),
            )
        )
        self._reply(status, headers, data)

    def _answer(self, proxy: Proxy, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        status = proxy._decide(self.command, self.path)
        if proxy.latency:
            time.sleep(proxy.latency)
        if status is not None:
            return status, [], b""
        if proxy.auth is not None and self.headers.get("Authorization") != proxy._expected:
            return 401, [("WWW-Authenticate", 'Basic realm="dicom-dask"')], b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        for attempt in range(4):
            conn = proxy._connection()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (OSError, http.client.HTTPException) as exc:
                proxy._drop_connection()
                # the upstream closed an idle kept-alive connection, or its accept queue
                # (5 for Python's http.server) overflowed: again on a new connection, as
                # a load balancer does; anything else is a 502, never a silent hang-up
                if not isinstance(exc, ConnectionError) or attempt == 3:
                    return 502, [], f"upstream failed: {exc!r}".encode()
                time.sleep(0.02 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops bursts of connections for 1 s (SYN retry)
    proxy: Proxy


@dataclass
class Proxy:
    """A forwarding HTTP proxy on 127.0.0.1 in front of ``upstream``, in a thread.

    Parameters
    ----------
    upstream : str
        ``http://host:port`` of the real server.
    latency : float
        Seconds added to every request before it is forwarded (a WAN round trip).
    fail_rate : float
        Fraction of requests answered ``503`` without forwarding (transient faults),
        drawn from a seeded generator so a run is reproducible.
    deny : dict
        Path prefix -> status (for instance ``{"/secret": 403}``): permanent errors.
    """

    upstream: str
    latency: float = 0.0
    fail_rate: float = 0.0
    deny: dict[str, int] = field(default_factory=dict)
    #: ``(user, password)``: requests without this HTTP basic auth get ``401``.
    auth: tuple[str, str] | None = None
    seed: int = 0
    port: int = 0
    #: Every request seen, in order.
    log: list[LoggedRequest] = field(default_factory=list)
    #: The most requests in progress at once since the last
    #: [`reset`][dicom_dask.testing.loopback.Proxy.reset].
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        host, _, port = self.upstream.removeprefix("http://").rstrip("/").partition(":")
        self._upstream = (host, int(port or 80))
        self._lock = threading.Lock()
        self._random = random.Random(self.seed)
        self._local = threading.local()
        self._in_flight = 0
        self._server: _ProxyServer | None = None
        self._expected: str | None = None
        if self.auth is not None:
            import base64

            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            self._expected = f"Basic {token}"
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def _decide(self, method: str, path: str) -> int | None:
        for prefix, status in self.deny.items():
            if path.startswith(prefix):
                return status
        with self._lock:
            if self.fail_rate and self._random.random() < self.fail_rate:
                return 503
        return None

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self._upstream, timeout=30)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.log.append(entry)

    def reset(self) -> list[LoggedRequest]:
        """Return the log so far and start a new one."""
        with self._lock:
            out, self.log = self.log, []
            self.max_in_flight = self._in_flight
        return out

    def start(self) -> Proxy:
        """Listen and serve in a daemon thread."""
        self._server = _ProxyServer(("127.0.0.1", self.port), _Handler)
        self._server.proxy = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
