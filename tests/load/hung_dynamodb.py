"""A TCP server the hook's DynamoDB endpoint points at: it accepts every connection and reads every
request, never answers the ones that name a "hung" serial, and relays the others to moto, so devices with
other serials keep working on the same emulator while the hung ones wait."""

from __future__ import annotations

import asyncio
import http.client
import threading
from urllib.parse import urlsplit


class HungDynamoDB:
    def __init__(self, hang_marker: bytes) -> None:
        self.hang_marker = hang_marker
        self.upstream: str | None = None  # moto's URL, known once the emulator is up
        self.hung_requests = 0
        self.relayed_requests = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="hung-dynamodb")
        self._thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length)
                if self.hang_marker in body:
                    self.hung_requests += 1
                    await reader.read()  # accept, read, never answer: until the client gives up
                    return
                self.relayed_requests += 1
                status, reason, reply_headers, reply = await asyncio.to_thread(
                    self._relay, method, path, headers, body
                )
                out = [f"HTTP/1.1 {status} {reason}"]
                out += [f"{k}: {v}" for k, v in reply_headers if k.lower() not in _HOP_HEADERS]
                out += [f"Content-Length: {len(reply)}", "", ""]
                writer.write("\r\n".join(out).encode("latin-1") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def _relay(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        assert self.upstream is not None, "set upstream before the first request"
        parts = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            connection.request(method, path, body, {k: v for k, v in headers.items() if k.lower() != "host"})
            response = connection.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            connection.close()

    def close(self) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)


_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}
