"""moto's server on 127.0.0.1 (ephemeral port), sharing the in-process backends with the emulator.

Like `moto.server.ThreadedMotoServer`, but each request runs under the registry's lock, so a request
from boto3, the AWS CLI or the hook never interleaves with a RegisterThing being applied, and
DynamoDB's check-then-write conditional updates are atomic under concurrent hook calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server


class LocalAwsServer:
    def __init__(self, lock: threading.RLock, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = lock
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = DomainDispatcherApplication(create_backend_app)
        lock = self._lock

        def locked(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            with lock:
                # Materialise the body inside the lock: moto builds it lazily from backend state.
                return [b"".join(app(environ, start_response))]

        self._server = make_server(self._host, self._port, locked, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
