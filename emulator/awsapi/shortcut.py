"""The `before-send` shortcut: boto3 clients of this process reach a `LocalAwsServer` without a socket.

A botocore `before-send` handler (`LocalAwsServer.install_shortcut`) takes each request for the server's
URL: DynamoDB and IoT actions moto implements go straight to moto's handler, as moto's own `mock_aws`
does (no WSGI environ for Flask, no per-request service inference), everything else through the
server's WSGI app (the gateway: the emulator's own actions, refusals, forwarding). Requests and answers
are AWS's HTTP wire format; only the TCP hop and the web framework are skipped.
"""

from __future__ import annotations

import io
import threading
from typing import Any
from urllib.parse import urlsplit

from emulator.awsapi.server import (
    LocalAwsServer,
    _direct_handler,
    _moto_serves,
    is_read,
    log,
    signing_name,
)
from emulator.logsafe import quoted

# Signing names whose moto handler the shortcut calls directly (as moto's own `mock_aws` does), with
# no WSGI environ, Flask app or per-request service inference (a directory scan per request).
DIRECT_SERVICES = frozenset({"dynamodb", "iot"})


class Shortcut:
    """The `before-send` handler for one `LocalAwsServer` (its URL, app, lock, routes)."""

    def __init__(
        self,
        url: str,
        app: Any,
        lock: threading.RLock,
        routes: dict[str, str],
        server: LocalAwsServer,
        region: str | None = None,
    ) -> None:
        self.url = url
        self.app = app  # the server's outer application: the same answers as over the socket
        self.lock = lock
        self.enabled = True
        self._handlers = {service: _direct_handler(service) for service in DIRECT_SERVICES}
        self._routes = routes  # services held elsewhere go through the WSGI app, which forwards them
        self._server = server
        self._region = region
        self._served: dict[tuple[str, str], bool] = {}  # (service, operation) -> _moto_serves
        self._requests = MotoRequests()

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> Any:
        if not self.enabled or not str(request.url).startswith(self.url):
            return None  # any other endpoint: botocore sends it as usual
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        authorization = request.headers.get("Authorization", b"")
        if isinstance(authorization, bytes):
            authorization = authorization.decode()
        # before-send.<service id>.<Operation>; an unsigned request (botocore_local) names its service
        # only there (the ids of the services served directly are their signing names).
        service_id, operation = (event_name.split(".") + ["", "", ""])[1:3]
        service = signing_name(authorization) or (service_id if not authorization else "")
        handler = None if service in self._routes else self._handlers.get(service)
        if handler is not None:
            served = self._served.get((service, operation))
            if served is None:
                served = self._served[(service, operation)] = _moto_serves(service, operation)
            if not served:
                handler = None  # the emulator's own actions, and refusals: through the gateway
        if handler is None:
            code, response_headers, payload = self._through_wsgi(request)
        else:
            target = request.headers.get("X-Amz-Target", b"")
            full_url = None
            if not authorization and self._region is not None:
                # Where moto reads an unsigned request's region: its AWS endpoint name (as under mock_aws).
                parts = urlsplit(request.url)
                query = f"?{parts.query}" if parts.query else ""
                full_url = f"https://{service}.{self._region}.amazonaws.com{parts.path or '/'}{query}"
            code, response_headers, payload = self._direct(handler, request, full_url)
            if not is_read(request.method, target.decode() if isinstance(target, bytes) else str(target)):
                self._server.count_change()
        return AWSResponse(request.url, code, response_headers, MockRawResponse(payload))

    def _direct(
        self, handler: Any, request: Any, full_url: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """What moto's Flask view does for this request (moto.core.utils.convert_to_flask_response),
        minus the WSGI round trip: the same handler, request, errors and response bytes."""
        from botocore.exceptions import ClientError
        from werkzeug.exceptions import HTTPException

        normalized = self._requests.build(request)
        with self.lock:
            try:
                result = handler(normalized, full_url or normalized.raw_url, dict(normalized.headers))
            except HTTPException as exc:  # moto's AWS errors (as Flask turns them into responses)
                body = exc.get_body()
                return int(exc.code or 500), dict(exc.get_headers()), body.encode()
            except ClientError as exc:
                return 400, {}, str(exc.response["Error"]["Message"]).encode()
            except Exception:
                log.exception("moto failed on %s %s", request.method, quoted(request.url))
                return 500, {}, b'{"__type": "InternalFailure", "message": "moto raised"}'
            status, headers, content = result if len(result) == 3 else (200, {}, result)
            if not isinstance(content, (str, bytes)):
                content = b"".join(c.encode() if isinstance(c, str) else c for c in content)
        return (
            int(status),
            {k: str(v) for k, v in dict(headers).items()},
            (content.encode() if isinstance(content, str) else content),
        )

    def _through_wsgi(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        from werkzeug.test import EnvironBuilder

        parts = urlsplit(request.url)
        headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        environ = EnvironBuilder(
            method=request.method,
            path=parts.path or "/",
            query_string=parts.query,
            headers=headers,
            data=body or b"",
            base_url=self.url,
        ).get_environ()
        status: list[Any] = []

        def start_response(line: str, response_headers: list[tuple[str, str]], *_: Any) -> None:
            status.append((int(line.split(" ", 1)[0]), dict(response_headers)))

        payload = b"".join(self.app(environ, start_response))
        code, response_headers = status[0]
        return code, response_headers, payload


class MotoRequests:
    """botocore's request as moto's `Request`, as `moto.core.request.normalize_request` builds it (a WSGI
    environ from werkzeug's `EnvironBuilder`), without building the builder for every request: the parts
    of the environ that come from the method and URL are built by `EnvironBuilder` once per method and
    URL; the body and headers are put in as `EnvironBuilder.get_environ` puts them. A request this does
    not cover (no body or not bytes, a repeated header, a header value with a line break) goes through
    `normalize_request`. tests/emulator/test_shortcut.py compares the two environs."""

    _MAX_BASES = 64

    def __init__(self) -> None:
        self._bases: dict[tuple[str, str], dict[str, Any]] = {}

    def build(self, request: Any) -> Any:
        from moto.core.request import normalize_request

        environ = self.environ(request)
        if environ is None:
            return normalize_request(request)
        from moto.core.request import Request

        return Request(environ)

    def environ(self, request: Any) -> dict[str, Any] | None:
        from moto.core.request import (
            PRESERVED_HEADER_NAMES_ENVIRON_KEY,
            environ_key_for_header,
            should_preserve_original_header_name,
        )

        body = request.body
        if type(body) is not bytes or not body:
            return None
        headers: dict[str, str] = {}
        names: dict[str, str] = {}
        content_type = None
        for key, value in request.headers.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                return None
            lower = key.lower()
            if lower == "transfer-encoding":
                continue
            if lower == "content-type":
                if content_type is not None:
                    return None
                content_type = value
                continue
            if lower == "content-length":
                continue
            wsgi_key = f"HTTP_{key.upper().replace('-', '_')}"
            if wsgi_key in headers:
                return None
            headers[wsgi_key] = value
            if should_preserve_original_header_name(key):
                names[environ_key_for_header(key)] = key
        base = self._base(request.method, request.url)
        if base is None:
            return None
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(body)
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.update(headers)
        environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names
        return environ

    def _base(self, method: str, url: str) -> dict[str, Any] | None:
        """EnvironBuilder's environ for a request with this method and URL, no headers and no body."""
        base = self._bases.get((method, url))
        if base is None:
            from werkzeug.test import EnvironBuilder

            parts = urlsplit(url)
            if parts.fragment or not parts.scheme or not parts.netloc:
                return None
            builder = EnvironBuilder(
                method=method,
                base_url=f"{parts.scheme}://{parts.netloc}",
                path=parts.path,
                query_string=parts.query,
                data=b"",
                headers=[],
            )
            try:
                base = builder.get_environ()
            finally:
                builder.close()
            for key in ("wsgi.input", "CONTENT_TYPE", "CONTENT_LENGTH"):
                base.pop(key, None)
            if len(self._bases) >= self._MAX_BASES:
                self._bases.clear()
            self._bases[(method, url)] = base
        return base
