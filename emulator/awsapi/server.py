"""moto's server on 127.0.0.1 (ephemeral port), sharing the in-process backends with the emulator.

Like `moto.server.ThreadedMotoServer`, but each request runs under the registry's lock, so a request
from boto3, the AWS CLI or the hook never interleaves with a RegisterThing being applied, and
DynamoDB's check-then-write conditional updates are atomic under concurrent hook calls.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from werkzeug.serving import BaseWSGIServer, make_server

from emulator.logsafe import quoted

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class LocalAwsServer:
    """`front`, if given, wraps the locked moto application into the one the socket serves (the
    emulator's gateway: control plane, refusals); `changes` counts requests that may have written."""

    def __init__(
        self,
        lock: threading.RLock,
        host: str = "127.0.0.1",
        port: int = 0,
        front: Callable[[WsgiApp], WsgiApp] | None = None,
    ) -> None:
        self._lock = lock
        self._host = host
        self._port = port
        self._front = front
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app: Any = None
        self._outer: Any = None
        self._shortcut: Any = None  # emulator.awsapi.shortcut.Shortcut
        self._routes: dict[str, str] = {}  # signing name -> URL of the server that holds it
        self.changes = 0  # requests other than reads, for the state saver (--persist)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def count_change(self) -> None:
        self.changes += 1

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = DomainDispatcherApplication(create_backend_app)
        lock = self._lock

        routes = self._routes

        def locked(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if refused_route(str(environ.get("PATH_INFO", ""))):
                return refuse_route(environ, start_response)
            target = routes.get(signing_name(environ.get("HTTP_AUTHORIZATION", ""))) if routes else None
            if target is not None:
                return [_forward(target, environ, start_response)]
            with lock:
                # Materialise the body inside the lock: moto builds it lazily from backend state.
                body = b"".join(app(environ, start_response))
                # Counted once done, so that a save which sees the count also sees the write.
                if not is_read(environ.get("REQUEST_METHOD", ""), environ.get("HTTP_X_AMZ_TARGET", "")):
                    self.changes += 1
                return [body]

        self._app = locked
        self._outer = self._front(locked) if self._front is not None else locked
        self._dispatcher = app
        # Bound here, not by werkzeug, which answers a port in use with a print and sys.exit(1).
        listener = _listen(self._host, self._port)
        try:
            self._server = make_server(
                self._host,
                self._port,
                self._outer,
                threaded=True,
                request_handler=MotoRequestHandler,
                fd=listener.fileno(),
            )
        finally:
            listener.close()  # the server holds its own duplicate of the descriptor
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Where clients reach it: a wildcard bind (0.0.0.0, ::) is reached on the loopback address."""
        host = _connect_host(self._host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def route(self, service: str, url: str) -> None:
        """Forward requests signed for `service` (e.g. "dynamodb") to the moto server at `url`: one
        endpoint for clients, the service's state held elsewhere (the hook process's serial table)."""
        self._routes[service] = url.rstrip("/")

    def install_shortcut(self, *, region: str | None = None) -> None:
        """Let boto3 clients created in this process (the in-process hook's) reach this server without
        a socket: a botocore `before-send` handler hands requests for `url` straight to the same WSGI
        app. Requests and responses are still AWS's HTTP wire format, only the TCP hop is skipped.

        `region`: where an unsigned request is served (`emulator/registry/botocore_local.py` drops the
        signature of the hook process's DynamoDB calls; a signed request names its region itself)."""
        import botocore.handlers

        from emulator.awsapi.shortcut import Shortcut

        if self._shortcut is None:
            self._shortcut = Shortcut(self.url, self._outer, self._lock, self._routes, self, region)
            botocore.handlers.BUILTIN_HANDLERS.append(("before-send", self._shortcut))

    def stop(self) -> None:
        if self._shortcut is not None:
            import botocore.handlers

            self._shortcut.enabled = False
            with contextlib.suppress(ValueError):
                botocore.handlers.BUILTIN_HANDLERS.remove(("before-send", self._shortcut))
            self._shortcut = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")

log = logging.getLogger("emulator.aws")

# Request headers a proxy must not pass on (RFC 9110 7.6.1), and response headers it recomputes.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


# moto's control routes (reset, seed, state...) and its instance-metadata stand-in: not AWS APIs. Any
# local process could wipe the registry (or the hook process's serial table) with one POST.
REFUSED_PREFIXES = ("/moto-api", "/latest/meta-data", "/latest/api", "/favicon.ico")


def refused_route(path: str) -> bool:
    return path.startswith(REFUSED_PREFIXES)


def refuse_route(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """404 in JSON (not an AWS API, so no SDK's error format to match), and one log line."""
    from emulator.awsapi.errors import AwsApiError, error_response

    path = str(environ.get("PATH_INFO", ""))[:80]
    log.info(
        "AWS API: refused %s %s (moto's control routes are not served)",
        quoted(environ.get("REQUEST_METHOD")),
        quoted(path),
    )
    error = AwsApiError(404, "NotFound", f"{path} is not an AWS API: not served at aws_endpoint_url")
    status, headers, body = error_response(error)
    start_response(status, headers)
    return [body]


def signing_name(authorization: str) -> str:
    """The service a SigV4 request is signed for ("dynamodb", "iot"...), from its credential scope."""
    match = _SCOPE_RE.search(authorization)
    return match.group(1) if match else ""


# DynamoDB actions that never write (JSON protocol: every request is a POST).
_READ_PREFIXES = ("Get", "BatchGet", "Query", "Scan", "Describe", "List")


def is_read(method: str, target: str = "") -> bool:
    """A request that cannot change state: GET/HEAD, or a DynamoDB read (X-Amz-Target)."""
    if method in ("GET", "HEAD"):
        return True
    action = target.rpartition(".")[2]
    return bool(target) and action.startswith(_READ_PREFIXES)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; OSError (e.g. the port is in use) says which address."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise OSError(exc.errno, f"AWS API on {host}:{port}: {exc.strerror}") from None
    return listener


def _connect_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _forward(base_url: str, environ: dict[str, Any], start_response: Any) -> bytes:
    """Send one WSGI request on to `base_url` as it came (method, path, query, headers, body) and
    relay the answer. A dead target is a 503 the SDKs retry, not a hang."""
    import http.client

    target = urlsplit(base_url)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {
        key[5:].replace("_", "-").title(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in _HOP_BY_HOP
    }
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    path = environ.get("RAW_URI") or (
        environ.get("PATH_INFO", "/") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
    )
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
    try:
        connection.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        relayed = [
            (k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}
        ]
        start_response(
            f"{response.status} {response.reason}", [*relayed, ("Content-Length", str(len(payload)))]
        )
        return payload
    except OSError as exc:
        log.error("cannot reach %s for %s: %s", base_url, quoted(environ.get("PATH_INFO")), exc)
        payload = b'{"__type": "ServiceUnavailable", "message": "the service\'s process is not answering"}'
        start_response("503 Service Unavailable", [("Content-Type", "application/x-amz-json-1.0")])
        return payload
    finally:
        connection.close()


def _moto_serves(service: str, operation: str) -> bool:
    from moto.core.utils import camelcase_to_underscores

    from emulator.awsapi.gateway import EMULATOR_IOT_ACTIONS

    if not operation or (service == "iot" and operation in EMULATOR_IOT_ACTIONS):
        return False

    handler = _direct_handler(service)
    return hasattr(getattr(handler, "__self__", handler), camelcase_to_underscores(operation))


def _direct_handler(service: str) -> Any:
    if service == "dynamodb":
        from moto.dynamodb.responses import DynamoHandler

        return DynamoHandler.dispatch
    from moto.iot.responses import IoTResponse

    return IoTResponse.dispatch
