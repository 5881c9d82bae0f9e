"""Accepting connections with bounded memory: TCP first, TLS only once the client has spoken and a slot is
free, every stage capped and timed.

`asyncio.start_server(ssl=...)` wraps each accepted socket in TLS at once: an SSLProtocol with its own
256 KiB read buffer and an OpenSSL object, ~300 KB per connection before the client has sent a byte (1,000
idle TCP connections: +300 MB, which glibc then kept after they closed). Here a connection goes through:

1. waiting: accepted, nothing received yet. A socket the loop watches for readability without reading it,
   a few hundred bytes. At most `waiting_connections` wait, `waiting_connections_per_peer` per peer
   address; past either cap the oldest waiting connection is closed, so idle sockets cannot keep a new
   client out (a real client speaks at once and leaves this stage within a round trip).
2. connecting: the client has sent its first bytes (a TLS ClientHello) and a slot is free (at most
   `connecting`, `connecting_per_peer` per peer address; the others wait in stage 1, readable, in order).
   TLS starts with `_TlsProtocol`, whose read buffer is shared by every connection of the listener, then
   the broker reads the CONNECT; the slot is given back once the broker has answered it (`Ticket`).
3. connected: the broker's session, with its own bounds (keep-alive, packet read deadline, write
   high-water mark).

A connection that has not reached stage 3 within `connect_timeout_s` of its accept is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from asyncio import sslproto
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from emulator.mqtt.limits import Limits

log = logging.getLogger("emulator.mqtt")

TLS_READ_CHUNK = 16 * 1024  # one TLS record's plaintext: what the shared buffer takes per socket read
TLS_HANDSHAKE = b"\x16"  # the content type of the first TLS record (a ClientHello)
ACCEPTS_PER_WAKEUP = 128  # as asyncio's backlog loop: accept in batches, then let the loop run
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _TlsProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with one read buffer for every connection of a listener.

    asyncio's SSLProtocol gives each connection a `max_size` (256 KiB) bytearray, written by each socket
    read and copied at once into OpenSSL's input BIO (`buffer_updated`): nothing stays in it between reads,
    and one event loop runs one read at a time, so a single buffer serves every connection. `max_size` is
    also the chunk `SSLObject.read` allocates per call: one TLS record's worth is enough.
    (Relies on SSLProtocol's `_ssl_buffer`/`_ssl_buffer_view`, CPython 3.11-3.13; `TlsStart` checks them
    and falls back to asyncio's own TLS if they are gone.)
    """

    max_size = TLS_READ_CHUNK

    def __init__(self, shared: memoryview, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ssl_buffer_view = shared
        self._ssl_buffer = shared.obj

    def get_buffer(self, n: int) -> memoryview:
        return self._ssl_buffer_view


def shared_buffer_supported() -> bool:
    """Whether this Python's SSLProtocol reads through `_ssl_buffer_view`, as `_TlsProtocol` assumes."""
    updated = getattr(sslproto.SSLProtocol, "buffer_updated", None)
    code = getattr(updated, "__code__", None)
    return code is not None and "_ssl_buffer_view" in code.co_names


class Ticket:
    """A connection between its accept and its CONNACK: its deadline, its peer, its connecting slot."""

    __slots__ = ("sock", "host", "peer", "deadline", "timer", "ready", "done", "_release")

    def __init__(self, sock: socket.socket, address: Any, deadline: float) -> None:
        self.sock = sock
        self.host = str(address[0]) if isinstance(address, tuple) else str(address)
        self.peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        self.deadline = deadline  # loop time
        self.timer: asyncio.TimerHandle | None = None
        self.ready = False  # the client has sent something
        self.done = False  # closed, or admitted to TLS
        self._release: Callable[[], None] | None = None

    def release(self) -> None:
        """CONNECT answered (or the connection ended): the connecting slot is free again (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            release()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Ticket], Awaitable[None]]


class Listener:
    def __init__(
        self, ssl_context: ssl.SSLContext, limits: Limits, handler: Handler, stream_limit: int
    ) -> None:
        self._ssl = ssl_context
        self.limits = limits
        self._handler = handler
        self._stream_limit = stream_limit
        self._sockets: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[Ticket, None] = {}  # oldest first
        self._waiting_by_host: dict[str, dict[Ticket, None]] = {}
        self._ready: deque[Ticket] = deque()  # waiting, have spoken, wait for a connecting slot
        self.connecting = 0
        self._connecting_by_host: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._shared = memoryview(bytearray(TLS_READ_CHUNK))
        self._own_tls = shared_buffer_supported()
        self.closed_connections = 0  # for the heap trimmer: connections that ended before CONNACK
        self.on_closed: Callable[[], None] | None = None

    # ---------------------------------------------------------------- sockets
    async def start(self, host: str, ports: Sequence[int], backlog: int = 1024) -> None:
        self._loop = asyncio.get_running_loop()
        for port in ports:
            for sock in _bind(host, port, backlog):
                self._sockets.append(sock)
                self._loop.add_reader(sock.fileno(), self._accept_ready, sock)

    @property
    def ports(self) -> list[int]:
        """The bound port of each requested port, in order (one listening socket per address family)."""
        seen: list[int] = []
        for sock in self._sockets:
            port = int(sock.getsockname()[1])
            if port not in seen:
                seen.append(port)
        return seen

    async def close_listening(self) -> None:
        """Accept nothing more; close the connections that have not started TLS."""
        loop = self._loop
        for sock in self._sockets:
            if loop is not None:
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        for ticket in list(self._waiting):
            self._drop(ticket)
        self._ready.clear()

    async def close(self) -> None:
        """`close_listening`, and end every connection still under way."""
        await self.close_listening()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def counts(self) -> dict[str, int]:
        return {"waiting": len(self._waiting), "ready": len(self._ready), "connecting": self.connecting}

    # ---------------------------------------------------------------- stage 1: waiting
    def _accept_ready(self, listening: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS and self._waiting:
                    # Out of file descriptors: the oldest idle connection makes room for a new one.
                    self._drop(next(iter(self._waiting)))
                    continue
                log.warning("accept failed: %s; accepting again in 1 s", exc)
                loop.remove_reader(listening.fileno())
                loop.call_later(1.0, self._resume_accept, listening)
                return
            sock.setblocking(False)
            self._wait(sock, address)

    def _resume_accept(self, listening: socket.socket) -> None:
        if listening in self._sockets and self._loop is not None:
            self._loop.add_reader(listening.fileno(), self._accept_ready, listening)

    def _wait(self, sock: socket.socket, address: Any) -> None:
        loop = self._loop
        assert loop is not None
        limits = self.limits
        ticket = Ticket(sock, address, loop.time() + limits.connect_timeout_s)
        self._waiting[ticket] = None
        same_host = self._waiting_by_host.setdefault(ticket.host, {})
        same_host[ticket] = None
        while len(same_host) > limits.waiting_connections_per_peer:
            self._drop(next(iter(same_host)))
        while len(self._waiting) > limits.waiting_connections:
            self._drop(next(iter(self._waiting)))
        if ticket.done:
            return
        ticket.timer = loop.call_at(ticket.deadline, self._drop, ticket)
        loop.add_reader(sock.fileno(), self._spoke, ticket)

    def _spoke(self, ticket: Ticket) -> None:
        assert self._loop is not None
        self._loop.remove_reader(ticket.sock.fileno())
        ticket.ready = True
        try:
            first = ticket.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            first = b"\x16"  # spurious wake-up: let TLS read it
        except OSError:
            first = b""
        if first != TLS_HANDSHAKE:
            # Closed without a word, or not TLS: no TLS state is spent on it (a TLS server would fail the
            # handshake on the first record anyway).
            self._drop(ticket)
            return
        self._ready.append(ticket)
        self._promote()

    def _unlist(self, ticket: Ticket) -> None:
        self._waiting.pop(ticket, None)
        same_host = self._waiting_by_host.get(ticket.host)
        if same_host is not None:
            same_host.pop(ticket, None)
            if not same_host:
                del self._waiting_by_host[ticket.host]

    def _drop(self, ticket: Ticket) -> None:
        """Close a waiting connection (its deadline passed, or a cap made room)."""
        if ticket.done:
            return
        ticket.done = True
        self._unlist(ticket)
        if ticket.timer is not None:
            ticket.timer.cancel()
        if not ticket.ready and self._loop is not None:
            self._loop.remove_reader(ticket.sock.fileno())
        ticket.sock.close()
        self._count_closed()

    def _count_closed(self) -> None:
        self.closed_connections += 1
        if self.on_closed is not None:
            self.on_closed()

    # ---------------------------------------------------------------- stage 2: connecting
    def _promote(self) -> None:
        """Start TLS for connections that have spoken, oldest first, while slots are free."""
        limits = self.limits
        if not self._ready or self.connecting >= limits.connecting:
            return
        held: deque[Ticket] = deque()
        while self._ready and self.connecting < limits.connecting:
            ticket = self._ready.popleft()
            if ticket.done:
                continue
            if self._connecting_by_host.get(ticket.host, 0) >= limits.connecting_per_peer:
                held.append(ticket)
                continue
            self._start(ticket)
        held.extend(self._ready)
        self._ready = held

    def _start(self, ticket: Ticket) -> None:
        assert self._loop is not None
        ticket.done = True
        self._unlist(ticket)
        if ticket.timer is not None:
            ticket.timer.cancel()
        self.connecting += 1
        self._connecting_by_host[ticket.host] = self._connecting_by_host.get(ticket.host, 0) + 1
        ticket._release = lambda: self._slot_free(ticket.host)
        task = self._loop.create_task(self._connect(ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _slot_free(self, host: str) -> None:
        self.connecting -= 1
        left = self._connecting_by_host.get(host, 1) - 1
        if left:
            self._connecting_by_host[host] = left
        else:
            self._connecting_by_host.pop(host, None)
        self._promote()

    async def _connect(self, ticket: Ticket) -> None:
        loop = self._loop
        assert loop is not None
        writer: asyncio.StreamWriter | None = None
        try:
            remaining = ticket.deadline - loop.time()
            if remaining <= 0:
                return
            reader, writer = await self._start_tls(ticket.sock, remaining)
            await self._handler(reader, writer, ticket)
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            pass  # a failed handshake: the client is told by TLS, the log would only be noise
        except Exception:
            log.exception("unexpected error starting TLS for peer=%s", ticket.peer)
        finally:
            ticket.release()
            if writer is not None:
                writer.close()  # idempotent; what the broker queued last (a refusal) still goes out
            else:
                ticket.sock.close()
            self._count_closed()

    async def _start_tls(
        self, sock: socket.socket, timeout: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = self._loop
        assert loop is not None
        reader = asyncio.StreamReader(limit=self._stream_limit, loop=loop)
        writers: list[asyncio.StreamWriter] = []
        # The callback runs once the handshake is done; it returns None, so asyncio starts no task of its own.
        app = asyncio.StreamReaderProtocol(reader, lambda _r, w: writers.append(w), loop=loop)
        tls = None
        if self._own_tls:
            handshake: asyncio.Future[None] = loop.create_future()
            try:
                tls = _TlsProtocol(
                    self._shared,
                    loop,
                    app,
                    self._ssl,
                    handshake,
                    server_side=True,
                    ssl_handshake_timeout=timeout,
                )
            except TypeError:  # SSLProtocol's signature changed: asyncio's own TLS, with its own buffers
                self._own_tls = False
                log.warning("asyncio's SSLProtocol changed: TLS connections get asyncio's 256 KiB buffers")
        if tls is None:
            await loop.connect_accepted_socket(
                lambda: app, sock, ssl=self._ssl, ssl_handshake_timeout=timeout
            )
        else:
            await loop.connect_accepted_socket(lambda: tls, sock)
            await handshake  # SSLProtocol's own timer bounds it
        if not writers:
            raise ConnectionError("TLS ended before the connection was made")
        writer = writers.pop()  # the protocol holds the callback, which holds the list: no cycle left behind
        return reader, writer


def _bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address of `host` (as asyncio.start_server binds), one port for all."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return sockets
